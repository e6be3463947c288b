//! A stand-in OpenHands V1 App Server: a real HTTP/1.1 server on a local port,
//! built from the App Server's models (openhands-ai 1.11.0:
//! `app_conversation_models.py`, `app_conversation_router.py`,
//! `event/event_router.py`; the events from openhands-sdk). A hand-rolled
//! server rather than poem or wiremock so that it can act on a request and
//! then close the connection without answering, or answer too late.
//!
//! Time is counted in *looks*: every `GET /api/v1/app-conversations?ids=…`
//! naming a conversation (the first thing the adapter's `status` and
//! retrying `start` ask) moves it on by one. With a [`Script`] of
//! `start_task_looks: N` and `running_looks: M`, a conversation's start task
//! is WORKING for N looks, then READY; the conversation's sandbox is STARTING
//! for one look, RUNNING with `execution_status: running` for M, then the
//! scripted end.
//!
//! Every request must carry `Authorization: Bearer <key>`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// How a conversation ends once it ran.
#[derive(Debug, Clone)]
pub enum End {
    /// `execution_status: finished`; the events hold a `finish` action with
    /// `finish_message` (when given) and an agent `MessageEvent` with
    /// `agent_message` (when given).
    Finished { finish_message: Option<String>, agent_message: Option<String> },
    /// `execution_status: stuck`.
    Stuck,
    /// `execution_status: error`, with a `ConversationErrorEvent`.
    Error { code: String, detail: String },
}

/// What a start POST does, one per POST in order; POSTs beyond the list act
/// and answer normally.
#[derive(Debug, Clone)]
pub enum StartFault {
    /// Answers 503 and starts nothing.
    Unavailable,
    /// Starts the conversation, then closes the connection without answering.
    AnswerLost,
    /// Starts the conversation, then answers only after this long.
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct Script {
    pub start_task_looks: usize,
    pub running_looks: usize,
    pub end: End,
    /// The start task ends `ERROR` with this detail instead of `READY`.
    pub start_task_error: Option<String>,
    /// Once READY, the sandbox reports this (`MISSING`, `ERROR`) instead of running.
    pub sandbox_status: Option<&'static str>,
    pub start_faults: Vec<StartFault>,
    /// Every start POST is answered 400 with this detail (nothing started).
    pub refuse: Option<String>,
    /// After each start, this many start tasks of other conversations are
    /// recorded (newer ones, as when the key's user starts others meanwhile).
    pub newer_start_tasks: usize,
    /// The first this many look-ups by id (`GET /app-conversations?ids=`) answer 503.
    pub lookups_unavailable: usize,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            start_task_looks: 2,
            running_looks: 2,
            end: End::Finished { finish_message: Some("Fixed it: see the PR.".into()), agent_message: None },
            start_task_error: None,
            sandbox_status: None,
            start_faults: Vec::new(),
            refuse: None,
            newer_start_tasks: 0,
            lookups_unavailable: 0,
        }
    }
}

#[derive(Debug)]
struct Task {
    id: Uuid,
    /// The request as posted, `conversation_id` normalised as pydantic prints a `UUID` (dashed).
    request: Value,
    conversation_id: Uuid,
    created: usize,
    /// One of the scripted other conversations' tasks.
    noise: bool,
}

#[derive(Debug, Default)]
struct State {
    tasks: Vec<Task>,
    looks: HashMap<Uuid, usize>,
    posts: usize,
    lookups: usize,
    bodies: Vec<Value>,
    /// Sandboxes paused (`POST /api/v1/sandboxes/{id}/pause`), in order.
    paused: Vec<String>,
}

pub struct StandInAppServer {
    pub url: String,
    pub key: String,
    state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for StandInAppServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl StandInAppServer {
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the stand-in App Server");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let key = format!("oh-key-{}", Uuid::new_v4().simple());
        let script = Arc::new(script);
        let state = Arc::new(Mutex::new(State::default()));
        let server = Server { key: key.clone(), script, state: state.clone() };
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.serve(stream).await });
            }
        });
        StandInAppServer { url, key, state, accept }
    }

    /// Start tasks created for `conversation_id`: the conversations (and sandboxes) it started.
    pub fn started(&self, conversation_id: Uuid) -> usize {
        self.lock().tasks.iter().filter(|t| !t.noise && t.conversation_id == conversation_id).count()
    }

    /// Conversations started in all, not counting the scripted other ones.
    pub fn started_total(&self) -> usize {
        self.lock().tasks.iter().filter(|t| !t.noise).count()
    }

    /// Start POSTs received, whatever came of them.
    pub fn start_posts(&self) -> usize {
        self.lock().posts
    }

    /// The bodies of the start POSTs, in order.
    pub fn start_bodies(&self) -> Vec<Value> {
        self.lock().bodies.clone()
    }

    /// The sandboxes paused, in order.
    pub fn paused(&self) -> Vec<String> {
        self.lock().paused.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Clone)]
struct Server {
    key: String,
    script: Arc<Script>,
    state: Arc<Mutex<State>>,
}

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    authorization: Option<String>,
    body: Vec<u8>,
}

impl Request {
    fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn query_all(&self, name: &str) -> Vec<&str> {
        self.query.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

enum Answer {
    Json(u16, Value),
    /// Close the connection without a word.
    Nothing,
    Late(Duration, u16, Value),
}

impl Server {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn serve(&self, mut stream: TcpStream) {
        let Some(request) = read_request(&mut stream).await else { return };
        let answer = self.answer(&request);
        let (status, body) = match answer {
            Answer::Nothing => return,
            Answer::Json(status, body) => (status, body),
            Answer::Late(delay, status, body) => {
                tokio::time::sleep(delay).await;
                (status, body)
            }
        };
        let body = body.to_string();
        let head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            reason_phrase(status),
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    fn answer(&self, request: &Request) -> Answer {
        if request.authorization.as_deref() != Some(&format!("Bearer {}", self.key)) {
            return Answer::Json(401, json!({"detail": "Not authenticated"}));
        }
        let path = request.path.trim_end_matches('/');
        match (request.method.as_str(), path) {
            ("POST", "/api/v1/app-conversations") => self.start(request),
            ("GET", "/api/v1/app-conversations") => self.batch_get(request),
            ("GET", "/api/v1/app-conversations/search") => Answer::Json(200, self.search()),
            ("GET", "/api/v1/app-conversations/start-tasks/search") => self.search_start_tasks(request),
            ("GET", "/api/v1/app-conversations/start-tasks") => self.batch_get_start_tasks(request),
            ("GET", _) if path.starts_with("/api/v1/conversation/") && path.ends_with("/events/search") => {
                let id = &path["/api/v1/conversation/".len()..path.len() - "/events/search".len()];
                match Uuid::parse_str(id) {
                    Ok(id) => Answer::Json(200, self.events(id, request.query("kind__eq"))),
                    Err(_) => Answer::Json(500, json!({"detail": "badly formed hexadecimal UUID string"})),
                }
            }
            ("POST", _) if path.starts_with("/api/v1/sandboxes/") && path.ends_with("/pause") => {
                let sandbox = &path["/api/v1/sandboxes/".len()..path.len() - "/pause".len()];
                let mut state = self.lock();
                if state.tasks.iter().any(|t| t.conversation_id.simple().to_string() == sandbox) {
                    state.paused.push(sandbox.to_owned());
                    Answer::Json(200, json!({"success": true}))
                } else {
                    Answer::Json(404, json!({"detail": "Item not found"}))
                }
            }
            _ => Answer::Json(404, json!({"detail": "Not Found"})),
        }
    }

    fn start(&self, request: &Request) -> Answer {
        let fault = {
            let mut state = self.lock();
            state.posts += 1;
            let fault = self.script.start_faults.get(state.posts - 1).cloned();
            if let Ok(body) = serde_json::from_slice::<Value>(&request.body) {
                state.bodies.push(body);
            }
            fault
        };
        if let Some(reason) = &self.script.refuse {
            return Answer::Json(400, json!({"detail": reason}));
        }
        if matches!(fault, Some(StartFault::Unavailable)) {
            return Answer::Json(503, json!({"detail": "Service Unavailable"}));
        }
        let Ok(mut body) = serde_json::from_slice::<Value>(&request.body) else {
            return Answer::Json(
                422,
                json!({"detail": [{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]}),
            );
        };
        if let Err(detail) = validate_start_request(&body) {
            return Answer::Json(422, json!({"detail": [detail]}));
        }
        let conversation_id = match body.get("conversation_id").and_then(Value::as_str) {
            Some(id) => Uuid::parse_str(id).unwrap_or_else(|_| Uuid::new_v4()),
            None => Uuid::new_v4(),
        };
        body["conversation_id"] = json!(conversation_id.hyphenated().to_string());
        let task = {
            let mut state = self.lock();
            let created = state.tasks.len();
            let task = Task { id: Uuid::new_v4(), request: body, conversation_id, created, noise: false };
            let json = self.task_json(&task, &state);
            state.tasks.push(task);
            for _ in 0..self.script.newer_start_tasks {
                let other = Uuid::new_v4();
                let created = state.tasks.len();
                state.tasks.push(Task {
                    id: Uuid::new_v4(),
                    request: json!({"conversation_id": other.to_string(), "title": "another conversation"}),
                    conversation_id: other,
                    created,
                    noise: true,
                });
            }
            json
        };
        match fault {
            Some(StartFault::AnswerLost) => Answer::Nothing,
            Some(StartFault::Slow(delay)) => Answer::Late(delay, 200, task),
            _ => Answer::Json(200, task),
        }
    }

    /// How far conversation `id` has come: its start task's looks so far.
    fn looks(&self, state: &State, id: Uuid) -> usize {
        state.looks.get(&id).copied().unwrap_or(0)
    }

    fn task_json(&self, task: &Task, state: &State) -> Value {
        let looks = if task.noise { 0 } else { self.looks(state, task.conversation_id) };
        let (status, detail, conversation) = if looks < self.script.start_task_looks {
            let on_the_way = ["WORKING", "WAITING_FOR_SANDBOX", "PREPARING_REPOSITORY", "STARTING_CONVERSATION"];
            (on_the_way[looks.min(on_the_way.len() - 1)], Value::Null, Value::Null)
        } else if let Some(detail) = &self.script.start_task_error {
            ("ERROR", json!(detail), Value::Null)
        } else {
            ("READY", Value::Null, json!(task.conversation_id.simple().to_string()))
        };
        let request = task.request.clone();
        json!({
            "id": task.id.simple().to_string(),
            "created_by_user_id": "user-1",
            "status": status,
            "detail": detail,
            "app_conversation_id": conversation,
            "sandbox_id": if conversation.is_null() { Value::Null } else { json!(task.conversation_id.simple().to_string()) },
            "agent_server_url": Value::Null,
            "request": request,
            "created_at": timestamp(task.created),
            "updated_at": timestamp(task.created),
        })
    }

    /// The conversation as `GET /app-conversations?ids=` shows it, when it exists.
    fn conversation_json(&self, state: &State, id: Uuid) -> Option<Value> {
        let task = state.tasks.iter().find(|t| t.conversation_id == id && !t.noise)?;
        let looks = self.looks(state, id);
        if looks < self.script.start_task_looks || self.script.start_task_error.is_some() {
            return None;
        }
        let since_ready = looks - self.script.start_task_looks;
        let (sandbox, execution) = if since_ready == 0 {
            ("STARTING", Value::Null)
        } else if let Some(sandbox) = self.script.sandbox_status {
            (sandbox, Value::Null)
        } else if since_ready <= self.script.running_looks {
            ("RUNNING", json!("running"))
        } else {
            let end = match self.script.end {
                End::Finished { .. } => "finished",
                End::Stuck => "stuck",
                End::Error { .. } => "error",
            };
            ("RUNNING", json!(end))
        };
        let request = &task.request;
        Some(json!({
            "id": id.simple().to_string(),
            "created_by_user_id": "user-1",
            "sandbox_id": id.simple().to_string(),
            "selected_repository": request["selected_repository"],
            "selected_branch": request["selected_branch"],
            "git_provider": request["git_provider"],
            "title": request["title"],
            "trigger": request["trigger"],
            "pr_number": request.get("pr_number").cloned().unwrap_or(json!([])),
            "llm_model": null,
            "agent_kind": "openhands",
            "metrics": null,
            "parent_conversation_id": null,
            "sub_conversation_ids": [],
            "public": null,
            "tags": {},
            "created_at": timestamp(task.created),
            "updated_at": timestamp(task.created),
            "acp_server": null,
            "launched_agent_profile": null,
            "sandbox_status": sandbox,
            "execution_status": execution,
            "conversation_url": format!("http://sandbox.invalid/api/conversations/{}", id.simple()),
            "session_api_key": "sandbox-session-key",
        }))
    }

    fn batch_get(&self, request: &Request) -> Answer {
        let ids = request.query_all("ids");
        if ids.len() >= 100 {
            return Answer::Json(400, json!({"detail": "Too many ids requested. Maximum is 99."}));
        }
        let mut parsed = Vec::new();
        for id in &ids {
            match Uuid::parse_str(id) {
                Ok(id) => parsed.push(id),
                Err(_) => {
                    return Answer::Json(400, json!({"detail": format!("Invalid UUID format for ids: ['{id}']")}))
                }
            }
        }
        let mut state = self.lock();
        state.lookups += 1;
        if state.lookups <= self.script.lookups_unavailable {
            return Answer::Json(503, json!({"detail": "Service Unavailable"}));
        }
        let items: Vec<Value> = parsed
            .into_iter()
            .map(|id| {
                // Shown as it stands after the looks before this one.
                let shown = self.conversation_json(&state, id).unwrap_or(Value::Null);
                if state.tasks.iter().any(|t| t.conversation_id == id && !t.noise) {
                    *state.looks.entry(id).or_insert(0) += 1;
                }
                shown
            })
            .collect();
        Answer::Json(200, Value::Array(items))
    }

    fn search(&self) -> Value {
        let state = self.lock();
        let items: Vec<Value> = state
            .tasks
            .iter()
            .rev()
            .filter(|t| !t.noise)
            .filter_map(|t| self.conversation_json(&state, t.conversation_id))
            .take(1)
            .collect();
        json!({"items": items, "next_page_id": null})
    }

    fn search_start_tasks(&self, request: &Request) -> Answer {
        let limit = match request.query("limit").map(str::parse::<usize>) {
            None => 100,
            Some(Ok(limit)) if (1..=100).contains(&limit) => limit,
            Some(_) => {
                return Answer::Json(
                    422,
                    json!({"detail": [{"loc": ["query", "limit"], "msg": "Input should be less than or equal to 100"}]}),
                )
            }
        };
        let offset = match request.query("page_id").map(str::parse::<usize>) {
            None => 0,
            Some(Ok(offset)) => offset,
            Some(Err(_)) => return Answer::Json(500, json!({"detail": "Internal Server Error"})),
        };
        let state = self.lock();
        let mut tasks: Vec<&Task> = state.tasks.iter().collect();
        match request.query("sort_order").unwrap_or("CREATED_AT_DESC") {
            "CREATED_AT_DESC" | "UPDATED_AT_DESC" => tasks.reverse(),
            "CREATED_AT" | "UPDATED_AT" => {}
            other => return Answer::Json(422, json!({"detail": [{"loc": ["query", "sort_order"], "msg": other}]})),
        }
        // `conversation_id__eq` matches `app_conversation_id`, set once READY.
        if let Some(id) = request.query("conversation_id__eq").and_then(|id| Uuid::parse_str(id).ok()) {
            tasks.retain(|t| self.task_json(t, &state)["app_conversation_id"] == json!(id.simple().to_string()));
        }
        let items: Vec<Value> = tasks.iter().skip(offset).take(limit).map(|t| self.task_json(t, &state)).collect();
        let next = (offset + limit < tasks.len()).then(|| (offset + limit).to_string());
        Answer::Json(200, json!({"items": items, "next_page_id": next}))
    }

    fn batch_get_start_tasks(&self, request: &Request) -> Answer {
        let state = self.lock();
        let items: Vec<Value> = request
            .query_all("ids")
            .into_iter()
            .map(|id| match Uuid::parse_str(id) {
                Ok(id) => state.tasks.iter().find(|t| t.id == id).map_or(Value::Null, |t| self.task_json(t, &state)),
                Err(_) => Value::Null,
            })
            .collect();
        Answer::Json(200, Value::Array(items))
    }

    fn events(&self, id: Uuid, kind: Option<&str>) -> Value {
        let state = self.lock();
        let ended = self
            .conversation_json(&state, id)
            .is_some_and(|c| ["finished", "stuck", "error"].iter().any(|end| c["execution_status"] == *end));
        let mut events = Vec::new();
        if ended {
            // Oldest first; the search answers newest first (TIMESTAMP_DESC).
            events.push(message_event(0, "user", "please fix it"));
            events.push(action_event(1, "terminal", json!({"kind": "TerminalAction", "command": "ls"})));
            if let End::Finished { finish_message, agent_message } = &self.script.end {
                if let Some(text) = agent_message {
                    events.push(message_event(2, "agent", text));
                }
                if let Some(message) = finish_message {
                    events.push(action_event(3, "finish", json!({"kind": "FinishAction", "message": message})));
                }
            }
            if let End::Error { code, detail } = &self.script.end {
                events.push(json!({
                    "kind": "ConversationErrorEvent", "id": Uuid::new_v4().to_string(),
                    "timestamp": timestamp(4), "source": "environment", "code": code, "detail": detail,
                }));
            }
        }
        let mut items: Vec<Value> =
            events.into_iter().filter(|e| kind.is_none_or(|kind| e["kind"] == json!(kind))).collect();
        items.reverse();
        json!({"items": items, "next_page_id": null})
    }
}

/// Checks a start POST's body as `AppConversationStartRequest` would (the fields hookwise sends).
fn validate_start_request(body: &Value) -> Result<(), Value> {
    let invalid = |field: &str, msg: &str| json!({"loc": ["body", field], "msg": msg, "type": "value_error"});
    if let Some(id) = body.get("conversation_id").filter(|v| !v.is_null()) {
        if id.as_str().is_none_or(|id| Uuid::parse_str(id).is_err()) {
            return Err(invalid("conversation_id", "Input should be a valid UUID"));
        }
    }
    let message = &body["initial_message"];
    let content_ok = message["content"]
        .as_array()
        .is_some_and(|c| c.iter().all(|part| part["type"] == "text" && part["text"].is_string()));
    if !message.is_object() || !content_ok || !message["role"].is_string() {
        return Err(invalid("initial_message", "Input should be a valid SendMessageRequest"));
    }
    if !body["git_provider"].is_null() && body["git_provider"] != "github" && body["git_provider"] != "gitlab" {
        return Err(invalid("git_provider", "Input should be 'github', 'gitlab', …"));
    }
    let triggers = ["resolver", "gui", "suggested_task", "openhands_api", "slack", "automation"];
    if !body["trigger"].is_null() && !triggers.iter().any(|t| body["trigger"] == *t) {
        return Err(invalid("trigger", "Input should be 'resolver', 'gui', …"));
    }
    if let Some(numbers) = body.get("pr_number") {
        if numbers.as_array().is_none_or(|n| !n.iter().all(Value::is_u64)) {
            return Err(invalid("pr_number", "Input should be a valid list of integers"));
        }
    }
    Ok(())
}

fn timestamp(n: usize) -> String {
    format!("2026-05-01T12:{:02}:{:02}.000000Z", (n / 60) % 60, n % 60)
}

fn action_event(n: usize, tool: &str, action: Value) -> Value {
    json!({
        "kind": "ActionEvent", "id": Uuid::new_v4().to_string(), "timestamp": timestamp(n), "source": "agent",
        "thought": [{"type": "text", "text": "thinking"}], "action": action, "tool_name": tool,
        "tool_call_id": format!("call_{n}"),
        "tool_call": {"id": format!("call_{n}"), "name": tool, "arguments": "{}", "origin": "completion"},
        "llm_response_id": format!("resp_{n}"), "security_risk": "UNKNOWN",
    })
}

fn message_event(n: usize, source: &str, text: &str) -> Value {
    let role = if source == "agent" { "assistant" } else { "user" };
    json!({
        "kind": "MessageEvent", "id": Uuid::new_v4().to_string(), "timestamp": timestamp(n), "source": source,
        "llm_message": {"role": role, "content": [{"type": "text", "text": text}]},
        "activated_skills": [], "extended_content": [],
    })
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// Reads one request (headers, then a `content-length` body).
async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > 64 * 1024 {
            return None;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let mut content_length = 0usize;
    let mut authorization = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => content_length = value.trim().parse().ok()?,
            "authorization" => authorization = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let mut body = buffer[header_end + 4..].to_vec();
    while body.len() < content_length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Some(Request { method, path: percent_decode(path), query, authorization, body })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
