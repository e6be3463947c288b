//! `hookwise setup`: creates the GitHub App from a manifest (GitHub's
//! "manifest flow") and writes its credentials to an env file for
//! `serve --env-file`.
//!
//! A local page posts the manifest to GitHub; GitHub sends the browser back to
//! `/callback` with a one-time code (and our `state`, checked as a CSRF guard);
//! the code is exchanged for the App's id, private key and webhook secret.
//! See docs/decisions/app-setup.md.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::web::{Data, Html, Query};
use poem::{get, handler, EndpointExt, Route, Server};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::agent::settings::github_web_url;
use crate::github::client::{AppCredentials, GitHubClient, GitHubError};

/// The webhook events hookwise acts on or records for its read models.
pub const EVENTS: &[&str] = &[
    "issues",
    "issue_comment",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "push",
    "workflow_run",
];

/// The least the executor, the enrichment and the read models need (README: "Create the GitHub App");
/// `contents: write` when the agent pushes with hookwise's installation token.
pub fn permissions(agent_pushes: bool) -> Value {
    json!({
        "issues": "write",
        "pull_requests": "write",
        "contents": if agent_pushes { "write" } else { "read" },
        "metadata": "read",
        "actions": "read",
    })
}

#[derive(clap::Args, Debug, Clone)]
pub struct SetupArgs {
    /// Create the App under this organization instead of your own account.
    #[arg(long)]
    pub org: Option<String>,
    /// Where GitHub will post deliveries: your hookwise's public
    /// `…/integration/github/events` (through your proxy or tunnel).
    #[arg(long)]
    pub webhook_url: String,
    /// The App's name (GitHub requires it to be unique; you can change it on GitHub's page).
    #[arg(long, default_value = "hookwise")]
    pub name: String,
    /// The env file to write (with mode 0600); the private key goes beside it.
    #[arg(long, default_value = "hookwise.env")]
    pub env_file: PathBuf,
    /// Ask for `contents: write`: with `AGENT_RUNTIME=openhands-agent-server` the agent
    /// pushes its branch with hookwise's installation token.
    #[arg(long)]
    pub agent_pushes: bool,
    /// Overwrite an existing env file and key file.
    #[arg(long)]
    pub force: bool,
    /// The local port of the setup page (0: a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// How long to wait for GitHub's answer.
    #[arg(long, default_value = "10m")]
    pub timeout: humantime::Duration,
    /// GitHub's web address: `https://github.com` or your Enterprise Server's.
    #[arg(long, env = "GITHUB_WEB_URL")]
    pub github_web_url: Option<String>,
    /// The REST API root: GitHub, a GitHub Enterprise Server (`https://HOST/api/v3`), or a test double.
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{} exists; pass --force to overwrite it", .0.display())]
    Exists(PathBuf),
    #[error("--org must be an organization's login (letters, digits and `-`)")]
    BadOrg,
    #[error("--webhook-url must be an http(s) URL")]
    BadWebhookUrl,
    #[error("starting the setup page: {0}")]
    Listen(#[source] std::io::Error),
    #[error("no answer from GitHub within {0}; nothing was written")]
    TimedOut(humantime::Duration),
    #[error("the exchange with GitHub stopped unexpectedly")]
    Aborted,
    #[error("GitHub did not convert the code into an App ({0}); nothing was written")]
    Exchange(#[source] GitHubError),
    #[error("GitHub's answer lacks {0}; nothing was written")]
    Incomplete(&'static str),
    #[error("the App was created but setting its webhook secret failed ({0}); nothing was written")]
    SetSecret(String),
    #[error("writing {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// What `setup` made, for its last lines.
#[derive(Debug)]
pub struct Created {
    pub slug: String,
    pub env_file: PathBuf,
    pub key_file: PathBuf,
    pub install_url: String,
}

/// The manifest posted to GitHub.
pub fn manifest(name: &str, webhook_url: &str, homepage: &str, redirect_url: &str, agent_pushes: bool) -> Value {
    json!({
        "name": name,
        "url": homepage,
        "hook_attributes": { "url": webhook_url, "active": true },
        "redirect_url": redirect_url,
        "public": false,
        "default_permissions": permissions(agent_pushes),
        "default_events": EVENTS,
    })
}

/// The key file beside `env_file`.
pub fn key_file_for(env_file: &Path) -> PathBuf {
    let name = env_file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "hookwise".into());
    env_file.with_file_name(format!("{name}.private-key.pem"))
}

struct Flow {
    page: String,
    state: String,
    api_url: String,
    env_file: PathBuf,
    key_file: PathBuf,
    force: bool,
    /// Taken by the first callback with the right state: exactly one exchange.
    finish: Mutex<Option<oneshot::Sender<Result<Created, SetupError>>>>,
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
}

/// Runs the flow: prints the page's address (via `announce`), waits for GitHub, writes the files.
pub async fn setup(args: SetupArgs, announce: impl FnOnce(&str)) -> Result<Created, SetupError> {
    let key_file = key_file_for(&args.env_file);
    for path in [&args.env_file, &key_file] {
        if !args.force && path.exists() {
            return Err(SetupError::Exists(path.clone()));
        }
    }
    let webhook = reqwest::Url::parse(&args.webhook_url).map_err(|_| SetupError::BadWebhookUrl)?;
    if !matches!(webhook.scheme(), "http" | "https") || webhook.host_str().is_none() {
        return Err(SetupError::BadWebhookUrl);
    }
    let homepage = webhook.origin().ascii_serialization();
    let api_url = args.github_api_url.trim_end_matches('/').to_owned();
    let web_url = match args.github_web_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => github_web_url(&api_url),
    };
    let new_app_url = match &args.org {
        Some(org) if !org.is_empty() && org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
            format!("{web_url}/organizations/{org}/settings/apps/new")
        }
        Some(_) => return Err(SetupError::BadOrg),
        None => format!("{web_url}/settings/apps/new"),
    };

    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port)))
        .await
        .map_err(SetupError::Listen)?;
    let local = listener.local_addr().map_err(SetupError::Listen)?;
    let state = Uuid::new_v4().simple().to_string();
    let redirect_url = format!("http://{local}/callback");
    let manifest = manifest(&args.name, webhook.as_str(), &homepage, &redirect_url, args.agent_pushes);
    let page = form_page(&format!("{new_app_url}?state={state}"), &manifest.to_string(), &web_url);

    let (finish, finished) = oneshot::channel();
    let flow = Arc::new(Flow {
        page,
        state,
        api_url,
        env_file: args.env_file.clone(),
        key_file,
        force: args.force,
        finish: Mutex::new(Some(finish)),
    });
    let app = Route::new().at("/", get(form)).at("/callback", get(callback)).data(flow);
    let acceptor = TcpAcceptor::from_tokio(listener).map_err(SetupError::Listen)?;
    announce(&format!("http://{local}/"));

    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
        app,
        async move {
            let _ = stopped.await;
        },
        // The browser has its answer by then; don't wait on its keep-alive.
        Some(Duration::from_secs(2)),
    ));
    let outcome = match tokio::time::timeout(*args.timeout, finished).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(SetupError::Aborted),
        Err(_) => Err(SetupError::TimedOut(args.timeout)),
    };
    let _ = stop.send(());
    let _ = server.await;
    outcome
}

#[handler]
fn form(flow: Data<&Arc<Flow>>) -> Html<String> {
    Html(flow.page.clone())
}

#[handler]
async fn callback(flow: Data<&Arc<Flow>>, Query(query): Query<Callback>) -> (StatusCode, Html<String>) {
    let expected = flow.state.as_bytes();
    if !query.state.as_deref().is_some_and(|state| bool::from(state.as_bytes().ct_eq(expected))) {
        return answer(StatusCode::BAD_REQUEST, "This answer does not carry the state of this setup; ignored.");
    }
    // GitHub's codes are short alphanumerics; anything else must not reach a URL path.
    let Some(code) = query.code.filter(|c| {
        !c.is_empty() && c.len() <= 200 && c.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) else {
        return answer(StatusCode::BAD_REQUEST, "GitHub's answer carries no valid code.");
    };
    let finish = match flow.finish.lock() {
        Ok(mut finish) => finish.take(),
        Err(_) => None,
    };
    let Some(finish) = finish else {
        return answer(StatusCode::CONFLICT, "This setup has already received GitHub's answer.");
    };
    // Its own task: a browser that goes away mid-exchange must not cancel
    // the exchange (the code is spent) or the writing of what it returned.
    let flow = Arc::clone(&flow);
    let finished = tokio::spawn(async move {
        let outcome = exchange_and_write(&flow, &code).await;
        let page = match &outcome {
            Ok(created) => answer(
                StatusCode::OK,
                &format!(
                    "The App {} is created and its credentials are in {}. Now install it: <a href=\"{}\">{}</a>",
                    escape(&created.slug),
                    escape(&created.env_file.display().to_string()),
                    escape(&created.install_url),
                    escape(&created.install_url)
                ),
            ),
            Err(error) => answer(StatusCode::BAD_GATEWAY, &escape(&error.to_string())),
        };
        let _ = finish.send(outcome);
        page
    });
    finished.await.unwrap_or_else(|_| answer(StatusCode::INTERNAL_SERVER_ERROR, "The setup failed; see its output."))
}

#[derive(Deserialize)]
struct Conversion {
    id: Option<u64>,
    slug: Option<String>,
    pem: Option<String>,
    webhook_secret: Option<String>,
    html_url: Option<String>,
}

async fn exchange_and_write(flow: &Flow, code: &str) -> Result<Created, SetupError> {
    let github = GitHubClient::new(&flow.api_url, None);
    let request = github.request(Method::POST, &format!("/app-manifests/{code}/conversions"));
    let conversion: Conversion = github.send_json(request).await.map_err(SetupError::Exchange)?;
    let id = conversion.id.ok_or(SetupError::Incomplete("id"))?.to_string();
    let pem = conversion.pem.filter(|p| !p.trim().is_empty()).ok_or(SetupError::Incomplete("pem"))?;
    let slug = conversion.slug.unwrap_or_default();
    let html_url = conversion.html_url.ok_or(SetupError::Incomplete("html_url"))?;
    let secret = match conversion.webhook_secret.filter(|s| !s.is_empty()) {
        Some(secret) => secret,
        // GitHub made none: make one and give it to the App's webhook.
        None => {
            let secret = generate_secret();
            let credentials = AppCredentials::parse(&id, &pem).map_err(SetupError::SetSecret)?;
            let github = GitHubClient::new(&flow.api_url, Some(credentials));
            let request = github
                .app_request(Method::PATCH, "/app/hook/config")
                .map_err(|e| SetupError::SetSecret(e.to_string()))?
                .json(&json!({ "secret": secret }));
            github.send(request).await.map_err(|e| SetupError::SetSecret(e.to_string()))?;
            secret
        }
    };

    write_private(&flow.key_file, pem.as_bytes(), flow.force)?;
    let key_path = std::path::absolute(&flow.key_file).unwrap_or_else(|_| flow.key_file.clone());
    let mut env = format!(
        "# The GitHub App {slug} ({html_url}), written by `hookwise setup`.\n\
         # Use it with `hookwise serve --env-file {}`.\n\
         GITHUB_APP_ID={id}\n\
         GITHUB_APP_PRIVATE_KEY_PATH={}\n\
         GITHUB_APP_WEBHOOK_SECRET={secret}\n",
        flow.env_file.display(),
        key_path.display()
    );
    if flow.api_url != "https://api.github.com" {
        env.push_str(&format!("GITHUB_API_URL={}\n", flow.api_url));
    }
    if let Err(error) = write_private(&flow.env_file, env.as_bytes(), flow.force) {
        let _ = std::fs::remove_file(&flow.key_file);
        return Err(error);
    }
    Ok(Created {
        slug,
        env_file: flow.env_file.clone(),
        key_file: flow.key_file.clone(),
        install_url: format!("{}/installations/new", html_url.trim_end_matches('/')),
    })
}

/// 256 random bits, hex.
fn generate_secret() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// Writes `contents` to a file only its owner can read, created that way (never widened later).
fn write_private(path: &Path, contents: &[u8], overwrite: bool) -> Result<(), SetupError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |source| SetupError::Write { path: path.to_owned(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(fail)?;
    // An overwritten file keeps its old mode; make it 0600 too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    file.write_all(contents).map_err(fail)?;
    file.sync_all().map_err(fail)
}

fn form_page(action: &str, manifest: &str, web_url: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>hookwise setup</title></head><body>\n\
         <form id=\"create\" method=\"post\" action=\"{}\">\n\
         <input type=\"hidden\" name=\"manifest\" value=\"{}\">\n\
         <p>Creating the hookwise GitHub App on {}…</p>\n\
         <button type=\"submit\">Create the GitHub App</button>\n\
         </form>\n<script>document.getElementById(\"create\").submit()</script>\n</body></html>\n",
        escape(action),
        escape(manifest),
        escape(web_url)
    )
}

fn answer(status: StatusCode, message: &str) -> (StatusCode, Html<String>) {
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>hookwise setup</title></head><body><p>{message}</p></body></html>\n"
    );
    (status, Html(page))
}

/// HTML-escapes text and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_sits_beside_the_env_file() {
        assert_eq!(
            key_file_for(Path::new("/etc/hookwise/prod.env")),
            PathBuf::from("/etc/hookwise/prod.env.private-key.pem")
        );
        assert_eq!(key_file_for(Path::new("hookwise.env")), PathBuf::from("hookwise.env.private-key.pem"));
    }

    #[test]
    fn the_manifest_survives_the_html_attribute() {
        let manifest = manifest(
            "it's <\"hookwise\"> & co",
            "https://h.example/integration/github/events",
            "https://h.example",
            "http://127.0.0.1:1/callback",
            false,
        )
        .to_string();
        let page = form_page("https://github.com/settings/apps/new?state=x", &manifest, "https://github.com");
        assert!(!page.contains("<\"hookwise"), "{page}");
        assert!(page.contains(&escape(&manifest)));
    }
}
