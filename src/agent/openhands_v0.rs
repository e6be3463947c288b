//! `AGENT_RUNTIME=openhands-v0`: the V0 app API of OpenHands 1.6 and older
//! (legacy; removed in OpenHands 1.7.0). Start with `POST /api/conversations`;
//! progress comes back through the batched file-store callbacks
//! (`POST /event-webhook/batch`), so [`AgentRuntime::status`] asks nothing.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::runtime::{AgentError, AgentRuntime, CheckLine, ConversationRequest, RunStatus, StartOutcome, StopOutcome};
use super::settings::AgentSettings;

#[derive(Debug, Serialize)]
struct StartConversation<'a> {
    /// `owner/name`.
    repository: &'a str,
    git_provider: &'static str,
    selected_branch: Option<&'a str>,
    initial_user_msg: &'a str,
    conversation_instructions: &'a str,
}

#[derive(Debug, Deserialize)]
struct Started {
    status: String,
    conversation_id: Option<String>,
    message: Option<String>,
}

pub struct OpenHandsV0 {
    http: reqwest::Client,
    settings: AgentSettings,
}

impl OpenHandsV0 {
    pub fn new(settings: AgentSettings) -> Self {
        OpenHandsV0 { http: super::http_client(settings.request_timeout), settings }
    }
}

#[async_trait]
impl AgentRuntime for OpenHandsV0 {
    fn name(&self) -> &'static str {
        "openhands-v0"
    }

    /// The V0 API picks the conversation id itself. The request's id is sent
    /// as `Idempotency-Key`, the same on every attempt, so a server that
    /// honours it starts one conversation however often an attempt with an
    /// unknown outcome is repeated.
    async fn start(&self, request: &ConversationRequest, _retrying: bool) -> Result<StartOutcome, AgentError> {
        let body = StartConversation {
            repository: &request.repository,
            git_provider: "github",
            selected_branch: request.branch.as_deref(),
            initial_user_msg: &request.message,
            conversation_instructions: &request.instructions,
        };
        let mut call = self
            .http
            .post(format!("{}/api/conversations", self.settings.api_url))
            .header("Idempotency-Key", request.conversation_id.to_string())
            .json(&body);
        if let Some(key) = &self.settings.api_key {
            call = call.bearer_auth(key.expose());
        }
        let response = call.send().await.map_err(super::transport)?;
        let status = response.status();
        let body = super::read_answer(response).await?;
        if !status.is_success() {
            let message = body.chars().take(300).collect();
            return Err(AgentError::Status { status: status.as_u16(), message });
        }
        let started: Started = serde_json::from_str(&body).map_err(|_| {
            AgentError::Transport(format!("unreadable answer: {}", body.chars().take(200).collect::<String>()))
        })?;
        match (started.status.as_str(), started.conversation_id) {
            ("ok", Some(id)) if !id.is_empty() => Ok(StartOutcome::Started { conversation_id: id }),
            _ => Ok(StartOutcome::Refused { reason: started.message.unwrap_or(started.status) }),
        }
    }

    /// V0 reports through its callbacks; nothing to ask.
    async fn status(&self, _conversation_id: &str) -> Result<RunStatus, AgentError> {
        Ok(RunStatus::Running)
    }

    /// `POST /api/conversations/{id}/stop`: V0 closes the conversation's agent loop.
    async fn stop(&self, conversation_id: &str) -> Result<StopOutcome, AgentError> {
        let mut call = self.http.post(format!("{}/api/conversations/{conversation_id}/stop", self.settings.api_url));
        if let Some(key) = &self.settings.api_key {
            call = call.bearer_auth(key.expose());
        }
        let response = call.send().await.map_err(super::transport)?;
        let status = response.status();
        let body = super::read_answer(response).await?;
        match status.as_u16() {
            200..=299 => Ok(StopOutcome::Stopped),
            404 => Ok(StopOutcome::CannotStop { reason: "the V0 server no longer knows this conversation".into() }),
            code => Err(AgentError::Status { status: code, message: body.chars().take(300).collect() }),
        }
    }

    /// V0 picks its own ids.
    fn takes_conversation_id(&self) -> bool {
        false
    }

    fn conversation_url(&self, conversation_id: &str) -> String {
        self.settings.conversation_url.replace("{conversation_id}", conversation_id)
    }

    async fn check(&self) -> Vec<CheckLine> {
        let url = format!("{}/api/options/config", self.settings.api_url);
        let mut call = self.http.get(url);
        if let Some(key) = &self.settings.api_key {
            call = call.bearer_auth(key.expose());
        }
        let line = match call.send().await {
            Ok(response) if response.status().is_success() => {
                CheckLine { check: "AGENT_API_URL reachable".into(), ok: true, detail: "the V0 API answered".into() }
            }
            Ok(response) if matches!(response.status().as_u16(), 401 | 403) => CheckLine {
                check: "AGENT_API_KEY accepted".into(),
                ok: false,
                detail: format!("answered {}: check AGENT_API_KEY", response.status().as_u16()),
            },
            Ok(response) => CheckLine {
                check: "AGENT_API_URL reachable".into(),
                ok: false,
                detail: format!("answered {}: is AGENT_API_URL an OpenHands ≤ 1.6 app?", response.status().as_u16()),
            },
            Err(e) => CheckLine {
                check: "AGENT_API_URL reachable".into(),
                ok: false,
                detail: format!("no answer ({}): check AGENT_API_URL", e.without_url()),
            },
        };
        vec![line]
    }
}
