//! `AGENT_RUNTIME=openhands` (the default): the V1 App Server, i.e. OpenHands
//! Cloud or a self-hosted OpenHands app (openhands-ai ≥ 1.0; checked against
//! 1.11.0). Every route is under `/api/v1`, authenticated with
//! `Authorization: Bearer <AGENT_API_KEY>`.
//!
//! - Start: `POST /api/v1/app-conversations` answers at once with a *start
//!   task* (`WORKING`, …, `READY` or `ERROR`); the conversation exists under
//!   the id hookwise chose once the task is `READY`.
//! - The start is **not** idempotent (a second POST with the same
//!   `conversation_id` starts a second sandbox), so after an unknown outcome
//!   [`AgentRuntime::start`] looks the conversation up by id, then the recent
//!   start tasks by their `request.conversation_id`, before it posts again.
//! - The App Server cannot push to outside services: [`AgentRuntime::status`]
//!   polls the conversation (`sandbox_status`, `execution_status`) and, once
//!   it finished, reads the result from its events.
//!
//! The App Server prints UUIDs as hex without dashes (`OpenHandsUUID`) except
//! inside a start task's `request`; ids are compared as UUIDs, never as text,
//! and hookwise keeps the dashed form it chose.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::runtime::{AgentError, AgentRuntime, CheckLine, ConversationRequest, RunStatus, StartOutcome, StopOutcome};
use super::settings::AgentSettings;
use super::transport;

/// How many pages (of 100, newest first) of start tasks are looked through
/// for one conversation id. An earlier attempt is minutes old at most (the
/// executor's retries and claim lease), so 500 starts of this API key's user
/// are plenty.
const START_TASK_PAGES: usize = 5;

/// How much of an answer's body goes into an error or a refusal.
const ANSWER_EXCERPT: usize = 300;

/// `AppConversationStartRequest` (`app_conversation/app_conversation_models.py`).
#[derive(Debug, Serialize)]
struct StartRequest<'a> {
    /// A plain `UUID` field: dashed.
    conversation_id: String,
    initial_message: InitialMessage<'a>,
    selected_repository: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    selected_branch: Option<&'a str>,
    git_provider: &'static str,
    title: &'a str,
    trigger: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pr_number: Vec<u64>,
}

/// `SendMessageRequest` (`openhands/sdk/conversation/message_request.py`).
#[derive(Debug, Serialize)]
struct InitialMessage<'a> {
    role: &'static str,
    content: [TextContent<'a>; 1],
    run: bool,
}

#[derive(Debug, Serialize)]
struct TextContent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

/// `AppConversationStartTask`: only what hookwise reads.
#[derive(Debug, Clone, Deserialize)]
struct StartTask {
    status: String,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    app_conversation_id: Option<String>,
    #[serde(default)]
    request: Option<StartTaskRequest>,
}

#[derive(Debug, Clone, Deserialize)]
struct StartTaskRequest {
    #[serde(default)]
    conversation_id: Option<String>,
}

impl StartTask {
    /// Whether this task starts (or started) conversation `id`.
    fn is_for(&self, id: Uuid) -> bool {
        let requested = self.request.as_ref().and_then(|r| r.conversation_id.as_deref());
        [requested, self.app_conversation_id.as_deref()].into_iter().flatten().any(|text| same_id(text, id))
    }

    /// Whether this task's request names a conversation id other than `id`.
    fn takes_another_id(&self, id: Uuid) -> bool {
        let requested = self.request.as_ref().and_then(|r| r.conversation_id.as_deref());
        requested.is_some_and(|text| !same_id(text, id))
    }
}

#[derive(Debug, Deserialize)]
struct StartTaskPage {
    items: Vec<StartTask>,
    #[serde(default)]
    next_page_id: Option<String>,
}

/// `AppConversation`: only what hookwise reads.
#[derive(Debug, Clone, Deserialize)]
struct Conversation {
    id: String,
    /// Where it runs: a stop pauses it.
    #[serde(default)]
    sandbox_id: Option<String>,
    #[serde(default)]
    sandbox_status: Option<String>,
    #[serde(default)]
    execution_status: Option<String>,
}

/// `EventPage` of the event search.
#[derive(Debug, Deserialize)]
struct EventPage {
    items: Vec<Value>,
}

/// What a look-up by id found.
enum Found {
    Conversation(Conversation),
    StartTask(StartTask),
}

fn same_id(text: &str, id: Uuid) -> bool {
    Uuid::parse_str(text).is_ok_and(|parsed| parsed == id)
}

fn excerpt(body: &str) -> String {
    body.chars().take(ANSWER_EXCERPT).collect()
}

/// FastAPI's `{"detail": "…"}` or a validation error's `{"detail": [{"msg": …}, …]}`.
fn reason(body: &str) -> String {
    let detail = serde_json::from_str::<Value>(body).ok().and_then(|v| v.get("detail").cloned());
    let text = match detail {
        Some(Value::String(text)) => text,
        Some(Value::Array(errors)) => errors
            .iter()
            .map(|e| {
                let at = e.get("loc").and_then(Value::as_array).map(|loc| {
                    loc.iter().map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned)).collect::<Vec<_>>()
                });
                let msg = e.get("msg").and_then(Value::as_str).unwrap_or("invalid");
                match at {
                    Some(at) if !at.is_empty() => format!("{}: {msg}", at.join(".")),
                    _ => msg.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => body.to_owned(),
    };
    excerpt(text.trim())
}

/// The text of a `MessageEvent`'s `llm_message.content`.
fn message_text(event: &Value) -> Option<String> {
    let content = event.get("llm_message")?.get("content")?.as_array()?;
    let text: Vec<&str> = content
        .iter()
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|c| c.get("text").and_then(Value::as_str))
        .collect();
    let text = text.join("\n");
    (!text.trim().is_empty()).then_some(text)
}

pub struct AppServer {
    http: reqwest::Client,
    settings: AgentSettings,
}

impl AppServer {
    pub fn new(settings: AgentSettings) -> Self {
        AppServer { http: super::http_client(settings.request_timeout), settings }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.settings.api_url)
    }

    fn authorized(&self, call: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.settings.api_key {
            Some(key) => call.bearer_auth(key.expose()),
            None => call,
        }
    }

    /// GETs `path` and decodes a 2xx answer; any other answer is an error.
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T, AgentError> {
        let response = self.authorized(self.http.get(self.url(path)).query(query)).send().await.map_err(transport)?;
        let status = response.status();
        let body = super::read_answer(response).await?;
        if !status.is_success() {
            return Err(AgentError::Status { status: status.as_u16(), message: reason(&body) });
        }
        serde_json::from_str(&body).map_err(|e| AgentError::Protocol(format!("GET /api/v1{path}: {e}")))
    }

    /// The conversation, when the App Server has it (its start task is `READY`).
    async fn conversation(&self, id: Uuid) -> Result<Option<Conversation>, AgentError> {
        let id_text = id.to_string();
        let found: Vec<Option<Conversation>> = self.get("/app-conversations", &[("ids", &id_text)]).await?;
        Ok(found.into_iter().flatten().find(|c| same_id(&c.id, id)))
    }

    /// The newest start task for conversation `id` among the recent ones.
    /// (The search's `conversation_id__eq` matches `app_conversation_id`, set
    /// only once `READY`; a task on its way is found by its request.)
    async fn start_task(&self, id: Uuid) -> Result<Option<StartTask>, AgentError> {
        let mut page_id: Option<String> = None;
        for _ in 0..START_TASK_PAGES {
            let mut query = vec![("sort_order", "CREATED_AT_DESC"), ("limit", "100")];
            if let Some(page) = page_id.as_deref() {
                query.push(("page_id", page));
            }
            let page: StartTaskPage = self.get("/app-conversations/start-tasks/search", &query).await?;
            if let Some(task) = page.items.into_iter().find(|t| t.is_for(id)) {
                return Ok(Some(task));
            }
            match page.next_page_id.filter(|p| !p.is_empty()) {
                Some(next) => page_id = Some(next),
                None => break,
            }
        }
        Ok(None)
    }

    async fn find(&self, id: Uuid) -> Result<Option<Found>, AgentError> {
        if let Some(conversation) = self.conversation(id).await? {
            return Ok(Some(Found::Conversation(conversation)));
        }
        Ok(self.start_task(id).await?.map(Found::StartTask))
    }

    /// The newest events of one kind, newest first.
    async fn events(&self, id: Uuid, kind: &str) -> Result<Vec<Value>, AgentError> {
        let path = format!("/conversation/{id}/events/search");
        let query = [("kind__eq", kind), ("sort_order", "TIMESTAMP_DESC"), ("limit", "100")];
        match self.get::<EventPage>(&path, &query).await {
            Ok(page) => Ok(page.items),
            Err(AgentError::Status { status: 404, .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The `finish` action's message, else the agent's last message.
    async fn result(&self, id: Uuid) -> Result<Option<String>, AgentError> {
        let actions = self.events(id, "ActionEvent").await?;
        let finish = actions.iter().find(|e| e.get("tool_name").and_then(Value::as_str) == Some("finish"));
        if let Some(message) = finish.and_then(|e| e.get("action")?.get("message")?.as_str()) {
            return Ok(Some(message.to_owned()));
        }
        let messages = self.events(id, "MessageEvent").await?;
        Ok(messages.iter().filter(|e| e.get("source").and_then(Value::as_str) == Some("agent")).find_map(message_text))
    }

    /// The latest `ConversationErrorEvent`'s code and detail, if any (best effort).
    async fn error_detail(&self, id: Uuid) -> Option<String> {
        let errors = self.events(id, "ConversationErrorEvent").await.ok()?;
        let error = errors.first()?;
        let code = error.get("code").and_then(Value::as_str);
        let detail = error.get("detail").and_then(Value::as_str);
        match (code, detail) {
            (Some(code), Some(detail)) => Some(excerpt(&format!("{code}: {detail}"))),
            (code, detail) => code.or(detail).map(excerpt),
        }
    }

    async fn conversation_status(&self, id: Uuid, conversation: Conversation) -> Result<RunStatus, AgentError> {
        let failed = |state: &str, detail: Option<String>| RunStatus::Failed { state: state.into(), detail };
        match conversation.sandbox_status.as_deref() {
            Some("ERROR") => return Ok(failed("sandbox_error", None)),
            Some("MISSING") => return Ok(failed("sandbox_missing", None)),
            _ => {}
        }
        Ok(match conversation.execution_status.as_deref() {
            // `null` while the sandbox is not RUNNING (STARTING, or PAUSED and
            // resumed on demand): not under way yet, or again.
            None => match conversation.sandbox_status.as_deref() {
                Some("PAUSED") => RunStatus::Running,
                _ => RunStatus::Starting,
            },
            Some("finished") => RunStatus::Finished { result: self.result(id).await? },
            Some("error") => failed("error", self.error_detail(id).await),
            Some("stuck") => failed("stuck", None),
            Some("deleting") => failed("deleted", None),
            // idle, running, paused, waiting_for_confirmation, and whatever a
            // newer App Server adds: not over.
            Some(_) => RunStatus::Running,
        })
    }
}

#[async_trait]
impl AgentRuntime for AppServer {
    fn name(&self) -> &'static str {
        "openhands"
    }

    async fn start(&self, request: &ConversationRequest, retrying: bool) -> Result<StartOutcome, AgentError> {
        let id = request.conversation_id;
        let started = || StartOutcome::Started { conversation_id: id.to_string() };
        // Found in any state, even a start task that ended ERROR: posting
        // again could make a second conversation; `status` reports how it went.
        if retrying && self.find(id).await?.is_some() {
            return Ok(started());
        }
        let text = request.initial_message();
        let body = StartRequest {
            conversation_id: id.to_string(),
            initial_message: InitialMessage {
                role: "user",
                content: [TextContent { kind: "text", text: &text }],
                run: true,
            },
            selected_repository: &request.repository,
            selected_branch: request.branch.as_deref(),
            git_provider: "github",
            title: &request.title,
            trigger: "resolver",
            pr_number: request.pr_number.into_iter().collect(),
        };
        let call = self.authorized(self.http.post(self.url("/app-conversations")).json(&body));
        let response = call.send().await.map_err(transport)?;
        let status = response.status();
        let answer = super::read_answer(response).await?;
        match status.as_u16() {
            200..=299 => {
                // The answer is the start task; its status says nothing yet
                // (always WORKING at first): `status` follows it.
                let task: StartTask = serde_json::from_str(&answer)
                    .map_err(|e| AgentError::Protocol(format!("the start task was not understood: {e}")))?;
                tracing::debug!(conversation_id = %id, start_task_status = %task.status, "App Server start task");
                if task.takes_another_id(id) {
                    // hookwise could never find this one by its id, and a
                    // retry would start another: stop here.
                    return Ok(StartOutcome::Refused {
                        reason: "the App Server started a conversation under another id than the one asked for \
                                 (an App Server older than V1?)"
                            .into(),
                    });
                }
                Ok(started())
            }
            400 | 409 | 422 => Ok(StartOutcome::Refused { reason: reason(&answer) }),
            code => Err(AgentError::Status { status: code, message: reason(&answer) }),
        }
    }

    async fn status(&self, conversation_id: &str) -> Result<RunStatus, AgentError> {
        // Dashed (as hookwise keeps it) or hex (as the App Server prints it).
        let Ok(id) = Uuid::parse_str(conversation_id.trim()) else {
            return Ok(RunStatus::Unknown);
        };
        match self.find(id).await? {
            Some(Found::Conversation(conversation)) => self.conversation_status(id, conversation).await,
            Some(Found::StartTask(task)) if task.status == "ERROR" => {
                Ok(RunStatus::Failed { state: "start_failed".into(), detail: task.detail.map(|d| excerpt(&d)) })
            }
            // WORKING … STARTING_CONVERSATION, or READY a moment before the
            // conversation shows up.
            Some(Found::StartTask(_)) => Ok(RunStatus::Starting),
            None => Ok(RunStatus::Unknown),
        }
    }

    /// The App Server's documented pause is its sandbox's
    /// (`POST /api/v1/sandboxes/{sandbox_id}/pause`): the run stops with it
    /// and can be resumed there.
    async fn stop(&self, conversation_id: &str) -> Result<StopOutcome, AgentError> {
        let unknown = || StopOutcome::CannotStop { reason: "the App Server does not know this conversation".into() };
        let Ok(id) = Uuid::parse_str(conversation_id.trim()) else { return Ok(unknown()) };
        let Some(sandbox) = self.conversation(id).await?.and_then(|c| c.sandbox_id) else { return Ok(unknown()) };
        let call = self.authorized(self.http.post(self.url(&format!("/sandboxes/{sandbox}/pause"))));
        let response = call.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let body = super::read_answer(response).await?;
        match status {
            200..=299 => Ok(StopOutcome::Stopped),
            404 => Ok(StopOutcome::CannotStop { reason: "the App Server no longer knows its sandbox".into() }),
            _ => Err(AgentError::Status { status, message: reason(&body) }),
        }
    }

    /// The App Server names conversations by the hex of their id, without
    /// dashes (as in its UI's `/conversations/{id}`): the link uses that form.
    fn conversation_url(&self, conversation_id: &str) -> String {
        let shown = Uuid::parse_str(conversation_id).map(|id| id.simple().to_string());
        self.settings.conversation_url.replace("{conversation_id}", shown.as_deref().unwrap_or(conversation_id))
    }

    async fn check(&self) -> Vec<CheckLine> {
        let reachable = "AGENT_API_URL reachable";
        let accepted = "AGENT_API_KEY accepted";
        let line = |check: &str, ok: bool, detail: String| CheckLine { check: check.into(), ok, detail };
        let not_checked = || line(accepted, false, "not checked: fix AGENT_API_URL first".into());
        let call = self.authorized(self.http.get(self.url("/app-conversations/search")).query(&[("limit", "1")]));
        let response = match call.send().await {
            Ok(response) => response,
            Err(e) => {
                let detail =
                    format!("no answer from {} ({}): check AGENT_API_URL", self.settings.api_url, e.without_url());
                return vec![line(reachable, false, detail), not_checked()];
            }
        };
        let status = response.status().as_u16();
        let body = super::read_answer(response).await.unwrap_or_default();
        match status {
            200..=299 => {
                let is_page =
                    serde_json::from_str::<Value>(&body).is_ok_and(|v| v.get("items").is_some_and(Value::is_array));
                if is_page {
                    vec![
                        line(reachable, true, format!("the App Server at {} answered", self.settings.api_url)),
                        line(accepted, true, "the App Server accepted it".into()),
                    ]
                } else {
                    let detail = format!(
                        "answered {status} but not as an OpenHands App Server: check AGENT_API_URL (and AGENT_RUNTIME)"
                    );
                    vec![line(reachable, false, detail), not_checked()]
                }
            }
            401 | 403 => {
                let detail = match self.settings.api_key {
                    Some(_) => format!("answered {status}: check AGENT_API_KEY (an OpenHands API key)"),
                    None => format!("answered {status}: AGENT_API_KEY is not set and the App Server wants one"),
                };
                vec![
                    line(reachable, true, format!("the App Server at {} answered", self.settings.api_url)),
                    line(accepted, false, detail),
                ]
            }
            404 if self.settings.api_url.ends_with("/api") || self.settings.api_url.ends_with("/api/v1") => {
                let detail = format!(
                    "answered 404 at {}/api/v1/app-conversations/search: AGENT_API_URL is the app's root, without /api",
                    self.settings.api_url
                );
                vec![line(reachable, false, detail), not_checked()]
            }
            404 => {
                let detail = "answered 404 at /api/v1/app-conversations/search: is AGENT_API_URL an OpenHands V1 \
                              App Server? (AGENT_RUNTIME=openhands-agent-server for an agent server, openhands-v0 \
                              for OpenHands ≤ 1.6)"
                    .to_owned();
                vec![line(reachable, false, detail), not_checked()]
            }
            _ => {
                let detail = format!("answered {status}: {}; check AGENT_API_URL", reason(&body));
                vec![line(reachable, false, detail), not_checked()]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_as_uuids_whatever_their_form() {
        let id = Uuid::new_v4();
        assert!(same_id(&id.simple().to_string(), id));
        assert!(same_id(&id.hyphenated().to_string(), id));
        assert!(!same_id("not-a-uuid", id));
        let task: StartTask = serde_json::from_value(serde_json::json!({
            "id": Uuid::new_v4().simple().to_string(), "status": "WORKING", "created_by_user_id": null,
            "request": {"conversation_id": id.to_string()}
        }))
        .expect("a start task");
        assert!(task.is_for(id));
        assert!(!task.is_for(Uuid::new_v4()));
        assert!(!task.takes_another_id(id));
        assert!(task.takes_another_id(Uuid::new_v4()));
    }

    #[test]
    fn refusal_reasons_come_from_fastapi_details() {
        assert_eq!(reason(r#"{"detail":"no LLM configured"}"#), "no LLM configured");
        let validation =
            r#"{"detail":[{"loc":["body","conversation_id"],"msg":"Input should be a valid UUID","type":"uuid"}]}"#;
        assert_eq!(reason(validation), "body.conversation_id: Input should be a valid UUID");
        assert_eq!(reason("plain words"), "plain words");
    }

    #[test]
    fn a_message_event_text_is_its_text_content() {
        let event = serde_json::json!({
            "kind": "MessageEvent", "source": "agent",
            "llm_message": {"role": "assistant", "content": [{"type": "text", "text": "done"}, {"type": "image", "image_urls": []}]}
        });
        assert_eq!(message_text(&event).as_deref(), Some("done"));
    }
}
