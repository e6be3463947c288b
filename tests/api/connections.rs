//! The HTTP connection layer against clients that stall, idle or pile up:
//! raw sockets on a server with short deadlines, and the binary under a small
//! open-file limit. These are about connections, not storage, so they run on
//! SQLite only.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{sign, Backend, TestApp, TestDatabase, TEST_SECRET};

/// The deadlines the in-process tests use.
const SHORT: &[&str] = &["--header-read-timeout", "1s", "--body-read-timeout", "1s", "--idle-timeout", "1s"];

/// Far beyond any deadline under test: reaching it means the server never closed.
const OUTER_BOUND: Duration = Duration::from_secs(20);

async fn app_with(flags: &[&str]) -> TestApp {
    let db = TestDatabase::create(Backend::Sqlite).await.expect("SQLite is always available");
    TestApp::spawn_on(db, flags).await
}

/// Reads until the server closes the connection (end of stream or reset);
/// returns what it sent and how long that took. Fails if it stays open past `OUTER_BOUND`.
async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(OUTER_BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open for {OUTER_BOUND:?}");
    (received, started.elapsed())
}

/// Reads one complete HTTP/1.1 response with a `Content-Length`; returns its head and body.
async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&received[end + 4..end + 4 + length]).into_owned();
                return (head, body);
            }
        }
        let n = tokio::time::timeout(OUTER_BOUND, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("reading the response");
        assert!(n > 0, "the connection closed before a whole response: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buf[..n]);
    }
}

/// A request head that never ends is cut off after the header deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_head_is_closed_after_the_header_timeout() {
    let app = app_with(SHORT).await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    stream.write_all(b"POST /integration/github/events HTTP/1.1\r\nHost: x\r\n").await.expect("a partial head sent");
    let (_, open_for) = read_until_closed(&mut stream).await;
    assert!(open_for >= Duration::from_millis(500), "closed after {open_for:?}, before the 1 s deadline");
    app.stop().await;
}

/// A body that stops arriving is answered `408` with the JSON error, on
/// intake and on the agent's callbacks alike (both read their bodies capped);
/// one that keeps arriving is read to the end, even past the header deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_408() {
    let flags = ["--header-read-timeout", "1s", "--body-read-timeout", "3s", "--agent-callback-secret", "callback-key"];
    let app = app_with(&flags).await;

    let body = br#"{"zen":"slow but steady, over one and a half seconds"}"#;
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "POST /integration/github/events HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
         x-github-event: ping\r\nx-github-delivery: slow-1\r\nx-hub-signature-256: {}\r\ncontent-length: {}\r\n\r\n",
        sign(TEST_SECRET, body),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head sent");
    for part in body.chunks(body.len().div_ceil(3)) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stream.write_all(part).await.expect("a part of the body sent");
    }
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}\n{body}");

    let routes = [
        (
            "/integration/github/events",
            "x-github-event: ping\r\nx-github-delivery: stalled-1\r\nx-hub-signature-256: sha256=00\r\n",
        ),
        ("/event-webhook/batch", "x-session-api-key: callback-key\r\n"),
    ];
    for (path, headers) in routes {
        let mut stream = TcpStream::connect(app.addr).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n{headers}content-length: 1000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("head sent");
        stream.write_all(b"{\"zen\":\"x").await.expect("10 bytes of the body sent");
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("http/1.1 408"), "{path}: {head}");
        assert!(head.contains("connection: close"), "{path}: {head}");
        let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert_eq!(error["error"], "body_timeout", "{path}: {body}");
        read_until_closed(&mut stream).await;
    }
    app.stop().await;
}

/// A keep-alive connection stays open while requests keep coming faster than
/// the idle deadline, and is closed once they stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not() {
    let app = app_with(SHORT).await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    // Three times the idle deadline (and the header deadline) of traffic on one connection.
    for _ in 0..10 {
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("request sent");
        let (head, _) = read_response(&mut stream).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (after_last, idle_for) = read_until_closed(&mut stream).await;
    assert!(after_last.is_empty(), "{}", String::from_utf8_lossy(&after_last));
    assert!(idle_for >= Duration::from_millis(300), "closed after {idle_for:?} idle, before the 1 s deadline");
    app.stop().await;
}

/// Over h2c (prior knowledge), the server's SETTINGS carry the configured
/// `SETTINGS_MAX_CONCURRENT_STREAMS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_advertises_the_stream_limit() {
    const SETTINGS: u8 = 0x4;
    const ACK: u8 = 0x1;
    const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    let app = app_with(&["--http2-max-streams", "7"]).await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    // The client preface, then an empty SETTINGS frame.
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("preface sent");
    stream.write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]).await.expect("settings sent");
    let advertised = tokio::time::timeout(OUTER_BOUND, async {
        loop {
            let mut header = [0u8; 9];
            stream.read_exact(&mut header).await.expect("a frame header");
            let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; length];
            stream.read_exact(&mut payload).await.expect("a frame payload");
            if header[3] != SETTINGS || header[4] & ACK != 0 {
                continue;
            }
            return payload
                .chunks_exact(6)
                .find(|entry| u16::from_be_bytes([entry[0], entry[1]]) == MAX_CONCURRENT_STREAMS)
                .map(|entry| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]));
        }
    })
    .await
    .expect("the server's SETTINGS in time");
    assert_eq!(advertised, Some(7));
    app.stop().await;
}

/// Utime plus stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the server's /proc stat");
    // Fields after the command name (which may hold spaces): state is the first, utime the 12th.
    let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// 140 idle sockets against a server allowed 128 open files: it neither
/// spins (accepting stops at the connection cap) nor stops answering (idle
/// sockets are closed after the header deadline, and the backlog drains), so
/// a real delivery behind them is eventually stored.
#[test]
fn more_sockets_than_open_files_neither_spin_nor_starve_a_delivery() {
    const SECRET: &str = "fd-limit-secret";
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("hw.db").display());
    let (mut server, base) = crate::cli::serve_with(&url, SECRET, &[], |command| {
        command.env("HOOKWISE_HEADER_READ_TIMEOUT", "3s").env("HOOKWISE_IDLE_TIMEOUT", "3s");
        let limit = libc::rlimit { rlim_cur: 128, rlim_max: 128 };
        // SAFETY: runs in the forked child before exec; setrlimit is
        // async-signal-safe and `limit` is a plain value copied into the closure.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(command, move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    });
    let addr = base.strip_prefix("http://").expect("an http address").to_owned();
    let idle: Vec<std::net::TcpStream> = (0..140)
        .map(|_| std::net::TcpStream::connect(&addr).expect("a socket (the backlog holds the excess)"))
        .collect();

    // SAFETY: sysconf only reads a system constant.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (ticks_before, started) = (cpu_ticks(server.id()), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let cpu_seconds = (cpu_ticks(server.id()) - ticks_before) as f64 / ticks_per_second;
    let share = cpu_seconds / started.elapsed().as_secs_f64();

    let body = br#"{"zen":"behind 140 idle sockets"}"#;
    let request = format!(
        "POST /integration/github/events HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
         x-github-event: ping\r\nx-github-delivery: behind-the-crowd\r\nx-hub-signature-256: {}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        sign(SECRET, body),
        body.len()
    );
    let mut delivery = std::net::TcpStream::connect(&addr).expect("connect");
    delivery.set_read_timeout(Some(Duration::from_secs(60))).expect("a read timeout");
    delivery.write_all(request.as_bytes()).and_then(|()| delivery.write_all(body)).expect("the delivery sent");
    let mut answer = Vec::new();
    let read = delivery.read_to_end(&mut answer);
    drop(idle);
    let _ = server.kill();
    let _ = server.wait();
    assert!(share < 0.3, "the server used {:.0} % of a core while the sockets were held", share * 100.0);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{read:?}: {answer}");
}

/// A client that asks for a large answer and stops reading it: after the
/// write timeout the server gives up on it, so the slot it held (the only one
/// here) serves the next client, and the stalled answer ends short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let flags = [SHORT, &["--write-timeout", "1s", "--max-connections", "1"]].concat();
    let app = app_with(&flags).await;
    // An 8 MiB payload: more than the kernel buffers on both ends can hold.
    let filler: String = (0..8 * 1024 * 1024).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
    let body = format!(r#"{{"action":"opened","filler":"{filler}"}}"#);
    {
        let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("a client");
        let response = http
            .post(app.url("/integration/github/events"))
            .header("content-type", "application/json")
            .header("x-github-event", "issues")
            .header("x-github-delivery", "big-answer")
            .header("x-hub-signature-256", sign(TEST_SECRET, body.as_bytes()))
            .body(body.clone())
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status(), 200);
        let url = app.url("/api/v1/deliveries/big-answer");
        crate::helpers::eventually(OUTER_BOUND, "the delivery is in the read model", || async {
            http.get(&url).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small receive buffer");
    let mut stalled = socket.connect(app.addr).await.expect("connect");
    stalled
        .write_all(b"GET /api/v1/deliveries/big-answer HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .expect("request sent");

    // The next client waits for the one slot; it is answered once the stalled one is dropped.
    let mut next = TcpStream::connect(app.addr).await.expect("connect");
    next.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.expect("request sent");
    let answered = tokio::time::timeout(OUTER_BOUND, read_response(&mut next)).await;
    let (head, _) = answered.expect("the next client is served once the stalled one is dropped");
    assert!(head.starts_with("http/1.1 200"), "{head}");

    let (received, _) = read_until_closed(&mut stalled).await;
    assert!(
        received.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&received[..received.len().min(200)])
    );
    assert!(received.len() < body.len(), "the stalled answer was cut short ({} bytes)", received.len());
    app.stop().await;
}
