//! One real OpenHands agent server per test binary (`python -m
//! openhands.agent_server` from the virtualenv `scripts/test` prepares, named
//! by `HOOKWISE_TEST_AGENT_SERVER_PYTHON`), with what it needs beside it in
//! this process:
//! - a fake OpenAI-compatible LLM (`POST /v1/chat/completions`) that answers
//!   with a call to `finish` whose message names the request (it echoes the
//!   `hookwise-req-…` token of the conversation's messages), or, when the
//!   messages say `hookwise-llm-fail`, a 401 (the agent ends in `error`);
//! - the webhook router the agent server posts to
//!   (`OH_WEBHOOKS_0_BASE_URL=<router>/agent-server`), which fans every
//!   webhook out to each hookwise registered with it (a
//!   [`TestApp`](super::TestApp) by its address, a child process by the URL
//!   it printed; hookwise ignores conversations it did not start), so every
//!   test shares the one agent server, and keeps every webhook it was sent
//!   ([`SharedAgentServer::webhook_events`]);
//! - a bare git repository (`{repos}/Codertocat/Hello-World.git`, one commit
//!   on `main` and a branch `feature`) as the clone source:
//!   `--github-web-url file://{repos}`.
//!
//! [`HoldingProxy`] stands between one hookwise and the agent server and
//! keeps the answer to its first start, for a crash after the agent server
//! acted and before hookwise knew.
//!
//! The server runs under a watchdog shell in a process group of its own,
//! which stops it (and its tmux server) and removes its directory once this
//! test process is gone, however it ends. Without the variable the tests
//! that need the server skip, except under `CI=true`, where they fail.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{handler, post, EndpointExt, Request, Response, Route, Server};
use serde_json::{json, Value};

pub const PYTHON_VAR: &str = "HOOKWISE_TEST_AGENT_SERVER_PYTHON";
/// The agent server's session key (also what hookwise is given as `AGENT_API_KEY`).
pub const AGENT_SERVER_KEY: &str = "agent-server-test-key";
/// The model the adapter is configured with (litellm's OpenAI-compatible provider).
pub const FAKE_MODEL: &str = "openai/hookwise-fake";
/// The repository the bare git repository stands for.
pub const TEST_REPOSITORY: &str = "Codertocat/Hello-World";
/// Where the fake LLM is told to fail.
pub const LLM_FAIL: &str = "hookwise-llm-fail";

type Registry = Arc<Mutex<Vec<(u64, SocketAddr)>>>;
type GitAuth = Arc<Mutex<Vec<String>>>;
/// Every webhook the router was sent: its path and its body.
type Webhooks = Arc<Mutex<Vec<(String, Value)>>>;

/// What the git HTTP server serves, and the `Authorization` headers it saw.
#[derive(Clone)]
struct GitHttp {
    repos: PathBuf,
    seen: GitAuth,
}

pub struct SharedAgentServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The fake LLM's base URL (`…/v1`).
    pub llm_base_url: String,
    /// `file:///…/repos`: `{this}/{owner}/{name}.git` is the bare repository.
    pub github_web_url: String,
    /// `http://127.0.0.1:PORT`: the same repositories over git's "dumb" HTTP
    /// protocol, behind Basic authentication as GitHub's are (any password is
    /// taken; the `Authorization` headers seen are in [`Self::git_authorizations`]).
    pub git_http_url: String,
    /// A directory of the agent server's host where workspaces go.
    pub workspace_root: PathBuf,
    git_auth: GitAuth,
    registry: Registry,
    webhooks: Webhooks,
    next_id: std::sync::atomic::AtomicU64,
    log: PathBuf,
}

/// Unregisters its app from the webhook router when dropped.
pub struct Registration {
    id: u64,
    registry: Registry,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut apps) = self.registry.lock() {
            apps.retain(|(id, _)| *id != self.id);
        }
    }
}

impl SharedAgentServer {
    /// Sends this server's webhooks to the hookwise at `addr` too, until the registration is dropped.
    pub fn register(&self, addr: SocketAddr) -> Registration {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.registry.lock().expect("registry").push((id, addr));
        Registration { id, registry: self.registry.clone() }
    }

    /// Like [`Self::register`], for a hookwise that printed `base`
    /// (`http://127.0.0.1:PORT`), such as a child process.
    pub fn register_url(&self, base: &str) -> Registration {
        let addr = base.strip_prefix("http://").and_then(|a| a.trim_end_matches('/').parse().ok());
        self.register(addr.unwrap_or_else(|| panic!("not an http://IP:PORT address: {base}")))
    }

    /// The events of every webhook the agent server sent the router for
    /// `conversation_id` (whether or not a registered hookwise took them).
    pub fn webhook_events(&self, conversation_id: &str) -> Vec<Value> {
        let path = format!("/agent-server/events/{}", conversation_id.replace('-', ""));
        let seen = self.webhooks.lock().map(|seen| seen.clone()).unwrap_or_default();
        seen.into_iter()
            .filter(|(p, _)| *p == path)
            .flat_map(|(_, body)| body.as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Every `Authorization` header the git HTTP server was sent.
    pub fn git_authorizations(&self) -> Vec<String> {
        self.git_auth.lock().map(|seen| seen.clone()).unwrap_or_default()
    }

    /// The last lines of the agent server's output, for a failing test's message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

static SERVER: OnceLock<Option<SharedAgentServer>> = OnceLock::new();

/// The shared agent server, started on first use (`None`: skipped, outside CI).
pub async fn shared_agent_server() -> Option<&'static SharedAgentServer> {
    tokio::task::spawn_blocking(|| SERVER.get_or_init(start).as_ref()).await.expect("starting the agent server")
}

fn start() -> Option<SharedAgentServer> {
    let python = match std::env::var(PYTHON_VAR) {
        Ok(p) if Path::new(&p).is_file() => p,
        _ => {
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("{PYTHON_VAR} is not set to the agent server's Python (scripts/test prepares it)");
            }
            eprintln!("skipped: {PYTHON_VAR} is not set (run the tests through scripts/test)");
            return None;
        }
    };
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("hookwise-agent-server-").tempdir().expect("temp dir").keep();
    let workspace_root = dir.join("workspaces");
    let repos = dir.join("repos");
    for sub in [&workspace_root, &repos, &dir.join("tmux"), &dir.join("home"), &dir.join("run")] {
        std::fs::create_dir_all(sub).expect("agent server dirs");
    }
    make_bare_repository(&dir, &repos.join(format!("{TEST_REPOSITORY}.git")));

    let registry: Registry = Arc::default();
    let webhooks: Webhooks = Arc::default();
    let git_auth: GitAuth = Arc::default();
    let git_http = GitHttp { repos: repos.clone(), seen: git_auth.clone() };
    let (llm_addr, router_addr, git_addr) = start_helpers(registry.clone(), webhooks.clone(), git_http);
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let log = dir.join("agent-server.log");
    // Stops the server (and the tmux server its terminals use) and removes
    // `dir` once the test process `$1` is gone.
    let watchdog = r#"
        test_pid=$1; dir=$2; shift 2
        "$@" >>"$dir/agent-server.log" 2>&1 </dev/null &
        child=$!
        while kill -0 "$test_pid" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
        kill -TERM "$child" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$child" 2>/dev/null || break; sleep 0.3; done
        kill -KILL "$child" 2>/dev/null
        # The terminals' tmux servers detach into sessions of their own; each
        # has a socket under $TMUX_TMPDIR.
        for socket in "$dir"/tmux/tmux-*/*; do
            [ -S "$socket" ] && tmux -S "$socket" kill-server 2>/dev/null
        done
        if ! kill -0 "$test_pid" 2>/dev/null; then rm -rf "$dir"; fi
        trap '' TERM
        kill -KILL -- -$$ 2>/dev/null
    "#;
    let mut command = Command::new("bash");
    command
        .args(["-c", watchdog, "watchdog"])
        .arg(std::process::id().to_string())
        .arg(&dir)
        .arg(&python)
        .args(["-m", "openhands.agent_server", "--host", "127.0.0.1", "--port", &port.to_string()])
        .current_dir(dir.join("run"))
        .env("OH_ENABLE_VSCODE", "false")
        .env("OH_ENABLE_BROWSER", "false")
        .env("OH_PRELOAD_TOOLS", "false")
        .env("OH_SESSION_API_KEYS_0", AGENT_SERVER_KEY)
        .env("OH_WEBHOOKS_0_BASE_URL", format!("http://{router_addr}/agent-server"))
        // hookwise maps a conversation once the agent server has answered its
        // start; the first events go out a second after they happen.
        .env("OH_WEBHOOKS_0_FLUSH_DELAY", "1")
        .env("OH_WEBHOOKS_0_EVENT_BUFFER_SIZE", "100")
        .env("OH_WEBHOOKS_0_RETRY_DELAY", "1")
        .env("TMUX_TMPDIR", dir.join("tmux"))
        .env("HOME", dir.join("home"))
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = command.spawn().expect("starting the agent server's watchdog");

    let server = SharedAgentServer {
        url: format!("http://127.0.0.1:{port}"),
        llm_base_url: format!("http://{llm_addr}/v1"),
        github_web_url: format!("file://{}", repos.display()),
        git_http_url: format!("http://{git_addr}"),
        workspace_root,
        git_auth,
        registry,
        webhooks,
        next_id: Default::default(),
        log,
    };
    // Its health route, not a sleep.
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    loop {
        if http_get_status(addr, "/health") == Some(200) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the agent server stopped ({status}) before answering /health:\n{}", server.log_tail());
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the agent server did not answer /health within 180 s:\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("agent server ready at {} in {:.1} s", server.url, started.elapsed().as_secs_f64());
    Some(server)
}

/// A bare repository with one commit on `main` and a branch `feature`.
fn make_bare_repository(dir: &Path, bare: &Path) {
    let git = |cwd: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(cwd)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::create_dir_all(bare).expect("bare dir");
    git(bare, &["init", "--quiet", "--bare"]);
    let work = dir.join("seed");
    std::fs::create_dir_all(&work).expect("seed dir");
    git(&work, &["init", "--quiet"]);
    std::fs::write(work.join("README.md"), "# Hello-World\n\nA commmit with a typo.\n").expect("README");
    git(&work, &["add", "README.md"]);
    git(&work, &["commit", "--quiet", "-m", "Initial commit"]);
    git(&work, &["branch", "feature"]);
    let bare = bare.to_str().expect("utf-8 path");
    git(&work, &["push", "--quiet", bare, "main", "feature"]);
    git(Path::new(bare), &["update-server-info"]);
}

/// A plain HTTP/1.0 GET's status, or `None` without an answer.
fn http_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Starts the fake LLM and the webhook router on a runtime of their own
/// (each test has its own runtime; these outlive every test).
fn start_helpers(registry: Registry, webhooks: Webhooks, git_http: GitHttp) -> (SocketAddr, SocketAddr, SocketAddr) {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("agent-server-helpers".into())
        .spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let llm = TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("LLM port");
                let router = TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("router port");
                let git = TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("git port");
                let addr = |a: &poem::listener::TcpAcceptor| {
                    a.local_addr().first().and_then(|a| a.as_socket_addr().copied()).expect("bound address")
                };
                sender.send((addr(&llm), addr(&router), addr(&git))).expect("addresses");
                let llm_routes = Route::new().at("/v1/chat/completions", post(fake_chat_completion));
                let router_routes = Route::new()
                    .at("/agent-server/*rest", post(fan_out))
                    .data(registry)
                    .data(webhooks)
                    .data(reqwest::Client::new());
                let llm = Server::new_with_acceptor(llm).run(llm_routes);
                let router = Server::new_with_acceptor(router).run(router_routes);
                let git = Server::new_with_acceptor(git).run(Route::new().at("/*path", serve_git).data(git_http));
                let _ = tokio::join!(llm, router, git);
            });
        })
        .expect("helper thread");
    receiver.recv().expect("helper addresses")
}

/// Every `hookwise-req-…` token in `text`, in order.
fn request_tokens(text: &str) -> Vec<String> {
    text.match_indices("hookwise-req-")
        .map(|(i, _)| text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect::<String>())
        .collect()
}

#[handler]
async fn fake_chat_completion(body: poem::Body) -> Response {
    let body = body.into_vec().await.unwrap_or_default();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // The user's messages, as text, whatever their content's shape.
    let user_text: String = request["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter(|m| m["role"] == "user")
                .map(|m| match &m["content"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    if user_text.contains(LLM_FAIL) {
        let error = json!({"error": {"message": "Incorrect API key provided (fake LLM told to fail)",
            "type": "invalid_request_error", "code": "invalid_api_key"}});
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .content_type("application/json")
            .body(error.to_string());
    }
    let token = request_tokens(&user_text).pop().unwrap_or_else(|| "hookwise-req-none".into());
    let arguments = json!({"message": format!("Done: {token}")}).to_string();
    let answer = json!({
        "id": format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        "object": "chat.completion",
        "created": 1_700_000_000u64,
        "model": "hookwise-fake",
        "choices": [{
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": format!("call_{}", uuid::Uuid::new_v4().simple()),
                    "type": "function",
                    "function": {"name": "finish", "arguments": arguments},
                }],
            },
        }],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    });
    Response::builder().content_type("application/json").body(answer.to_string())
}

/// Sends one webhook on to every registered hookwise; 2xx when every one that
/// answered took it (otherwise the agent server retries, and hookwise
/// deduplicates).
#[handler]
async fn fan_out(
    req: &Request,
    body: poem::Body,
    registry: Data<&Registry>,
    webhooks: Data<&Webhooks>,
    http: Data<&reqwest::Client>,
) -> Response {
    let body = body.into_bytes().await.unwrap_or_default();
    let path = req.uri().path().to_owned();
    if let Ok(mut seen) = webhooks.lock() {
        seen.push((path.clone(), serde_json::from_slice(&body).unwrap_or(Value::Null)));
    }
    let key = req.headers().get("x-session-api-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let apps: Vec<SocketAddr> = registry.lock().map(|apps| apps.iter().map(|(_, a)| *a).collect()).unwrap_or_default();
    let mut ok = true;
    for addr in apps {
        let answer = http
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .header("x-session-api-key", &key)
            .body(body.clone())
            .send()
            .await;
        // An app that already stopped is not a failure; one that answered no is.
        ok &= answer.map_or(true, |a| a.status().is_success());
    }
    let status = if ok { StatusCode::OK } else { StatusCode::BAD_GATEWAY };
    Response::builder().status(status).body("")
}

/// Git's "dumb" HTTP protocol: the bare repositories' files, for a request
/// with Basic credentials (401 with a challenge first, as GitHub answers).
#[handler]
async fn serve_git(req: &Request, git: Data<&GitHttp>) -> Response {
    let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(authorization) = authorization.filter(|a| a.starts_with("Basic ")) else {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("www-authenticate", "Basic realm=\"GitHub\"")
            .body("");
    };
    if let Ok(mut seen) = git.seen.lock() {
        if !seen.contains(&authorization) {
            seen.push(authorization);
        }
    }
    let path = req.uri().path().trim_start_matches('/');
    if path.split('/').any(|part| part == ".." || part.is_empty()) {
        return Response::builder().status(StatusCode::NOT_FOUND).body("");
    }
    match tokio::fs::read(git.repos.join(path)).await {
        Ok(bytes) => Response::builder().content_type("application/octet-stream").body(bytes),
        Err(_) => Response::builder().status(StatusCode::NOT_FOUND).body(""),
    }
}

/// Standard base64, for the `Authorization: Basic` a test expects.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A pass-through to the agent server for one hookwise, which never answers
/// the first `POST /api/conversations` the agent server took: the
/// conversation exists there, and hookwise does not know it, as when it dies
/// between the two.
pub struct HoldingProxy {
    /// `http://127.0.0.1:PORT`, for `--agent-api-url`.
    pub url: String,
    held: Held,
}

type Held = Arc<Mutex<Option<Value>>>;

#[derive(Clone)]
struct Proxy {
    target: String,
    http: reqwest::Client,
    held: Held,
}

impl HoldingProxy {
    /// Forwards to `target` (the agent server), on the calling test's runtime.
    pub async fn start(target: &str) -> HoldingProxy {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("proxy port");
        let addr =
            acceptor.local_addr().first().and_then(|a| a.as_socket_addr().copied()).expect("the proxy's address");
        let held = Held::default();
        let proxy = Proxy { target: target.to_owned(), http: reqwest::Client::new(), held: held.clone() };
        tokio::spawn(Server::new_with_acceptor(acceptor).run(Route::new().at("/*path", forward).data(proxy)));
        HoldingProxy { url: format!("http://{addr}"), held }
    }

    /// The body of the start the agent server took and hookwise was not answered.
    pub fn held(&self) -> Option<Value> {
        self.held.lock().ok().and_then(|held| held.clone())
    }
}

#[handler]
async fn forward(req: &Request, body: poem::Body, proxy: Data<&Proxy>) -> Response {
    let body = body.into_bytes().await.unwrap_or_default();
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).expect("an HTTP method");
    let mut call = proxy.http.request(method, format!("{}{path}", proxy.target)).body(body.to_vec());
    for name in ["content-type", "x-session-api-key"] {
        if let Some(value) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            call = call.header(name, value);
        }
    }
    let Ok(answer) = call.send().await else {
        return Response::builder().status(StatusCode::BAD_GATEWAY).body("");
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bytes = answer.bytes().await.unwrap_or_default();
    if req.method() == poem::http::Method::POST && req.uri().path() == "/api/conversations" && status.is_success() {
        let first = proxy.held.lock().map(|mut held| match *held {
            Some(_) => false,
            None => {
                *held = Some(serde_json::from_slice(&body).unwrap_or(Value::Null));
                true
            }
        });
        if first.unwrap_or(false) {
            // Never answered: the caller is killed meanwhile.
            std::future::pending::<()>().await;
        }
    }
    let mut response = Response::builder().status(status);
    if let Some(content_type) = content_type {
        response = response.content_type(content_type);
    }
    response.body(bytes.to_vec())
}
