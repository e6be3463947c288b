//! The agent side: the [`runtime`] port the executor drives, and one adapter
//! per OpenHands that teams run, chosen by `AGENT_RUNTIME`:
//! - [`app_server`]: the V1 App Server (OpenHands Cloud, a self-hosted app);
//! - [`agent_server`]: the V1 agent server directly;
//! - [`openhands_v0`]: the V0 app API of OpenHands ≤ 1.6 (legacy).

pub mod agent_server;
pub mod app_server;
pub mod openhands_v0;
pub mod runtime;

use std::sync::Arc;
use std::time::Duration;

pub use runtime::{AgentError, AgentRuntime, CheckLine, ConversationRequest, RunStatus, Secret, StartOutcome};

use crate::config::{AgentRuntimeKind, AgentSettings};

/// The adapter `settings.runtime` names.
pub fn build(settings: &AgentSettings) -> Arc<dyn AgentRuntime> {
    match settings.runtime {
        AgentRuntimeKind::Openhands => Arc::new(app_server::AppServer::new(settings.clone())),
        AgentRuntimeKind::OpenhandsAgentServer => Arc::new(agent_server::AgentServer::new(settings.clone())),
        AgentRuntimeKind::OpenhandsV0 => Arc::new(openhands_v0::OpenHandsV0::new(settings.clone())),
    }
}

/// The HTTP client every adapter uses: every phase of a call is timed out.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
