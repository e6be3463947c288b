//! The agent side: the [`runtime`] port the executor drives, and one adapter
//! per OpenHands that teams run, chosen by `AGENT_RUNTIME`:
//! - [`app_server`]: the V1 App Server (OpenHands Cloud, a self-hosted app);
//! - [`agent_server`]: the V1 agent server directly;
//! - [`openhands_v0`]: the V0 app API of OpenHands ≤ 1.6 (legacy).

pub mod agent_server;
pub mod agent_server_events;
pub mod app_server;
pub mod openhands_v0;
pub mod runtime;
pub mod settings;
pub mod v0_callbacks;

use std::sync::Arc;
use std::time::Duration;

pub use runtime::{
    AgentError, AgentRuntime, CheckLine, ConversationRequest, RunStatus, Secret, StartOutcome, StopOutcome,
};

use settings::{AgentRuntimeKind, AgentSettings};

/// The adapter `settings.runtime` names.
pub fn build(settings: &AgentSettings) -> Arc<dyn AgentRuntime> {
    match settings.runtime {
        AgentRuntimeKind::Openhands => Arc::new(app_server::AppServer::new(settings.clone())),
        AgentRuntimeKind::OpenhandsAgentServer => Arc::new(agent_server::AgentServer::new(settings.clone())),
        AgentRuntimeKind::OpenhandsV0 => Arc::new(openhands_v0::OpenHandsV0::new(settings.clone())),
    }
}

/// The most hookwise reads of one answer from a runtime (a page of events
/// included): a bigger one is an error, never an unbounded buffer.
pub(crate) const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// An answer's body as text, read with [`MAX_ANSWER_BYTES`] as its cap.
pub(crate) async fn read_answer(mut response: reqwest::Response) -> Result<String, AgentError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(AgentError::Protocol(format!("the answer exceeds {MAX_ANSWER_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A call that got no (complete) answer; the URL, which may carry ids, is left out.
pub(crate) fn transport(e: reqwest::Error) -> AgentError {
    AgentError::Transport(e.without_url().to_string())
}

/// The HTTP client every adapter uses: each call as a whole is bounded by
/// `timeout` (`AGENT_REQUEST_TIMEOUT`), connecting by at most 10 s of it.
pub(crate) fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
