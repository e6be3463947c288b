//! `AGENT_RUNTIME=openhands-agent-server` against the real OpenHands agent
//! server (see `helpers::agent_server`): the adapter on its own, the webhooks
//! it posts to hookwise, and the callbacks hookwise must refuse; each trigger
//! kind from delivery to summary, and the real binary killed with SIGKILL
//! mid-run and restarted.

use std::time::{Duration, Instant};

use hookwise::agent::agent_server::AgentServer;
use hookwise::agent::settings::{AgentRuntimeKind, AgentSettings, LlmSettings};
use hookwise::agent::{AgentRuntime, ConversationRequest, RunStatus, Secret, StartOutcome, StopOutcome};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::agent_server::{
    shared_agent_server, SharedAgentServer, AGENT_SERVER_KEY, FAKE_MODEL, LLM_FAIL, TEST_REPOSITORY,
};
use crate::helpers::post_raw;

fn settings(server: &SharedAgentServer) -> AgentSettings {
    AgentSettings {
        runtime: AgentRuntimeKind::OpenhandsAgentServer,
        api_url: server.url.clone(),
        api_key: Some(Secret::new(AGENT_SERVER_KEY)),
        conversation_url: format!("{}/conversations/{{conversation_id}}", server.url),
        poll_interval: Duration::from_millis(200),
        run_timeout: Duration::from_secs(120),
        request_timeout: Duration::from_secs(60),
        llm: Some(LlmSettings {
            model: FAKE_MODEL.into(),
            api_key: Some(Secret::new("sk-fake-llm-key")),
            base_url: Some(server.llm_base_url.clone()),
        }),
        workspace_root: server.workspace_root.to_string_lossy().into_owned(),
        max_iterations: 10,
        github_web_url: server.github_web_url.clone(),
    }
}

/// A request naming itself (`hookwise-req-…`, which the fake LLM echoes).
fn request(extra: &str) -> (ConversationRequest, String) {
    let id = Uuid::new_v4();
    let token = format!("hookwise-req-{}", id.simple());
    let request = ConversationRequest {
        conversation_id: id,
        repository: TEST_REPOSITORY.into(),
        branch: None,
        pr_number: None,
        title: format!("test {token}"),
        message: format!("@openhands please fix the typo ({token}) {extra}"),
        instructions: "The README says commmit.".into(),
        github_token: Some(Secret::new(format!("ghs_test_token_{}", id.simple()))),
    };
    (request, token)
}

async fn get_json(server: &SharedAgentServer, path: &str) -> Value {
    let answer = reqwest::Client::new()
        .get(format!("{}{path}", server.url))
        .header("x-session-api-key", AGENT_SERVER_KEY)
        .send()
        .await
        .expect("the agent server answers");
    assert!(answer.status().is_success(), "GET {path}: {}", answer.status());
    answer.json().await.expect("JSON")
}

/// The agent server's conversations whose working directory is `dir`.
async fn conversations_in(server: &SharedAgentServer, dir: &str) -> usize {
    let mut count = 0;
    let mut page_id: Option<String> = None;
    loop {
        let path = match &page_id {
            Some(page) => format!("/api/conversations/search?limit=100&page_id={page}"),
            None => "/api/conversations/search?limit=100".to_owned(),
        };
        let page = get_json(server, &path).await;
        count += page["items"]
            .as_array()
            .map(|items| items.iter().filter(|c| c["workspace"]["working_dir"] == dir).count())
            .unwrap_or(0);
        match page["next_page_id"].as_str() {
            Some(next) => page_id = Some(next.to_owned()),
            None => return count,
        }
    }
}

/// The agent server's conversations told about `token` (in a message from
/// the user), whatever their ids: a second conversation for one request is
/// counted however it came about.
async fn conversations_naming(server: &SharedAgentServer, token: &str) -> usize {
    let mut count = 0;
    let mut page_id: Option<String> = None;
    loop {
        let path = match &page_id {
            Some(page) => format!("/api/conversations/search?limit=100&page_id={page}"),
            None => "/api/conversations/search?limit=100".to_owned(),
        };
        let page = get_json(server, &path).await;
        for conversation in page["items"].as_array().into_iter().flatten() {
            let Some(id) = conversation["id"].as_str() else { continue };
            let messages =
                get_json(server, &format!("/api/conversations/{id}/events/search?kind=MessageEvent&limit=100")).await;
            let told = messages["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["source"] == "user" && e.to_string().contains(token));
            count += usize::from(told);
        }
        match page["next_page_id"].as_str() {
            Some(next) => page_id = Some(next.to_owned()),
            None => return count,
        }
    }
}

/// Polls the adapter's status until the run ends.
async fn until_terminal(runtime: &AgentServer, server: &SharedAgentServer, id: &str) -> RunStatus {
    let started = Instant::now();
    loop {
        let status = runtime.status(id).await.expect("status answers");
        if status.is_terminal() {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "conversation {id} did not end: {status:?}\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_starts_once_and_finishes_with_the_finish_message() {
    let Some(server) = shared_agent_server().await else { return };
    let runtime = AgentServer::new(settings(server));
    let (request, token) = request("");
    let id = request.conversation_id.hyphenated().to_string();

    let outcome = runtime.start(&request, false).await.expect("start answers");
    assert_eq!(outcome, StartOutcome::Started { conversation_id: id.clone() });
    let dir = runtime.working_dir(&id);
    assert_eq!(conversations_in(server, &dir).await, 1, "one conversation\n{}", server.log_tail());

    match until_terminal(&runtime, server, &id).await {
        RunStatus::Finished { result: Some(result) } => assert!(result.contains(&token), "{result}"),
        other => panic!("expected Finished with the finish message, got {other:?}\n{}", server.log_tail()),
    }

    // Again, and as a retry after an unknown outcome: still one conversation,
    // told the request once.
    assert_eq!(runtime.start(&request, false).await.expect("start"), outcome);
    assert_eq!(runtime.start(&request, true).await.expect("start"), outcome);
    assert_eq!(conversations_in(server, &dir).await, 1, "still one conversation");
    let messages =
        get_json(server, &format!("/api/conversations/{id}/events/search?kind=MessageEvent&limit=100")).await;
    let from_user = messages["items"].as_array().expect("items").iter().filter(|e| e["source"] == "user").count();
    assert_eq!(from_user, 1, "the initial message was sent once: {messages}");

    // The clone is there, its remote token-free, and the token nowhere in its config.
    let token_value = request.github_token.as_ref().expect("token").expose().to_owned();
    let config = std::fs::read_to_string(format!("{dir}/.git/config")).expect("the clone's .git/config");
    assert!(!config.contains(&token_value), "the token is not in .git/config:\n{config}");
    assert!(!config.contains("credential"), "no credential helper is kept:\n{config}");
    assert!(config.contains(&format!("url = {}/{TEST_REPOSITORY}.git", server.github_web_url)), "{config}");
    assert!(std::path::Path::new(&format!("{dir}/README.md")).is_file(), "the repository was cloned");
    for entry in std::fs::read_dir("/tmp").expect("/tmp").flatten() {
        if entry.file_name().to_string_lossy().starts_with("hookwise-git-credential-") {
            let content = std::fs::read_to_string(entry.path()).unwrap_or_default();
            assert!(!content.contains(&token_value), "the credential file was removed");
        }
    }
    // Nor in the agent server's record of the commands it ran.
    let bash = get_json(server, "/api/bash/bash_events/search?limit=100&sort_order=TIMESTAMP_DESC").await;
    assert!(!bash.to_string().contains(&token_value), "the token is not in the bash history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_is_cloned_when_asked() {
    let Some(server) = shared_agent_server().await else { return };
    let runtime = AgentServer::new(settings(server));
    let (mut request, _) = request("");
    request.branch = Some("feature".into());
    let id = request.conversation_id.hyphenated().to_string();
    runtime.start(&request, false).await.expect("start answers");
    let head = std::fs::read_to_string(format!("{}/.git/HEAD", runtime.working_dir(&id))).expect("HEAD");
    assert_eq!(head.trim(), "ref: refs/heads/feature");
    until_terminal(&runtime, server, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installation_token_authenticates_the_clone_and_stays_out_of_it() {
    let Some(server) = shared_agent_server().await else { return };
    let mut over_http = settings(server);
    over_http.github_web_url = server.git_http_url.clone();
    let runtime = AgentServer::new(over_http);
    let (request, _) = request("");
    let id = request.conversation_id.hyphenated().to_string();
    let token = request.github_token.as_ref().expect("token").expose().to_owned();

    runtime.start(&request, false).await.expect("start answers");
    let expected =
        format!("Basic {}", crate::helpers::agent_server::base64(format!("x-access-token:{token}").as_bytes()));
    assert!(server.git_authorizations().contains(&expected), "the clone sent the token as GitHub wants it");
    let dir = runtime.working_dir(&id);
    assert!(std::path::Path::new(&format!("{dir}/README.md")).is_file(), "the repository was cloned over HTTP");
    let config = std::fs::read_to_string(format!("{dir}/.git/config")).expect("the clone's .git/config");
    assert!(!config.contains(&token) && !config.contains("credential") && !config.contains("extraheader"), "{config}");
    assert!(config.contains(&format!("url = {}/{TEST_REPOSITORY}.git", server.git_http_url)), "{config}");
    for entry in std::fs::read_dir("/tmp").expect("/tmp").flatten() {
        let content = std::fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(!content.contains(&token), "no file in /tmp keeps the token: {}", entry.path().display());
    }
    let bash = get_json(server, "/api/bash/bash_events/search?limit=100&sort_order=TIMESTAMP_DESC").await;
    assert!(!bash.to_string().contains(&token), "the token is not in the bash history");
    until_terminal(&runtime, server, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_llm_ends_in_failed_naming_the_state() {
    let Some(server) = shared_agent_server().await else { return };
    let runtime = AgentServer::new(settings(server));
    let (request, _) = request(LLM_FAIL);
    let id = request.conversation_id.hyphenated().to_string();
    runtime.start(&request, false).await.expect("start answers");
    match until_terminal(&runtime, server, &id).await {
        RunStatus::Failed { state, detail } => {
            assert_eq!(state, "error");
            let detail = detail.expect("the ConversationErrorEvent's code and detail");
            assert!(!detail.contains("sk-fake-llm-key"), "no secret in {detail}");
            assert!(detail.contains(':'), "code: detail, got {detail}");
        }
        other => panic!("expected Failed, got {other:?}\n{}", server.log_tail()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_llm_the_start_is_refused_and_unknown_ids_are_unknown() {
    let Some(server) = shared_agent_server().await else { return };
    let mut no_llm = settings(server);
    no_llm.llm = None;
    let (request, _) = request("");
    match AgentServer::new(no_llm).start(&request, false).await.expect("answers") {
        StartOutcome::Refused { reason } => assert!(reason.contains("AGENT_LLM_MODEL"), "{reason}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    let runtime = AgentServer::new(settings(server));
    assert_eq!(runtime.status(&Uuid::new_v4().to_string()).await.expect("answers"), RunStatus::Unknown);
}

/// A stop pauses the conversation on the real agent server (its route and key
/// accepted); a conversation it does not know cannot be stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_pauses_the_conversation_and_an_unknown_one_cannot_be_stopped() {
    let Some(server) = shared_agent_server().await else { return };
    let runtime = AgentServer::new(settings(server));
    let (request, _) = request("");
    let id = request.conversation_id.hyphenated().to_string();
    runtime.start(&request, false).await.expect("start answers");
    assert_eq!(runtime.stop(&id).await.expect("the pause answers"), StopOutcome::Stopped, "{}", server.log_tail());
    assert_eq!(runtime.stop(&id).await.expect("a second pause answers"), StopOutcome::Stopped);
    match runtime.stop(&Uuid::new_v4().to_string()).await.expect("answers") {
        StopOutcome::CannotStop { reason } => assert!(reason.contains("no longer knows"), "{reason}"),
        other => panic!("expected CannotStop, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_agent_says_what_works_and_names_the_setting_to_fix() {
    let Some(server) = shared_agent_server().await else { return };
    let lines = AgentServer::new(settings(server)).check().await;
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines.iter().all(|l| l.ok), "{lines:?}");

    let mut wrong = settings(server);
    wrong.api_key = Some(Secret::new("not-the-key"));
    wrong.llm = None;
    let lines = AgentServer::new(wrong).check().await;
    let text = format!("{lines:?}");
    assert!(!text.contains("not-the-key") && !text.contains(AGENT_SERVER_KEY), "no secret: {text}");
    let by = |check: &str| lines.iter().find(|l| l.check.starts_with(check)).expect(check).clone();
    assert!(by("AGENT_API_URL").ok, "{text}");
    assert!(!by("AGENT_API_KEY").ok && by("AGENT_API_KEY").detail.contains("AGENT_API_KEY"), "{text}");
    assert!(!by("LLM").ok && by("LLM").detail.contains("AGENT_LLM_MODEL"), "{text}");

    let mut no_root = settings(server);
    no_root.workspace_root = "/nonexistent/hookwise-workspaces".into();
    let lines = AgentServer::new(no_root).check().await;
    let root = lines.iter().find(|l| l.check.starts_with("AGENT_WORKSPACE_ROOT")).expect("root line");
    assert!(!root.ok && root.detail.contains("AGENT_WORKSPACE_ROOT"), "{lines:?}");

    let mut unreachable = settings(server);
    unreachable.api_url = "http://127.0.0.1:9".into();
    let lines = AgentServer::new(unreachable).check().await;
    assert!(!lines[0].ok && lines[0].detail.contains("AGENT_API_URL"), "{lines:?}");
}

// ---- hookwise's side: the agent server's webhooks ---------------------------

/// Like `backend_tests!`, with room for the shared agent server's start-up.
macro_rules! agent_server_backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::with_time_limit(super::$name($crate::helpers::Backend::Sqlite)).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::with_time_limit(super::$name($crate::helpers::Backend::Postgres)).await;
                }
            }
        )+
    };
}

agent_server_backend_tests!(
    a_mention_goes_from_delivery_to_the_agent_server_and_back_once,
    an_llm_that_fails_gets_a_short_reply_naming_the_state,
    an_inline_comment_works_on_the_head_branch_and_is_answered_in_its_thread,
    bad_agent_server_callbacks_are_refused_and_store_nothing,
    a_label_and_a_pull_request_comment_each_get_one_conversation_and_one_summary,
    a_sigkill_after_the_agent_server_started_the_conversation_starts_no_second_one,
);

async fn with_time_limit(body: impl std::future::Future<Output = ()>) {
    let limit = Duration::from_secs(240);
    if tokio::time::timeout(limit, body).await.is_err() {
        panic!("test timed out after {limit:?}");
    }
}

/// hookwise's flags for the agent server: GitHub from `fakes`, the runtime from `server`.
pub(crate) fn agent_server_flags(fakes: &crate::triggers::Fakes, server: Option<&SharedAgentServer>) -> Vec<String> {
    let mut flags = fakes.flags();
    let mut set = |flag: &str, value: &str| set_flag(&mut flags, flag, value);
    set("--agent-runtime", "openhands-agent-server");
    set("--agent-api-key", AGENT_SERVER_KEY);
    set("--agent-conversation-url", "https://agent.example/c/{conversation_id}");
    match server {
        Some(server) => {
            set("--agent-api-url", &server.url);
            set("--agent-llm-model", FAKE_MODEL);
            set("--agent-llm-api-key", "sk-fake-llm-key");
            set("--agent-llm-base-url", &server.llm_base_url);
            set("--agent-workspace-root", &server.workspace_root.to_string_lossy());
            set("--agent-max-iterations", "10");
            set("--github-web-url", &server.github_web_url);
        }
        None => set("--agent-api-url", "http://127.0.0.1:9"),
    }
    flags
}

/// Sets `flag` to `value` in `flags`, replacing its value if it is there.
pub(crate) fn set_flag(flags: &mut Vec<String>, flag: &str, value: &str) {
    match flags.iter().position(|f| f == flag) {
        Some(i) => flags[i + 1] = value.to_owned(),
        None => flags.extend([flag.to_owned(), value.to_owned()]),
    }
}

pub(crate) async fn spawn_app(backend: crate::helpers::Backend, flags: &[String]) -> Option<crate::helpers::TestApp> {
    let db = crate::helpers::TestDatabase::create(backend).await?;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Some(crate::helpers::TestApp::spawn_on(db, &flags).await)
}

pub(crate) async fn post_events(
    app: &crate::helpers::TestApp,
    key: Option<&str>,
    conversation: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut call = app
        .http
        .post(app.url(&format!("/agent-server/events/{conversation}")))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        call = call.header("x-session-api-key", key);
    }
    call.send().await.expect("hookwise answers")
}

/// The `AgentServerEventReceived` events of a conversation, as stored.
async fn stored_agent_events(app: &crate::helpers::TestApp, conversation_id: &str) -> Vec<Value> {
    use hookwise::events::{AgentServerEventReceived, DomainEvent};
    app.store
        .read_stream(&format!("conversation-{conversation_id}"), 0, usize::MAX)
        .await
        .expect("the conversation's stream")
        .iter()
        .map(|e| AgentServerEventReceived::decode(e).expect("an agent-server event").event)
        .collect()
}

async fn a_mention_goes_from_delivery_to_the_agent_server_and_back_once(backend: crate::helpers::Backend) {
    use hookwise::events::{ConversationStarted, ConversationStatusChanged, DomainEvent, SummaryPosted};

    let Some(server) = shared_agent_server().await else { return };
    let fakes = crate::triggers::Fakes::start("write").await;
    fakes.accept_comments().await;
    let Some(app) = spawn_app(backend, &agent_server_flags(&fakes, Some(server))).await else { return };
    let _registration = server.register(app.addr);

    let token = format!("hookwise-req-{}", Uuid::new_v4().simple());
    let comment_id = 7_000_000_000 + u64::from(rand::random::<u32>());
    let body = crate::triggers::comment_payload(comment_id, &format!("@openhands fix the typo please ({token})"));
    // The same delivery five times, and once more through a second hook.
    for _ in 0..5 {
        assert_eq!(app.deliver("issue_comment", &format!("d-{token}"), &body).await.status(), 200);
    }
    let other_hook = app
        .http
        .post(app.url("/integration/github/events"))
        .header("content-type", "application/json")
        .header("x-github-event", "issue_comment")
        .header("x-github-delivery", format!("d2-{token}"))
        .header("x-github-hook-id", "43")
        .header("x-hub-signature-256", crate::helpers::sign(crate::helpers::TEST_SECRET, &body))
        .body(body.clone())
        .send()
        .await
        .expect("answers");
    assert_eq!(other_hook.status(), 200);

    // 👀, "I'm on it" with the link, then the finish message, once.
    let summary = crate::triggers::wait_for_final_word(&fakes, Duration::from_secs(120)).await;
    let comments = fakes.requests("POST", "/issues/1/comments").await;
    let started: ConversationStarted = app.first_event().await;
    let id = started.conversation_id.clone();
    let bodies: Vec<String> = comments
        .iter()
        .map(|c| serde_json::from_slice::<Value>(&c.body).expect("JSON")["body"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(bodies.len(), 1, "one comment, edited: {bodies:?}");
    assert!(bodies[0].contains(&format!("https://agent.example/c/{id}")), "the acknowledgement links: {bodies:?}");
    assert!(summary.contains(&format!("Done: {token}")), "the summary is the finish message: {summary}");
    assert!(!fakes.requests("POST", "/reactions").await.is_empty(), "👀");

    let changed: ConversationStatusChanged = app.first_event().await;
    assert_eq!(changed.agent_state, "finished");
    assert_eq!(changed.conversation_id, id);
    assert!(changed.last_message.as_deref().is_some_and(|m| m.contains(&token)), "{changed:?}");

    // One conversation on the agent server, counted there.
    let dir = format!("{}/{id}", server.workspace_root.display());
    assert_eq!(conversations_in(server, &dir).await, 1);

    // The webhooks were stored (they may come after the summary: the run's
    // end is also seen by polling), and delivering them again stores nothing.
    let waited = Instant::now();
    let stored = loop {
        let stored = stored_agent_events(&app, &id).await;
        if stored.iter().any(|e| e["kind"] == "ConversationStateUpdateEvent" && e["value"] == "finished") {
            break stored;
        }
        assert!(waited.elapsed() < Duration::from_secs(60), "the webhooks were not stored: {stored:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let before = app.log().await.len();
    let again =
        post_events(&app, Some(AGENT_SERVER_KEY), &id.replace('-', ""), serde_json::to_vec(&stored).expect("JSON"))
            .await;
    assert_eq!(again.status(), 200);
    let receipt: Value = again.json().await.expect("JSON");
    assert_eq!(receipt, json!({"accepted": 0, "duplicates": stored.len(), "ignored": 0}));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.log().await.len(), before, "a redelivery stores nothing");
    let summaries = app.log().await.iter().filter(|e| e.event_type == SummaryPosted::TYPE).count();
    assert_eq!(summaries, 1);
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "one comment");
    assert_eq!(fakes.edits().await.len(), 1, "edited once, to the summary");
    app.stop().await;
}

async fn an_llm_that_fails_gets_a_short_reply_naming_the_state(backend: crate::helpers::Backend) {
    use hookwise::events::ConversationStatusChanged;

    let Some(server) = shared_agent_server().await else { return };
    let fakes = crate::triggers::Fakes::start("write").await;
    fakes.accept_comments().await;
    let Some(app) = spawn_app(backend, &agent_server_flags(&fakes, Some(server))).await else { return };
    let _registration = server.register(app.addr);
    let token = format!("hookwise-req-{}", Uuid::new_v4().simple());
    let comment_id = 8_000_000_000 + u64::from(rand::random::<u32>());
    let body = crate::triggers::comment_payload(comment_id, &format!("@openhands {LLM_FAIL} ({token})"));
    assert_eq!(app.deliver("issue_comment", &format!("d-{token}"), &body).await.status(), 200);

    let reply = crate::triggers::wait_for_final_word(&fakes, Duration::from_secs(120)).await;
    assert!(reply.starts_with("**Status:** failed.\n\nSorry, I stopped before finishing"), "{reply}");
    assert!(reply.contains("`error`"), "names the state: {reply}");
    assert!(reply.contains("LLMAuthenticationError"), "and the ConversationErrorEvent's code: {reply}");
    assert!(!reply.contains("sk-fake-llm-key"), "no secret: {reply}");
    let changed: ConversationStatusChanged = app.first_event().await;
    assert_eq!(changed.agent_state, "error");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "one comment");
    assert_eq!(fakes.edits().await.len(), 1, "edited once, to the reply");
    app.stop().await;
}

async fn an_inline_comment_works_on_the_head_branch_and_is_answered_in_its_thread(backend: crate::helpers::Backend) {
    use wiremock::matchers::{method, path_regex};
    use wiremock::{Mock, ResponseTemplate};

    let Some(server) = shared_agent_server().await else { return };
    let fakes = crate::triggers::Fakes::start("write").await;
    Mock::given(method("POST"))
        .and(path_regex(r"/pulls/1/comments/\d+/replies$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 601})))
        .mount(&fakes.github)
        .await;
    fakes.accept_comments().await;
    let Some(app) = spawn_app(backend, &agent_server_flags(&fakes, Some(server))).await else { return };
    let _registration = server.register(app.addr);

    let token = format!("hookwise-req-{}", Uuid::new_v4().simple());
    let comment_id = 9_000_000_000 + u64::from(rand::random::<u32>());
    let mut inline = crate::triggers::base_payload();
    inline["action"] = json!("created");
    inline["pull_request"] = json!({"number": 1, "title": "Fix", "head": {"ref": "feature", "sha": "abc"}});
    inline["comment"] = json!({"id": comment_id, "body": format!("@openhands rename this ({token})"),
        "path": "README.md", "line": 3});
    let body = serde_json::to_vec(&inline).expect("JSON");
    assert_eq!(app.deliver("pull_request_review_comment", &format!("d-{token}"), &body).await.status(), 200);

    let replies =
        fakes.wait_for_long("POST", &format!("/comments/{comment_id}/replies"), 1, Duration::from_secs(120)).await;
    let bodies: Vec<String> = replies
        .iter()
        .map(|c| serde_json::from_slice::<Value>(&c.body).expect("JSON")["body"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(bodies[0].starts_with("I'm on it!"), "{bodies:?}");
    let done = format!("Done: {token}");
    let edit = crate::triggers::wait_for_edit_containing(&fakes, &done, Duration::from_secs(120)).await;
    assert!(edit.url.path().contains("/pulls/comments/"), "the reply in the thread is edited: {}", edit.url);
    let started: hookwise::events::ConversationStarted = app.first_event().await;
    let head = std::fs::read_to_string(server.workspace_root.join(&started.conversation_id).join(".git/HEAD"))
        .expect("the clone's HEAD");
    assert_eq!(head.trim(), "ref: refs/heads/feature", "the PR's head branch was cloned");
    assert!(fakes.requests("POST", "/issues/1/comments").await.is_empty(), "the replies went to the thread");
    app.stop().await;
}

async fn bad_agent_server_callbacks_are_refused_and_store_nothing(backend: crate::helpers::Backend) {
    let fakes = crate::triggers::Fakes::start("write").await;
    let Some(app) = spawn_app(backend, &agent_server_flags(&fakes, None)).await else { return };
    let event = |n: usize| {
        json!({"kind": "MessageEvent", "id": format!("ev-{n}"), "source": "agent",
        "llm_message": {"role": "assistant", "content": [{"type": "text", "text": "x"}]}})
    };
    let batch = |n: usize| serde_json::to_vec(&(0..n).map(event).collect::<Vec<_>>()).expect("JSON");
    let unknown = Uuid::new_v4().simple().to_string();

    // A conversation hookwise started (as the executor maps one it started).
    let known = Uuid::new_v4();
    let sql = hookwise::sql::SqlDb::connect(&app.db.url).await.expect("SQL");
    let mapping = hookwise::process::map_conversation(&known.hyphenated().to_string(), Uuid::new_v4());
    sql.write(vec![mapping]).await.expect("the conversation is mapped");
    let before = app.log().await.len();
    let simple = known.simple().to_string();

    // Wrong or missing key: 401, nothing stored.
    for key in [Some("not-the-key"), None] {
        let answer = post_events(&app, key, &simple, batch(2)).await;
        assert_eq!(answer.status(), 401);
        assert_eq!(answer.json::<Value>().await.expect("JSON")["error"], "unauthorized");
    }
    let info = app.http.post(app.url("/agent-server/conversations")).json(&json!({"id": simple})).send().await;
    assert_eq!(info.expect("answers").status(), 401);

    // Malformed: 400.
    for (body, code) in
        [(&b"[{not json"[..], "invalid_json"), (b"{\"kind\":\"x\"}", "invalid_json"), (b"[1, 2]", "invalid_event")]
    {
        let answer = post_events(&app, Some(AGENT_SERVER_KEY), &simple, body.to_vec()).await;
        assert_eq!(answer.status(), 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(answer.json::<Value>().await.expect("JSON")["error"], code);
    }

    // An unknown conversation: nothing stored, counted.
    let answer = post_events(&app, Some(AGENT_SERVER_KEY), &unknown, batch(3)).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<Value>().await.expect("JSON"), json!({"accepted": 0, "duplicates": 0, "ignored": 3}));
    let answer = post_events(&app, Some(AGENT_SERVER_KEY), "not-a-uuid", batch(1)).await;
    assert_eq!(answer.json::<Value>().await.expect("JSON")["ignored"], 1);
    // ConversationInfo posts are taken and not stored.
    let info = app
        .http
        .post(app.url("/agent-server/conversations"))
        .header("x-session-api-key", AGENT_SERVER_KEY)
        .json(&json!({"id": simple, "execution_status": "running"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(info.status(), 200);
    assert_eq!(app.log().await.len(), before, "nothing was stored");

    // Over the cap on events: 413, nothing stored, known conversation or not.
    let cap = hookwise::commands::receive_agent_server_events::MAX_AGENT_SERVER_BATCH_EVENTS;
    for conversation in [&simple, &unknown] {
        let answer = post_events(&app, Some(AGENT_SERVER_KEY), conversation, batch(cap + 1)).await;
        assert_eq!(answer.status(), 413);
        let error = answer.json::<Value>().await.expect("JSON");
        assert_eq!(error["error"], "batch_too_large", "{error}");
    }
    assert_eq!(app.log().await.len(), before, "nothing was stored");

    // Up to the cap: stored once, in bounded appends; again: duplicates.
    let answer = post_events(&app, Some(AGENT_SERVER_KEY), &simple, batch(cap - 1)).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<Value>().await.expect("JSON"),
        json!({"accepted": cap - 1, "duplicates": 0, "ignored": 0})
    );
    let answer = post_events(&app, Some(AGENT_SERVER_KEY), &simple, batch(cap)).await;
    assert_eq!(
        answer.json::<Value>().await.expect("JSON"),
        json!({"accepted": 1, "duplicates": cap - 1, "ignored": 0})
    );
    assert_eq!(stored_agent_events(&app, &known.hyphenated().to_string()).await.len(), cap);
    let answer = post_events(&app, Some(AGENT_SERVER_KEY), &unknown, batch(cap)).await;
    assert_eq!(answer.json::<Value>().await.expect("JSON")["ignored"], cap);

    // 16 MiB + 1: 413, declared or streamed, never buffered whole.
    let limit = hookwise::api::MAX_AGENT_SERVER_BODY_BYTES;
    for chunked in [false, true] {
        let key = vec![format!("x-session-api-key: {AGENT_SERVER_KEY}")];
        let (status, answer) =
            post_raw(&app, &format!("/agent-server/events/{simple}"), &key, limit + 1, chunked).await;
        assert_eq!(status, 413, "chunked: {chunked}");
        assert_eq!(answer["error"], "payload_too_large");
    }
    app.stop().await;

    // Not the agent-server runtime: 503.
    let Some(v0) = spawn_app(backend, &fakes.flags()).await else { return };
    let answer = post_events(&v0, Some(AGENT_SERVER_KEY), &simple, batch(1)).await;
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.json::<Value>().await.expect("JSON")["error"], "agent_server_not_configured");
    v0.stop().await;
}

// ---- every trigger kind; a SIGKILL mid-run -----------------------------------

/// The body of each request, as text.
fn comment_bodies(requests: &[wiremock::Request]) -> Vec<String> {
    requests
        .iter()
        .map(|c| serde_json::from_slice::<Value>(&c.body).expect("JSON")["body"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// The conversation id an acknowledgement links to (`https://agent.example/c/{id}`).
fn linked_conversation(ack: &str) -> String {
    let (_, rest) = ack.split_once("https://agent.example/c/").unwrap_or_else(|| panic!("no link in {ack:?}"));
    rest.chars().take_while(|c| c.is_ascii_hexdigit() || *c == '-').collect()
}

async fn a_label_and_a_pull_request_comment_each_get_one_conversation_and_one_summary(
    backend: crate::helpers::Backend,
) {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};

    let Some(server) = shared_agent_server().await else { return };
    let fakes = crate::triggers::Fakes::start("write").await;
    let repo = crate::triggers::REPO;
    let ok = |body: Value| ResponseTemplate::new(200).set_body_json(body);
    // Issue 2 is labelled (its body names the request, for the fake LLM);
    // pull request 3 is asked in its conversation, and its head is `feature`.
    let label_token = format!("hookwise-req-{}", Uuid::new_v4().simple());
    let pr_token = format!("hookwise-req-{}", Uuid::new_v4().simple());
    let issues = [
        (2, json!({"title": "Spelling error", "body": format!("The README says commmit ({label_token})")})),
        (3, json!({"title": "Fix the typo", "body": "A pull request."})),
    ];
    for (number, issue) in issues {
        Mock::given(method("GET"))
            .and(path(format!("/repos/{repo}/issues/{number}")))
            .respond_with(ok(issue))
            .mount(&fakes.github)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/repos/{repo}/issues/{number}/comments")))
            .respond_with(ok(json!([])))
            .mount(&fakes.github)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("/repos/{repo}/issues/{number}/comments")))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 500 + number})))
            .mount(&fakes.github)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(format!("/repos/{repo}/pulls/3")))
        .respond_with(ok(json!({"head": {"ref": "feature", "sha": "abc"}})))
        .mount(&fakes.github)
        .await;
    let Some(app) = spawn_app(backend, &agent_server_flags(&fakes, Some(server))).await else { return };
    let _registration = server.register(app.addr);

    let mut label = crate::triggers::base_payload();
    label["action"] = json!("labeled");
    label["label"] = json!({"name": "openhands"});
    // A labelling is told apart by its `updated_at`: a test of its own on the
    // shared agent server needs one of its own.
    let labelled_at = format!("2026-01-01T00:00:00.{:09}Z", rand::random::<u32>() % 1_000_000_000);
    label["issue"] = json!({"number": 2, "title": "Spelling error", "updated_at": labelled_at});
    let comment_id = 6_000_000_000 + u64::from(rand::random::<u32>());
    let mut on_pr: Value = serde_json::from_slice(&crate::triggers::comment_payload(
        comment_id,
        &format!("@openhands fix the typo on this branch ({pr_token})"),
    ))
    .expect("JSON");
    on_pr["issue"]["number"] = json!(3);
    on_pr["issue"]["pull_request"] = json!({"url": format!("https://api.github.com/repos/{repo}/pulls/3")});
    // (kind, event, payload, issue number, where 👀 goes, the request's token, the branch worked on)
    let kinds = [
        ("label", "issues", label, 2, "/issues/2/reactions".to_owned(), &label_token, "main"),
        (
            "PR comment",
            "issue_comment",
            on_pr,
            3,
            format!("/issues/comments/{comment_id}/reactions"),
            &pr_token,
            "feature",
        ),
    ];
    for (kind, event, payload, ..) in &kinds {
        let body = serde_json::to_vec(payload).expect("JSON");
        let delivery = format!("d-{}", Uuid::new_v4().simple());
        assert_eq!(app.deliver(event, &delivery, &body).await.status(), 200, "{kind}");
    }

    for (kind, _, _, number, reaction, token, branch) in &kinds {
        let posted =
            fakes.wait_for_long("POST", &format!("/issues/{number}/comments"), 1, Duration::from_secs(120)).await;
        let bodies = comment_bodies(&posted);
        assert!(bodies[0].starts_with("I'm on it!"), "{kind}: {bodies:?}");
        let id = linked_conversation(&bodies[0]);
        // The summary is the finish message, written into the status comment.
        crate::triggers::wait_for_edit_containing(&fakes, &format!("Done: {token}"), Duration::from_secs(120)).await;
        let reactions = fakes.requests("POST", reaction).await;
        assert_eq!(reactions.len(), 1, "{kind}: 👀 once on {reaction}");
        assert_eq!(conversations_naming(server, token).await, 1, "{kind}: one conversation on the agent server");
        let dir = format!("{}/{id}", server.workspace_root.display());
        let head = std::fs::read_to_string(format!("{dir}/.git/HEAD")).expect("the clone's HEAD");
        assert_eq!(head.trim(), format!("ref: refs/heads/{branch}"), "{kind}: the branch worked on");
    }
    // Settle, then count: one acknowledgement and one summary each.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (kind, _, _, number, ..) in &kinds {
        assert_eq!(fakes.requests("POST", &format!("/issues/{number}/comments")).await.len(), 1, "{kind}");
    }
    assert_eq!(fakes.edits().await.len(), kinds.len(), "one edit each");
    assert!(fakes.requests("POST", "/issues/1/comments").await.is_empty());
    app.stop().await;
}

/// `hookwise serve` as a child process, its log in a file; killed when dropped.
struct ChildHookwise {
    process: std::process::Child,
    /// `http://127.0.0.1:PORT`, as it printed.
    base: String,
    log: tempfile::NamedTempFile,
}

impl ChildHookwise {
    fn start(database_url: &str, flags: &[String]) -> ChildHookwise {
        use std::io::BufRead;
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .arg("serve")
            .args(flags)
            // A killed executor's claim is taken over after half a second.
            .args(["--claim-lease-ms", "500"])
            .env("DATABASE_URL", database_url)
            .env_remove("EVENTSTORE_URL")
            .env("GITHUB_APP_WEBHOOK_SECRET", crate::helpers::TEST_SECRET)
            .env("HOOKWISE_BIND", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(log.reopen().expect("the log file"))
            .spawn()
            .expect("starting the hookwise binary");
        let stdout = process.stdout.take().expect("piped stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).expect("reading the listening line");
        let base = line.trim().strip_prefix("hookwise listening on ").map(str::to_owned);
        let child = ChildHookwise { process, base: base.unwrap_or_default(), log };
        assert!(!child.base.is_empty(), "unexpected first line {line:?}:\n{}", child.log_tail());
        child
    }

    /// SIGKILL, and reaped.
    fn kill(&mut self) {
        self.process.kill().expect("SIGKILL");
        self.process.wait().expect("reaping the child");
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for ChildHookwise {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

async fn a_sigkill_after_the_agent_server_started_the_conversation_starts_no_second_one(
    backend: crate::helpers::Backend,
) {
    use crate::helpers::agent_server::HoldingProxy;
    use crate::helpers::{read_whole_log, sign, TestDatabase, TEST_SECRET};

    let Some(server) = shared_agent_server().await else { return };
    let fakes = crate::triggers::Fakes::start("write").await;
    fakes.accept_comments().await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let mut direct = agent_server_flags(&fakes, Some(server));
    set_flag(&mut direct, "--agent-poll-interval", "200ms");
    // The first instance reaches the agent server through a proxy that keeps
    // the answer to its start.
    let proxy = HoldingProxy::start(&server.url).await;
    let mut through_proxy = direct.clone();
    set_flag(&mut through_proxy, "--agent-api-url", &proxy.url);

    // It gets no webhooks (it knows the conversation before the start is
    // answered, and would keep the ones that come before it is killed): every
    // webhook until the restart is lost.
    let mut first = ChildHookwise::start(&db.url, &through_proxy);
    let token = format!("hookwise-req-{}", Uuid::new_v4().simple());
    let comment_id = 5_000_000_000 + u64::from(rand::random::<u32>());
    let body = crate::triggers::comment_payload(comment_id, &format!("@openhands fix the typo please ({token})"));
    let delivered = reqwest::Client::new()
        .post(format!("{}/integration/github/events", first.base))
        .header("content-type", "application/json")
        .header("x-github-event", "issue_comment")
        .header("x-github-delivery", format!("d-{token}"))
        .header("x-hub-signature-256", sign(TEST_SECRET, &body))
        .body(body)
        .send()
        .await
        .expect("hookwise answers");
    assert_eq!(delivered.status(), 200);

    // The agent server took the start (the conversation is counted there);
    // hookwise is killed before it hears so.
    let waited = Instant::now();
    let held = loop {
        if let Some(held) = proxy.held() {
            break held;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "no start reached the agent server:\n{}\n{}",
            first.log_tail(),
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let id = held["conversation_id"].as_str().expect("the start names its conversation").to_owned();
    let dir = format!("{}/{id}", server.workspace_root.display());
    assert_eq!(conversations_in(server, &dir).await, 1, "the conversation started");
    assert_eq!(conversations_naming(server, &token).await, 1);
    first.kill();
    {
        let store = db.open_store().await;
        let types: Vec<String> = read_whole_log(store.as_ref())
            .await
            .into_iter()
            .filter(|e| e.stream.starts_with("trigger-"))
            .map(|e| e.event_type)
            .collect();
        assert!(
            types.iter().any(|t| t == "ConversationRequested") && !types.iter().any(|t| t == "ConversationStarted"),
            "killed between the agent server's start and hookwise's record of it: {types:?}"
        );
        store.close().await;
    }

    // The run ends while hookwise is down: the webhook saying so is lost.
    let waited = Instant::now();
    while !server
        .webhook_events(&id)
        .iter()
        .any(|e| e["kind"] == "ConversationStateUpdateEvent" && e["value"] == "finished")
    {
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "the agent server did not report the end:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Restarted on the same database (on a new port, straight to the agent server).
    let second = ChildHookwise::start(&db.url, &direct);
    let _registration = server.register_url(&second.base);
    let waited = Instant::now();
    let posted = loop {
        let posted = fakes.requests("POST", "/issues/1/comments").await;
        if !posted.is_empty() && !fakes.edits().await.is_empty() {
            break posted;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "{} comments after the restart:\n{}\n{}",
            posted.len(),
            second.log_tail(),
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(conversations_naming(server, &token).await, 1, "no second conversation on the agent server");
    let bodies = comment_bodies(&posted);
    assert!(bodies[0].starts_with("I'm on it!"), "{bodies:?}");
    assert_eq!(linked_conversation(&bodies[0]), id, "the acknowledgement links to the one conversation");
    let summary = crate::triggers::wait_for_edit_containing(&fakes, &format!("Done: {token}"), Duration::ZERO).await;
    assert!(summary.url.path().ends_with("/issues/comments/500"), "the summary is the status comment: {}", summary.url);

    // Settle, then count: one of everything.
    let store = db.open_store().await;
    let waited = Instant::now();
    let log = loop {
        let log = read_whole_log(store.as_ref()).await;
        if log.iter().any(|e| e.event_type == "SummaryPosted") {
            break log;
        }
        assert!(waited.elapsed() < Duration::from_secs(20), "no SummaryPosted:\n{}", second.log_tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "one acknowledgement, edited");
    assert_eq!(fakes.edits().await.len(), 1, "to the summary, once");
    assert_eq!(fakes.requests("POST", "/reactions").await.len(), 1, "👀 once");
    assert_eq!(conversations_naming(server, &token).await, 1, "still one conversation on the agent server");
    let count = |t: &str| log.iter().filter(|e| e.event_type == t).count();
    assert_eq!(count("ConversationStarted"), 1);
    assert_eq!(count("AcknowledgementPosted"), 1);
    assert_eq!(count("SummaryPosted"), 1);
    // No webhook it was sent said the run ended: polling saw it.
    let stored = store.read_stream(&format!("conversation-{id}"), 0, usize::MAX).await.expect("the stream");
    let stored: Vec<String> = stored.iter().map(|e| String::from_utf8_lossy(&e.data).into_owned()).collect();
    assert!(
        !stored.iter().any(|e| e.contains("\"finished\"")),
        "the end was seen by polling, not a webhook: {stored:?}"
    );
    drop(second);
    store.close().await;
}
