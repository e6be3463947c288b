//! The agent runtime (OpenHands-compatible): starting a conversation, and the
//! batched file-store callback format it reports back with.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::AgentRuntime;

#[derive(Debug, Serialize)]
pub struct StartConversation<'a> {
    /// `owner/name`.
    pub repository: &'a str,
    pub git_provider: &'static str,
    pub selected_branch: Option<&'a str>,
    pub initial_user_msg: &'a str,
    pub conversation_instructions: &'a str,
}

#[derive(Debug, Deserialize)]
struct Started {
    status: String,
    conversation_id: Option<String>,
    message: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No answer or an unreadable one: the conversation may or may not exist.
    #[error("the agent runtime did not answer: {0}")]
    Transport(String),
    #[error("the agent runtime answered {status}: {message}")]
    Status { status: u16, message: String },
    /// The runtime answered, and said no (e.g. no LLM key configured).
    #[error("the agent runtime refused: {0}")]
    Refused(String),
}

impl AgentError {
    pub fn is_retryable(&self) -> bool {
        match self {
            AgentError::Transport(_) => true,
            AgentError::Status { status, .. } => *status >= 500 || *status == 429,
            AgentError::Refused(_) => false,
        }
    }
}

pub struct AgentClient {
    http: reqwest::Client,
    runtime: AgentRuntime,
}

impl AgentClient {
    pub fn new(runtime: AgentRuntime) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        AgentClient { http, runtime }
    }

    /// Starts a conversation and returns its id. `idempotency_key` (the command id) is sent
    /// as `Idempotency-Key`, the same on every attempt, so a runtime that honours it starts
    /// one conversation however often an attempt with an unknown outcome is repeated.
    pub async fn start_conversation(
        &self,
        request: &StartConversation<'_>,
        idempotency_key: &str,
    ) -> Result<String, AgentError> {
        let mut call = self
            .http
            .post(format!("{}/api/conversations", self.runtime.api_url))
            .header("Idempotency-Key", idempotency_key)
            .json(request);
        if let Some(key) = &self.runtime.api_key {
            call = call.bearer_auth(key);
        }
        let response = call.send().await.map_err(|e| AgentError::Transport(e.without_url().to_string()))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| AgentError::Transport(e.without_url().to_string()))?;
        if !status.is_success() {
            let message = body.chars().take(300).collect();
            return Err(AgentError::Status { status: status.as_u16(), message });
        }
        let started: Started = serde_json::from_str(&body).map_err(|_| {
            AgentError::Transport(format!("unreadable answer: {}", body.chars().take(200).collect::<String>()))
        })?;
        match (started.status.as_str(), started.conversation_id) {
            ("ok", Some(id)) if !id.is_empty() => Ok(id),
            _ => Err(AgentError::Refused(started.message.unwrap_or(started.status))),
        }
    }

    /// The link people follow to watch the conversation.
    pub fn conversation_url(&self, conversation_id: &str) -> String {
        self.runtime.conversation_url.replace("{conversation_id}", conversation_id)
    }
}
