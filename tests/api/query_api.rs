//! The `/api/v1` query and admin API against a real server on both backends,
//! fed real corpus payloads.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use hookwise::events::{derived_id, streams, DomainEvent, RepositoryRef, SecretSlot, SenderRef, WebhookReceived};
use hookwise::projections::read_models;
use hookwise::sql::SqlDb;
use hookwise::store::ExpectedVersion;
use serde_json::{json, Value};

use crate::helpers::{backend_tests, corpus_files, payload_examples, Backend, TestApp, TestDatabase};

backend_tests!(
    every_endpoint_answers_over_the_corpus,
    pagination_loses_and_repeats_nothing_while_deliveries_arrive,
    filters_narrow_the_lists,
    the_api_requires_the_bearer_token,
    bad_parameters_are_answered_400_with_a_json_error,
    rebuild_and_replay_equal_incremental_projection,
    pull_request_statistics_match_a_scripted_history,
    conversations_follow_their_triggers,
    time_windows_find_every_row_whatever_order_the_times_come_in,
    a_read_model_behind_the_others_catches_up_in_their_reading,
);

pub(crate) const TOKEN: &str = "test-api-token";

async fn spawn(backend: Backend) -> Option<TestApp> {
    let db = TestDatabase::create(backend).await?;
    Some(TestApp::spawn_on(db, &["--api-token", TOKEN]).await)
}

pub(crate) async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.http.get(app.url(path)).bearer_auth(TOKEN).send().await.expect("the server answers");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

pub(crate) async fn post(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.http.post(app.url(path)).bearer_auth(TOKEN).send().await.expect("the server answers");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Waits until every read model has applied the whole log.
pub(crate) async fn caught_up(app: &TestApp) {
    for _ in 0..600 {
        let (_, body) = get(app, "/readyz").await;
        let lags = body["projection_lag"].as_object().cloned().unwrap_or_default();
        if !lags.is_empty() && lags.values().all(|v| v == 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the read models did not catch up");
}

/// Every page of a list, following `next_cursor`.
async fn all_pages(app: &TestApp, path: &str, limit: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after = 0u64;
    let separator = if path.contains('?') { '&' } else { '?' };
    loop {
        let (status, page) = get(app, &format!("{path}{separator}limit={limit}&after={after}")).await;
        assert_eq!(status, 200, "{path}: {page}");
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_u64() {
            Some(next) => after = next,
            None => return items,
        }
    }
}

async fn every_endpoint_answers_over_the_corpus(backend: Backend) {
    let Some(dir) = payload_examples() else { return };
    let Some(app) = spawn(backend).await else { return };
    let files = corpus_files(&dir);
    let mut sent = Vec::new();
    for (i, (event, file)) in files.iter().enumerate() {
        let body = std::fs::read(file).expect("reading a corpus file");
        let delivery = format!("00000000-0000-4000-8000-{i:012}");
        assert_eq!(app.deliver(event, &delivery, &body).await.status(), 200);
        sent.push((event.clone(), delivery, body));
    }
    caught_up(&app).await;

    let deliveries = all_pages(&app, "/api/v1/deliveries", 100).await;
    assert_eq!(deliveries.len(), files.len());
    for ((event, delivery, _), row) in sent.iter().zip(&deliveries) {
        assert_eq!(row["event"], event.as_str());
        assert_eq!(row["delivery_id"], delivery.as_str());
        assert_eq!(row["secret"], "current");
        assert_eq!(row["outcome"], "ignored");
    }
    // One delivery in full, with the payload as sent.
    let (event, delivery, body) = sent.iter().find(|(e, _, _)| e == "issue_comment").expect("an issue comment");
    let (status, detail) = get(&app, &format!("/api/v1/deliveries/{delivery}")).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["event"], event.as_str());
    assert_eq!(detail["payload"], serde_json::from_slice::<Value>(body).expect("JSON"));
    assert_eq!(detail["repository"], detail["payload"]["repository"]["full_name"]);

    let (status, _) = get(&app, "/api/v1/deliveries/no-such-delivery").await;
    assert_eq!(status, 404);

    let audit = all_pages(&app, "/api/v1/audit?kind=delivery_accepted", 200).await;
    assert_eq!(audit.len(), files.len());

    let (status, installations) = get(&app, "/api/v1/installations").await;
    assert_eq!(status, 200);
    let installation = &installations["items"][0];
    assert!(installation["id"].as_u64().is_some(), "{installations}");
    let (status, one) = get(&app, &format!("/api/v1/installations/{}", installation["id"])).await;
    assert_eq!((status, &one["id"]), (200, &installation["id"]));

    let prs = all_pages(&app, "/api/v1/pull-requests", 50).await;
    assert!(!prs.is_empty());
    let pr = &prs[0];
    let (status, one) =
        get(&app, &format!("/api/v1/pull-requests/{}/{}", pr["repository"].as_str().unwrap_or(""), pr["number"])).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["number"], pr["number"]);

    let (status, stats) = get(&app, "/api/v1/stats/pull-requests").await;
    assert_eq!(status, 200, "{stats}");
    assert!(stats["opened"].as_u64().unwrap_or(0) >= 1, "{stats}");

    let (status, models) = get(&app, "/api/v1/admin/read-models").await;
    assert_eq!(status, 200);
    assert_eq!(models.as_array().map(Vec::len), Some(read_models().len()));

    // The spec and the UI are served (without a token).
    let spec: Value = app.http.get(app.url("/openapi.json")).send().await.expect("spec").json().await.expect("JSON");
    assert!(spec["paths"]["/deliveries"].is_object(), "{spec}");
    let docs = app.http.get(app.url("/docs")).send().await.expect("docs");
    assert_eq!(docs.status(), 200);
    app.stop().await;
}

async fn pagination_loses_and_repeats_nothing_while_deliveries_arrive(backend: Backend) {
    let Some(dir) = payload_examples() else { return };
    let Some(app) = spawn(backend).await else { return };
    let body = std::fs::read(dir.join("issue_comment/created.payload.json")).expect("corpus file");
    for i in 0..40 {
        app.deliver("issue_comment", &format!("before-{i}"), &body).await;
    }
    caught_up(&app).await;
    let writer = {
        let http = app.http.clone();
        let url = app.url("/integration/github/events");
        let body = body.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let signature = crate::helpers::sign(crate::helpers::TEST_SECRET, &body);
                http.post(&url)
                    .header("content-type", "application/json")
                    .header("x-github-event", "issue_comment")
                    .header("x-github-delivery", format!("during-{i}"))
                    .header("x-hub-signature-256", signature)
                    .body(body.clone())
                    .send()
                    .await
                    .expect("delivered");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut after = 0u64;
    loop {
        let (status, page) = get(&app, &format!("/api/v1/deliveries?limit=3&after={after}")).await;
        assert_eq!(status, 200);
        for item in page["items"].as_array().cloned().unwrap_or_default() {
            seen.push((item["position"].as_u64().unwrap_or(0), item["delivery_id"].as_str().unwrap_or("").to_owned()));
        }
        match page["next_cursor"].as_u64() {
            Some(next) => after = next,
            None => {
                // The end for now: go on from the last row seen.
                if let Some((position, _)) = seen.last() {
                    after = *position;
                }
                if writer.is_finished() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    writer.await.expect("writer");
    caught_up(&app).await;
    // Pick up whatever arrived after the last page.
    loop {
        let (_, page) = get(&app, &format!("/api/v1/deliveries?limit=3&after={after}")).await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        let Some(last) = items.last() else { break };
        after = last["position"].as_u64().unwrap_or(after);
        for item in items {
            seen.push((item["position"].as_u64().unwrap_or(0), item["delivery_id"].as_str().unwrap_or("").to_owned()));
        }
    }
    let positions: Vec<u64> = seen.iter().map(|(p, _)| *p).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in order, none repeated: {positions:?}");
    let ids: HashSet<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), 80, "every delivery exactly once");
    for i in 0..40 {
        assert!(ids.contains(format!("before-{i}").as_str()) && ids.contains(format!("during-{i}").as_str()));
    }
    app.stop().await;
}

async fn filters_narrow_the_lists(backend: Backend) {
    let Some(dir) = payload_examples() else { return };
    let Some(app) = spawn(backend).await else { return };
    let files = corpus_files(&dir);
    for (i, (event, file)) in files.iter().enumerate().take(120) {
        let body = std::fs::read(file).expect("corpus file");
        app.deliver(event, &format!("filter-{i}"), &body).await;
    }
    caught_up(&app).await;
    let all = all_pages(&app, "/api/v1/deliveries", 500).await;
    let expect = |predicate: &dyn Fn(&Value) -> bool| all.iter().filter(|d| predicate(d)).count();

    let repository = all.iter().find_map(|d| d["repository"].as_str()).expect("a repository").to_owned();
    let by_repo = all_pages(&app, &format!("/api/v1/deliveries?repository={repository}"), 500).await;
    assert_eq!(by_repo.len(), expect(&|d| d["repository"] == repository.as_str()));
    assert!(!by_repo.is_empty());

    let event = all[0]["event"].as_str().expect("an event").to_owned();
    let by_event = all_pages(&app, &format!("/api/v1/deliveries?event={event}"), 500).await;
    assert_eq!(by_event.len(), expect(&|d| d["event"] == event.as_str()));
    assert!(by_event.iter().all(|d| d["event"] == event.as_str()));

    let sender = all.iter().find_map(|d| d["sender"].as_str()).expect("a sender").to_owned();
    let by_sender = all_pages(&app, &format!("/api/v1/deliveries?sender={sender}"), 500).await;
    assert_eq!(by_sender.len(), expect(&|d| d["sender"] == sender.as_str()));

    let by_status = all_pages(&app, "/api/v1/deliveries?status=ignored", 500).await;
    assert_eq!(by_status.len(), all.len());
    assert!(all_pages(&app, "/api/v1/deliveries?status=rejected", 500).await.is_empty());

    // A time window around the middle delivery.
    let middle = &all[all.len() / 2];
    let at = middle["received_at"].as_str().expect("a time");
    let since = all_pages(&app, &format!("/api/v1/deliveries?since={at}"), 500).await;
    let until = all_pages(&app, &format!("/api/v1/deliveries?until={at}"), 500).await;
    assert_eq!(since.len() + until.len(), all.len());
    assert!(since.iter().any(|d| d["position"] == middle["position"]));
    assert!(!until.iter().any(|d| d["position"] == middle["position"]));
    assert!(all_pages(&app, "/api/v1/deliveries?since=2999-01-01T00:00:00Z", 500).await.is_empty());

    let audit = all_pages(&app, &format!("/api/v1/audit?actor={sender}"), 500).await;
    assert_eq!(audit.len(), by_sender.len());
    app.stop().await;
}

async fn the_api_requires_the_bearer_token(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    for path in ["/api/v1/deliveries", "/api/v1/audit", "/api/v1/stats/pull-requests", "/api/v1/deliveries/x"] {
        let response = app.http.get(app.url(path)).send().await.expect("answer");
        assert_eq!(response.status(), 401, "{path}");
        let body: Value = response.json().await.expect("a JSON error");
        assert_eq!(body["error"], "unauthorized");
        let response = app.http.get(app.url(path)).bearer_auth("wrong-token").send().await.expect("answer");
        assert_eq!(response.status(), 401, "{path}");
        let body: Value = response.json().await.expect("a JSON error");
        assert_eq!(body["error"], "unauthorized");
    }
    let response = app.http.post(app.url("/api/v1/admin/rebuild/deliveries")).send().await.expect("answer");
    assert_eq!(response.status(), 401);
    assert_eq!(get(&app, "/api/v1/deliveries").await.0, 200);

    // Without a configured token on a loopback bind the API is open.
    let db = app.stop().await;
    let open = TestApp::spawn_on(db, &[]).await;
    let response = open.http.get(open.url("/api/v1/deliveries")).send().await.expect("answer");
    assert_eq!(response.status(), 200);
    open.stop().await;
}

async fn bad_parameters_are_answered_400_with_a_json_error(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    for path in [
        "/api/v1/deliveries?limit=0",
        "/api/v1/deliveries?limit=501",
        "/api/v1/deliveries?limit=abc",
        "/api/v1/deliveries?after=-1",
        "/api/v1/deliveries?since=yesterday",
        "/api/v1/audit?until=2026-13-45T00:00:00Z",
        "/api/v1/pull-requests?after=x",
        "/api/v1/pull-requests/o/r/not-a-number",
        "/api/v1/installations/abc",
        "/api/v1/stats/pull-requests?since=soon",
    ] {
        let (status, body) = get(&app, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].is_string() && body["message"].is_string(), "{path}: {body}");
    }
    let (status, body) = post(&app, "/api/v1/admin/rebuild/no_such_model").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "not_found");
    app.stop().await;
}

/// Every row of every read model's tables, sorted, as text.
async fn snapshot(db: &SqlDb) -> BTreeMap<String, Vec<String>> {
    let mut tables = BTreeMap::new();
    for model in read_models() {
        for table in model.tables() {
            let rows = db.query(&format!("SELECT * FROM {table}"), vec![]).await.expect("reading a read model");
            let mut rows: Vec<String> = rows.iter().map(|r| format!("{:?}", r.0)).collect();
            rows.sort();
            tables.insert((*table).to_owned(), rows);
        }
    }
    tables
}

/// The read models follow the log together, in one reading that starts at the
/// earliest of their checkpoints: one behind the others by less than what
/// would split it off (here reset to the start with its rows deleted while the
/// server was down, on a short log) catches up in it, and every table ends as
/// it was. One far behind reads on its own: `tests/api/runner.rs`.
async fn a_read_model_behind_the_others_catches_up_in_their_reading(backend: Backend) {
    let Some(dir) = payload_examples() else { return };
    let Some(app) = spawn(backend).await else { return };
    deliver_scripted_pr_history(&app, &dir).await;
    let database = app.stop().await;
    let db = SqlDb::connect(&database.url).await.expect("SQL database");
    let before = snapshot(&db).await;
    assert!(!before["deliveries"].is_empty() && !before["pull_requests"].is_empty(), "{before:?}");

    let deliveries = read_models().into_iter().find(|m| m.name() == "deliveries").expect("the deliveries model");
    let mut reset: Vec<_> = deliveries
        .tables()
        .iter()
        .map(|table| hookwise::sql::Statement::new(format!("DELETE FROM {table}"), vec![]))
        .collect();
    reset.push(hookwise::sql::Statement::new("UPDATE checkpoints SET position = 0 WHERE name = 'deliveries'", vec![]));
    db.write(reset).await.expect("reset");

    let app = TestApp::spawn_on(database, &["--api-token", TOKEN]).await;
    caught_up(&app).await;
    assert_eq!(snapshot(&db).await, before);
    app.stop().await;
}

async fn rebuild_and_replay_equal_incremental_projection(backend: Backend) {
    let Some(dir) = payload_examples() else { return };
    let Some(app) = spawn(backend).await else { return };
    let files = corpus_files(&dir);
    let bodies: Vec<(String, Vec<u8>)> =
        files.iter().map(|(e, f)| (e.clone(), std::fs::read(f).expect("corpus file"))).collect();
    // A few thousand mixed events appended straight to the log, plus a scripted PR history.
    let mut appended = 0;
    for round in 0..12 {
        for (i, (event, body)) in bodies.iter().enumerate() {
            let envelope: Value = serde_json::from_slice(body).expect("JSON");
            let delivery_id = format!("bulk-{round}-{i}");
            let received = WebhookReceived {
                delivery_id: delivery_id.clone(),
                hook_id: "7".into(),
                event: event.clone(),
                action: envelope["action"].as_str().map(str::to_owned),
                installation_id: envelope["installation"]["id"].as_u64(),
                repository: envelope["repository"]["id"].as_u64().map(|id| RepositoryRef {
                    id,
                    full_name: envelope["repository"]["full_name"].as_str().unwrap_or("").to_owned(),
                }),
                sender: envelope["sender"]["id"].as_u64().map(|id| SenderRef {
                    id,
                    login: envelope["sender"]["login"].as_str().unwrap_or("").to_owned(),
                    kind: envelope["sender"]["type"].as_str().unwrap_or("User").to_owned(),
                }),
                signature: crate::helpers::sign(crate::helpers::TEST_SECRET, body),
                secret: SecretSlot::Current,
            };
            let new_event = received
                .to_new_event(derived_id(&["delivery", "7", &delivery_id]), Some(body.clone().into()))
                .expect("encodes");
            app.store
                .append(&streams::delivery(&delivery_id), ExpectedVersion::NoStream, vec![new_event])
                .await
                .expect("appended");
            appended += 1;
        }
    }
    for (event, delivery, body) in scripted_pr_history(&dir) {
        app.deliver(&event, &delivery, &body).await;
        appended += 1;
    }
    // Trigger flows that end every way, against the bulk deliveries: each
    // written in one append, complete, so the process manager has nothing to do.
    for i in 0..150u64 {
        let events = bulk_trigger(i);
        appended += events.len();
        let trigger_id = uuid::Uuid::from_u128(0xb01c_0000 + u128::from(i));
        app.store.append(&streams::trigger(trigger_id), ExpectedVersion::NoStream, events).await.expect("appended");
    }
    assert!(appended > 3000, "{appended} events");
    caught_up(&app).await;
    let db = SqlDb::connect(&app.db.url).await.expect("SQL database");
    let incremental = snapshot(&db).await;
    assert_eq!(incremental["deliveries"].len(), 12 * bodies.len() + 6);
    assert_eq!(incremental["conversations"].len(), 150);

    let (status, body) = post(&app, "/api/v1/admin/rebuild/all").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rebuilt"].as_array().map(Vec::len), Some(read_models().len()));
    caught_up(&app).await;
    let rebuilt = snapshot(&db).await;
    for (table, rows) in &incremental {
        if table == "audit_log" {
            // Plus one row per rebuild: the ReadModelRebuilt events it appended.
            let extra: Vec<&String> = rebuilt[table].iter().filter(|r| !rows.contains(r)).collect();
            assert_eq!(extra.len(), read_models().len(), "{extra:?}");
            assert!(extra.iter().all(|r| r.contains("ReadModelRebuilt")), "{extra:?}");
            assert_eq!(rebuilt[table].len(), rows.len() + extra.len());
            continue;
        }
        if table == "audit_log_time_ranges" {
            // Those rows also widen their block's latest time: each block's
            // range must be exactly that of the rebuilt rows.
            let ranges = db
                .query("SELECT block, earliest, latest FROM audit_log_time_ranges ORDER BY block", vec![])
                .await
                .expect("time ranges");
            let from_rows = db
                .query(
                    "SELECT position / 512, MIN(occurred_at), MAX(occurred_at) FROM audit_log
                     GROUP BY position / 512 ORDER BY position / 512",
                    vec![],
                )
                .await
                .expect("ranges of the rows");
            let as_text =
                |rows: Vec<hookwise::sql::SqlRow>| rows.iter().map(|r| format!("{:?}", r.0)).collect::<Vec<_>>();
            assert_eq!(as_text(ranges), as_text(from_rows), "table {table} after a rebuild");
            continue;
        }
        assert_eq!(&rebuilt[table], rows, "table {table} after a rebuild");
    }

    // Replaying the second half again changes nothing either.
    let before_replay = snapshot(&db).await;
    let head = app.store.head().await.expect("head").0;
    for model in read_models() {
        hookwise::projections::read_model::replay(
            app.store.as_ref(),
            &db,
            model.as_ref(),
            hookwise::store::Position(head / 2),
            None,
        )
        .await
        .expect("replayed");
    }
    caught_up(&app).await;
    assert_eq!(snapshot(&db).await, before_replay, "replay is idempotent");
    app.stop().await;
}

fn with(mut value: Value, changes: Value) -> Value {
    fn merge(target: &mut Value, changes: &Value) {
        match (target, changes) {
            (Value::Object(target), Value::Object(changes)) => {
                for (key, change) in changes {
                    merge(target.entry(key.clone()).or_insert(Value::Null), change);
                }
            }
            (target, change) => *target = change.clone(),
        }
    }
    merge(&mut value, &changes);
    value
}

/// Delivers [`scripted_pr_history`] through intake and waits for the read models.
async fn deliver_scripted_pr_history(app: &TestApp, dir: &std::path::Path) {
    for (event, delivery, body) in scripted_pr_history(dir) {
        assert_eq!(app.deliver(&event, &delivery, &body).await.status(), 200);
    }
    caught_up(app).await;
}

/// PR #101 by alice gets two agent commits and one of hers, an agent review
/// comment, and is merged; PR #102 by bob is closed unmerged.
fn scripted_pr_history(dir: &std::path::Path) -> Vec<(String, String, Vec<u8>)> {
    let read = |path: &str| -> Value {
        serde_json::from_slice(&std::fs::read(dir.join(path)).expect("corpus file")).expect("JSON")
    };
    let repository = json!({"id": 900001, "full_name": "acme/widgets", "name": "widgets"});
    let opened = read("pull_request/opened.payload.json");
    let pr = |number: u64, author: &str, branch: &str, state: Value| {
        with(
            opened.clone(),
            json!({"repository": repository, "number": number, "pull_request": with(json!({
                "number": number, "user": {"login": author}, "head": {"ref": branch},
                "created_at": "2026-03-02T10:00:00Z", "closed_at": null, "merged_at": null, "merged": false,
                "state": "open", "commits": 1, "comments": 0, "review_comments": 0,
            }), state)}),
        )
    };
    let push = with(
        read("push/payload.json"),
        json!({"repository": repository, "ref": "refs/heads/fix-101", "commits": [
            {"id": "a1", "author": {"name": "openhands", "username": "openhands-agent"}},
            {"id": "a2", "author": {"name": "OpenHands", "username": null}},
            {"id": "h1", "author": {"name": "Alice", "username": "alice"}},
        ]}),
    );
    let review_comment = with(
        read("pull_request_review_comment/created.payload.json"),
        json!({"repository": repository, "pull_request": {"number": 101, "user": {"login": "alice"},
            "head": {"ref": "fix-101"}, "state": "open", "merged_at": null, "closed_at": null,
            "created_at": "2026-03-02T10:00:00Z"},
            "comment": {"id": 5551, "user": {"login": "openhands-agent[bot]"}}}),
    );
    let merged = pr(
        101,
        "alice",
        "fix-101",
        json!({"state": "closed", "merged": true,
        "merged_at": "2026-03-05T12:00:00Z", "closed_at": "2026-03-05T12:00:00Z", "commits": 3}),
    );
    let closed = pr(102, "bob", "feature-102", json!({"state": "closed", "closed_at": "2026-03-06T12:00:00Z"}));
    let history = [
        ("pull_request", pr(101, "alice", "fix-101", json!({}))),
        ("pull_request", pr(102, "bob", "feature-102", json!({}))),
        ("push", push),
        ("pull_request_review_comment", review_comment),
        ("pull_request", merged),
        ("pull_request", closed),
    ];
    history
        .into_iter()
        .enumerate()
        .map(|(i, (event, body))| (event.to_owned(), format!("scripted-{i}"), serde_json::to_vec(&body).expect("JSON")))
        .collect()
}

async fn pull_request_statistics_match_a_scripted_history(backend: Backend) {
    let Some(dir) = payload_examples() else { return };
    let Some(app) = spawn(backend).await else { return };
    deliver_scripted_pr_history(&app, &dir).await;

    let (status, helped) = get(&app, "/api/v1/pull-requests/acme/widgets/101").await;
    assert_eq!(status, 200, "{helped}");
    assert_eq!(helped["status"], "merged");
    assert_eq!(helped["commits"], 3);
    assert_eq!(helped["num_openhands_commits"], 2);
    assert_eq!(helped["num_openhands_review_comments"], 1);
    assert_eq!(helped["review_comments"], 1);
    assert_eq!(helped["openhands_helped_author"], true);
    assert_eq!(helped["author"], "alice");

    let (_, unhelped) = get(&app, "/api/v1/pull-requests/acme/widgets/102").await;
    assert_eq!(unhelped["status"], "closed");
    assert_eq!(unhelped["num_openhands_commits"], 0);
    assert_eq!(unhelped["openhands_helped_author"], false);

    let (status, stats) = get(&app, "/api/v1/stats/pull-requests?repository=acme/widgets").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        stats,
        json!({"opened": 2, "merged": 1, "closed": 1, "helped_by_agent": 1, "agent_commits": 2,
               "agent_review_comments": 1, "merge_rate_with_agent": 1.0, "merge_rate_without_agent": 0.0})
    );
    // A window that holds the merge but not the close.
    let (_, window) = get(
        &app,
        "/api/v1/stats/pull-requests?repository=acme/widgets&since=2026-03-03T00:00:00Z&until=2026-03-06T00:00:00Z",
    )
    .await;
    assert_eq!(window["opened"], 0);
    assert_eq!(window["merged"], 1);
    assert_eq!(window["closed"], 0);
    assert_eq!(window["merge_rate_with_agent"], 1.0);
    assert!(window["merge_rate_without_agent"].is_null(), "{window}");
    let (_, listed) = get(&app, "/api/v1/pull-requests?repository=acme/widgets&status=merged").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    app.stop().await;
}

/// Appends to a log directly (no server).
struct LogWriter {
    store: std::sync::Arc<dyn hookwise::store::EventStore>,
}

/// Appends a verified delivery as intake would; returns its position.
async fn append_delivery(store: &dyn hookwise::store::EventStore, event: &str, delivery_id: &str, body: &[u8]) -> u64 {
    let envelope: Value = serde_json::from_slice(body).expect("JSON");
    let received = WebhookReceived {
        delivery_id: delivery_id.to_owned(),
        hook_id: "42".into(),
        event: event.to_owned(),
        action: envelope["action"].as_str().map(str::to_owned),
        installation_id: envelope["installation"]["id"].as_u64(),
        repository: None,
        sender: None,
        signature: crate::helpers::sign(crate::helpers::TEST_SECRET, body),
        secret: SecretSlot::Current,
    };
    let new_event = received
        .to_new_event(derived_id(&["delivery", "42", delivery_id]), Some(body.to_vec().into()))
        .expect("encodes");
    let result = store
        .append(&streams::delivery(delivery_id), ExpectedVersion::NoStream, vec![new_event])
        .await
        .expect("appended");
    result.first_position.expect("a position").0
}

async fn append<E: DomainEvent>(app: &LogWriter, trigger: uuid::Uuid, event: &E) {
    let event = event.to_new_event(uuid::Uuid::new_v4(), None).expect("encodes");
    app.store.append(&streams::trigger(trigger), ExpectedVersion::Any, vec![event]).await.expect("appended");
}

/// One of the rebuild test's triggers, ending one of four ways: rejected,
/// failed, abandoned after a retry, finished.
fn bulk_trigger(i: u64) -> Vec<hookwise::store::NewEvent> {
    use hookwise::events::*;
    let trigger_id = uuid::Uuid::from_u128(0xb01c_0000 + u128::from(i));
    let kind = [TriggerKind::IssueComment, TriggerKind::Label, TriggerKind::PrComment][(i % 3) as usize];
    let mut events: Vec<hookwise::store::NewEvent> = Vec::new();
    fn push<T: DomainEvent>(events: &mut Vec<hookwise::store::NewEvent>, event: T) {
        events.push(event.to_new_event(uuid::Uuid::new_v4(), None).expect("encodes"));
    }
    push(
        &mut events,
        TriggerDetected {
            trigger_id,
            kind,
            repository: RepositoryRef { id: 900001, full_name: "acme/widgets".into() },
            installation_id: 1,
            number: i,
            requester: SenderRef { id: i % 7, login: format!("user-{}", i % 7), kind: "User".into() },
            comment_id: Some(i),
            message: "@openhands please".into(),
            title: None,
            head_branch: None,
            head_sha: None,
            path: None,
            line: None,
            thread_id: None,
            failed_workflows: Vec::new(),
            // Written before TriggerDetected carried the GUID: read from the old stream name.
            delivery_stream: format!("delivery-7-bulk-0-{i}"),
            delivery_id: None,
            delivery_position: 1 + i,
            repository_settings: None,
        },
    );
    let granted = !i.is_multiple_of(4);
    push(
        &mut events,
        PermissionChecked { trigger_id, login: "user".into(), permission: "write".into(), granted, granted_by: None },
    );
    if !granted {
        push(
            &mut events,
            TriggerRejected { trigger_id, reason: "permission_denied".into(), message: "read only".into() },
        );
        return events;
    }
    push(&mut events, ReactionAdded { trigger_id, target: "issue_comment".into(), reaction_id: Some(i) });
    let failure = |attempt| StepFailed {
        trigger_id,
        step: "start_conversation".into(),
        attempt,
        error: "boom".into(),
        retry_at_micros: 0,
    };
    let abandoned =
        || TriggerAbandoned { trigger_id, step: "start_conversation".into(), error: "gave up".into(), attempts: 8 };
    if i % 4 == 2 {
        push(&mut events, failure(1));
        push(&mut events, abandoned());
        push(
            &mut events,
            TriggerRetried {
                trigger_id,
                step: "start_conversation".into(),
                retry: 1,
                requested_by: "api".into(),
                resumes: Some("detected".into()),
            },
        );
        push(&mut events, failure(1));
        push(&mut events, abandoned());
        // Said where it was asked: nothing left to do.
        push(
            &mut events,
            hookwise::events::AbandonmentReported {
                trigger_id,
                step: "start_conversation".into(),
                comment_id: 3000 + i,
                edited: false,
            },
        );
        return events;
    }
    let conversation_id = format!("c{i}");
    push(
        &mut events,
        ConversationRequested {
            trigger_id,
            command_id: uuid::Uuid::new_v4(),
            repository: "acme/widgets".into(),
            branch: None,
        },
    );
    push(
        &mut events,
        ConversationStarted {
            trigger_id,
            conversation_id: conversation_id.clone(),
            conversation_url: format!("https://agent.example/{conversation_id}"),
        },
    );
    push(&mut events, AcknowledgementPosted { trigger_id, comment_id: 1000 + i, comment_url: None });
    let (state, reason) = if i % 4 == 1 { ("error", Some("llm".to_owned())) } else { ("finished", None) };
    push(
        &mut events,
        ConversationStatusChanged {
            trigger_id,
            conversation_id,
            agent_state: state.into(),
            reason,
            last_message: None,
        },
    );
    push(&mut events, SummaryPosted { trigger_id, comment_id: 2000 + i, outcome: state.into(), edited: false });
    events
}

/// A finished trigger, a rejected one and an abandoned one (then retried),
/// as the process manager records them.
async fn conversations_follow_their_triggers(backend: Backend) {
    use hookwise::events::{
        AcknowledgementPosted, ConversationRequested, ConversationStarted, ConversationStatusChanged,
        PermissionChecked, ReactionAdded, StepFailed, SummaryPosted, TriggerAbandoned, TriggerDetected, TriggerKind,
        TriggerRejected,
    };
    let Some(dir) = payload_examples() else { return };
    let Some(db) = TestDatabase::create(backend).await else { return };
    // The history is written before the server starts, with the process
    // manager's checkpoint past it: it is what the process manager recorded,
    // and it must not act on it again.
    let log = db.open_store().await;
    let app = LogWriter { store: log.clone() };
    let body = std::fs::read(dir.join("issue_comment/created.payload.json")).expect("corpus file");
    let mut positions = BTreeMap::new();
    for delivery in ["d-finished", "d-rejected", "d-abandoned", "d-ignored"] {
        positions.insert(delivery, append_delivery(log.as_ref(), "issue_comment", delivery, &body).await);
    }
    let (t1, t2, t3) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let detected = |trigger_id, delivery: &str, login: &str, kind| TriggerDetected {
        trigger_id,
        kind,
        repository: RepositoryRef { id: 900001, full_name: "acme/widgets".into() },
        installation_id: 1,
        number: 7,
        requester: SenderRef { id: 5, login: login.into(), kind: "User".into() },
        comment_id: Some(11),
        message: "@openhands please fix".into(),
        title: None,
        head_branch: None,
        head_sha: None,
        path: None,
        line: None,
        thread_id: None,
        failed_workflows: Vec::new(),
        delivery_stream: streams::delivery(delivery),
        delivery_id: Some(delivery.to_owned()),
        delivery_position: positions[delivery],
        repository_settings: None,
    };
    append(&app, t1, &detected(t1, "d-finished", "alice", TriggerKind::IssueComment)).await;
    append(
        &app,
        t1,
        &PermissionChecked {
            trigger_id: t1,
            login: "alice".into(),
            permission: "write".into(),
            granted: true,
            granted_by: None,
        },
    )
    .await;
    append(&app, t1, &ReactionAdded { trigger_id: t1, target: "comment".into(), reaction_id: Some(1) }).await;
    append(
        &app,
        t1,
        &ConversationRequested {
            trigger_id: t1,
            command_id: uuid::Uuid::new_v4(),
            repository: "acme/widgets".into(),
            branch: None,
        },
    )
    .await;
    append(
        &app,
        t1,
        &ConversationStarted {
            trigger_id: t1,
            conversation_id: "conv-1".into(),
            conversation_url: "https://agent.example/conversations/conv-1".into(),
        },
    )
    .await;
    append(&app, t1, &AcknowledgementPosted { trigger_id: t1, comment_id: 1, comment_url: None }).await;
    append(
        &app,
        t1,
        &ConversationStatusChanged {
            trigger_id: t1,
            conversation_id: "conv-1".into(),
            agent_state: "finished".into(),
            reason: None,
            last_message: Some("done".into()),
        },
    )
    .await;
    append(&app, t1, &SummaryPosted { trigger_id: t1, comment_id: 2, outcome: "finished".into(), edited: false }).await;

    append(&app, t2, &detected(t2, "d-rejected", "mallory", TriggerKind::IssueComment)).await;
    append(
        &app,
        t2,
        &PermissionChecked {
            trigger_id: t2,
            login: "mallory".into(),
            permission: "read".into(),
            granted: false,
            granted_by: None,
        },
    )
    .await;
    append(
        &app,
        t2,
        &TriggerRejected {
            trigger_id: t2,
            reason: "mallory has read permission".into(),
            message: "you need write permission".into(),
        },
    )
    .await;

    append(&app, t3, &detected(t3, "d-abandoned", "alice", TriggerKind::Label)).await;
    append(
        &app,
        t3,
        &StepFailed {
            trigger_id: t3,
            step: "start_conversation".into(),
            attempt: 1,
            error: "agent down".into(),
            retry_at_micros: 0,
        },
    )
    .await;
    append(
        &app,
        t3,
        &TriggerAbandoned {
            trigger_id: t3,
            step: "start_conversation".into(),
            error: "agent unreachable after 8 attempts".into(),
            attempts: 8,
        },
    )
    .await;
    let (t1, t2, t3) = (t1.to_string(), t2.to_string(), t3.to_string());
    let head = log.head().await.expect("head");
    let sql = SqlDb::connect(&db.url).await.expect("SQL database");
    sql.migrate("checkpoints", hookwise::runner::CHECKPOINT_MIGRATIONS).await.expect("migrated");
    sql.write(vec![hookwise::sql::Statement::new(
        "INSERT INTO checkpoints (name, position, updated_at) VALUES (?, ?, 0)",
        hookwise::sql_params![hookwise::process::NAME, head.0],
    )])
    .await
    .expect("process manager checkpoint");
    log.close().await;
    let app = TestApp::spawn_on(db, &["--api-token", TOKEN]).await;
    caught_up(&app).await;

    let (status, finished) = get(&app, &format!("/api/v1/conversations/{t1}")).await;
    assert_eq!(status, 200, "{finished}");
    assert_eq!(finished["status"], "finished");
    assert_eq!(finished["kind"], "issue_comment");
    assert_eq!(finished["requester"], "alice");
    assert_eq!(finished["number"], 7);
    assert_eq!(finished["conversation_id"], "conv-1");
    assert_eq!(finished["conversation_url"], "https://agent.example/conversations/conv-1");
    for step in [
        "detected_at",
        "permission_checked_at",
        "reacted_at",
        "requested_at",
        "started_at",
        "acknowledged_at",
        "summary_posted_at",
        "finished_at",
    ] {
        assert!(finished[step].is_string(), "{step}: {finished}");
    }
    assert!(finished["time_to_acknowledgement_ms"].is_u64(), "{finished}");

    let (_, rejected) = get(&app, &format!("/api/v1/conversations/{t2}")).await;
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["reason"], "mallory has read permission");
    let (_, abandoned) = get(&app, &format!("/api/v1/conversations/{t3}")).await;
    assert_eq!(abandoned["status"], "abandoned");
    assert_eq!(abandoned["last_error"], "agent down");
    assert_eq!(abandoned["reason"], "agent unreachable after 8 attempts");

    // What became of each delivery.
    let deliveries = all_pages(&app, "/api/v1/deliveries", 50).await;
    let outcome = |id: &str| deliveries.iter().find(|d| d["delivery_id"] == id).map(|d| d["outcome"].clone());
    assert_eq!(outcome("d-finished"), Some(json!("trigger")));
    assert_eq!(outcome("d-rejected"), Some(json!("rejected")));
    assert_eq!(outcome("d-abandoned"), Some(json!("trigger")));
    assert_eq!(outcome("d-ignored"), Some(json!("ignored")));
    let rejected_delivery = deliveries.iter().find(|d| d["delivery_id"] == "d-rejected").expect("row");
    assert_eq!(rejected_delivery["trigger_id"], t2.as_str());
    assert_eq!(rejected_delivery["reason"], "mallory has read permission");

    // Filters and statistics.
    let (_, by_status) = get(&app, "/api/v1/conversations?status=abandoned").await;
    assert_eq!(by_status["items"].as_array().map(Vec::len), Some(1));
    let (_, by_sender) = get(&app, "/api/v1/conversations?sender=alice").await;
    assert_eq!(by_sender["items"].as_array().map(Vec::len), Some(2));
    // Kinds as the trigger's events spell them (`TriggerKind`).
    let (status, by_kind) = get(&app, "/api/v1/conversations?kind=label").await;
    assert_eq!(status, 200, "{by_kind}");
    let labelled: Vec<&Value> = by_kind["items"].as_array().map(|items| items.iter().collect()).unwrap_or_default();
    assert_eq!(labelled.len(), 1, "{by_kind}");
    assert_eq!((labelled[0]["trigger_id"].as_str(), labelled[0]["kind"].as_str()), (Some(t3.as_str()), Some("label")));
    let (_, by_kind) = get(&app, "/api/v1/conversations?kind=issue_comment").await;
    assert_eq!(by_kind["items"].as_array().map(Vec::len), Some(2), "{by_kind}");
    let (status, unknown) = get(&app, "/api/v1/conversations?kind=issue_label").await;
    assert_eq!((status, unknown["error"].as_str()), (400, Some("invalid_parameter")), "{unknown}");
    let (status, stats) = get(&app, "/api/v1/stats/triggers").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["total"], 3);
    assert_eq!(stats["acknowledged"], 1);
    assert_eq!(stats["median_time_to_acknowledgement_ms"], finished["time_to_acknowledgement_ms"]);
    assert_eq!(
        stats["by_kind_and_status"],
        json!([{"kind": "issue_comment", "status": "finished", "count": 1},
               {"kind": "issue_comment", "status": "rejected", "count": 1},
               {"kind": "label", "status": "abandoned", "count": 1}])
    );
    let (_, audit) = get(&app, "/api/v1/audit?kind=trigger_abandoned").await;
    assert_eq!(audit["items"][0]["target"], "acme/widgets#7", "{audit}");

    // Retry: only an abandoned trigger; the event lands on the trigger's stream.
    assert_eq!(post(&app, &format!("/api/v1/admin/triggers/{t1}/retry")).await.0, 409);
    assert_eq!(post(&app, "/api/v1/admin/triggers/nope/retry").await.0, 404);
    let (status, retried) = post(&app, &format!("/api/v1/admin/triggers/{t3}/retry")).await;
    assert_eq!(status, 200, "{retried}");
    caught_up(&app).await;
    let (_, again) = get(&app, &format!("/api/v1/conversations/{t3}")).await;
    assert_eq!(again["retries"], 1, "{again}");
    let stream = app.store.read_stream(&format!("trigger-{t3}"), 0, 100).await.expect("stream");
    let retried = stream.iter().find_map(|e| hookwise::events::TriggerRetried::decode(e).ok()).expect("TriggerRetried");
    assert_eq!((retried.step.as_str(), retried.retry, retried.requested_by.as_str()), ("start_conversation", 1, "api"));
    app.stop().await;
}

/// Audit and delivery rows spread over many blocks of 512 positions, with
/// times that go back and forth: every `since`/`until` window returns exactly
/// the rows a full scan would (the per-block time ranges only narrow where
/// the query looks).
async fn time_windows_find_every_row_whatever_order_the_times_come_in(backend: Backend) {
    use hookwise::projections::read_model::Tables;
    use hookwise::store::{Position, RecordedEvent};

    let Some(app) = spawn(backend).await else { return };
    caught_up(&app).await;
    const SECOND: i64 = 1_000_000;
    // 2026-01-01T00:00:00Z.
    let base = 1_767_225_600 * SECOND;
    // Positions far past the (empty) log's head, so the live handlers never touch them.
    let rows: Vec<(u64, i64)> =
        (0..40u64).map(|k| (1_000_000 + k * 1_500, base + ((k * 17) % 40) as i64 * SECOND)).collect();
    let mut statements = Vec::new();
    for &(position, time) in &rows {
        let received = WebhookReceived {
            delivery_id: format!("window-{position}"),
            hook_id: "1".into(),
            event: "push".into(),
            action: None,
            installation_id: None,
            repository: None,
            sender: None,
            signature: "sha256=00".into(),
            secret: SecretSlot::Current,
        };
        let new_event = received.to_new_event(derived_id(&["window", &position.to_string()]), None).expect("event");
        let event = RecordedEvent {
            position: Position(position),
            stream: streams::delivery(&received.delivery_id),
            version: 0,
            event_id: new_event.event_id,
            event_type: new_event.event_type,
            schema_version: new_event.schema_version,
            data: new_event.data,
            payload: None,
            recorded_at_micros: time,
        };
        for model in read_models().into_iter().filter(|m| ["audit_log", "deliveries"].contains(&m.name())) {
            statements.extend(model.apply(&Tables::live(), &event).expect("statements"));
        }
    }
    let db = SqlDb::connect(&app.db.url).await.expect("SQL database");
    db.write(statements).await.expect("rows written");

    let at = |seconds: i64| hookwise::api::v1::iso(base + seconds * SECOND);
    let windows = [(Some(0), None), (Some(13), None), (None, Some(7)), (Some(5), Some(30)), (Some(39), Some(40))];
    for (since, until) in windows.into_iter().chain([(Some(41), None), (None, Some(0))]) {
        let mut query = String::new();
        if let Some(s) = since {
            query.push_str(&format!("&since={}", at(s)));
        }
        if let Some(u) = until {
            query.push_str(&format!("&until={}", at(u)));
        }
        let expected: Vec<u64> = rows
            .iter()
            .filter(|(_, time)| since.is_none_or(|s| *time >= base + s * SECOND))
            .filter(|(_, time)| until.is_none_or(|u| *time < base + u * SECOND))
            .map(|(position, _)| *position)
            .collect();
        for list in ["audit", "deliveries"] {
            let page = all_pages(&app, &format!("/api/v1/{list}?{}", &query[1..]), 7).await;
            let found: Vec<u64> = page.iter().filter_map(|row| row["position"].as_u64()).collect();
            assert_eq!(found, expected, "{list} with since={since:?} until={until:?}");
        }
    }
    app.stop().await;
}
