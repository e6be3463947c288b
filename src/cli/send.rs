//! `hookwise send`: sign a payload file and post it like GitHub would.

use std::path::PathBuf;

use super::examples::{ExampleKind, ExampleSettings};
use crate::github::signature::WebhookSecret;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("payload").required(true).args(["file", "example"])))]
pub struct SendArgs {
    /// The `X-GitHub-Event` name, e.g. `issue_comment` (implied by `--example`).
    #[arg(long, required_unless_present = "example")]
    pub event: Option<String>,
    /// The JSON payload to send, exactly as stored in the file.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Send a realistic trigger payload of this kind instead of a file
    /// (GitHub's documented example, with an installation and the label or mention).
    #[arg(long, value_enum, conflicts_with_all = ["file", "event"])]
    pub example: Option<ExampleKind>,
    /// With `--example`: print the payload (and its event name on stderr) instead of sending it.
    #[arg(long, requires = "example")]
    pub print: bool,
    /// The trigger label the example uses.
    #[arg(long, env = "HOOKWISE_TRIGGER_LABEL", default_value = "openhands")]
    pub label: String,
    /// The handle the example mentions.
    #[arg(long, env = "HOOKWISE_MENTION", default_value = "@openhands")]
    pub mention: String,
    /// The installation id the example carries (your App's installation, to try against real GitHub).
    #[arg(long, default_value = "1")]
    pub installation_id: u64,
    /// The intake URL.
    #[arg(long, default_value = "http://127.0.0.1:8000/integration/github/events")]
    pub url: String,
    /// The secret to sign with.
    #[arg(long, env = "GITHUB_APP_WEBHOOK_SECRET", hide_env_values = true, required_unless_present = "print")]
    pub secret: Option<String>,
    /// The `X-GitHub-Delivery` id (a new UUID when omitted).
    #[arg(long)]
    pub delivery: Option<String>,
    /// The `X-GitHub-Hook-ID`.
    #[arg(long, default_value = "1")]
    pub hook_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("give --file and --event, or --example KIND")]
    NoPayload,
    #[error("the secret must not be empty")]
    EmptySecret,
    #[error("posting to {url}: {source}")]
    Http { url: String, source: reqwest::Error },
}

impl SendArgs {
    /// The event name and the payload bytes to send.
    pub async fn event_and_body(&self) -> Result<(String, Vec<u8>), SendError> {
        match (self.example, &self.file, &self.event) {
            (Some(kind), _, _) => {
                let settings = ExampleSettings {
                    label: self.label.clone(),
                    mention: self.mention.clone(),
                    installation_id: self.installation_id,
                };
                Ok((kind.event().to_owned(), kind.payload(&settings)))
            }
            (None, Some(path), Some(event)) => {
                let body =
                    tokio::fs::read(path).await.map_err(|source| SendError::Read { path: path.clone(), source })?;
                Ok((event.clone(), body))
            }
            // clap requires --example, or --file with --event.
            _ => Err(SendError::NoPayload),
        }
    }
}

/// Posts the payload and returns the HTTP status and the response body.
pub async fn send(args: &SendArgs) -> Result<(u16, String), SendError> {
    let (event, body) = args.event_and_body().await?;
    let secret =
        WebhookSecret::parse(args.secret.as_deref().unwrap_or_default()).map_err(|_| SendError::EmptySecret)?;
    let delivery = args.delivery.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let http = |source| SendError::Http { url: args.url.clone(), source };
    let response = reqwest::Client::new()
        .post(&args.url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/hookwise-send")
        .header("x-github-event", &event)
        .header("x-github-delivery", &delivery)
        .header("x-github-hook-id", &args.hook_id)
        .header("x-hub-signature-256", secret.sign(&body))
        .body(body)
        .send()
        .await
        .map_err(http)?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(http)?;
    Ok((status, text))
}
