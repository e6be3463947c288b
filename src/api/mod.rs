//! HTTP: intake, health, and (later) the query API, on poem.

mod agent_callbacks;
pub mod error;
mod health;
mod intake;
pub mod metrics;

use std::sync::Arc;

use poem::{get, post, Endpoint, EndpointExt, Route};

use crate::github::signature::WebhookSecrets;
use crate::store::EventStore;

pub use intake::MAX_BODY_BYTES;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub secrets: WebhookSecrets,
    pub webhooks_enabled: bool,
    pub db: crate::sql::SqlDb,
    /// `AGENT_CALLBACK_SECRET`; unset: callbacks answer 503.
    pub callback_secret: Option<crate::config::ApiToken>,
}

pub fn routes(state: AppState) -> impl Endpoint {
    Route::new()
        .at("/integration/github/events", post(intake::receive_github_webhook))
        .at("/event-webhook/batch", post(agent_callbacks::receive_agent_callbacks))
        .at("/healthz", get(health::healthz))
        .at("/readyz", get(health::readyz))
        .data(state)
        .catch_all_error(error::render_poem_error)
}
