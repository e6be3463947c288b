//! The `openhands` adapter (the V1 App Server) against the stand-in App
//! Server: starting, following a run to its result, every scripted fault, and
//! exactly one conversation per id however an attempt's outcome went unknown;
//! and `hookwise check-agent` run as a user runs it.

use std::process::Command;
use std::time::Duration;

use hookwise::agent::app_server::AppServer;
use hookwise::agent::settings::{AgentRuntimeKind, AgentSettings};
use hookwise::agent::{AgentError, AgentRuntime, ConversationRequest, RunStatus, Secret, StartOutcome, StopOutcome};
use uuid::Uuid;

use crate::helpers::app_server::{End, Script, StandInAppServer, StartFault};

const HOOKWISE: &str = env!("CARGO_BIN_EXE_hookwise");

/// Short enough for the timeout test to take a second, long enough for a loaded machine.
const HTTP_TIMEOUT: Duration = Duration::from_secs(3);

fn settings(url: &str, key: Option<&str>) -> AgentSettings {
    AgentSettings {
        runtime: AgentRuntimeKind::Openhands,
        api_url: url.to_owned(),
        api_key: key.map(Secret::new),
        conversation_url: format!("{url}/conversations/{{conversation_id}}"),
        poll_interval: Duration::from_millis(10),
        run_timeout: Duration::from_secs(60),
        request_timeout: HTTP_TIMEOUT,
        llm: None,
        workspace_root: "/workspace".into(),
        max_iterations: 100,
        github_web_url: "https://github.com".into(),
    }
}

fn adapter(server: &StandInAppServer) -> AppServer {
    AppServer::new(settings(&server.url, Some(&server.key)))
}

fn request(pr: Option<u64>) -> ConversationRequest {
    ConversationRequest {
        conversation_id: Uuid::new_v4(),
        repository: "octo/widgets".into(),
        branch: pr.map(|_| "fix-the-thing".to_owned()),
        pr_number: pr,
        title: "Fix issue #7".into(),
        message: "@openhands please fix this".into(),
        instructions: "Issue #7: the widget breaks.".into(),
        github_token: Some(Secret::new("ghs_never_sent_to_the_app_server")),
    }
}

fn started(request: &ConversationRequest) -> StartOutcome {
    StartOutcome::Started { conversation_id: request.conversation_id.to_string() }
}

/// `status` until it is terminal (at most 20 looks), each distinct status once, in order.
async fn follow(adapter: &AppServer, id: &str) -> Vec<RunStatus> {
    let mut seen: Vec<RunStatus> = Vec::new();
    for _ in 0..20 {
        let status = adapter.status(id).await.expect("a status");
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status.is_terminal() {
            return seen;
        }
    }
    panic!("no terminal status after 20 looks: {seen:?}");
}

fn failed(state: &str, detail: Option<&str>) -> RunStatus {
    RunStatus::Failed { state: state.into(), detail: detail.map(str::to_owned) }
}

#[tokio::test]
async fn app_server_starts_and_follows_a_conversation_to_the_finish_message() {
    let server = StandInAppServer::start(Script::default()).await;
    let adapter = adapter(&server);
    let request = request(Some(42));
    assert_eq!(adapter.start(&request, false).await.expect("started"), started(&request));

    let bodies = server.start_bodies();
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    assert_eq!(body["conversation_id"], request.conversation_id.to_string());
    assert_eq!(body["selected_repository"], "octo/widgets");
    assert_eq!(body["selected_branch"], "fix-the-thing");
    assert_eq!(body["git_provider"], "github");
    assert_eq!(body["trigger"], "resolver");
    assert_eq!(body["title"], "Fix issue #7");
    assert_eq!(body["pr_number"], serde_json::json!([42]));
    assert_eq!(body["initial_message"]["role"], "user");
    assert_eq!(body["initial_message"]["run"], true);
    assert_eq!(body["initial_message"]["content"][0]["type"], "text");
    assert_eq!(body["initial_message"]["content"][0]["text"], request.initial_message());
    assert!(!body.to_string().contains("ghs_never_sent"), "the installation token is not the App Server's business");

    let id = request.conversation_id.to_string();
    assert_eq!(
        follow(&adapter, &id).await,
        vec![
            RunStatus::Starting,
            RunStatus::Running,
            RunStatus::Finished { result: Some("Fixed it: see the PR.".into()) }
        ]
    );
    // The App Server's own form of the id (hex without dashes) is accepted too.
    let hex = request.conversation_id.simple().to_string();
    assert!(matches!(adapter.status(&hex).await, Ok(RunStatus::Finished { .. })));
    assert_eq!(server.started(request.conversation_id), 1);
    assert_eq!(
        adapter.conversation_url(&id),
        format!("{}/conversations/{hex}", server.url),
        "as the App Server shows it"
    );
}

/// A stop pauses the conversation's sandbox, the App Server's documented pause.
#[tokio::test]
async fn app_server_stop_pauses_the_conversations_sandbox() {
    let server = StandInAppServer::start(Script::default()).await;
    let adapter = adapter(&server);
    let request = request(None);
    adapter.start(&request, false).await.expect("started");
    let id = request.conversation_id.to_string();
    assert!(follow(&adapter, &id).await.contains(&RunStatus::Running), "it ran");
    assert_eq!(adapter.stop(&id).await.expect("the pause answers"), StopOutcome::Stopped);
    assert_eq!(server.paused(), vec![request.conversation_id.simple().to_string()]);
    match adapter.stop(&Uuid::new_v4().to_string()).await.expect("answers") {
        StopOutcome::CannotStop { reason } => assert!(reason.contains("does not know"), "{reason}"),
        other => panic!("expected CannotStop, got {other:?}"),
    }
    assert_eq!(server.paused().len(), 1, "nothing else was paused");
}

#[tokio::test]
async fn app_server_issue_triggers_send_no_branch_nor_pr_number() {
    let server = StandInAppServer::start(Script::default()).await;
    let request = request(None);
    adapter(&server).start(&request, false).await.expect("started");
    let body = &server.start_bodies()[0];
    assert!(body.get("selected_branch").is_none() && body.get("pr_number").is_none(), "{body}");
}

#[tokio::test]
async fn app_server_result_falls_back_to_the_agents_last_message() {
    let end = End::Finished { finish_message: None, agent_message: Some("I could not reproduce it.".into()) };
    let server = StandInAppServer::start(Script { end, ..Script::default() }).await;
    let adapter = adapter(&server);
    let request = request(None);
    adapter.start(&request, false).await.expect("started");
    let seen = follow(&adapter, &request.conversation_id.to_string()).await;
    assert_eq!(seen.last(), Some(&RunStatus::Finished { result: Some("I could not reproduce it.".into()) }));

    let end = End::Finished { finish_message: None, agent_message: None };
    let server = StandInAppServer::start(Script { end, ..Script::default() }).await;
    let adapter = self::adapter(&server);
    adapter.start(&request, false).await.expect("started");
    let seen = follow(&adapter, &request.conversation_id.to_string()).await;
    assert_eq!(seen.last(), Some(&RunStatus::Finished { result: None }));
}

#[tokio::test]
async fn app_server_every_scripted_end_maps_to_its_status() {
    let cases = [
        (
            Script { start_task_error: Some("Sandbox failed to start: no capacity".into()), ..Script::default() },
            failed("start_failed", Some("Sandbox failed to start: no capacity")),
        ),
        (Script { end: End::Stuck, ..Script::default() }, failed("stuck", None)),
        (
            Script {
                end: End::Error { code: "LLMAuthenticationError".into(), detail: "invalid api key".into() },
                ..Script::default()
            },
            failed("error", Some("LLMAuthenticationError: invalid api key")),
        ),
        (Script { sandbox_status: Some("MISSING"), ..Script::default() }, failed("sandbox_missing", None)),
        (Script { sandbox_status: Some("ERROR"), ..Script::default() }, failed("sandbox_error", None)),
    ];
    for (script, expected) in cases {
        let what = format!("{script:?}");
        let server = StandInAppServer::start(script).await;
        let adapter = adapter(&server);
        let request = request(Some(1));
        adapter.start(&request, false).await.expect("started");
        let seen = follow(&adapter, &request.conversation_id.to_string()).await;
        assert_eq!(seen.first(), Some(&RunStatus::Starting), "{what}");
        assert_eq!(seen.last(), Some(&expected), "{what}");
        assert_eq!(server.started_total(), 1, "{what}");
    }
}

#[tokio::test]
async fn app_server_a_conversation_it_never_saw_is_unknown() {
    let server = StandInAppServer::start(Script::default()).await;
    let adapter = adapter(&server);
    assert_eq!(adapter.status(&Uuid::new_v4().to_string()).await.expect("a status"), RunStatus::Unknown);
    assert_eq!(adapter.status("not-a-uuid").await.expect("a status"), RunStatus::Unknown);
}

#[tokio::test]
async fn app_server_a_5xx_on_start_is_retryable_and_the_retry_starts_one() {
    let script = Script { start_faults: vec![StartFault::Unavailable], ..Script::default() };
    let server = StandInAppServer::start(script).await;
    let adapter = adapter(&server);
    let request = request(None);
    let error = adapter.start(&request, false).await.expect_err("a 503");
    assert!(matches!(error, AgentError::Status { status: 503, .. }) && error.is_retryable(), "{error:?}");
    assert_eq!(server.started_total(), 0);
    assert_eq!(adapter.start(&request, true).await.expect("started"), started(&request));
    assert_eq!((server.start_posts(), server.started(request.conversation_id)), (2, 1));
}

#[tokio::test]
async fn app_server_a_lost_start_answer_then_a_retry_starts_no_second_conversation() {
    let script = Script { start_faults: vec![StartFault::AnswerLost], ..Script::default() };
    let server = StandInAppServer::start(script).await;
    let adapter = adapter(&server);
    let request = request(Some(3));
    let error = adapter.start(&request, false).await.expect_err("the answer is lost");
    assert!(matches!(error, AgentError::Transport(_)) && error.is_retryable(), "{error:?}");
    assert_eq!(server.started(request.conversation_id), 1, "the stand-in acted before it hung up");

    // The start task is still on its way: found through the start tasks.
    assert_eq!(adapter.start(&request, true).await.expect("found"), started(&request));
    assert_eq!((server.start_posts(), server.started(request.conversation_id)), (1, 1));
    let seen = follow(&adapter, &request.conversation_id.to_string()).await;
    assert!(matches!(seen.last(), Some(RunStatus::Finished { result: Some(_) })), "{seen:?}");
    // Once READY, found by id: still no second POST.
    assert_eq!(adapter.start(&request, true).await.expect("found"), started(&request));
    assert_eq!((server.start_posts(), server.started_total()), (1, 1));
}

#[tokio::test]
async fn app_server_a_start_that_times_out_then_a_retry_starts_no_second_conversation() {
    let script = Script { start_faults: vec![StartFault::Slow(Duration::from_secs(30))], ..Script::default() };
    let server = StandInAppServer::start(script).await;
    let adapter = AppServer::new(AgentSettings {
        request_timeout: Duration::from_millis(500),
        ..settings(&server.url, Some(&server.key))
    });
    let request = request(None);
    let began = std::time::Instant::now();
    let error = adapter.start(&request, false).await.expect_err("a timeout");
    assert!(began.elapsed() < Duration::from_secs(10), "the adapter's timeout applies");
    assert!(matches!(error, AgentError::Transport(_)) && error.is_retryable(), "{error:?}");
    assert_eq!(adapter.start(&request, true).await.expect("found"), started(&request));
    assert_eq!((server.start_posts(), server.started(request.conversation_id)), (1, 1));
}

#[tokio::test]
async fn app_server_a_retry_whose_look_up_fails_posts_nothing() {
    let script = Script { start_faults: vec![StartFault::AnswerLost], lookups_unavailable: 1, ..Script::default() };
    let server = StandInAppServer::start(script).await;
    let adapter = adapter(&server);
    let request = request(None);
    adapter.start(&request, false).await.expect_err("the answer is lost");
    let error = adapter.start(&request, true).await.expect_err("the look-up failed");
    assert!(matches!(error, AgentError::Status { status: 503, .. }) && error.is_retryable(), "{error:?}");
    assert_eq!(server.start_posts(), 1, "no POST without a look-up");
    assert_eq!(adapter.start(&request, true).await.expect("found"), started(&request));
    assert_eq!((server.start_posts(), server.started_total()), (1, 1));
}

#[tokio::test]
async fn app_server_a_retry_finds_a_working_start_task_beyond_the_first_page() {
    // 150 newer start tasks of other conversations push this one to the second page.
    let script = Script {
        start_faults: vec![StartFault::AnswerLost],
        start_task_looks: 5,
        newer_start_tasks: 150,
        ..Script::default()
    };
    let server = StandInAppServer::start(script).await;
    let adapter = adapter(&server);
    let request = request(None);
    adapter.start(&request, false).await.expect_err("the answer is lost");
    for _ in 0..3 {
        assert_eq!(adapter.start(&request, true).await.expect("found"), started(&request));
    }
    assert_eq!(adapter.status(&request.conversation_id.to_string()).await.expect("a status"), RunStatus::Starting);
    assert_eq!((server.start_posts(), server.started_total()), (1, 1));
}

#[tokio::test]
async fn app_server_refusals_and_a_wrong_key() {
    let script = Script { refuse: Some("No LLM API key configured for this user".into()), ..Script::default() };
    let server = StandInAppServer::start(script).await;
    let outcome = adapter(&server).start(&request(None), false).await.expect("an answer");
    assert_eq!(outcome, StartOutcome::Refused { reason: "No LLM API key configured for this user".into() });

    let server = StandInAppServer::start(Script::default()).await;
    let wrong = AppServer::new(settings(&server.url, Some("wrong-key")));
    let error = wrong.start(&request(None), false).await.expect_err("401");
    assert!(matches!(error, AgentError::Status { status: 401, .. }) && !error.is_retryable(), "{error:?}");
    assert!(!format!("{error} {error:?}").contains("wrong-key"));
    let error = wrong.status(&Uuid::new_v4().to_string()).await.expect_err("401");
    assert!(matches!(error, AgentError::Status { status: 401, .. }), "{error:?}");
    assert_eq!(server.started_total(), 0);
}

#[tokio::test]
async fn app_server_check_names_the_setting_to_fix() {
    let server = StandInAppServer::start(Script::default()).await;
    let lines = adapter(&server).check().await;
    assert!(lines.len() == 2 && lines.iter().all(|l| l.ok), "{lines:?}");

    let wrong = AppServer::new(settings(&server.url, Some("wrong-key"))).check().await;
    let failing: Vec<_> = wrong.iter().filter(|l| !l.ok).collect();
    assert!(failing.len() == 1 && failing[0].detail.contains("AGENT_API_KEY"), "{wrong:?}");
    assert!(!format!("{wrong:?}").contains("wrong-key"));

    let nowhere = AppServer::new(settings("http://127.0.0.1:9", Some("k"))).check().await;
    assert!(!nowhere[0].ok && nowhere[0].detail.contains("AGENT_API_URL"), "{nowhere:?}");

    let not_an_app_server = AppServer::new(settings(&format!("{}/elsewhere", server.url), Some(&server.key)));
    let lines = not_an_app_server.check().await;
    assert!(!lines[0].ok && lines[0].detail.contains("AGENT_API_URL"), "{lines:?}");
    let with_api = AppServer::new(settings(&format!("{}/api/v1", server.url), Some(&server.key)));
    let lines = with_api.check().await;
    assert!(!lines[0].ok && lines[0].detail.contains("without /api"), "{lines:?}");
    assert_eq!(server.started_total(), 0, "checking starts nothing");
}

/// `hookwise check-agent` with these variables (and no other `AGENT_*`).
async fn check_agent(vars: Vec<(&'static str, String)>) -> (bool, String) {
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(HOOKWISE);
        command.arg("check-agent").env("RUST_LOG", "warn");
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("AGENT_")) {
            command.env_remove(name);
        }
        command.envs(vars).output().expect("running hookwise check-agent")
    })
    .await
    .expect("the command's thread");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_server_check_agent_command_says_what_works() {
    let server = StandInAppServer::start(Script::default()).await;
    let (ok, out) =
        check_agent(vec![("AGENT_API_URL", server.url.clone()), ("AGENT_API_KEY", server.key.clone())]).await;
    assert!(ok, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("ok   ")).count(), 2, "{out}");

    let wrong = "oh-key-this-one-is-wrong";
    let (ok, out) = check_agent(vec![("AGENT_API_URL", server.url.clone()), ("AGENT_API_KEY", wrong.into())]).await;
    assert!(!ok, "{out}");
    assert!(out.lines().any(|l| l.starts_with("FAIL ") && l.contains("AGENT_API_KEY")), "{out}");
    assert!(!out.contains(wrong), "the key is never printed: {out}");

    let (ok, out) = check_agent(vec![]).await;
    assert!(!ok && out.contains("FAIL") && out.contains("AGENT_API_URL"), "{out}");
    assert_eq!(server.started_total(), 0);
}

/// An answer larger than the cap is refused as it streams in, not buffered.
#[tokio::test]
async fn an_answer_over_the_cap_is_an_error_not_a_buffer() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let runtime = MockServer::start().await;
    let huge = format!("[\"{}\"]", "x".repeat(16 * 1024 * 1024));
    Mock::given(method("GET"))
        .and(path("/api/v1/app-conversations"))
        .respond_with(ResponseTemplate::new(200).set_body_string(huge))
        .mount(&runtime)
        .await;
    let adapter = AppServer::new(settings(&runtime.uri(), Some("k")));
    let answer = adapter.status(&Uuid::new_v4().to_string()).await;
    assert!(matches!(&answer, Err(AgentError::Protocol(m)) if m.contains("exceeds")), "{answer:?}");
}
