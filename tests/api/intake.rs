//! `POST /integration/github/events` against the real server on both backends.

use std::collections::HashMap;

use hookwise::events::{DomainEvent, SecretSlot, WebhookReceived};
use serde_json::Value;

use crate::helpers::{
    backend_tests, corpus_files, payload_examples, post_raw, sign, Backend, TestApp, TestDatabase, TEST_SECRET,
};

backend_tests!(
    every_corpus_payload_is_stored_once,
    an_oversized_body_is_cut_off_with_413,
    bad_requests_are_refused_and_store_nothing,
    a_delivery_signed_with_the_previous_secret_is_accepted,
    disabled_intake_answers_503_and_stores_nothing,
    the_same_delivery_sent_at_once_is_stored_once,
);

/// PostgreSQL only: the database going away is a 503 (GitHub may redeliver),
/// never a 500, and intake recovers when it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_answers_503_then_recovers() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else { return };
    let body = br#"{"action":"opened","installation":{"id":1}}"#;
    assert_eq!(app.deliver("issues", "before-outage", body).await.status(), 200);

    app.db.set_reachable(false).await;
    let response = app.deliver("issues", "during-outage", body).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let answer: Value = response.json().await.expect("a JSON error body");
    assert_eq!(answer["error"], "store_unavailable");
    let ready = app.http.get(app.url("/readyz")).send().await.expect("readyz answers");
    assert_eq!(ready.status(), 503);

    app.db.set_reachable(true).await;
    let mut status = 0;
    for _ in 0..50 {
        status = app.deliver("issues", "during-outage", body).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "intake recovers once the database is back");
    let deliveries: Vec<String> = app.log().await.iter().map(|e| e.stream.clone()).collect();
    assert_eq!(deliveries, vec!["delivery-42-before-outage", "delivery-42-during-outage"]);
    app.stop().await;
}

async fn every_corpus_payload_is_stored_once(backend: Backend) {
    let Some(dir) = payload_examples() else { return };
    let Some(app) = TestApp::spawn(backend).await else { return };
    let files = corpus_files(&dir);
    assert!(files.len() >= 273, "the corpus has {} files", files.len());

    let mut bodies = Vec::new();
    for (i, (event, file)) in files.iter().enumerate() {
        let body = std::fs::read(file).expect("reading a corpus file");
        let delivery = format!("00000000-0000-4000-8000-{i:012}");
        let response = app.deliver(event, &delivery, &body).await;
        let status = response.status();
        let answer: Value = response.json().await.expect("a JSON answer");
        assert_eq!(status, 200, "{}: {answer}", file.display());
        assert_eq!(answer["status"], "accepted", "{}", file.display());
        bodies.push((event.clone(), delivery, body, answer["position"].clone()));
    }
    let log = app.log().await;
    assert_eq!(log.len(), files.len());
    // Each stored exactly as received, in its own stream.
    let by_stream: HashMap<&str, _> = log.iter().map(|e| (e.stream.as_str(), e)).collect();
    for (event, delivery, body, position) in &bodies {
        let stored = by_stream[format!("delivery-42-{delivery}").as_str()];
        assert_eq!(position.as_u64(), Some(stored.position.0), "{delivery}");
        assert_eq!(stored.payload.as_deref(), Some(body.as_slice()));
        let received = WebhookReceived::decode(stored).expect("a WebhookReceived");
        assert_eq!(&received.event, event);
        assert_eq!(received.secret, SecretSlot::Current);
    }

    for (event, delivery, body, position) in &bodies {
        let response = app.deliver(event, delivery, body).await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.expect("a JSON answer");
        assert_eq!(answer["status"], "duplicate", "{delivery}");
        assert_eq!(&answer["position"], position, "a redelivery answers with the original's position");
    }
    assert_eq!(app.log().await.len(), files.len(), "redeliveries stored nothing");
    app.stop().await;
}

async fn bad_requests_are_refused_and_store_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let body = br#"{"action":"opened","installation":{"id":1}}"#.to_vec();
    let good = sign(TEST_SECRET, &body);

    struct Case {
        name: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        status: u16,
        error: &'static str,
    }
    let headers = |signature: &str| {
        vec![
            ("content-type", "application/json".to_owned()),
            ("x-github-event", "issues".to_owned()),
            ("x-github-delivery", "d-1".to_owned()),
            ("x-hub-signature-256", signature.to_owned()),
        ]
    };
    let without =
        |name: &str, signature: &str| headers(signature).into_iter().filter(|(h, _)| *h != name).collect::<Vec<_>>();
    let with = |name: &'static str, value: &str| {
        let mut h = without(name, &good);
        h.push((name, value.to_owned()));
        h
    };
    let signed = |body: &[u8]| headers(&sign(TEST_SECRET, body));
    let sha1 = format!("sha1={}", "0".repeat(40));
    let mut sha1_only = without("x-hub-signature-256", &good);
    sha1_only.push(("x-hub-signature", sha1.clone()));
    let cases = vec![
        Case {
            name: "no signature",
            headers: without("x-hub-signature-256", &good),
            body: body.clone(),
            status: 403,
            error: "invalid_signature",
        },
        Case {
            name: "wrong signature",
            headers: headers(&format!("sha256={}", "ab".repeat(32))),
            body: body.clone(),
            status: 403,
            error: "invalid_signature",
        },
        Case {
            name: "another secret",
            headers: headers(&sign("another secret", &body)),
            body: body.clone(),
            status: 403,
            error: "invalid_signature",
        },
        Case { name: "sha1 only", headers: sha1_only, body: body.clone(), status: 403, error: "invalid_signature" },
        Case {
            name: "sha1 in the sha256 header",
            headers: with("x-hub-signature-256", &sha1),
            body: body.clone(),
            status: 403,
            error: "invalid_signature",
        },
        Case {
            name: "missing event",
            headers: without("x-github-event", &good),
            body: body.clone(),
            status: 400,
            error: "missing_event",
        },
        Case {
            name: "missing delivery",
            headers: without("x-github-delivery", &good),
            body: body.clone(),
            status: 400,
            error: "missing_delivery",
        },
        Case {
            name: "non-JSON body",
            headers: signed(b"not json"),
            body: b"not json".to_vec(),
            status: 400,
            error: "not_an_object",
        },
        Case {
            name: "truncated JSON",
            headers: signed(b"{\"a\":"),
            body: b"{\"a\":".to_vec(),
            status: 400,
            error: "invalid_json",
        },
        Case {
            name: "JSON that is not an object",
            headers: signed(b"[1,2]"),
            body: b"[1,2]".to_vec(),
            status: 400,
            error: "not_an_object",
        },
        Case {
            name: "invalid UTF-8",
            headers: signed(b"{\"a\":\"\xff\"}"),
            body: b"{\"a\":\"\xff\"}".to_vec(),
            status: 400,
            error: "invalid_utf8",
        },
        Case {
            name: "text/plain",
            headers: with("content-type", "text/plain"),
            body: body.clone(),
            status: 415,
            error: "unsupported_media_type",
        },
        Case {
            name: "form-encoded",
            headers: with("content-type", "application/x-www-form-urlencoded"),
            body: body.clone(),
            status: 415,
            error: "unsupported_media_type",
        },
        Case {
            name: "bad delivery id",
            headers: with("x-github-delivery", "../../etc"),
            body: body.clone(),
            status: 400,
            error: "invalid_header",
        },
    ];
    for case in cases {
        let mut request = app.http.post(app.url("/integration/github/events")).body(case.body);
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.expect("the server answers");
        assert_eq!(response.status().as_u16(), case.status, "{}", case.name);
        let answer: Value = response.json().await.unwrap_or_else(|e| panic!("{}: a JSON error body: {e}", case.name));
        assert_eq!(answer["error"], case.error, "{}: {answer}", case.name);
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", case.name);
    }

    let response = app.http.get(app.url("/integration/github/events")).send().await.expect("answer");
    assert_eq!(response.status(), 405);
    let answer: Value = response.json().await.expect("a JSON error body");
    assert_eq!(answer["error"], "method_not_allowed");

    assert!(app.log().await.is_empty(), "nothing reached the log");
    app.stop().await;
}

async fn a_delivery_signed_with_the_previous_secret_is_accepted(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let app = TestApp::spawn_on(db, &["--webhook-secret-previous", "the-old-secret"]).await;
    let body = br#"{"action":"created","installation":{"id":5}}"#;
    let response = app.deliver_signed("issue_comment", "rotated-1", body, &sign("the-old-secret", body)).await;
    assert_eq!(response.status(), 200);
    let response = app.deliver("issue_comment", "current-1", body).await;
    assert_eq!(response.status(), 200);

    let log = app.log().await;
    let slots: Vec<(String, SecretSlot)> = log
        .iter()
        .map(|e| {
            let received = WebhookReceived::decode(e).expect("a WebhookReceived");
            (received.delivery_id, received.secret)
        })
        .collect();
    assert_eq!(
        slots,
        vec![("rotated-1".to_owned(), SecretSlot::Previous), ("current-1".to_owned(), SecretSlot::Current)]
    );
    for event in &log {
        let data = String::from_utf8_lossy(&event.data);
        assert!(!data.contains("the-old-secret") && !data.contains(TEST_SECRET), "no secret in the log");
    }
    app.stop().await;
}

/// GitHub's retry can overlap the original: the copies share one group commit
/// or follow each other, and the stream's `NoStream` lets exactly one in.
async fn the_same_delivery_sent_at_once_is_stored_once(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let body = br#"{"action":"created","installation":{"id":5},"comment":{"body":"hi"}}"#;
    let answers = futures_util::future::join_all((0..8).map(|_| async {
        let response = app.deliver("issue_comment", "overlapping-1", body).await;
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.expect("a JSON answer")
    }))
    .await;
    let log = app.log().await;
    assert_eq!(log.len(), 1, "stored once");
    let accepted = answers.iter().filter(|a| a["status"] == "accepted").count();
    let duplicates = answers.iter().filter(|a| a["status"] == "duplicate").count();
    assert_eq!((accepted, duplicates), (1, 7), "{answers:?}");
    for answer in &answers {
        assert_eq!(answer["position"].as_u64(), Some(log[0].position.0), "every answer names the stored position");
    }
    app.stop().await;
}

async fn disabled_intake_answers_503_and_stores_nothing(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let app = TestApp::spawn_on(db, &["--webhooks-enabled", "false"]).await;
    let response = app.deliver("ping", "p-1", b"{\"zen\":\"x\"}").await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let answer: Value = response.json().await.expect("a JSON error body");
    assert_eq!(answer["error"], "webhooks_disabled");
    assert!(app.log().await.is_empty());
    app.stop().await;
}

async fn an_oversized_body_is_cut_off_with_413(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let limit = hookwise::api::MAX_BODY_BYTES;
    // Declared too large: refused before reading.
    let (status, answer) = post_raw(&app, INTAKE, &github_headers(), limit + 1, false).await;
    assert_eq!(status, 413);
    assert_eq!(answer["error"], "payload_too_large");
    // Streamed without a length: cut off once past the limit.
    let (status, answer) = post_raw(&app, INTAKE, &github_headers(), limit + 1, true).await;
    assert_eq!(status, 413);
    assert_eq!(answer["error"], "payload_too_large");
    assert!(app.log().await.is_empty());
    app.stop().await;
}

const INTAKE: &str = "/integration/github/events";

/// A delivery's headers with a signature of the right shape (the body is too
/// large to be checked against it).
fn github_headers() -> Vec<String> {
    let signature = "0".repeat(64);
    vec![
        "x-github-event: issues".into(),
        "x-github-delivery: big-1".into(),
        format!("x-hub-signature-256: sha256={signature}"),
    ]
}
