//! `hookwise send`: sign a payload file and post it like GitHub would.

use std::path::PathBuf;

use crate::github::signature::WebhookSecret;

#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// The `X-GitHub-Event` name, e.g. `issue_comment` (implied by `--example`).
    #[arg(long, required_unless_present = "example")]
    pub event: Option<String>,
    /// The JSON payload to send, exactly as stored in the file.
    #[arg(long, required_unless_present = "example", conflicts_with = "example")]
    pub file: Option<PathBuf>,
    /// Send a realistic payload that asks for the agent instead of a file.
    #[arg(long, value_enum)]
    pub example: Option<Example>,
    /// With `--example`: the repository (`owner/name`) and the installation id it names.
    #[arg(long, default_value = "octo-org/hello-world")]
    pub repository: String,
    #[arg(long, default_value_t = 1)]
    pub installation: u64,
    /// With `--example`: who asks (the login must have write access for a real run).
    #[arg(long, default_value = "octocat")]
    pub sender: String,
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

/// The trigger payloads `--example` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Example {
    /// `issues.labeled` with the `openhands` label.
    Label,
    /// `issue_comment.created` on an issue, mentioning `@openhands`.
    IssueComment,
    /// `issue_comment.created` on a pull request, mentioning `@openhands`.
    PrComment,
    /// `pull_request_review_comment.created` on a line, mentioning `@openhands`.
    InlineComment,
    /// `workflow_run.completed` that failed on a pull request's head.
    FailedRun,
}

/// The event name and JSON body of an example. Ids are derived from the
/// current time, so each example is a new request.
pub fn example_payload(example: Example, repository: &str, installation: u64, sender: &str) -> (String, Vec<u8>) {
    use serde_json::json;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(1);
    let now =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let name = repository.rsplit('/').next().unwrap_or(repository);
    let repo = json!({"id": 1296269, "name": name, "full_name": repository, "private": false,
        "html_url": format!("https://github.com/{repository}"), "default_branch": "main"});
    let user = json!({"login": sender, "id": 583231, "type": "User"});
    let issue = json!({"number": 1347, "title": "Found a bug", "body": "The README has a typo.", "state": "open",
        "user": user, "updated_at": now});
    let pull = json!({"number": 1348, "title": "Fix the typo", "state": "open", "user": user,
        "head": {"ref": "fix-typo", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"}, "base": {"ref": "main"}});
    let comment = |body: &str| json!({"id": stamp, "body": body, "user": user, "created_at": now});
    let mut payload = match example {
        Example::Label => {
            json!({"action": "labeled", "issue": issue, "label": {"name": "openhands", "color": "ededed"}})
        }
        Example::IssueComment => {
            json!({"action": "created", "issue": issue, "comment": comment("@openhands please fix this")})
        }
        Example::PrComment => {
            let mut on_pr = issue.clone();
            on_pr["number"] = json!(1348);
            on_pr["pull_request"] = json!({"url": format!("https://api.github.com/repos/{repository}/pulls/1348")});
            json!({"action": "created", "issue": on_pr, "comment": comment("@openhands can you address the review?")})
        }
        Example::InlineComment => {
            let mut inline = comment("@openhands rename this variable");
            inline["path"] = json!("src/main.rs");
            inline["line"] = json!(12);
            json!({"action": "created", "pull_request": pull, "comment": inline})
        }
        Example::FailedRun => json!({"action": "completed", "workflow_run": {"id": stamp, "name": "CI",
            "head_branch": "fix-typo", "head_sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e", "status": "completed",
            "conclusion": "failure", "pull_requests": [{"number": 1348, "head": {"ref": "fix-typo",
            "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"}}]}}),
    };
    payload["repository"] = repo;
    payload["sender"] = user;
    payload["installation"] = json!({"id": installation});
    let event = match example {
        Example::Label => "issues",
        Example::IssueComment | Example::PrComment => "issue_comment",
        Example::InlineComment => "pull_request_review_comment",
        Example::FailedRun => "workflow_run",
    };
    (event.to_owned(), serde_json::to_vec_pretty(&payload).unwrap_or_default())
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

/// Posts the payload and returns the HTTP status and the response body.
pub async fn send(args: &SendArgs) -> Result<(u16, String), SendError> {
    let (event, body) = match (&args.example, &args.file, &args.event) {
        (Some(example), _, event) => {
            let (default_event, body) = example_payload(*example, &args.repository, args.installation, &args.sender);
            (event.clone().unwrap_or(default_event), body)
        }
        (None, Some(file), Some(event)) => {
            let body = tokio::fs::read(file).await.map_err(|source| SendError::Read { path: file.clone(), source })?;
            (event.clone(), body)
        }
        _ => return Err(SendError::Usage),
    };
    let secret = WebhookSecret::parse(&args.secret).map_err(|_| SendError::EmptySecret)?;
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
