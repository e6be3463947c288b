//! Configuration from the environment or flags, validated once at start.

use std::net::SocketAddr;

use clap::builder::BoolishValueParser;

use crate::github::signature::{WebhookSecret, WebhookSecrets};

#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// Where the event log and read models live: `sqlite://PATH` or `postgres://USER@HOST/DB`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/hookwise.db", hide_env_values = true)]
    pub database_url: String,
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
}

/// Validated configuration of `hookwise serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub secrets: WebhookSecrets,
    pub webhooks_enabled: bool,
    pub bind: SocketAddr,
    pub api_token: Option<ApiToken>,
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
        Ok(Config {
            database_url: args.store.database_url,
            secrets: WebhookSecrets { current, previous },
            webhooks_enabled: args.webhooks_enabled,
            bind: args.bind,
            api_token,
        })
    }
}
