//! Who reaches the API (docs/decisions/api-exposure.md), what one
//! unauthenticated request can write to the log, and payloads of any depth.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use hookwise::events::streams;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::helpers::{backend_tests, eventually, sign, Backend, TestApp, TestDatabase, TEST_SECRET};

backend_tests!(
    without_a_token_the_api_answers_only_local_requests,
    with_a_token_proxied_requests_are_served,
    a_payload_of_any_depth_comes_back_whole,
);

const TOKEN: &str = "exposure-token";

/// A request's headers and body, and the status it must get.
type Attempt = (&'static [(&'static str, &'static str)], &'static str, u16);

async fn admin_events(app: &TestApp) -> usize {
    app.store.read_stream(streams::ADMIN, 0, 1000).await.expect("the admin stream").len()
}

async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = app.http.get(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post_with(app: &TestApp, path: &str, headers: &[(&str, &str)], body: &'static str) -> (u16, Value) {
    let mut request = app.http.post(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if !body.is_empty() {
        request = request.body(body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn without_a_token_the_api_answers_only_local_requests(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let port = app.addr.port().to_string();
    let local_with_port = format!("127.0.0.1:{port}");
    let localhost_with_port = format!("localhost:{port}");
    let v6_with_port = format!("[::1]:{port}");

    for host in
        ["127.0.0.1", local_with_port.as_str(), "localhost", localhost_with_port.as_str(), v6_with_port.as_str()]
    {
        let (status, body) = get_with(&app, "/api/v1/deliveries", &[("host", host)]).await;
        assert_eq!(status, 200, "Host {host}: {body}");
    }
    for host in ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "10.0.0.1"] {
        for path in ["/api/v1/deliveries", "/api/v1/admin/read-models", "/metrics"] {
            let (status, body) = get_with(&app, path, &[("host", host)]).await;
            assert_eq!(status, 403, "{path} for Host {host}: {body}");
            assert_eq!(body["error"], "api_token_required", "{body}");
            assert!(body["message"].as_str().is_some_and(|m| m.contains("HOOKWISE_API_TOKEN")), "{body}");
        }
    }
    for (name, value) in [
        ("x-forwarded-for", "1.2.3.4"),
        ("forwarded", "for=1.2.3.4;host=hookwise.example"),
        ("x-forwarded-host", "hookwise.example"),
        ("x-real-ip", "1.2.3.4"),
    ] {
        let (status, body) = get_with(&app, "/api/v1/deliveries", &[(name, value)]).await;
        assert_eq!(status, 403, "{name}: {body}");
        assert_eq!(body["error"], "api_token_required", "{body}");
    }
    // The documentation is static and public (the spec is committed): no guard.
    assert_eq!(get_with(&app, "/openapi.json", &[("host", "evil.example")]).await.0, 200);
    assert_eq!(get_with(&app, "/docs", &[("host", "evil.example")]).await.0, 200);
    assert_eq!(get_with(&app, "/metrics", &[]).await.0, 200);

    // What a page of another site can make a browser send to 127.0.0.1 runs nothing.
    let rebuild = "/api/v1/admin/rebuild/all";
    let cross_site: [Attempt; 4] = [
        (&[("content-type", "application/x-www-form-urlencoded")], "a=b", 415),
        (&[("content-type", "multipart/form-data; boundary=x")], "--x--\r\n", 415),
        (&[("content-type", "text/plain")], "{}", 415),
        (&[("origin", "http://evil.example")], "", 403),
    ];
    for (headers, body, expected) in cross_site {
        let (status, answer) = post_with(&app, rebuild, headers, body).await;
        assert_eq!(status, expected, "{headers:?}: {answer}");
    }
    assert_eq!(admin_events(&app).await, 0, "a refused rebuild recorded nothing");

    // The API's own pages, curl, and JSON clients are served.
    let own_origin = format!("http://127.0.0.1:{port}");
    let (status, answer) = post_with(&app, rebuild, &[("origin", own_origin.as_str())], "").await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post_with(&app, rebuild, &[("content-type", "application/json")], "").await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post_with(&app, rebuild, &[], "").await;
    assert_eq!(status, 200, "{answer}");
    assert!(admin_events(&app).await > 0, "a served rebuild is recorded");
    app.stop().await;
}

async fn with_a_token_proxied_requests_are_served(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let app = TestApp::spawn_on(db, &["--api-token", TOKEN]).await;
    let bearer = format!("Bearer {TOKEN}");
    let proxied = [
        ("authorization", bearer.as_str()),
        ("host", "hookwise.example"),
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
    ];
    let (status, body) = get_with(&app, "/api/v1/deliveries", &proxied).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get_with(&app, "/api/v1/deliveries", &proxied[1..]).await.0, 401);
    assert_eq!(get_with(&app, "/metrics", &proxied[1..]).await.0, 200);

    let rebuild = "/api/v1/admin/rebuild/all";
    let form = [("authorization", bearer.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    let (status, body) = post_with(&app, rebuild, &form, "a=b").await;
    assert_eq!(status, 415, "the body rule holds with a token too: {body}");
    assert_eq!(body["error"], "unsupported_media_type", "{body}");
    assert_eq!(admin_events(&app).await, 0);
    let (status, body) = post_with(&app, rebuild, &proxied, "").await;
    assert_eq!(status, 200, "{body}");
    assert!(admin_events(&app).await > 0);
    app.stop().await;
}

async fn a_payload_of_any_depth_comes_back_whole(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let depth = 200;
    let body = format!(r#"{{"action":"created","deep":{}1{}}}"#, r#"{"a":["#.repeat(depth / 2), "]}".repeat(depth / 2));
    let response = app.deliver("issues", "deep-delivery-1", body.as_bytes()).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());

    let url = app.url("/api/v1/deliveries/deep-delivery-1");
    eventually(Duration::from_secs(20), "the delivery is in the read model", || {
        let request = app.http.get(&url).send();
        async move { request.await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let text = app.http.get(&url).send().await.expect("an answer").text().await.expect("a body");
    // Raw values: serde_json parses no tree deeper than 128 levels.
    let fields: HashMap<String, Box<RawValue>> = serde_json::from_str(&text).expect("the answer is JSON");
    assert_eq!(fields["payload"].get(), body, "the stored body, whole");
    assert_eq!(fields["delivery_id"].get(), r#""deep-delivery-1""#);
    assert_eq!(fields["event"].get(), r#""issues""#);
    app.stop().await;
}

/// The real binary's log, for forged and oversized headers on an unauthenticated delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_headers_are_logged_bounded_and_escaped() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log_path = dir.path().join("stderr.log");
    let log_file = std::fs::File::create(&log_path).expect("the log file");
    let mut server = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", format!("sqlite://{}", dir.path().join("hw.db").display()))
        .env("GITHUB_APP_WEBHOOK_SECRET", TEST_SECRET)
        .env("RUST_LOG", "info")
        .env_remove("HOOKWISE_LOG_FORMAT")
        .env_remove("EVENTSTORE_URL")
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .expect("starting hookwise serve");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take().expect("piped stdout")), &mut line)
        .expect("the listening line");
    let base = line.trim().strip_prefix("hookwise listening on ").expect("the address").to_owned();

    let http = reqwest::Client::new();
    let body = br#"{"action":"created"}"#;
    let deliver = |delivery: String, event: String| {
        http.post(format!("{base}/integration/github/events"))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sign(TEST_SECRET, body))
            .body(body.to_vec())
            .send()
    };
    let forged = deliver(r#"abc status="accepted" x"#.to_owned(), "issues".to_owned()).await.expect("an answer");
    assert_eq!(forged.status(), 400);
    let huge = deliver("d".repeat(200 * 1024), r#"issues status=accepted"#.to_owned()).await.expect("an answer");
    assert_eq!(huge.status(), 400);
    // A genuine one last: once its line is written, so are the others'.
    let genuine = deliver("genuine-delivery-1".to_owned(), "issues".to_owned()).await.expect("an answer");
    assert_eq!(genuine.status(), 200);

    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    eventually(Duration::from_secs(20), "the genuine delivery's log line", || {
        let log = read_log();
        async move { log.contains("genuine-delivery-1") }
    })
    .await;
    let _ = server.kill();
    let _ = server.wait();

    let log = read_log();
    let delivery_lines: Vec<&str> =
        log.lines().filter(|l| l.contains(" delivery ") || l.contains("delivery=")).collect();
    assert_eq!(delivery_lines.len(), 3, "one line per delivery:\n{log}");
    for line in &delivery_lines {
        assert!(line.len() < 1024, "a bounded line ({} bytes): {}…", line.len(), &line[..200.min(line.len())]);
    }
    // Read as a log parser would: fields split at spaces outside quotes.
    let statuses: Vec<Vec<String>> = delivery_lines
        .iter()
        .map(|line| fields_of(line).into_iter().filter_map(|(key, value)| (key == "status").then_some(value)).collect())
        .collect();
    let expected = [r#""invalid_header""#, r#""invalid_header""#, r#""accepted""#];
    assert_eq!(statuses, expected.map(|s| vec![s.to_owned()]), "one status field each: {delivery_lines:#?}");
    assert!(delivery_lines[2].contains("delivery=genuine-delivery-1"), "{}", delivery_lines[2]);
    assert!(log.len() < 16 * 1024, "one short line per request, not the header: {} bytes", log.len());
}

/// `key=value` pairs of a text log line; a quoted value keeps its quotes and escapes.
fn fields_of(line: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let (mut word, mut quoted, mut escaped) = (String::new(), false, false);
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                words.push(std::mem::take(&mut word));
                continue;
            }
            _ => {}
        }
        word.push(c);
    }
    words.push(word);
    words.into_iter().filter_map(|w| w.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))).collect()
}
