//! Hostile clients against the real binary, its memory read from
//! `/proc/{pid}/status`: what a client declares costs nothing until it sends
//! it, and a mix of hostile requests among real deliveries loses none of
//! them, answers none with a `500`, and leaves the process's memory bounded.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{read_whole_log, sign, KillOnDrop, TEST_SECRET};

const MIB: u64 = 1024 * 1024;

/// `hookwise serve` on SQLite in `dir`, and its address (`host:port`).
fn serve(dir: &std::path::Path) -> (KillOnDrop, String) {
    let url = format!("sqlite://{}", dir.join("hw.db").display());
    let (child, base) = crate::cli::serve_with(&url, TEST_SECRET, &[], |_| {});
    (KillOnDrop(child), base.strip_prefix("http://").expect("an http:// address").to_owned())
}

/// A `kB` field of `/proc/{pid}/status` (`VmPeak`, `VmHWM`, …), in bytes.
fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process's status");
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    let kb: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number of kB");
    kb * 1024
}

/// Sends `request` and reads the status line of the answer (`0`: none came).
async fn status_of(addr: &str, request: &[u8]) -> u16 {
    let Ok(mut stream) = TcpStream::connect(addr).await else { return 0 };
    // The server may answer and close before all of it is written.
    let _ = stream.write_all(request).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), read).await;
    String::from_utf8_lossy(&answer).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn delivery_request(guid: &str, body: &[u8], signature: &str, extra: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /integration/github/events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         x-github-event: issues\r\nx-github-delivery: {guid}\r\nx-hub-signature-256: {signature}\r\n{extra}\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// 100 connections each declaring 25 MiB (just under the cap) and sending
/// 1 KiB: the server's buffers follow what arrived, so its peak virtual size
/// grows by far less than the 2.5 GiB declared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_reserves_nothing_before_the_bytes_arrive() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (server, addr) = serve(dir.path());
    let pid = server.0.id();
    let before = status_field(pid, "VmPeak:");
    let declared = 25 * 1024 * 1024 - 1;
    let signature = format!("sha256={}", "0".repeat(64));
    let mut held = Vec::new();
    for i in 0..100 {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        let head = format!(
            "POST /integration/github/events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             x-github-event: issues\r\nx-github-delivery: declared-{i}\r\nx-hub-signature-256: {signature}\r\n\
             content-length: {declared}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("head sent");
        stream.write_all(&[b' '; 1024]).await.expect("a first KiB sent");
        held.push(stream);
    }
    // Each handler reads until the client gives up, then answers: once every
    // answer is in, every one of them has been waiting on its body.
    let mut statuses = Vec::new();
    for mut stream in held {
        stream.shutdown().await.expect("shutdown");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
        statuses.push(String::from_utf8_lossy(&answer).split_whitespace().nth(1).unwrap_or("").to_owned());
    }
    assert!(statuses.iter().all(|s| s.starts_with('4')), "each cut-short body is refused: {statuses:?}");
    let grown = status_field(pid, "VmPeak:").saturating_sub(before);
    // Virtual size also moves with threads and allocator arenas: the bound
    // is generous, and far below the 2.5 GiB declared (3 GiB seen before).
    assert!(grown < 1024 * MIB, "peak virtual size grew by {} MiB for 100 KiB received", grown / MIB);
}

/// A few hundred hostile requests of every kind seen in the probe, sent
/// concurrently among 100 real deliveries (each also redelivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_among_real_deliveries_lose_nothing_and_stay_bounded() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (server, addr) = serve(dir.path());
    let pid = server.0.id();
    let addr = Arc::new(addr);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let addr = addr.clone();
        tasks.spawn(async move {
            let body = format!(r#"{{"action":"opened","installation":{{"id":1}},"issue":{{"number":{i}}}}}"#);
            let guid = format!("real-{i}");
            let request = delivery_request(&guid, body.as_bytes(), &sign(TEST_SECRET, body.as_bytes()), "");
            let first = status_of(&addr, &request).await;
            let again = status_of(&addr, &request).await;
            ("real", vec![first, again])
        });
    }
    let hostile: Vec<(&'static str, Vec<u8>)> = (0..300)
        .map(|i| match i % 10 {
            0 => ("bad signature", delivery_request(&format!("bad-{i}"), b"{}", &format!("sha256={}", "1".repeat(64)), "")),
            1 => ("no signature, big body", {
                let mut r = b"POST /integration/github/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-github-event: issues\r\nx-github-delivery: n\r\ncontent-length: 4194304\r\n\r\n".to_vec();
                r.extend(std::iter::repeat_n(b' ', 4 * 1024 * 1024));
                r
            }),
            2 => ("huge header", format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(1_000_000)).into_bytes()),
            3 => ("forged log fields", delivery_request("abc status=\"accepted\" x", b"{}", "sha256=zz", "")),
            4 => ("lying length", b"POST /integration/github/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{}".to_vec()),
            5 => ("deep JSON, unsigned", {
                let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
                delivery_request(&format!("deep-{i}"), deep.as_bytes(), &format!("sha256={}", "2".repeat(64)), "")
            }),
            6 => ("cross-site form", b"POST /api/v1/admin/rebuild/all HTTP/1.1\r\nhost: evil.example\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 3\r\n\r\na=b".to_vec()),
            7 => ("forwarded API read", b"GET /api/v1/deliveries HTTP/1.1\r\nhost: 127.0.0.1\r\nx-forwarded-for: 203.0.113.9\r\n\r\n".to_vec()),
            8 => ("garbage", vec![0xff; 4096]),
            _ => ("callback without a key", b"POST /event-webhook/batch HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n[]".to_vec()),
        })
        .collect();
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    for (kind, request) in hostile {
        let (addr, limit) = (addr.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire().await.expect("the semaphore stays open");
            (kind, vec![status_of(&addr, &request).await])
        });
    }
    let mut real = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (kind, statuses) = joined.expect("a request task");
        for status in &statuses {
            assert!(*status < 500 || *status == 503, "{kind}: {status}");
        }
        if kind == "real" {
            real.push(statuses);
        } else {
            assert!(statuses[0] >= 400 || statuses[0] == 0, "{kind} was refused: {statuses:?}");
        }
    }
    assert!(real.iter().all(|s| s == &[200, 200]), "every real delivery accepted, then recognised: {real:?}");
    let peak = status_field(pid, "VmHWM:");
    assert!(peak < 512 * MIB, "peak resident memory {} MiB", peak / MIB);
    drop(server);

    let store = hookwise::store::open(&format!("sqlite://{}", dir.path().join("hw.db").display()))
        .await
        .expect("the log opens");
    let log = read_whole_log(store.as_ref()).await;
    let mut deliveries: Vec<&str> = log.iter().filter_map(|e| e.stream.strip_prefix("delivery-")).collect();
    deliveries.sort_unstable();
    let mut expected: Vec<String> = (0..100).map(|i| format!("real-{i}")).collect();
    expected.sort_unstable();
    assert_eq!(deliveries, expected, "each real delivery stored once, nothing else");
    store.close().await;
}
