//! `hookwise send`: sign a payload file (or a built-in example) and post it like GitHub would.

use std::path::PathBuf;

pub use super::examples::ExampleKind as Example;
use super::examples::ExampleSettings;
use crate::github::signature::WebhookSecret;

#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// The `X-GitHub-Event` name, e.g. `issue_comment` (implied by `--example`).
    #[arg(long, required_unless_present = "example")]
    pub event: Option<String>,
    /// The JSON payload to send, exactly as stored in the file.
    #[arg(long, required_unless_present = "example", conflicts_with = "example")]
    pub file: Option<PathBuf>,
    /// Send a realistic payload that asks for the agent instead of a file: GitHub's
    /// documented example with an installation and the label or a mention.
    #[arg(long, value_enum)]
    pub example: Option<Example>,
    /// With `--example`: print the payload (its event name on stderr) instead of sending it.
    #[arg(long, requires = "example")]
    pub print: bool,
    /// With `--example`: the repository (`owner/name`) and the installation id it names.
    #[arg(long, default_value = "octo-org/hello-world")]
    pub repository: String,
    #[arg(long, default_value_t = 1)]
    pub installation: u64,
    /// With `--example`: who asks (the login must have write access for a real run).
    #[arg(long, default_value = "octocat")]
    pub sender: String,
    /// With `--example`: the trigger label it uses.
    #[arg(long, env = "HOOKWISE_TRIGGER_LABEL", default_value = "openhands")]
    pub label: String,
    /// With `--example`: the handle it mentions.
    #[arg(long, env = "HOOKWISE_MENTION", default_value = "@openhands")]
    pub mention: String,
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

/// The event name and JSON body of an example with the default trigger words:
/// a new request (fresh comment id and time) each time it is called.
pub fn example_payload(example: Example, repository: &str, installation: u64, sender: &str) -> (String, Vec<u8>) {
    let settings =
        ExampleSettings { label: "openhands".into(), mention: "@openhands".into(), installation_id: installation };
    (example.event().to_owned(), fresh(example, &settings, repository, sender))
}

fn fresh(example: Example, settings: &ExampleSettings, repository: &str, sender: &str) -> Vec<u8> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(1);
    example.fresh_payload(settings, repository, sender, u64::try_from(stamp).unwrap_or(u64::MAX))
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the secret must not be empty")]
    EmptySecret,
    #[error("give --event and --file, or --example")]
    Usage,
    #[error("posting to {url}: {source}")]
    Http { url: String, source: reqwest::Error },
}

impl SendArgs {
    /// The event name and the payload bytes to send.
    pub async fn event_and_body(&self) -> Result<(String, Vec<u8>), SendError> {
        match (self.example, &self.file, &self.event) {
            (Some(example), _, event) => {
                let settings = ExampleSettings {
                    label: self.label.clone(),
                    mention: self.mention.clone(),
                    installation_id: self.installation,
                };
                let body = fresh(example, &settings, &self.repository, &self.sender);
                Ok((event.clone().unwrap_or_else(|| example.event().to_owned()), body))
            }
            (None, Some(file), Some(event)) => {
                let body =
                    tokio::fs::read(file).await.map_err(|source| SendError::Read { path: file.clone(), source })?;
                Ok((event.clone(), body))
            }
            _ => Err(SendError::Usage),
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
