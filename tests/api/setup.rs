//! `hookwise setup` against a stand-in GitHub: wiremock is the REST API, the
//! test is the browser (it reads the form page and follows GitHub's redirect
//! to the callback itself). Then `serve --env-file` with what setup wrote.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::cli::serve_with;
use crate::helpers::sign;

const HOOKWISE: &str = env!("CARGO_BIN_EXE_hookwise");
const WEBHOOK_URL: &str = "https://hooks.example.net/integration/github/events";
const PEM: &str = include_str!("../fixtures/test-github-app-key.pem");
const GITHUB_SECRET: &str = "3b1d7c0e9f2a4b6c8d0e1f2a3b4c5d6e7f809a1b";

/// `hookwise setup` with `args`, its stdout, and the setup page's URL (its first line).
fn start_setup(args: &[&str], envs: &[(&str, &str)]) -> (KillOnDrop, BufReader<ChildStdout>, String) {
    let mut command = Command::new(HOOKWISE);
    command
        .arg("setup")
        .args(args)
        .env_remove("GITHUB_WEB_URL")
        .env_remove("GITHUB_API_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("starting hookwise setup");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the first line");
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no setup page address in {line:?}"))
        .to_owned();
    (KillOnDrop(child), stdout, url)
}

/// A child process killed when dropped, so a failed assertion leaves no server behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The value of the first `name="…"` attribute in `page`.
fn attribute(page: &str, name: &str) -> String {
    let start = page.find(&format!("{name}=\"")).unwrap_or_else(|| panic!("no {name} in {page}")) + name.len() + 2;
    let end = start + page[start..].find('"').expect("the closing quote");
    unescape(&page[start..end])
}

/// The form page's target (`action`) and the manifest it posts.
async fn read_form(base: &str) -> (String, Value) {
    let page = reqwest::get(base).await.expect("the setup page");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("its HTML");
    assert!(page.contains("name=\"manifest\""), "{page}");
    assert!(page.contains(".submit()"), "the form posts itself: {page}");
    let action = attribute(&page, "action");
    let manifest_at = page.find("name=\"manifest\"").expect("the manifest input");
    let manifest = attribute(&page[manifest_at..], "value");
    (action, serde_json::from_str(&manifest).expect("the manifest is JSON"))
}

fn state_of(action: &str) -> String {
    action.split_once("?state=").expect("a state parameter").1.to_owned()
}

fn wait_for_exit(mut child: KillOnDrop, stdout: BufReader<ChildStdout>) -> (bool, String, String) {
    let mut out = String::new();
    let mut stdout = stdout;
    stdout.read_to_string(&mut out).expect("stdout");
    let mut err = String::new();
    child.0.stderr.take().expect("piped stderr").read_to_string(&mut err).expect("stderr");
    let status = child.0.wait().expect("setup exits by itself");
    (status.success(), out, err)
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_creates_the_app_from_the_readme_manifest_and_serve_starts_with_its_env_file() {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/app-manifests/a1b2c3/conversions"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 424242, "slug": "hookwise-test", "node_id": "A_1", "name": "hookwise-test",
            "owner": {"login": "octocat"}, "html_url": "https://github.example/apps/hookwise-test",
            "client_id": "Iv1.0123", "client_secret": "client-secret-never-printed",
            "webhook_secret": GITHUB_SECRET, "pem": PEM,
        })))
        .expect(1)
        .mount(&github)
        .await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let env_file = dir.path().join("hookwise.env");
    let env_arg = env_file.to_str().expect("UTF-8");
    let (child, stdout, base) = start_setup(
        &["--webhook-url", WEBHOOK_URL, "--name", "hookwise-test", "--env-file", env_arg],
        &[("GITHUB_API_URL", &github.uri()), ("GITHUB_WEB_URL", "https://github.example")],
    );

    let (action, manifest) = read_form(&base).await;
    let state = state_of(&action);
    assert_eq!(action, format!("https://github.example/settings/apps/new?state={state}"));
    assert!(state.len() >= 32, "a random state: {state}");
    // Exactly the README's manifest ("Create the GitHub App").
    assert_eq!(
        manifest,
        json!({
            "name": "hookwise-test",
            "url": "https://hooks.example.net",
            "hook_attributes": {"url": WEBHOOK_URL, "active": true},
            "redirect_url": format!("{base}callback"),
            "public": false,
            "default_permissions": {
                "issues": "write", "pull_requests": "write", "contents": "read", "metadata": "read", "actions": "read"
            },
            "default_events": [
                "issues", "issue_comment", "pull_request", "pull_request_review",
                "pull_request_review_comment", "push", "workflow_run"
            ],
        })
    );

    // A redirect without this setup's state (a forged link) exchanges nothing.
    let forged = reqwest::get(format!("{base}callback?code=a1b2c3&state=not-{state}")).await.expect("callback");
    assert_eq!(forged.status(), 400);
    let missing = reqwest::get(format!("{base}callback?code=a1b2c3")).await.expect("callback");
    assert_eq!(missing.status(), 400);
    assert!(!env_file.exists());

    let done = reqwest::get(format!("{base}callback?code=a1b2c3&state={state}")).await.expect("callback");
    assert_eq!(done.status(), 200);
    let install = "https://github.example/apps/hookwise-test/installations/new";
    assert!(done.text().await.expect("the page").contains(install));

    let (ok, out, err) = wait_for_exit(child, stdout);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(install), "prints the install link: {out}");
    for secret in [GITHUB_SECRET, "client-secret-never-printed", "PRIVATE KEY"] {
        assert!(!out.contains(secret) && !err.contains(secret), "printed a secret: {out}\n{err}");
    }
    github.verify().await;

    let key_file = dir.path().join("hookwise.env.private-key.pem");
    assert_eq!(mode(&env_file), 0o600);
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(std::fs::read_to_string(&key_file).expect("the key"), PEM);
    let written = std::fs::read_to_string(&env_file).expect("the env file");
    let settings: Vec<&str> = written.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        settings,
        vec![
            "GITHUB_APP_ID=424242".to_owned(),
            format!("GITHUB_APP_PRIVATE_KEY_PATH={}", key_file.display()),
            format!("GITHUB_APP_WEBHOOK_SECRET={GITHUB_SECRET}"),
            format!("GITHUB_API_URL={}", github.uri()),
        ]
    );

    // `serve --env-file` with no secret in its environment: the file's is used.
    let database = format!("sqlite://{}", dir.path().join("hw.db").display());
    let (server, base) = serve_with(&database, "not-the-file-secret", &["--env-file", env_arg], |command| {
        command.env_remove("GITHUB_APP_WEBHOOK_SECRET");
    });
    let server = KillOnDrop(server);
    let client = reqwest::Client::new();
    let health = client.get(format!("{base}/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    let body = br#"{"action":"created","comment":{"body":"hi"},"repository":{"id":1,"full_name":"o/r"}}"#;
    let deliver = |secret: &str, delivery: &str| {
        client
            .post(format!("{base}/integration/github/events"))
            .header("content-type", "application/json")
            .header("x-github-event", "issue_comment")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sign(secret, body))
            .body(body.to_vec())
            .send()
    };
    assert_eq!(deliver(GITHUB_SECRET, "setup-1").await.expect("delivery").status(), 200);
    assert_eq!(deliver("not-the-file-secret", "setup-2").await.expect("delivery").status(), 403);
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_exchange_reports_githubs_error_and_writes_nothing() {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/app-manifests/expired1/conversions"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "message": "Invalid manifest code", "documentation_url": "https://docs.github.com/rest"
        })))
        .expect(1)
        .mount(&github)
        .await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let env_file = dir.path().join("hookwise.env");
    let (child, stdout, base) = start_setup(
        &["--webhook-url", WEBHOOK_URL, "--env-file", env_file.to_str().expect("UTF-8")],
        &[("GITHUB_API_URL", &github.uri())],
    );
    let (action, _) = read_form(&base).await;
    let state = state_of(&action);
    let forged = reqwest::get(format!("{base}callback?code=expired1&state=x{state}")).await.expect("callback");
    assert_eq!(forged.status(), 400);
    let answer = reqwest::get(format!("{base}callback?code=expired1&state={state}")).await.expect("callback");
    assert_eq!(answer.status(), 502);
    assert!(answer.text().await.expect("the page").contains("Invalid manifest code"));

    let (ok, out, err) = wait_for_exit(child, stdout);
    assert!(!ok, "setup fails: {out}");
    assert!(err.contains("422") && err.contains("Invalid manifest code"), "{err}");
    github.verify().await;
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("the directory").collect();
    assert!(left.is_empty(), "nothing written: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_organization_on_enterprise_server_gets_its_own_new_app_page_and_agent_pushes_ask_contents_write() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let env_file = dir.path().join("hookwise.env");
    let (child, _stdout, base) = start_setup(
        &[
            "--webhook-url",
            WEBHOOK_URL,
            "--org",
            "my-org",
            "--agent-pushes",
            "--env-file",
            env_file.to_str().expect("UTF-8"),
        ],
        &[("GITHUB_API_URL", "https://ghe.example.com/api/v3")],
    );
    let (action, manifest) = read_form(&base).await;
    let state = state_of(&action);
    assert_eq!(action, format!("https://ghe.example.com/organizations/my-org/settings/apps/new?state={state}"));
    assert_eq!(manifest["name"], "hookwise");
    assert_eq!(manifest["default_permissions"]["contents"], "write", "--agent-pushes");
    drop(child);
}

#[test]
fn setup_refuses_to_overwrite_an_env_file_without_force() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let env_file = dir.path().join("hookwise.env");
    std::fs::write(&env_file, "GITHUB_APP_ID=1\n").expect("an existing file");
    let output = Command::new(HOOKWISE)
        .args(["setup", "--webhook-url", WEBHOOK_URL, "--env-file", env_file.to_str().expect("UTF-8")])
        .stdin(Stdio::null())
        .output()
        .expect("running hookwise setup");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&env_file).expect("kept"), "GITHUB_APP_ID=1\n");
}

/// GitHub's answer may carry no webhook secret: setup makes one, sets it on the
/// App's webhook (`PATCH /app/hook/config`, as the App) and writes that one.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_secret_from_github_setup_sets_and_writes_its_own() {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/app-manifests/c0de/conversions"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 7, "slug": "hw", "html_url": "https://github.com/apps/hw", "webhook_secret": null, "pem": PEM,
        })))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/app/hook/config"))
        .and(wiremock::matchers::header_exists("authorization"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"content_type": "json"})))
        .expect(1)
        .mount(&github)
        .await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let env_file = dir.path().join("hookwise.env");
    let (child, stdout, base) = start_setup(
        &["--webhook-url", WEBHOOK_URL, "--env-file", env_file.to_str().expect("UTF-8")],
        &[("GITHUB_API_URL", &github.uri())],
    );
    let (action, _) = read_form(&base).await;
    let done = reqwest::get(format!("{base}callback?code=c0de&state={}", state_of(&action))).await.expect("callback");
    assert_eq!(done.status(), 200);
    let (ok, out, err) = wait_for_exit(child, stdout);
    assert!(ok, "{out}\n{err}");
    github.verify().await;

    let requests = github.received_requests().await.expect("recorded requests");
    let patch = requests.iter().find(|r| r.method.as_str() == "PATCH").expect("the PATCH");
    let body: Value = serde_json::from_slice(&patch.body).expect("JSON");
    let secret = body["secret"].as_str().expect("a secret");
    assert!(secret.len() >= 64, "256 bits: {secret}");
    let written = std::fs::read_to_string(&env_file).expect("the env file");
    assert!(written.contains(&format!("\nGITHUB_APP_WEBHOOK_SECRET={secret}\n")), "{written}");
    assert!(!out.contains(secret) && !err.contains(secret));
}

/// `HOOKWISE_ENV_FILE` is `--env-file`; a variable of the environment wins over the file's.
#[tokio::test(flavor = "multi_thread")]
async fn hookwise_env_file_is_read_and_the_real_environment_wins() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let env_file = dir.path().join("prod.env");
    std::fs::write(&env_file, "# comment\nGITHUB_APP_WEBHOOK_SECRET=\"from=file\"\nHOOKWISE_API_TOKEN='t0ken'\n")
        .expect("the env file");
    let database = format!("sqlite://{}", dir.path().join("hw.db").display());
    let (server, base) = serve_with(&database, "from-env", &[], |command| {
        command.env("HOOKWISE_ENV_FILE", &env_file).env_remove("HOOKWISE_API_TOKEN");
    });
    let server = KillOnDrop(server);
    let client = reqwest::Client::new();
    // The file's token is in force: even a local request needs it now.
    let deliveries = format!("{base}/api/v1/deliveries");
    assert_eq!(client.get(&deliveries).send().await.expect("deliveries").status(), 401);
    let with_token = client.get(&deliveries).bearer_auth("t0ken").send().await.expect("deliveries");
    assert_eq!(with_token.status(), 200);
    let body = br#"{"action":"created","repository":{"id":1,"full_name":"o/r"}}"#;
    let deliver = |secret: &str, delivery: &str| {
        client
            .post(format!("{base}/integration/github/events"))
            .header("content-type", "application/json")
            .header("x-github-event", "issue_comment")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sign(secret, body))
            .body(body.to_vec())
            .send()
    };
    assert_eq!(deliver("from-env", "env-1").await.expect("delivery").status(), 200);
    assert_eq!(deliver("from=file", "env-2").await.expect("delivery").status(), 403);
    drop(server);

    std::fs::write(&env_file, "GITHUB_APP_WEBHOOK_SECRET=x\nnot a setting\n").expect("a bad env file");
    let output = Command::new(HOOKWISE)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("HOOKWISE_ENV_FILE", &env_file)
        .env("DATABASE_URL", &database)
        .stdin(Stdio::null())
        .output()
        .expect("running hookwise serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("prod.env") && stderr.contains("line 2"), "{stderr}");
}
