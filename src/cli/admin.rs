//! `hookwise openapi`, `rebuild`, `replay` and `verify-log`.

use std::path::Path;

use super::CliError;
use crate::events::{DomainEvent, WebhookReceived};
use crate::github::signature::WebhookSecrets;
use crate::projections::{read_model, read_models};
use crate::sql::SqlDb;
use crate::store::{EventStore, Position};

/// Writes the OpenAPI spec to `path` (creating its folder).
pub fn write_openapi(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut spec = crate::api::v1::spec_json();
    spec.push('\n');
    std::fs::write(path, spec)
}

/// Makes sure every read model's tables exist before a rebuild or replay.
pub async fn prepare_all(db: &SqlDb) -> Result<(), CliError> {
    let checkpoints = db.migrate("checkpoints", crate::runner::CHECKPOINT_MIGRATIONS).await;
    checkpoints.map_err(|e| CliError::PrepareReadModels(e.into()))?;
    for model in read_models() {
        read_model::prepare(db, model.as_ref()).await.map_err(CliError::PrepareReadModels)?;
    }
    Ok(())
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub checked: u64,
    /// `(position, delivery id, problem)` of each delivery that failed.
    pub failures: Vec<(u64, String, String)>,
}

/// Checks every stored delivery's signature header against its stored bytes with `secrets`.
pub async fn verify_log(store: &dyn EventStore, secrets: &WebhookSecrets) -> Result<VerifyReport, CliError> {
    let mut report = VerifyReport::default();
    let mut after = Position::START;
    loop {
        let events = store.read_all(after, 1000).await.map_err(CliError::ReadLog)?;
        let Some(last) = events.last() else { break };
        after = last.position;
        for event in events.iter().filter(|e| e.event_type == WebhookReceived::TYPE) {
            report.checked += 1;
            let delivery = match WebhookReceived::decode(event) {
                Ok(d) => d,
                Err(e) => {
                    report.failures.push((event.position.0, String::new(), format!("undecodable event: {e}")));
                    continue;
                }
            };
            let body = event.payload.as_deref().unwrap_or_default();
            if let Err(e) = secrets.verify(Some(&delivery.signature), body) {
                report.failures.push((event.position.0, delivery.delivery_id, format!("{e:?}").to_lowercase()));
            }
        }
    }
    Ok(report)
}
