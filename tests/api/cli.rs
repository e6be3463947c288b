//! The `hookwise` binary as a user runs it: the README's walk-through, and
//! refusing to start without a secret.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::helpers::{backend_tests, Backend, TestDatabase};

const HOOKWISE: &str = env!("CARGO_BIN_EXE_hookwise");

#[test]
fn serve_refuses_to_start_without_a_secret_and_names_the_variable() {
    for secret in [None, Some("")] {
        let mut command = Command::new(HOOKWISE);
        command.arg("serve").env_remove("GITHUB_APP_WEBHOOK_SECRET").env("HOOKWISE_BIND", "127.0.0.1:0");
        if let Some(secret) = secret {
            command.env("GITHUB_APP_WEBHOOK_SECRET", secret);
        }
        let output = command.stdin(Stdio::null()).output().expect("running hookwise");
        assert!(!output.status.success(), "serve must not start with secret {secret:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("GITHUB_APP_WEBHOOK_SECRET"), "{stderr}");
    }
}

#[test]
fn serve_refuses_a_public_bind_without_an_api_token() {
    let output = Command::new(HOOKWISE)
        .arg("serve")
        .env("GITHUB_APP_WEBHOOK_SECRET", "s")
        .env("HOOKWISE_BIND", "0.0.0.0:0")
        .env_remove("HOOKWISE_API_TOKEN")
        .output()
        .expect("running hookwise");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("HOOKWISE_API_TOKEN"));
}

backend_tests!(the_readme_walkthrough_works, every_send_example_is_detected_as_its_trigger);

/// `hookwise serve` on a free port of 127.0.0.1 with `extra` flags, and its base URL.
fn serve(database_url: &str, secret: &str, extra: &[&str]) -> (std::process::Child, String) {
    serve_with(database_url, secret, extra, |_| {})
}

/// Like [`serve`], with the command adjusted by `customize` first (environment, limits).
pub(crate) fn serve_with(
    database_url: &str,
    secret: &str,
    extra: &[&str],
    customize: impl FnOnce(&mut Command),
) -> (std::process::Child, String) {
    let mut command = Command::new(HOOKWISE);
    command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(extra)
        .env("DATABASE_URL", database_url)
        .env("GITHUB_APP_WEBHOOK_SECRET", secret)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    customize(&mut command);
    let mut server = command.spawn().expect("starting hookwise serve");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take().expect("piped stdout")), &mut line)
        .expect("the listening line");
    let base = line.trim().strip_prefix("hookwise listening on ").expect("the address").to_owned();
    (server, base)
}

fn hookwise(args: &[&str], database_url: &str) -> (bool, String) {
    let output = Command::new(HOOKWISE)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("GITHUB_APP_WEBHOOK_SECRET", "walkthrough-secret")
        .env("RUST_LOG", "warn")
        .output()
        .expect("running hookwise");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The data directory, the log, its WAL, the read side and the lease file
/// `serve` creates are its owner's alone.
#[test]
fn serve_creates_its_files_for_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = dir.path().join("data").join("hw.db");
    let url = format!("sqlite://{}", database.display());
    let (mut server, base) = serve(&url, "modes-secret", &[]);
    let payload = dir.path().join("payload.json");
    std::fs::write(&payload, br#"{"action":"created","repository":{"id":1,"full_name":"o/r"}}"#).expect("payload");
    let url_arg = format!("{base}/integration/github/events");
    let file = payload.to_str().expect("a UTF-8 path");
    let send = ["send", "--event", "issue_comment", "--file", file, "--url", &url_arg, "--secret", "modes-secret"];
    let (ok, out) = hookwise(&send, &url);
    assert!(ok, "{out}");
    let data = dir.path().join("data");
    let mut checked = Vec::new();
    for name in ["", "hw.db", "hw.db-wal", "hw.read.db", "hw.lease"] {
        let path = if name.is_empty() { data.clone() } else { data.join(name) };
        let Ok(metadata) = std::fs::metadata(&path) else { continue };
        let mode = metadata.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        checked.push(name);
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(["", "hw.db", "hw.read.db", "hw.lease"].iter().all(|n| checked.contains(n)), "checked {checked:?}");
}

async fn the_readme_walkthrough_works(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let (mut server, base) = serve(&db.url, "walkthrough-secret", &[]);
    let url = format!("{base}/integration/github/events");

    let payload = tempfile::NamedTempFile::new().expect("a payload file");
    let body = br#"{"action":"created","comment":{"body":"hello"},"repository":{"id":1,"full_name":"o/r"}}"#;
    std::fs::write(payload.path(), body).expect("writing the payload");
    let file = payload.path().to_str().expect("a UTF-8 path");
    let send = ["send", "--event", "issue_comment", "--file", file, "--url", &url, "--delivery", "walk-1"];

    let (ok, out) = hookwise(&send, &db.url);
    assert!(ok, "{out}");
    assert_eq!(out.lines().next(), Some("200"));
    let answer: Value = serde_json::from_str(out.lines().nth(1).expect("the body")).expect("JSON");
    assert_eq!(answer["status"], "accepted");

    let (ok, out) = hookwise(&send, &db.url);
    assert!(ok);
    let answer: Value = serde_json::from_str(out.lines().nth(1).expect("the body")).expect("JSON");
    assert_eq!(answer["status"], "duplicate");

    let (ok, out) =
        hookwise(&["send", "--event", "issue_comment", "--file", file, "--url", &url, "--secret", "wrong"], &db.url);
    assert!(!ok, "a rejected delivery makes send fail");
    assert_eq!(out.lines().next(), Some("403"));

    let _ = server.kill();
    let _ = server.wait();

    let (ok, out) = hookwise(&["events"], &db.url);
    assert!(ok);
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "WebhookReceived");
    assert_eq!(lines[0]["stream"], "delivery-walk-1");
    assert_eq!(lines[0]["payload"]["comment"]["body"], "hello");
    assert_eq!(lines[0]["data"]["repository"]["full_name"], "o/r");
    assert!(lines[0]["recorded_at"].as_str().is_some_and(|t| t.ends_with('Z')));

    let (ok, out) = hookwise(&["events", "--after", "1"], &db.url);
    assert!(ok);
    assert!(out.is_empty());
}

async fn every_send_example_is_detected_as_its_trigger(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    // No GitHub App or agent configured: each trigger is detected, then stops at a rejection.
    let (mut server, base) = serve(&db.url, "walkthrough-secret", &["--proactive", "true"]);
    let url = format!("{base}/integration/github/events");

    let kinds = [
        ("label", "label"),
        ("issue-comment", "issue_comment"),
        ("pr-comment", "pr_comment"),
        ("inline-comment", "review_comment"),
        ("failed-run", "failed_workflow"),
        ("review", "pr_review"),
        ("pr-label", "pr_label"),
        ("edited-comment", "edited_issue_comment"),
    ];
    for (example, _) in kinds {
        let (ok, out) = hookwise(&["send", "--example", example, "--url", &url], &db.url);
        assert!(ok, "{example}: {out}");
        assert_eq!(out.lines().next(), Some("200"), "{example}");
    }
    let (ok, printed) = hookwise(&["send", "--example", "inline-comment", "--print"], &db.url);
    assert!(ok);
    let printed: Value = serde_json::from_str(&printed).expect("the payload is printed as JSON");
    assert_eq!(printed["installation"]["id"], 1);
    assert!(printed["comment"]["body"].as_str().is_some_and(|b| b.starts_with("@openhands ")));

    // The process manager detects each one (the log is read after the server is gone).
    let started = std::time::Instant::now();
    let detected = loop {
        let (_, out) = hookwise(&["events"], &db.url);
        let detected: Vec<String> = out
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["type"] == "TriggerDetected")
            .filter_map(|e| e["data"]["kind"].as_str().map(str::to_owned))
            .collect();
        if detected.len() >= kinds.len() || started.elapsed() > std::time::Duration::from_secs(15) {
            break detected;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = server.kill();
    let _ = server.wait();
    let mut detected = detected;
    detected.sort();
    let mut expected: Vec<String> = kinds.iter().map(|(_, kind)| (*kind).to_owned()).collect();
    expected.sort();
    assert_eq!(detected, expected);
}
