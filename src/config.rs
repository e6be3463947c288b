//! Configuration from the environment or flags, validated once at start.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;

use crate::forward::{ForwardConfigError, ForwardSettings};
use crate::github::classify::TriggerRules;
use crate::github::client::AppCredentials;
use crate::github::signature::{WebhookSecret, WebhookSecrets};

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

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
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
    #[command(flatten)]
    pub process: ProcessArgs,
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
    pub api_token: Option<ApiToken>,
    pub forward: ForwardSettings,
    /// How often to reconcile missed deliveries; `None`: never.
    pub reconcile_interval: Option<std::time::Duration>,
    pub process: ProcessSettings,
}

/// The GitHub App, the agent runtime and the trigger words.
#[derive(clap::Args, Debug, Clone)]
pub struct ProcessArgs {
    /// The GitHub App's id (for its JWT).
    #[arg(long, env = "GITHUB_APP_ID")]
    pub github_app_id: Option<String>,
    /// The GitHub App's private key (PEM).
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY", hide_env_values = true)]
    pub github_app_private_key: Option<String>,
    /// A file holding the GitHub App's private key (PEM).
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY_PATH")]
    pub github_app_private_key_path: Option<PathBuf>,
    /// The GitHub REST API root (GitHub Enterprise Server: `https://HOST/api/v3`).
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,
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
    /// The agent runtime (OpenHands-compatible); unset: triggers stop at `agent_not_configured`.
    #[arg(long, env = "AGENT_API_URL")]
    pub agent_api_url: Option<String>,
    #[arg(long, env = "AGENT_API_KEY", hide_env_values = true)]
    pub agent_api_key: Option<String>,
    /// Link to a conversation; `{conversation_id}` is replaced.
    #[arg(long, env = "AGENT_CONVERSATION_URL")]
    pub agent_conversation_url: Option<String>,
    /// Required in `X-Session-API-Key` on `/event-webhook/batch`.
    #[arg(long, env = "AGENT_CALLBACK_SECRET", hide_env_values = true)]
    pub agent_callback_secret: Option<String>,
    /// First retry delay of a failed step, in milliseconds (doubling, with jitter).
    #[arg(long, env = "HOOKWISE_RETRY_BASE_MS", default_value_t = 2000)]
    pub retry_base_ms: u64,
    /// Attempts of a step before its trigger is abandoned.
    #[arg(long, env = "HOOKWISE_RETRY_MAX_ATTEMPTS", default_value_t = 8)]
    pub retry_max_attempts: u32,
}

/// The agent runtime's address and key.
#[derive(Clone)]
pub struct AgentRuntime {
    pub api_url: String,
    pub api_key: Option<String>,
    /// `{conversation_id}` is replaced.
    pub conversation_url: String,
}

impl std::fmt::Debug for AgentRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRuntime").field("api_url", &self.api_url).finish_non_exhaustive()
    }
}

/// Validated [`ProcessArgs`].
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    pub github: Option<AppCredentials>,
    pub github_api_url: String,
    pub rules: TriggerRules,
    pub agent: Option<AgentRuntime>,
    pub callback_secret: Option<ApiToken>,
    pub retry_base: std::time::Duration,
    pub retry_max_attempts: u32,
}

impl ProcessSettings {
    pub fn from_args(args: ProcessArgs) -> Result<Self, ConfigError> {
        let key =
            match (args.github_app_private_key.filter(|k| !k.trim().is_empty()), &args.github_app_private_key_path) {
                (Some(key), _) => Some(key),
                (None, Some(path)) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| ConfigError::GitHubApp(format!("reading {}: {e}", path.display())))?,
                ),
                (None, None) => None,
            };
        let github = match (args.github_app_id.filter(|id| !id.trim().is_empty()), key) {
            (Some(id), Some(key)) => Some(AppCredentials::parse(&id, &key).map_err(ConfigError::GitHubApp)?),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::GitHubApp("GITHUB_APP_PRIVATE_KEY (or _PATH) is not set".into()))
            }
            (None, Some(_)) => return Err(ConfigError::GitHubApp("GITHUB_APP_ID is not set".into())),
        };
        let agent = args.agent_api_url.filter(|u| !u.trim().is_empty()).map(|url| {
            let api_url = url.trim_end_matches('/').to_owned();
            let conversation_url = args
                .agent_conversation_url
                .clone()
                .unwrap_or_else(|| format!("{api_url}/conversations/{{conversation_id}}"));
            AgentRuntime { api_url, api_key: args.agent_api_key.clone().filter(|k| !k.is_empty()), conversation_url }
        });
        if args.mention.trim().is_empty() || args.trigger_label.trim().is_empty() {
            return Err(ConfigError::GitHubApp("HOOKWISE_MENTION and HOOKWISE_TRIGGER_LABEL must not be empty".into()));
        }
        Ok(ProcessSettings {
            github,
            github_api_url: args.github_api_url,
            rules: TriggerRules { label: args.trigger_label, mention: args.mention, proactive: args.proactive },
            agent,
            callback_secret: args.agent_callback_secret.filter(|s| !s.is_empty()).map(ApiToken),
            retry_base: std::time::Duration::from_millis(args.retry_base_ms.max(1)),
            retry_max_attempts: args.retry_max_attempts.max(1),
        })
    }
}

/// The API's bearer token. Never printed.
#[derive(Clone)]
pub struct ApiToken(String);

impl ApiToken {
    /// Compares a presented token in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("GITHUB_APP_WEBHOOK_SECRET is required and must not be empty (without it anyone could sign deliveries)")]
    MissingWebhookSecret,
    #[error("HOOKWISE_API_TOKEN is required when HOOKWISE_BIND ({0}) is not a loopback address")]
    MissingApiToken(SocketAddr),
    #[error(transparent)]
    Forward(#[from] ForwardConfigError),
    #[error("HOOKWISE_RECONCILE_INTERVAL: `{0}` is not a duration such as 15m or 1h (at least 1m), nor `off`")]
    ReconcileInterval(String),
    #[error("{}", crate::store::KURRENTDB_NOT_BUILT)]
    KurrentDbNotBuilt,
    #[error("GitHub App configuration: {0}")]
    GitHubApp(String),
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
        let api_token = args.api_token.filter(|t| !t.is_empty()).map(ApiToken);
        if api_token.is_none() && !args.bind.ip().is_loopback() {
            return Err(ConfigError::MissingApiToken(args.bind));
        }
        let forward =
            ForwardSettings::parse(&args.forward, args.forward_secret.as_deref(), |key| std::env::var(key).ok())?;
        let reconcile_interval = parse_reconcile_interval(args.reconcile_interval.as_deref())?;
        let eventstore_url = args.store.eventstore_url().map(str::to_owned);
        if eventstore_url.is_some() && !cfg!(feature = "kurrentdb") {
            return Err(ConfigError::KurrentDbNotBuilt);
        }
        let process = ProcessSettings::from_args(args.process)?;
        Ok(Config {
            process,
            database_url: args.store.database_url,
            eventstore_url,
            secrets: WebhookSecrets { current, previous },
            webhooks_enabled: args.webhooks_enabled,
            bind: args.bind,
            api_token,
            forward,
            reconcile_interval,
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
}
