//! HTTP on poem: intake, agent callbacks, health, metrics, the query API and the dashboard.
//! [`routes`] is the one place that builds the route tree.

mod agent_callbacks;
mod agent_server_webhooks;
mod dashboard;
pub mod error;
mod exposure;
mod health;
mod intake;
mod json_array;
mod limited_body;
mod log_text;
mod metrics;
pub mod v1;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use poem::{get, post, Endpoint, EndpointExt, Route};

use crate::forward::SinkStatus;
use crate::github::signature::WebhookSecrets;
use crate::secret::Secret;
use crate::sql::SqlDb;
use crate::store::EventStore;

pub use agent_server_webhooks::MAX_AGENT_SERVER_BODY_BYTES;
pub use intake::MAX_BODY_BYTES;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub secrets: WebhookSecrets,
    pub webhooks_enabled: bool,
    /// Read models, checkpoints and the outbox.
    pub db: SqlDb,
    /// `AGENT_CALLBACK_SECRET`; unset: callbacks answer 503.
    pub callback_secret: Option<Secret>,
    /// `AGENT_API_KEY` when `AGENT_RUNTIME=openhands-agent-server`: required in
    /// `X-Session-API-Key` on `/agent-server/…` (unset: those answer `503`).
    pub agent_server_key: Option<Secret>,
    /// `None`: the query API is open (allowed on loopback binds only).
    pub api_token: Option<Secret>,
    /// One rebuild or replay at a time per process.
    pub admin_lock: Arc<tokio::sync::Mutex<()>>,
    /// The forwarding sinks' live status.
    pub sinks: Arc<[Arc<SinkStatus>]>,
    /// Whether this instance holds the background lease (for `/metrics`).
    pub leading: Arc<AtomicBool>,
    /// The trigger rules the process manager classifies by (for explanations).
    pub rules: crate::triggers::classify::TriggerRules,
    /// GitHub's web root (`GITHUB_WEB_URL`, else from `GITHUB_API_URL`), for the dashboard's links.
    pub github_web_url: String,
}

pub fn routes(state: AppState) -> impl Endpoint {
    let (query_api, docs, spec) = v1::endpoints();
    Route::new()
        .at("/", get(dashboard::index))
        .at("/dashboard/app.js", get(dashboard::script))
        .at("/dashboard/app.css", get(dashboard::stylesheet))
        .at("/dashboard/icon.svg", get(dashboard::icon))
        .nest("/api/v1", query_api.around(exposure::guard))
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .at("/integration/github/events", post(intake::receive_github_webhook))
        .at("/event-webhook/batch", post(agent_callbacks::receive_agent_callbacks))
        .at("/agent-server/events/:conversation_id", post(agent_server_webhooks::receive_agent_server_events))
        .at("/agent-server/conversations", post(agent_server_webhooks::receive_agent_server_conversation))
        .at("/healthz", get(health::healthz))
        .at("/readyz", get(health::readyz))
        .at("/metrics", get(metrics::render_metrics.around(exposure::guard)))
        .data(state)
        .catch_all_error(error::render_poem_error)
}
