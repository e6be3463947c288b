//! `hookwise send`: sign a payload file and post it like GitHub would.

use std::path::PathBuf;

use crate::github::signature::WebhookSecret;

#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// The `X-GitHub-Event` name, e.g. `issue_comment`.
    #[arg(long)]
    pub event: String,
    /// The JSON payload to send, exactly as stored in the file.
    #[arg(long)]
    pub file: PathBuf,
    /// The intake URL.
    #[arg(long, default_value = "http://127.0.0.1:8000/integration/github/events")]
    pub url: String,
    /// The secret to sign with.
    #[arg(long, env = "GITHUB_APP_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: String,
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
    #[error("the secret must not be empty")]
    EmptySecret,
    #[error("posting to {url}: {source}")]
    Http { url: String, source: reqwest::Error },
}

/// Posts the payload and returns the HTTP status and the response body.
pub async fn send(args: &SendArgs) -> Result<(u16, String), SendError> {
    let body =
        tokio::fs::read(&args.file).await.map_err(|source| SendError::Read { path: args.file.clone(), source })?;
    let secret = WebhookSecret::parse(&args.secret).map_err(|_| SendError::EmptySecret)?;
    let delivery = args.delivery.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let http = |source| SendError::Http { url: args.url.clone(), source };
    let response = reqwest::Client::new()
        .post(&args.url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/hookwise-send")
        .header("x-github-event", &args.event)
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
