//! The executor performs several commands at once: one trigger's slow GitHub
//! call holds up no other trigger, and two steps of the same trigger still
//! never run at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookwise::events::{DomainEvent, TriggerDetected};
use hookwise::process::outbox;
use hookwise::sql::{SqlDb, SqlValue};
use hookwise::triggers::Step;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::{backend_tests, eventually, Backend, TestApp, TestDatabase};
use crate::triggers::{comment_payload, Fakes, INSTALLATION, REPO};

backend_tests!(
    two_triggers_are_answered_while_a_third_ones_github_call_hangs,
    a_second_command_of_a_trigger_waits_for_the_one_in_flight,
    the_permission_is_asked_while_the_installation_check_is_in_flight,
    one_installations_token_request_hanging_holds_up_no_other_installation,
    the_issue_and_its_comments_are_read_at_once,
    a_step_outlasting_its_lease_is_not_started_again_beside_itself,
);

/// Longer than it takes to answer two triggers, far shorter than the test's
/// limit (the server's shutdown waits for the hung call).
const HANG: Duration = Duration::from_secs(15);

/// Every trigger here is on issue #1: `parallel`, so that they wait for no
/// line (`HOOKWISE_PER_THREAD`), only for the executor.
async fn spawn(backend: Backend, fakes: &Fakes) -> Option<TestApp> {
    let db = TestDatabase::create(backend).await?;
    let mut flags = fakes.flags();
    flags.extend(["--per-thread".to_owned(), "parallel".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Some(TestApp::spawn_on(db, &flags).await)
}

fn count(log: &[hookwise::store::RecordedEvent], event_type: &str) -> usize {
    log.iter().filter(|e| e.event_type == event_type).count()
}

async fn two_triggers_are_answered_while_a_third_ones_github_call_hangs(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    // The 👀 on comment 9603 hangs (before the others' generic answer).
    let hanging = format!("/repos/{REPO}/issues/comments/9603/reactions");
    Mock::given(method("POST"))
        .and(path(hanging.as_str()))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 78, "content": "eyes"})).set_delay(HANG))
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    let Some(app) = spawn(backend, &fakes).await else { return };

    assert_eq!(app.deliver("issue_comment", "d-hang", &comment_payload(9603, "@openhands one")).await.status(), 200);
    fakes.wait_for("POST", &hanging, 1).await;
    for comment in [9601, 9602] {
        let body = comment_payload(comment, "@openhands two");
        assert_eq!(app.deliver("issue_comment", &format!("d-{comment}"), &body).await.status(), 200);
    }

    // Both acknowledgements are posted while the third trigger's call still hangs.
    eventually(Duration::from_secs(20), "two acknowledgements", || async {
        count(&app.log().await, "AcknowledgementPosted") == 2
    })
    .await;
    let log = app.log().await;
    assert_eq!(count(&log, "ReactionAdded"), 2, "the hung 👀 is not answered yet");
    for comment in [9601, 9602] {
        let path = format!("/issues/comments/{comment}/reactions");
        assert_eq!(fakes.requests("POST", &path).await.len(), 1, "the 👀 on {comment}");
    }
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 2);
    assert_eq!(count(&log, TriggerDetected::TYPE), 3);
    app.stop().await;
}

/// A command of the trigger (a duplicate 👀, as a crash between a step's
/// result and its row's release can leave behind) enqueued while the
/// trigger's acknowledgement is in flight is claimed only once that one is
/// released: its row is done after the acknowledgement's.
async fn a_second_command_of_a_trigger_waits_for_the_one_in_flight(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.answer_issue_comments_after(Duration::from_secs(2)).await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    assert_eq!(app.deliver("issue_comment", "d-order", &comment_payload(9700, "@openhands go")).await.status(), 200);
    // The acknowledgement's request has arrived: its command is in flight.
    fakes.wait_for("POST", "/issues/1/comments", 1).await;
    let detected: TriggerDetected = app.first_event().await;
    let db = SqlDb::connect(&app.db.url).await.expect("the SQL side");
    db.write(vec![outbox::enqueue(detected.trigger_id, Step::AddReaction, 1)]).await.expect("enqueued");

    let done_at = |command: uuid::Uuid| {
        let db = db.clone();
        async move {
            let rows = db
                .query(
                    "SELECT updated_at FROM outbox WHERE command_id = ? AND status = 'done'",
                    vec![SqlValue::Text(command.to_string())],
                )
                .await
                .expect("outbox rows");
            rows.first().map(|row| row.get::<i64>(0).expect("updated_at"))
        }
    };
    let acknowledgement = hookwise::process::command_id(detected.trigger_id, Step::PostAcknowledgement, 0);
    let duplicate = hookwise::process::command_id(detected.trigger_id, Step::AddReaction, 1);
    eventually(Duration::from_secs(20), "both commands done", || async {
        done_at(acknowledgement).await.is_some() && done_at(duplicate).await.is_some()
    })
    .await;
    let (acknowledged, duplicated) = (done_at(acknowledgement).await, done_at(duplicate).await);
    assert!(
        duplicated >= acknowledged,
        "the duplicate ran beside the acknowledgement: {duplicated:?} < {acknowledged:?}"
    );
    assert_eq!(fakes.requests("POST", "/reactions").await.len(), 1, "the duplicate found its 👀 done");
    app.stop().await;
}

/// Answers like `template` after `delay`, noting when each request arrived.
struct Noted {
    arrivals: Arc<Mutex<Vec<Instant>>>,
    template: ResponseTemplate,
}

impl Respond for Noted {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.arrivals.lock().expect("arrivals").push(Instant::now());
        self.template.clone()
    }
}

/// The installation check and the permission check are asked at once: the
/// permission request arrives before the (held) installation answer was sent.
async fn the_permission_is_asked_while_the_installation_check_is_in_flight(backend: Backend) {
    const HELD: Duration = Duration::from_secs(2);
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    let (installation, permission) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    Mock::given(method("GET"))
        .and(path(format!("/app/installations/{INSTALLATION}")))
        .respond_with(Noted {
            arrivals: installation.clone(),
            template: ResponseTemplate::new(200)
                .set_body_json(json!({"id": INSTALLATION, "suspended_at": null}))
                .set_delay(HELD),
        })
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/collaborators/Codertocat/permission")))
        .respond_with(Noted {
            arrivals: permission.clone(),
            template: ResponseTemplate::new(200).set_body_json(json!({"permission": "write"})),
        })
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    assert_eq!(app.deliver("issue_comment", "d-both", &comment_payload(9800, "@openhands go")).await.status(), 200);
    fakes.wait_for("POST", "/reactions", 1).await;
    let installation_asked = installation.lock().expect("arrivals")[0];
    let permission_asked = permission.lock().expect("arrivals")[0];
    assert!(
        permission_asked < installation_asked + HELD,
        "the permission was asked only after the installation's answer"
    );
    assert_eq!(count(&app.log().await, "PermissionChecked"), 1);
    app.stop().await;
}

/// The installation-token cache holds no lock across GitHub's answer: while
/// one installation's token request hangs, another installation's trigger
/// gets its token, its 👀 and its acknowledgement.
async fn one_installations_token_request_hanging_holds_up_no_other_installation(backend: Backend) {
    const OTHER: u64 = 4343;
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    let hanging = format!("/app/installations/{INSTALLATION}/access_tokens");
    Mock::given(method("POST"))
        .and(path(hanging.as_str()))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"token": "ghs_test", "expires_at": "2099-01-01T00:00:00Z"}))
                .set_delay(HANG),
        )
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/app/installations/{OTHER}/access_tokens")))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"token": "ghs_other", "expires_at": "2099-01-01T00:00:00Z"})),
        )
        .mount(&fakes.github)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/app/installations/{OTHER}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": OTHER, "suspended_at": null})))
        .mount(&fakes.github)
        .await;
    let Some(app) = spawn(backend, &fakes).await else { return };

    assert_eq!(app.deliver("issue_comment", "d-token", &comment_payload(9901, "@openhands one")).await.status(), 200);
    fakes.wait_for("POST", &hanging, 1).await;
    let mut other: serde_json::Value = serde_json::from_slice(&comment_payload(9902, "@openhands two")).expect("JSON");
    other["installation"]["id"] = json!(OTHER);
    let other = serde_json::to_vec(&other).expect("JSON");
    assert_eq!(app.deliver("issue_comment", "d-other", &other).await.status(), 200);

    eventually(Duration::from_secs(20), "the other installation's acknowledgement", || async {
        count(&app.log().await, "AcknowledgementPosted") == 1
    })
    .await;
    let reactions = fakes.requests("POST", "/reactions").await;
    assert_eq!(reactions.len(), 1);
    assert_eq!(reactions[0].url.path(), format!("/repos/{REPO}/issues/comments/9902/reactions"));
    assert_eq!(count(&app.log().await, "PermissionChecked"), 1, "the hung installation's check is still waiting");
    app.stop().await;
}

/// Before a conversation starts, the issue and its latest comments are read
/// at once: the comments' request arrives before the (held) issue's answer.
async fn the_issue_and_its_comments_are_read_at_once(backend: Backend) {
    const HELD: Duration = Duration::from_secs(2);
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    let (issue, comments) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/issues/1")))
        .respond_with(Noted {
            arrivals: issue.clone(),
            template: ResponseTemplate::new(200)
                .set_body_json(json!({"title": "Spelling error in the README file", "body": "commmit"}))
                .set_delay(HELD),
        })
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/issues/1/comments")))
        .respond_with(Noted {
            arrivals: comments.clone(),
            template: ResponseTemplate::new(200).set_body_json(json!([])),
        })
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    assert_eq!(app.deliver("issue_comment", "d-reads", &comment_payload(9850, "@openhands go")).await.status(), 200);
    fakes.wait_for("POST", "/api/conversations", 1).await;
    let issue_asked = issue.lock().expect("arrivals")[0];
    let comments_asked = comments.lock().expect("arrivals")[0];
    assert!(comments_asked < issue_asked + HELD, "the comments were read only after the issue's answer");
    app.stop().await;
}

/// A step whose call outlasts its claim's lease is not claimed again by the
/// executor performing it (another instance may take it over; that is what
/// the lease is for): one acknowledgement request, one attempt.
async fn a_step_outlasting_its_lease_is_not_started_again_beside_itself(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.answer_issue_comments_after(Duration::from_secs(2)).await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let mut flags = fakes.flags();
    flags.extend(["--claim-lease-ms".to_owned(), "200".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::spawn_on(db, &flags).await;
    assert_eq!(app.deliver("issue_comment", "d-lease", &comment_payload(9950, "@openhands go")).await.status(), 200);
    eventually(Duration::from_secs(20), "the acknowledgement", || async {
        count(&app.log().await, "AcknowledgementPosted") == 1
    })
    .await;
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "one acknowledgement request");
    assert_eq!(count(&app.log().await, "StepFailed"), 0);
    app.stop().await;
}
