//! A repository's `.github/hookwise.yml`: read from its default branch with
//! the installation's token, applied to the deliveries after it in the log,
//! re-read on a push that touches it; an invalid one leaves the operator's
//! defaults and is shown. wiremock stands in for GitHub and the agent runtime.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use hookwise::events::{DomainEvent, PermissionChecked, RepositorySettingsRead, TriggerDetected, TriggerRejected};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::{backend_tests, eventually, Backend, TestApp, TestDatabase};
use crate::query_api::{get, TOKEN};
use crate::triggers::{base_payload, Fakes, INSTALLATION, REPO};

backend_tests!(
    a_repository_file_changes_the_label_and_lets_a_team_ask,
    the_file_is_read_from_the_default_branch_not_a_pull_requests_head,
    an_invalid_file_leaves_the_defaults_and_shows_its_problem,
    a_push_that_changes_the_file_applies_to_the_next_delivery,
);

const REPOSITORY_ID: u64 = 186853002;
const LIMIT: Duration = Duration::from_secs(20);
const CONTENTS: &str = "/repos/Codertocat/Hello-World/contents/.github/hookwise.yml";

/// The contents API's answer for the file, changeable while the test runs.
#[derive(Clone)]
struct SettingsFile(Arc<Mutex<(String, String)>>);

impl SettingsFile {
    fn new(sha: &str, text: &str) -> Self {
        SettingsFile(Arc::new(Mutex::new((sha.to_owned(), text.to_owned()))))
    }

    fn set(&self, sha: &str, text: &str) {
        *self.0.lock().expect("not poisoned") = (sha.to_owned(), text.to_owned());
    }
}

impl Respond for SettingsFile {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let (sha, text) = self.0.lock().expect("not poisoned").clone();
        contents(&sha, &text)
    }
}

fn contents(sha: &str, text: &str) -> ResponseTemplate {
    // GitHub wraps the base64 at 60 characters.
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    let wrapped: Vec<String> = encoded.as_bytes().chunks(60).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    ResponseTemplate::new(200).set_body_json(json!({
        "type": "file", "encoding": "base64", "path": ".github/hookwise.yml", "sha": sha,
        "size": text.len(), "content": wrapped.join("\n"),
    }))
}

/// The file on the default branch `main` (asked by name, or as GitHub's default).
async fn serve_on_main(fakes: &Fakes, file: &SettingsFile) {
    for by_name in [true, false] {
        let mock = Mock::given(method("GET")).and(path(CONTENTS));
        let mock = if by_name { mock.and(query_param("ref", "main")) } else { mock.and(query_param_is_missing("ref")) };
        mock.respond_with(file.clone()).mount(&fakes.github).await;
    }
}

async fn spawn(backend: Backend, fakes: &Fakes) -> Option<TestApp> {
    let db = TestDatabase::create(backend).await?;
    let mut flags = fakes.flags();
    flags.extend(["--api-token".to_owned(), TOKEN.to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Some(TestApp::spawn_on(db, &flags).await)
}

fn with_default_branch(mut payload: Value) -> Value {
    payload["repository"]["default_branch"] = json!("main");
    payload
}

/// The App installed on the repository: its file is read before anyone asks there.
async fn install(app: &TestApp) {
    let payload = json!({
        "action": "created",
        "installation": {"id": INSTALLATION, "account": {"login": "Codertocat", "type": "User"}},
        "repositories": [{"id": REPOSITORY_ID, "full_name": REPO}],
        "sender": {"id": 21031067, "login": "Codertocat", "type": "User"},
    });
    let body = serde_json::to_vec(&payload).expect("JSON");
    assert_eq!(app.deliver("installation", "d-installed", &body).await.status(), 200);
}

/// The repository's settings as `/api/v1/installations/{id}` shows them, once their blob is `sha`.
async fn settings_shown(app: &TestApp, sha: &str) -> Value {
    let url = format!("/api/v1/installations/{INSTALLATION}");
    eventually(LIMIT, &format!("the settings of blob {sha} in the API"), || async {
        let (status, body) = get(app, &url).await;
        status == 200 && body["repository_settings"][0]["blob_sha"] == sha
    })
    .await;
    let (_, body) = get(app, &url).await;
    body["repository_settings"][0].clone()
}

fn labeled(label: &str, sender: &str, updated_at: &str) -> Vec<u8> {
    let mut payload = with_default_branch(base_payload());
    payload["action"] = json!("labeled");
    payload["label"] = json!({"name": label});
    payload["sender"] = json!({"id": 77, "login": sender, "type": "User"});
    payload["issue"] = json!({"number": 1, "title": "Spelling error", "updated_at": updated_at});
    serde_json::to_vec(&payload).expect("JSON")
}

fn commented(comment_id: u64, sender: &str, body: &str, on_pull_request: bool) -> Vec<u8> {
    let mut payload = with_default_branch(base_payload());
    payload["action"] = json!("created");
    payload["sender"] = json!({"id": comment_id, "login": sender, "type": "User"});
    payload["issue"] = json!({"number": 1, "title": "Spelling error", "updated_at": "2019-05-15T15:20:21Z"});
    if on_pull_request {
        payload["issue"]["pull_request"] = json!({"url": "https://api.github.com/repos/x/y/pulls/1"});
    }
    payload["comment"] = json!({"id": comment_id, "body": body});
    serde_json::to_vec(&payload).expect("JSON")
}

async fn events<E: DomainEvent>(app: &TestApp) -> Vec<E> {
    app.log().await.iter().filter(|e| e.event_type == E::TYPE).map(|e| E::decode(e).expect("decodes")).collect()
}

/// The events of type `E`, once there are `count`.
async fn wait_for_events<E: DomainEvent>(app: &TestApp, count: usize) -> Vec<E> {
    eventually(LIMIT, &format!("{count} {}", E::TYPE), || async { events::<E>(app).await.len() >= count }).await;
    events(app).await
}

async fn permission_is(fakes: &Fakes, login: &str, permission: &str) {
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/collaborators/{login}/permission")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"permission": permission})))
        .mount(&fakes.github)
        .await;
}

async fn a_repository_file_changes_the_label_and_lets_a_team_ask(backend: Backend) {
    let fakes = Fakes::start("read").await;
    fakes.accept_comments().await;
    let file = SettingsFile::new(
        "blob-1",
        "label: agent-fix\nallow:\n  - acme/helpers\ninstructions: Keep the British spelling.\n",
    );
    serve_on_main(&fakes, &file).await;
    permission_is(&fakes, "alice", "read").await;
    permission_is(&fakes, "mallory", "read").await;
    Mock::given(method("GET"))
        .and(path("/orgs/acme/teams/helpers/memberships/alice"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"state": "active", "role": "member"})))
        .mount(&fakes.github)
        .await;
    Mock::given(method("GET"))
        .and(path("/orgs/acme/teams/helpers/memberships/mallory"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})))
        .mount(&fakes.github)
        .await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    install(&app).await;
    let shown = settings_shown(&app, "blob-1").await;
    assert_eq!(shown["status"], "in_force", "{shown}");

    // The operator's label no longer asks here; the repository's does.
    assert_eq!(app.deliver("issues", "d-old-label", &labeled("openhands", "alice", "t1")).await.status(), 200);
    assert_eq!(app.deliver("issues", "d-new-label", &labeled("agent-fix", "alice", "t2")).await.status(), 200);
    let detected = wait_for_events::<TriggerDetected>(&app, 1).await;
    assert_eq!(detected.len(), 1, "only the repository's label asked");
    assert_eq!(detected[0].delivery_id.as_deref(), Some("d-new-label"));
    let in_force = detected[0].repository_settings.as_ref().expect("the settings in force are recorded");
    assert_eq!(in_force.blob_sha, "blob-1");
    // The explanation says so, by the repository's label.
    let (status, why) = get(&app, "/api/v1/deliveries/d-old-label/explanation").await;
    assert_eq!((status, &why["asks"]), (200, &json!(false)), "{why}");
    assert_eq!(why["ways"][0]["reason"], "the label `openhands` is not the trigger label `agent-fix`", "{why}");

    // alice has only read permission but is an active member of acme/helpers.
    let checked = wait_for_events::<PermissionChecked>(&app, 1).await;
    assert_eq!((checked[0].granted, checked[0].granted_by.as_deref()), (true, Some("team:acme/helpers")));
    let started = fakes.wait_for("POST", "/api/conversations", 1).await;
    let request: Value = serde_json::from_slice(&started[0].body).expect("JSON");
    let instructions = request["conversation_instructions"].as_str().expect("instructions");
    assert!(instructions.contains("Keep the British spelling."), "{instructions}");

    // mallory is in no listed team: rejected, silently.
    let mention = commented(9300, "mallory", "@openhands please fix", false);
    assert_eq!(app.deliver("issue_comment", "d-mallory", &mention).await.status(), 200);
    let rejected = wait_for_events::<TriggerRejected>(&app, 1).await;
    assert_eq!(rejected[0].reason, "permission_denied");
    assert!(rejected[0].message.contains("allow"), "{}", rejected[0].message);
    let checked = wait_for_events::<PermissionChecked>(&app, 2).await;
    assert_eq!(
        (checked[1].login.as_str(), checked[1].granted, checked[1].granted_by.as_deref()),
        ("mallory", false, None)
    );
    assert!(fakes.requests("POST", "/issues/comments/9300/reactions").await.is_empty(), "no reaction to a denial");
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "only alice's request was answered");
    app.stop().await;
}

async fn the_file_is_read_from_the_default_branch_not_a_pull_requests_head(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    serve_on_main(&fakes, &SettingsFile::new("blob-main", "mention: '@helper-bot'\n")).await;
    Mock::given(method("GET"))
        .and(path(CONTENTS))
        .and(query_param("ref", "feature"))
        .respond_with(contents("blob-head", "mention: '@someone-else'\n"))
        .mount(&fakes.github)
        .await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    // A comment on a pull request whose head is `feature` is the first the repository sees.
    let mut first: Value = serde_json::from_slice(&commented(9400, "Codertocat", "just a remark", true)).expect("JSON");
    first["pull_request"] = json!({"number": 1, "head": {"ref": "feature", "sha": "abc"}});
    assert_eq!(
        app.deliver("issue_comment", "d-remark", &serde_json::to_vec(&first).expect("JSON")).await.status(),
        200
    );
    let read = wait_for_events::<RepositorySettingsRead>(&app, 1).await;
    assert_eq!((read[0].blob_sha.as_deref(), read[0].branch.as_deref()), (Some("blob-main"), Some("main")));

    let asks_head = commented(9401, "Codertocat", "@someone-else fix it", true);
    assert_eq!(app.deliver("issue_comment", "d-head-handle", &asks_head).await.status(), 200);
    let asks_main = commented(9402, "Codertocat", "@helper-bot fix it", true);
    assert_eq!(app.deliver("issue_comment", "d-main-handle", &asks_main).await.status(), 200);
    let detected = wait_for_events::<TriggerDetected>(&app, 1).await;
    assert_eq!(detected.len(), 1);
    assert_eq!(detected[0].comment_id, Some(9402), "the default branch's handle asks");
    let reads = fakes.requests("GET", "/contents/.github/hookwise.yml").await;
    assert!(!reads.is_empty());
    for request in reads {
        assert_eq!(request.url.query(), Some("ref=main"), "never the pull request's head");
    }
    app.stop().await;
}

async fn an_invalid_file_leaves_the_defaults_and_shows_its_problem(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    serve_on_main(&fakes, &SettingsFile::new("blob-bad", "lable: agent-fix\n")).await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    install(&app).await;
    let shown = settings_shown(&app, "blob-bad").await;
    assert_eq!(shown["status"], "invalid", "{shown}");
    assert!(shown["problem"].as_str().is_some_and(|p| p.contains("lable")), "{shown}");
    eventually(LIMIT, "an audit entry of the invalid file", || async {
        let (_, audit) = get(&app, "/api/v1/audit?kind=repository_settings_invalid").await;
        audit["items"][0]["repository"] == REPO
    })
    .await;

    // The operator's label still asks.
    assert_eq!(app.deliver("issues", "d-label", &labeled("openhands", "Codertocat", "t1")).await.status(), 200);
    let detected = wait_for_events::<TriggerDetected>(&app, 1).await;
    assert_eq!(detected[0].repository_settings, None, "the operator's settings alone");
    let checked = wait_for_events::<PermissionChecked>(&app, 1).await;
    assert_eq!(checked[0].granted_by.as_deref(), Some("permission"));
    app.stop().await;
}

async fn a_push_that_changes_the_file_applies_to_the_next_delivery(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    let file = SettingsFile::new("blob-1", "label: first-label\n");
    serve_on_main(&fakes, &file).await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    install(&app).await;
    settings_shown(&app, "blob-1").await;

    file.set("blob-2", "label: second-label\n");
    let push = |branch: &str, touched: &str| {
        let mut payload = with_default_branch(base_payload());
        payload["ref"] = json!(format!("refs/heads/{branch}"));
        payload["after"] = json!(format!("sha-{branch}-{touched}"));
        payload["commits"] = json!([{"id": "c1", "added": [], "removed": [], "modified": [touched]}]);
        serde_json::to_vec(&payload).expect("JSON")
    };
    // Neither a push to another branch nor one that leaves the file alone reads it again.
    assert_eq!(app.deliver("push", "d-push-other", &push("feature", ".github/hookwise.yml")).await.status(), 200);
    assert_eq!(app.deliver("push", "d-push-readme", &push("main", "README.md")).await.status(), 200);
    assert_eq!(app.deliver("issues", "d-first", &labeled("first-label", "Codertocat", "t1")).await.status(), 200);
    wait_for_events::<TriggerDetected>(&app, 1).await;
    assert_eq!(fakes.requests("GET", "/contents/.github/hookwise.yml").await.len(), 1);

    assert_eq!(app.deliver("push", "d-push", &push("main", ".github/hookwise.yml")).await.status(), 200);
    settings_shown(&app, "blob-2").await;
    assert_eq!(app.deliver("issues", "d-old", &labeled("first-label", "Codertocat", "t2")).await.status(), 200);
    assert_eq!(app.deliver("issues", "d-new", &labeled("second-label", "Codertocat", "t3")).await.status(), 200);
    let detected = wait_for_events::<TriggerDetected>(&app, 2).await;
    let asked: Vec<_> = detected.iter().map(|d| d.delivery_id.as_deref().unwrap_or("")).collect();
    assert_eq!(asked, vec!["d-first", "d-new"]);
    assert_eq!(detected[1].repository_settings.as_ref().map(|s| s.blob_sha.as_str()), Some("blob-2"));
    app.stop().await;
}
