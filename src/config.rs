//! Configuration from the environment or flags, validated once at start.

use std::net::SocketAddr;

use clap::builder::BoolishValueParser;

use crate::agent::settings::{github_web_url, AgentRuntimeKind, AgentSettings, LlmSettings};
use crate::secret::Secret;

use crate::forward::{ForwardConfigError, ForwardSettings};
use crate::github::client::{AppCredentials, GitHubClient};
use crate::github::signature::{WebhookSecret, WebhookSecrets};
use crate::triggers::classify::{TriggerRules, TriggerSwitch};
use crate::triggers::limits::{DailyLimits, LimitsClock, RunningLimits};
use crate::triggers::thread::PerThread;

#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// Where the event log and read models live: `sqlite://PATH` or `postgres://USER@HOST/DB`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/hookwise.db", hide_env_values = true)]
    pub database_url: String,
    /// KurrentDB/EventStoreDB for the event log (`esdb://HOST:2113?tls=false`); read models,
    /// checkpoints and the outbox stay in DATABASE_URL. Needs the cargo feature `kurrentdb`.
    #[arg(long, env = "EVENTSTORE_URL", hide_env_values = true)]
    pub eventstore_url: Option<String>,
}

impl StoreArgs {
    /// `EVENTSTORE_URL` when set and not empty.
    pub fn eventstore_url(&self) -> Option<&str> {
        self.eventstore_url.as_deref().filter(|url| !url.trim().is_empty())
    }
}

/// The GitHub App's REST API credentials.
#[derive(clap::Args, Debug, Clone)]
pub struct GitHubAppArgs {
    /// The GitHub App's id.
    #[arg(long, env = "GITHUB_APP_ID")]
    pub github_app_id: Option<String>,
    /// The App's private key (PEM).
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY", hide_env_values = true)]
    pub github_app_private_key: Option<String>,
    /// A file holding the App's private key (PEM), instead of GITHUB_APP_PRIVATE_KEY.
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY_PATH")]
    pub github_app_private_key_path: Option<std::path::PathBuf>,
    /// The REST API root: GitHub, a GitHub Enterprise Server, or a test double.
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,
}

impl GitHubAppArgs {
    /// The App's credentials; `None` when no App id is configured.
    pub fn credentials(&self) -> Result<Option<AppCredentials>, ConfigError> {
        let Some(app_id) = self.github_app_id.as_deref().filter(|id| !id.trim().is_empty()) else {
            return Ok(None);
        };
        let pem = match (&self.github_app_private_key, &self.github_app_private_key_path) {
            (Some(pem), _) if !pem.trim().is_empty() => pem.clone(),
            (_, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                ConfigError::GitHubApp(format!("reading GITHUB_APP_PRIVATE_KEY_PATH {}: {e}", path.display()))
            })?,
            _ => {
                return Err(ConfigError::GitHubApp(
                    "GITHUB_APP_ID is set but neither GITHUB_APP_PRIVATE_KEY nor GITHUB_APP_PRIVATE_KEY_PATH".into(),
                ))
            }
        };
        AppCredentials::parse(app_id, &pem).map(Some).map_err(ConfigError::GitHubApp)
    }

    /// A client for the App; fails when the App is not configured.
    pub fn client(&self) -> Result<GitHubClient, ConfigError> {
        let credentials = self.credentials()?.ok_or_else(|| {
            ConfigError::GitHubApp("GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (or _PATH) are required".into())
        })?;
        Ok(GitHubClient::new(&self.github_api_url, Some(credentials)))
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// `KEY=VALUE` lines (e.g. written by `hookwise setup`) read before these settings;
    /// variables already in the environment win.
    #[arg(long, env = "HOOKWISE_ENV_FILE")]
    pub env_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub github: GitHubAppArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The GitHub App's webhook secret (required, non-empty).
    #[arg(long, env = "GITHUB_APP_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// The previous webhook secret, also accepted while a rotation is under way.
    #[arg(long, env = "GITHUB_APP_WEBHOOK_SECRET_PREVIOUS", hide_env_values = true)]
    pub webhook_secret_previous: Option<String>,
    /// `false` makes intake answer 503 and store nothing.
    #[arg(
        long,
        env = "GITHUB_WEBHOOKS_ENABLED",
        default_value = "true",
        value_parser = BoolishValueParser::new(),
        action = clap::ArgAction::Set
    )]
    pub webhooks_enabled: bool,
    /// Listen address (port 0 picks a free port).
    #[arg(long, env = "HOOKWISE_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// Bearer token for `/api`; required when listening beyond loopback.
    #[arg(long, env = "HOOKWISE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// A sink to forward the log to, `name=URL` (repeatable; comma-separated in the environment).
    /// `HOOKWISE_FORWARD_EVENTS_<NAME>` restricts a sink to some event types.
    #[arg(long = "forward", env = "HOOKWISE_FORWARD", value_delimiter = ',', hide_env_values = true)]
    pub forward: Vec<String>,
    /// Signs every forwarded batch (`X-Hookwise-Signature-256`); required with sinks.
    #[arg(long, env = "HOOKWISE_FORWARD_SECRET", hide_env_values = true)]
    pub forward_secret: Option<String>,
    /// Look for missed deliveries this often (e.g. `15m`); unset or `off`: never.
    #[arg(long, env = "HOOKWISE_RECONCILE_INTERVAL")]
    pub reconcile_interval: Option<String>,
    /// `all`: intake, API and the background work (process manager, read
    /// models, executor, forwarders, reconciliation). `intake`: intake and the
    /// API only, for extra instances in front of a shared PostgreSQL while one
    /// `all` instance does the background work.
    #[arg(long, env = "HOOKWISE_ROLE", value_enum, default_value = "all")]
    pub role: Role,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// How long an HTTP client may take and how many are served at once.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// How long a connection may take, from accept or the first byte of a request, to send a whole request head.
    #[arg(long, env = "HOOKWISE_HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: String,
    /// How long a request's whole body may take to arrive (`408` after that).
    #[arg(long, env = "HOOKWISE_BODY_READ_TIMEOUT", default_value = "30s")]
    pub body_read_timeout: String,
    /// How long a keep-alive connection may sit without a request before it is closed.
    #[arg(long, env = "HOOKWISE_IDLE_TIMEOUT", default_value = "30s")]
    pub idle_timeout: String,
    /// How long writing an answer may make no progress (a client that stops reading) before the connection is closed.
    #[arg(long, env = "HOOKWISE_WRITE_TIMEOUT", default_value = "30s")]
    pub write_timeout: String,
    /// Connections served at once; more wait in the kernel's accept backlog
    /// (lowered to fit the open-file limit).
    #[arg(long, env = "HOOKWISE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// HTTP/2 streams one connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    #[arg(long, env = "HOOKWISE_HTTP2_MAX_STREAMS", default_value_t = 100)]
    pub http2_max_streams: u32,
}

/// Validated [`ServerArgs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_read_timeout: std::time::Duration,
    pub body_read_timeout: std::time::Duration,
    pub idle_timeout: std::time::Duration,
    pub write_timeout: std::time::Duration,
    pub max_connections: usize,
    pub http2_max_streams: u32,
}

impl ServerLimits {
    pub fn from_args(args: &ServerArgs) -> Result<Self, ConfigError> {
        Ok(ServerLimits {
            header_read_timeout: duration_setting("HOOKWISE_HEADER_READ_TIMEOUT", &args.header_read_timeout)?,
            body_read_timeout: duration_setting("HOOKWISE_BODY_READ_TIMEOUT", &args.body_read_timeout)?,
            idle_timeout: duration_setting("HOOKWISE_IDLE_TIMEOUT", &args.idle_timeout)?,
            write_timeout: duration_setting("HOOKWISE_WRITE_TIMEOUT", &args.write_timeout)?,
            max_connections: args.max_connections.max(1),
            http2_max_streams: args.http2_max_streams.max(1),
        })
    }
}

/// Validated configuration of `hookwise serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    /// The KurrentDB holding the event log, when not the SQL database.
    pub eventstore_url: Option<String>,
    pub secrets: WebhookSecrets,
    pub webhooks_enabled: bool,
    pub bind: SocketAddr,
    pub api_token: Option<Secret>,
    pub forward: ForwardSettings,
    /// How often to reconcile missed deliveries; `None`: never.
    pub reconcile_interval: Option<std::time::Duration>,
    pub role: Role,
    pub process: ProcessSettings,
    pub server: ServerLimits,
    pub github_api_url: String,
    /// `None`: the App's REST API is not configured.
    pub github_credentials: Option<AppCredentials>,
}

/// What one `hookwise serve` instance does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    All,
    Intake,
}

/// How hookwise answers where it was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplyStyle {
    /// One status comment, edited in place as the run goes; it ends with the result.
    Edit,
    /// "I'm on it" stays as posted; the result is a comment of its own.
    New,
}

/// What the agent's context does with a comment whose author could not have asked for the agent.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum UntrustedComments {
    /// Kept, labelled as from someone who cannot ask for the agent.
    Mark,
    /// Left out (the context says how many).
    Omit,
}

/// The GitHub App, the agent runtime and the trigger words.
#[derive(clap::Args, Debug, Clone)]
pub struct ProcessArgs {
    /// The issue label that asks for the agent.
    #[arg(long, env = "HOOKWISE_TRIGGER_LABEL", default_value = "openhands")]
    pub trigger_label: String,
    /// The handle whose mention asks for the agent.
    #[arg(long, env = "HOOKWISE_MENTION", default_value = "@openhands")]
    pub mention: String,
    /// Suggest help on pull requests whose workflow runs failed.
    #[arg(
        long,
        env = "ENABLE_PROACTIVE_CONVERSATION_STARTERS",
        default_value = "false",
        value_parser = BoolishValueParser::new(),
        action = clap::ArgAction::Set
    )]
    pub proactive: bool,
    /// The ways of asking that are on, comma-separated: label, mention, review,
    /// assign, pr-label, edited-mention, failed-run (which also needs
    /// ENABLE_PROACTIVE_CONVERSATION_STARTERS).
    #[arg(
        long,
        env = "HOOKWISE_TRIGGERS",
        default_value = "label,mention,review,assign,pr-label,edited-mention,failed-run"
    )]
    pub triggers: String,
    /// The App's bot user, whose assignment asks (`my-app[bot]`); default: the
    /// App's slug from `GET /app` plus `[bot]`, fetched at start.
    #[arg(long, env = "HOOKWISE_BOT_LOGIN")]
    pub bot_login: Option<String>,
    /// Comments given to the agent as context whose authors could not have asked for it
    /// (no write permission, or a bot): `mark` them as such, or `omit` them.
    #[arg(long, env = "HOOKWISE_UNTRUSTED_COMMENTS", value_enum, default_value = "mark")]
    pub untrusted_comments: UntrustedComments,
    /// Which agent runtime `AGENT_API_URL` is: `openhands` (the V1 App Server:
    /// OpenHands Cloud or a self-hosted app), `openhands-agent-server` (the
    /// agent server directly) or `openhands-v0` (the legacy V0 API, OpenHands
    /// 1.6 and older).
    #[arg(long, env = "AGENT_RUNTIME", value_enum, default_value = "openhands")]
    pub agent_runtime: AgentRuntimeKind,
    /// The agent runtime's address; unset: triggers stop at `agent_not_configured`.
    #[arg(long, env = "AGENT_API_URL")]
    pub agent_api_url: Option<String>,
    /// `openhands`: the API key (`Authorization: Bearer`); `openhands-agent-server`:
    /// its session key (`X-Session-API-Key`, also required on its webhooks).
    #[arg(long, env = "AGENT_API_KEY", hide_env_values = true)]
    pub agent_api_key: Option<String>,
    /// Link to a conversation; `{conversation_id}` is replaced.
    #[arg(long, env = "AGENT_CONVERSATION_URL")]
    pub agent_conversation_url: Option<String>,
    /// `openhands-v0`: required in `X-Session-API-Key` on `/event-webhook/batch`.
    #[arg(long, env = "AGENT_CALLBACK_SECRET", hide_env_values = true)]
    pub agent_callback_secret: Option<String>,
    /// How often a running conversation is looked at (e.g. `10s`); doubles up to 5m while nothing changes.
    #[arg(long, env = "AGENT_POLL_INTERVAL", default_value = "10s")]
    pub agent_poll_interval: String,
    /// How long one call to the agent runtime may take, from connecting to the last byte (e.g. `60s`).
    #[arg(long, env = "AGENT_REQUEST_TIMEOUT", default_value = "60s")]
    pub agent_request_timeout: String,
    /// How long a conversation may run before hookwise gives up on it (e.g. `2h`).
    #[arg(long, env = "AGENT_RUN_TIMEOUT", default_value = "2h")]
    pub agent_run_timeout: String,
    /// `openhands-agent-server`: the LLM the agent uses (litellm name, e.g. `anthropic/claude-sonnet-4-5`).
    #[arg(long, env = "AGENT_LLM_MODEL")]
    pub agent_llm_model: Option<String>,
    /// `openhands-agent-server`: the LLM's API key.
    #[arg(long, env = "AGENT_LLM_API_KEY", hide_env_values = true)]
    pub agent_llm_api_key: Option<String>,
    /// `openhands-agent-server`: the LLM's base URL (optional).
    #[arg(long, env = "AGENT_LLM_BASE_URL")]
    pub agent_llm_base_url: Option<String>,
    /// `openhands-agent-server`: where workspaces go, a directory on the agent server's host.
    #[arg(long, env = "AGENT_WORKSPACE_ROOT", default_value = "/workspace")]
    pub agent_workspace_root: String,
    /// `openhands-agent-server`: the agent's iteration limit per run.
    #[arg(long, env = "AGENT_MAX_ITERATIONS", default_value_t = 100)]
    pub agent_max_iterations: u32,
    /// Where repositories are cloned from (`openhands-agent-server`); default:
    /// `https://github.com`, or the Enterprise Server derived from `GITHUB_API_URL`.
    #[arg(long, env = "GITHUB_WEB_URL")]
    pub github_web_url: Option<String>,
    /// First retry delay of a failed step, in milliseconds (doubling, with jitter).
    #[arg(long, env = "HOOKWISE_RETRY_BASE_MS", default_value_t = 2000)]
    pub retry_base_ms: u64,
    /// Attempts of a step before its trigger is abandoned.
    #[arg(long, env = "HOOKWISE_RETRY_MAX_ATTEMPTS", default_value_t = 8)]
    pub retry_max_attempts: u32,
    /// How long a claimed step is left to its executor before another may take
    /// it over (after a crash mid-call), in milliseconds.
    #[arg(long, env = "HOOKWISE_CLAIM_LEASE_MS", default_value_t = 300_000)]
    pub claim_lease_ms: u64,
    /// Outbox commands one executor performs at the same time (at least 1);
    /// two steps of the same trigger never run at once.
    #[arg(long, env = "HOOKWISE_EXECUTOR_CONCURRENCY", default_value_t = 32)]
    pub executor_concurrency: usize,
    /// `edit`: one status comment ("I'm on it", then running, then the result
    /// or why there is none), edited in place; `new`: the result in a comment
    /// of its own.
    #[arg(long, env = "HOOKWISE_REPLY_STYLE", value_enum, default_value = "edit")]
    pub reply_style: ReplyStyle,
    /// Requests on the same issue or pull request: `queue` (one conversation
    /// at a time, later requests wait their turn) or `parallel`.
    #[arg(long, env = "HOOKWISE_PER_THREAD", value_enum, default_value = "queue")]
    pub per_thread: PerThread,
    /// Conversations one requester may start per UTC day (0: no limit).
    #[arg(long, env = "HOOKWISE_MAX_PER_USER_PER_DAY", default_value_t = 0)]
    pub max_per_user_per_day: u32,
    /// Conversations one repository may start per UTC day (0: no limit).
    #[arg(long, env = "HOOKWISE_MAX_PER_REPO_PER_DAY", default_value_t = 0)]
    pub max_per_repo_per_day: u32,
    /// Conversations running at once, in all (0: no limit); more wait their turn.
    #[arg(long, env = "HOOKWISE_MAX_RUNNING", default_value_t = 0)]
    pub max_running: u32,
    /// Conversations running at once in one repository (0: no limit).
    #[arg(long, env = "HOOKWISE_MAX_RUNNING_PER_REPO", default_value_t = 0)]
    pub max_running_per_repo: u32,
    /// Proactive suggestions on one pull request, in all (0: no limit; still
    /// at most one per head commit).
    #[arg(long, env = "HOOKWISE_MAX_PROACTIVE_PER_PR", default_value_t = 0)]
    pub max_proactive_per_pr: u32,
}

/// Validated [`ProcessArgs`].
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    pub github: Option<AppCredentials>,
    pub github_api_url: String,
    pub rules: TriggerRules,
    pub untrusted_comments: UntrustedComments,
    pub agent: Option<AgentSettings>,
    pub callback_secret: Option<Secret>,
    pub retry_base: std::time::Duration,
    pub retry_max_attempts: u32,
    /// How long a claimed command stays claimed (an executor that died mid-call loses it after this).
    pub claim_lease: std::time::Duration,
    /// Commands in flight at once, per executor.
    pub executor_concurrency: usize,
    pub reply_style: ReplyStyle,
    pub per_thread: PerThread,
    pub daily_limits: DailyLimits,
    pub running_limits: RunningLimits,
    pub max_proactive_per_pr: u32,
    /// The clock the daily limits count by (the system's; tests set their own).
    pub limits_clock: LimitsClock,
}

impl ProcessSettings {
    /// `github` and `github_api_url` come from [`GitHubAppArgs`], shared with reconciliation.
    pub fn from_args(
        args: ProcessArgs,
        github: Option<AppCredentials>,
        github_api_url: String,
    ) -> Result<Self, ConfigError> {
        let agent = match args.agent_api_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            None => None,
            Some(url) => {
                let api_url = url.trim_end_matches('/').to_owned();
                let conversation_url = args
                    .agent_conversation_url
                    .clone()
                    .filter(|u| !u.trim().is_empty())
                    .unwrap_or_else(|| format!("{api_url}/conversations/{{conversation_id}}"));
                let secret = |value: &Option<String>| value.as_deref().filter(|v| !v.is_empty()).map(Secret::new);
                let llm =
                    args.agent_llm_model.as_deref().map(str::trim).filter(|m| !m.is_empty()).map(|model| LlmSettings {
                        model: model.to_owned(),
                        api_key: secret(&args.agent_llm_api_key),
                        base_url: args.agent_llm_base_url.clone().filter(|u| !u.trim().is_empty()),
                    });
                let github_web_url = match args.github_web_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
                    Some(url) => url.trim_end_matches('/').to_owned(),
                    None => github_web_url(&github_api_url),
                };
                Some(AgentSettings {
                    runtime: args.agent_runtime,
                    api_url,
                    api_key: secret(&args.agent_api_key),
                    conversation_url,
                    poll_interval: duration_setting("AGENT_POLL_INTERVAL", &args.agent_poll_interval)?,
                    run_timeout: duration_setting("AGENT_RUN_TIMEOUT", &args.agent_run_timeout)?,
                    request_timeout: duration_setting("AGENT_REQUEST_TIMEOUT", &args.agent_request_timeout)?,
                    llm,
                    workspace_root: args.agent_workspace_root.trim_end_matches('/').to_owned(),
                    max_iterations: args.agent_max_iterations.max(1),
                    github_web_url,
                })
            }
        };
        if args.mention.trim().is_empty() || args.trigger_label.trim().is_empty() {
            return Err(ConfigError::EmptyTriggerWords);
        }
        Ok(ProcessSettings {
            github,
            github_api_url,
            rules: TriggerRules {
                label: args.trigger_label,
                mention: args.mention,
                proactive: args.proactive,
                enabled: TriggerSwitch::parse_list(&args.triggers).map_err(ConfigError::Triggers)?,
                bot_login: args.bot_login.map(|login| login.trim().to_owned()).filter(|login| !login.is_empty()),
                allowed_bots: Default::default(),
            },
            untrusted_comments: args.untrusted_comments,
            agent,
            callback_secret: args.agent_callback_secret.filter(|s| !s.is_empty()).map(Secret::new),
            retry_base: std::time::Duration::from_millis(args.retry_base_ms.max(1)),
            retry_max_attempts: args.retry_max_attempts.max(1),
            claim_lease: std::time::Duration::from_millis(args.claim_lease_ms.max(1)),
            executor_concurrency: args.executor_concurrency.max(1),
            reply_style: args.reply_style,
            per_thread: args.per_thread,
            daily_limits: DailyLimits { per_user: args.max_per_user_per_day, per_repo: args.max_per_repo_per_day },
            running_limits: RunningLimits { global: args.max_running, per_repo: args.max_running_per_repo },
            max_proactive_per_pr: args.max_proactive_per_pr,
            limits_clock: LimitsClock::default(),
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("HOOKWISE_TRIGGERS: {0}")]
    Triggers(String),
    #[error("GITHUB_APP_WEBHOOK_SECRET is required and must not be empty (without it anyone could sign deliveries)")]
    MissingWebhookSecret,
    #[error("HOOKWISE_API_TOKEN is required when HOOKWISE_BIND ({0}) is not a loopback address")]
    MissingApiToken(SocketAddr),
    #[error(transparent)]
    Forward(#[from] ForwardConfigError),
    #[error("HOOKWISE_RECONCILE_INTERVAL: `{0}` is not a duration such as 15m or 1h (at least 1m), nor `off`")]
    ReconcileInterval(String),
    #[error(
        "HOOKWISE_RECONCILE_INTERVAL needs the GitHub App: set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (or _PATH)"
    )]
    ReconcileNeedsApp,
    #[error("GitHub App: {0}")]
    GitHubApp(String),
    #[error("HOOKWISE_MENTION and HOOKWISE_TRIGGER_LABEL must not be empty")]
    EmptyTriggerWords,
    #[error("{setting}: `{value}` is not a duration such as 10s, 5m or 2h")]
    Duration { setting: &'static str, value: String },
    #[error("{}", crate::store::KURRENTDB_NOT_BUILT)]
    KurrentDbNotBuilt,
}

impl Config {
    pub fn from_args(args: ServeArgs) -> Result<Self, ConfigError> {
        let current = args
            .webhook_secret
            .as_deref()
            .and_then(|s| WebhookSecret::parse(s).ok())
            .ok_or(ConfigError::MissingWebhookSecret)?;
        // An empty previous secret means "no rotation under way", never "accept anything".
        let previous = args.webhook_secret_previous.as_deref().and_then(|s| WebhookSecret::parse(s).ok());
        let api_token = args.api_token.filter(|t| !t.is_empty()).map(Secret::new);
        if api_token.is_none() && !args.bind.ip().is_loopback() {
            return Err(ConfigError::MissingApiToken(args.bind));
        }
        let forward =
            ForwardSettings::parse(&args.forward, args.forward_secret.as_deref(), |key| std::env::var(key).ok())?;
        let reconcile_interval = parse_reconcile_interval(args.reconcile_interval.as_deref())?;
        let github_credentials = args.github.credentials()?;
        if reconcile_interval.is_some() && github_credentials.is_none() {
            return Err(ConfigError::ReconcileNeedsApp);
        }
        let eventstore_url = args.store.eventstore_url().map(str::to_owned);
        if eventstore_url.is_some() && !cfg!(feature = "kurrentdb") {
            return Err(ConfigError::KurrentDbNotBuilt);
        }
        let process =
            ProcessSettings::from_args(args.process, github_credentials.clone(), args.github.github_api_url.clone())?;
        let server = ServerLimits::from_args(&args.server)?;
        Ok(Config {
            role: args.role,
            process,
            server,
            database_url: args.store.database_url,
            eventstore_url,
            secrets: WebhookSecrets { current, previous },
            webhooks_enabled: args.webhooks_enabled,
            bind: args.bind,
            api_token,
            forward,
            reconcile_interval,
            github_api_url: args.github.github_api_url,
            github_credentials,
        })
    }
}

fn parse_reconcile_interval(value: Option<&str>) -> Result<Option<std::time::Duration>, ConfigError> {
    match value.map(str::trim) {
        None | Some("") | Some("off") => Ok(None),
        Some(text) => match humantime::parse_duration(text) {
            // More often than once a minute would spend GitHub's rate limit for nothing.
            Ok(interval) if interval >= std::time::Duration::from_secs(60) => Ok(Some(interval)),
            _ => Err(ConfigError::ReconcileInterval(text.chars().take(40).collect())),
        },
    }
}

/// A positive duration setting such as `10s` or `2h`.
fn duration_setting(setting: &'static str, value: &str) -> Result<std::time::Duration, ConfigError> {
    humantime::parse_duration(value.trim())
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| ConfigError::Duration { setting, value: value.to_owned() })
}

#[cfg(test)]
mod reconcile_interval_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_durations_and_off() {
        assert_eq!(parse_reconcile_interval(None), Ok(None));
        assert_eq!(parse_reconcile_interval(Some("off")), Ok(None));
        assert_eq!(parse_reconcile_interval(Some("15m")), Ok(Some(Duration::from_secs(900))));
        assert_eq!(parse_reconcile_interval(Some("1h 30m")), Ok(Some(Duration::from_secs(5400))));
        assert!(parse_reconcile_interval(Some("10s")).is_err(), "too often");
        assert!(parse_reconcile_interval(Some("soon")).is_err());
    }

    fn serve_args(extra: &[&str]) -> ServeArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Serve {
            #[command(flatten)]
            args: ServeArgs,
        }
        let argv = ["hookwise", "--webhook-secret", "s"].iter().chain(extra);
        Serve::try_parse_from(argv).expect("valid flags").args
    }

    #[test]
    fn server_limits_have_their_defaults_and_refuse_zero_durations() {
        let config = Config::from_args(serve_args(&[])).expect("valid");
        let expected = ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 1024,
            http2_max_streams: 100,
        };
        assert_eq!(config.server, expected);
        let error = Config::from_args(serve_args(&["--idle-timeout", "0s"])).expect_err("zero");
        assert!(matches!(error, ConfigError::Duration { setting: "HOOKWISE_IDLE_TIMEOUT", .. }), "{error:?}");
    }

    #[test]
    fn periodic_reconciliation_needs_the_app() {
        let error = Config::from_args(serve_args(&["--reconcile-interval", "15m"])).expect_err("no App configured");
        assert_eq!(error, ConfigError::ReconcileNeedsApp);
        let error = Config::from_args(serve_args(&["--github-app-id", "1"])).expect_err("no key");
        assert!(matches!(error, ConfigError::GitHubApp(_)));
        let config = Config::from_args(serve_args(&[])).expect("valid");
        assert_eq!((config.reconcile_interval, config.github_credentials.is_none()), (None, true));
    }

    #[test]
    fn the_ways_to_ask_are_all_on_by_default_and_an_unknown_one_stops_start() {
        use crate::triggers::classify::TriggerSwitch;
        let rules = Config::from_args(serve_args(&[])).expect("valid").process.rules;
        assert_eq!(rules.enabled, TriggerSwitch::ALL.into_iter().collect());
        assert_eq!(rules.bot_login, None);
        let config = Config::from_args(serve_args(&["--triggers", "mention,review", "--bot-login", " app[bot] "]));
        let rules = config.expect("valid").process.rules;
        assert_eq!(rules.enabled, [TriggerSwitch::Mention, TriggerSwitch::Review].into_iter().collect());
        assert_eq!(rules.bot_login.as_deref(), Some("app[bot]"));
        let error = Config::from_args(serve_args(&["--triggers", "mention,assigned"])).expect_err("unknown");
        assert!(matches!(&error, ConfigError::Triggers(message) if message.contains("\"assigned\"")), "{error}");
    }
}
