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

pub use runtime::{AgentError, AgentRuntime, CheckLine, ConversationRequest, RunStatus, Secret, StartOutcome};

use settings::{AgentRuntimeKind, AgentSettings};

/// The adapter `settings.runtime` names.
pub fn build(settings: &AgentSettings) -> Arc<dyn AgentRuntime> {
    match settings.runtime {
        AgentRuntimeKind::Openhands => Arc::new(app_server::AppServer::new(settings.clone())),
        AgentRuntimeKind::OpenhandsAgentServer => Arc::new(agent_server::AgentServer::new(settings.clone())),
        AgentRuntimeKind::OpenhandsV0 => Arc::new(openhands_v0::OpenHandsV0::new(settings.clone())),
    }
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
