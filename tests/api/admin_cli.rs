//! `hookwise verify-log`, `rebuild` and `replay` as an operator runs them.

use std::process::Command;

use hookwise::events::{derived_id, streams, DomainEvent, SecretSlot, WebhookReceived};
use hookwise::store::ExpectedVersion;

use crate::helpers::{backend_tests, payload_examples, Backend, TestApp, TEST_SECRET};

backend_tests!(verify_log_reports_deliveries_whose_signature_fails, rebuild_and_replay_commands_leave_the_rows_alone);

fn hookwise(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .args(args)
        .env_remove("GITHUB_APP_WEBHOOK_SECRET")
        .env_remove("GITHUB_APP_WEBHOOK_SECRET_PREVIOUS")
        .output()
        .expect("hookwise runs");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn verify_log_reports_deliveries_whose_signature_fails(backend: Backend) {
    let Some(dir) = payload_examples() else { return };
    let Some(app) = TestApp::spawn(backend).await else { return };
    let body = std::fs::read(dir.join("issues/opened.payload.json")).expect("corpus file");
    for i in 0..3 {
        assert_eq!(app.deliver("issues", &format!("good-{i}"), &body).await.status(), 200);
    }
    // A stored delivery whose signature does not match its bytes (as if the log had been altered).
    let forged = WebhookReceived {
        delivery_id: "forged".into(),
        hook_id: "42".into(),
        event: "issues".into(),
        action: Some("opened".into()),
        installation_id: None,
        repository: None,
        sender: None,
        signature: crate::helpers::sign(TEST_SECRET, b"{\"other\": true}"),
        secret: SecretSlot::Current,
    };
    let event =
        forged.to_new_event(derived_id(&["delivery", "42", "forged"]), Some(body.clone().into())).expect("encodes");
    app.store.append(&streams::delivery("forged"), ExpectedVersion::NoStream, vec![event]).await.expect("appended");
    let db = app.stop().await;

    let url = db.url.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        hookwise(&["verify-log", "--database-url", &url, "--webhook-secret", TEST_SECRET])
    })
    .await
    .expect("ran");
    assert!(!ok, "a failure makes the exit status non-zero: {out}");
    assert!(out.contains("4 deliveries checked, 1 failed"), "{out}");
    assert!(out.contains("delivery forged: mismatch"), "{out}");
    assert!(!out.contains(TEST_SECRET), "the secret is never printed");

    let url = db.url.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        hookwise(&["verify-log", "--database-url", &url, "--webhook-secret", "another-secret"])
    })
    .await
    .expect("ran");
    assert!(!ok);
    assert!(out.contains("4 deliveries checked, 4 failed"), "{out}");
}

async fn rebuild_and_replay_commands_leave_the_rows_alone(backend: Backend) {
    let Some(dir) = payload_examples() else { return };
    let Some(app) = TestApp::spawn(backend).await else { return };
    for (i, file) in ["installation/created", "pull_request/opened", "issue_comment/created", "push/with-installation"]
        .iter()
        .enumerate()
    {
        let body = std::fs::read(dir.join(format!("{file}.payload.json"))).expect("corpus file");
        let event = file.split('/').next().unwrap_or_default();
        assert_eq!(app.deliver(event, &format!("cli-{i}"), &body).await.status(), 200);
    }
    let db = app.stop().await;
    let url = db.url.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        let rebuilt = hookwise(&["rebuild", "all", "--database-url", &url]);
        let replayed = hookwise(&["replay", "--from", "2", "--to", "3", "--database-url", &url]);
        let unknown = hookwise(&["rebuild", "nonsense", "--database-url", &url]);
        assert!(!unknown.0, "an unknown read model fails");
        (rebuilt.0 && replayed.0, format!("{}{}", rebuilt.1, replayed.1))
    })
    .await
    .expect("ran");
    assert!(ok, "{out}");
    assert!(out.contains("deliveries: 4 events up to position 4"), "{out}");
    assert!(out.contains("pull_requests: fed"), "{out}");

    // The server starts on the rebuilt tables and serves them.
    let app = TestApp::spawn_on(db, &[]).await;
    let deliveries: serde_json::Value =
        app.http.get(app.url("/api/v1/deliveries")).send().await.expect("answer").json().await.expect("JSON");
    assert_eq!(deliveries["items"].as_array().map(Vec::len), Some(4), "{deliveries}");
    let log = app.log().await;
    let admin: Vec<_> = log.iter().filter(|e| e.stream == streams::ADMIN).map(|e| e.event_type.as_str()).collect();
    assert_eq!(admin.iter().filter(|t| **t == "ReadModelRebuilt").count(), hookwise::projections::read_models().len());
    assert!(admin.contains(&"ReadModelReplayed"));
    app.stop().await;
}
