//! `/readyz` tells the truth about the log: `503` while it cannot be written
//! (a full disk, a read-only database), ready again by itself once it can; and
//! `serve` refuses to start on a log it cannot write, naming it.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};
use serde_json::Value;

use crate::helpers::{eventually, sign, Backend, KillOnDrop, TestApp, TestDatabase, TEST_SECRET};

const HOOKWISE: &str = env!("CARGO_BIN_EXE_hookwise");
/// Past the log's memory of a failed commit (15 s), with room for a busy machine.
const RECOVERY: Duration = Duration::from_secs(60);

/// A delivery that does not compress: each one needs its size on disk.
fn incompressible_delivery(size: usize) -> Vec<u8> {
    let filler = Alphanumeric.sample_string(&mut rand::rng(), size);
    format!(r#"{{"action":"opened","installation":{{"id":1}},"filler":"{filler}"}}"#).into_bytes()
}

async fn deliver(http: &reqwest::Client, base: &str, guid: &str, body: &[u8]) -> u16 {
    http.post(format!("{base}/integration/github/events"))
        .header("content-type", "application/json")
        .header("x-github-event", "issues")
        .header("x-github-delivery", guid)
        .header("x-hub-signature-256", sign(TEST_SECRET, body))
        .body(body.to_vec())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn readyz(http: &reqwest::Client, base: &str) -> (u16, Value) {
    let response = http.get(format!("{base}/readyz")).send().await.expect("readyz answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The disk filling up, as the process sees it: a file-size limit (`RLIMIT_FSIZE`,
/// its signal ignored so writes past it fail with `EFBIG`, as `ENOSPC` would)
/// that the test lifts afterwards, as an operator freeing space would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_readyz_503_and_it_recovers_by_itself() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("hw.db").display());
    const LIMIT: u64 = 6 * 1024 * 1024;
    let (server, base) = crate::cli::serve_with(&url, TEST_SECRET, &[], |command| {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let limit = libc::rlimit { rlim_cur: LIMIT, rlim_max: libc::RLIM_INFINITY };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let server = KillOnDrop(server);
    let pid = server.0.id() as libc::pid_t;
    let http = reqwest::Client::new();
    assert_eq!(readyz(&http, &base).await.0, 200, "ready while the disk has room");

    // Fill it: 512 KiB deliveries until one is refused.
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 0..40 {
        let guid = format!("fill-{i}");
        match deliver(&http, &base, &guid, &incompressible_delivery(512 * 1024)).await {
            200 => accepted.push(guid),
            status => {
                refused = Some((guid, status));
                break;
            }
        }
    }
    let (refused_guid, status) = refused.expect("the disk filled up");
    assert_eq!(status, 503, "a delivery that cannot be stored is a 503");
    let (status, answer) = readyz(&http, &base).await;
    assert_eq!(status, 503, "not ready while deliveries are refused: {answer}");
    assert_eq!(answer["error"], "log_not_writable");

    // Space again: ready by itself, and the refused delivery (redelivered) is stored.
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: a plain syscall on the child's pid with valid pointers.
    assert_eq!(unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &unlimited, std::ptr::null_mut()) }, 0);
    eventually(RECOVERY, "readyz is 200 again", || async { readyz(&http, &base).await.0 == 200 }).await;
    assert_eq!(deliver(&http, &base, &refused_guid, &incompressible_delivery(1024)).await, 200);
    accepted.push(refused_guid);

    drop(server);
    // Every acknowledged delivery is in the log.
    let store = hookwise::store::open(&url).await.expect("the log opens");
    let log = crate::helpers::read_whole_log(store.as_ref()).await;
    let streams: Vec<String> = log.iter().map(|e| e.stream.clone()).collect();
    for guid in &accepted {
        assert!(streams.contains(&format!("delivery-{guid}")), "{guid} was acknowledged and is in the log");
    }
    store.close().await;
}

/// A log file the service cannot write: `serve` exits at once, naming it,
/// instead of answering GitHub with a `503` for every delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_log_it_cannot_write_and_names_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("hw.db");
    let url = format!("sqlite://{}", path.display());
    let store = hookwise::store::open(&url).await.expect("creating the log");
    store.close().await;
    drop(store);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    let mut command = Command::new(HOOKWISE);
    command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", &url)
        .env("GITHUB_APP_WEBHOOK_SECRET", TEST_SECRET)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Root writes whatever the mode says: run as nobody, who owns the
        // directory (so SQLite may open it) but not the right to write the file.
        const NOBODY: u32 = 65534;
        for entry in [dir.path().to_path_buf(), path.clone()] {
            std::os::unix::fs::chown(&entry, Some(NOBODY), Some(NOBODY)).expect("chown");
        }
        command.uid(NOBODY).gid(NOBODY);
    }
    let output = tokio::task::spawn_blocking(move || command.output()).await.expect("join").expect("runs");
    assert!(!output.status.success(), "serve must not start on a log it cannot write");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&path.display().to_string()), "the error names the file: {stderr}");
}

/// PostgreSQL turning read-only (a failover to a standby, an operator's
/// `default_transaction_read_only`): deliveries are refused, `/readyz` says so,
/// and both recover once it is writable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_postgres_makes_readyz_503_and_it_recovers_by_itself() {
    let Some(db) = TestDatabase::create(Backend::Postgres).await else { return };
    let app = TestApp::spawn_on(db, &[]).await;
    let base = format!("http://{}", app.addr);
    assert_eq!(readyz(&app.http, &base).await.0, 200);
    assert_eq!(app.deliver("issues", "before", br#"{"action":"opened"}"#).await.status(), 200);

    app.db.set_read_only(true).await;
    let mut status = 0;
    // The first request after the sessions ended may spend itself reconnecting.
    for _ in 0..5 {
        status = app.deliver("issues", "while-read-only", br#"{"action":"opened"}"#).await.status().as_u16();
        if status == 503 {
            break;
        }
    }
    assert_eq!(status, 503, "a delivery that cannot be stored is a 503");
    let (status, answer) = readyz(&app.http, &base).await;
    assert_eq!(status, 503, "{answer}");

    app.db.set_read_only(false).await;
    eventually(RECOVERY, "readyz is 200 again", || async { readyz(&app.http, &base).await.0 == 200 }).await;
    assert_eq!(app.deliver("issues", "while-read-only", br#"{"action":"opened"}"#).await.status(), 200);
    let streams: Vec<String> = app.log().await.iter().map(|e| e.stream.clone()).collect();
    assert_eq!(streams, vec!["delivery-before", "delivery-while-read-only"]);
    app.stop().await;
}
