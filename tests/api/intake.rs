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
    a_guid_is_one_delivery_whatever_hook_carried_it,
    the_same_guid_with_another_body_is_a_conflict_and_stores_nothing,
    a_log_that_named_deliveries_by_hook_still_recognises_them,
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
    assert_eq!(deliveries, vec!["delivery-before-outage", "delivery-during-outage"]);
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
        let stored = by_stream[format!("delivery-{delivery}").as_str()];
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

/// GitHub's `X-GitHub-Delivery` names a delivery; the hook id beside it (or its
/// absence, or `01` for `1`, or the GUID's case) does not make another one.
async fn a_guid_is_one_delivery_whatever_hook_carried_it(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let body = br#"{"action":"opened","installation":{"id":1}}"#;
    let signature = sign(TEST_SECRET, body);
    let guid = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let first = app.deliver_through_hook("1", "issues", guid, body, &signature).await;
    let first: Value = first.json().await.expect("a JSON answer");
    assert_eq!(first["status"], "accepted");
    for (hook, delivery) in [("2", guid), ("01", guid), ("1", &guid.to_ascii_uppercase())] {
        let answer: Value =
            app.deliver_through_hook(hook, "issues", delivery, body, &signature).await.json().await.expect("JSON");
        assert_eq!(answer["status"], "duplicate", "hook {hook}, {delivery}");
        assert_eq!(answer["position"], first["position"]);
    }
    let without_hook = app
        .http
        .post(app.url("/integration/github/events"))
        .header("content-type", "application/json")
        .header("x-github-event", "issues")
        .header("x-github-delivery", guid)
        .header("x-hub-signature-256", &signature)
        .body(body.to_vec())
        .send()
        .await
        .expect("the server answers");
    let answer: Value = without_hook.json().await.expect("JSON");
    assert_eq!(answer["status"], "duplicate", "no hook id");
    let log = app.log().await;
    assert_eq!(log.iter().map(|e| e.stream.as_str()).collect::<Vec<_>>(), vec![format!("delivery-{guid}")]);
    app.stop().await;
}

/// A GUID already stored with one body and sent again with another is not a
/// redelivery: `409`, counted, and the first body stays the one in the log.
async fn the_same_guid_with_another_body_is_a_conflict_and_stores_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let first = br#"{"action":"opened","installation":{"id":1}}"#;
    let other = br#"{"action":"closed","installation":{"id":1}}"#;
    assert_eq!(app.deliver("issues", "conflicting-guid", first).await.status(), 200);
    let response = app.deliver("issues", "conflicting-guid", other).await;
    assert_eq!(response.status(), 409);
    let answer: Value = response.json().await.expect("a JSON error");
    assert_eq!(answer["error"], "delivery_conflict");
    assert!(answer["message"].as_str().is_some_and(|m| m.contains("conflicting-guid")), "{answer}");
    let log = app.log().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].payload.as_deref(), Some(&first[..]));
    let metrics = app.http.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hookwise_deliveries_total") && l.contains(r#"reason="delivery_conflict""#)),
        "the conflict is counted"
    );
    app.stop().await;
}

/// Logs written before named each delivery's stream `delivery-{hook}-{guid}`;
/// the store's migration renames the first of each GUID, so a redelivery of
/// one of them after the upgrade is still recognised.
async fn a_log_that_named_deliveries_by_hook_still_recognises_them(backend: Backend) {
    use hookwise::store::{ExpectedVersion, NewEvent};
    let Some(db) = TestDatabase::create(backend).await else { return };
    let body = br#"{"action":"opened","installation":{"id":1}}"#;
    let store = db.open_store().await;
    for hook in ["7", "8"] {
        let event = NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: "WebhookReceived".into(),
            schema_version: 1,
            data: serde_json::to_vec(&serde_json::json!({
                "delivery_id": "old-guid", "hook_id": hook, "event": "issues", "action": "opened",
                "installation_id": 1, "signature": sign(TEST_SECRET, body), "secret": "current"
            }))
            .expect("JSON"),
            payload: Some(bytes::Bytes::from_static(body)),
        };
        store
            .append(&format!("delivery-{hook}-old-guid"), ExpectedVersion::NoStream, vec![event])
            .await
            .expect("append");
    }
    store.close().await;
    drop(store);
    // As the log was before the migration that renames them.
    let migration = if backend == Backend::Sqlite { 2 } else { 3 };
    db.execute_on_log(&format!("DELETE FROM schema_migrations WHERE component = 'events' AND version = {migration}"))
        .await;

    let app = TestApp::spawn_on(db, &[]).await;
    let answer: Value = app.deliver("issues", "old-guid", body).await.json().await.expect("JSON");
    assert_eq!(answer["status"], "duplicate", "{answer}");
    assert_eq!(answer["position"], 1);
    let streams: Vec<String> = app.log().await.iter().map(|e| e.stream.clone()).collect();
    assert_eq!(streams, vec!["delivery-old-guid", "delivery-8-old-guid"]);
    app.stop().await;
}
