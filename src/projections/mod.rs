//! Read models: SQL tables derived from the log, each following it from its
//! checkpoint with the runner (`crate::runner`).

pub mod audit_log;
pub mod conversations;
pub mod deliveries;
pub mod installations;
pub mod pull_requests;
pub mod query;
pub mod read_model;
pub mod tables;
pub mod time_ranges;
mod trigger_outcomes;

use std::sync::Arc;

pub use read_model::{ReadModel, ReadModelHandler, Tables};

/// Every read model, by name. The process manager is not one: it is never
/// rebuilt or replayed.
pub fn read_models() -> Vec<Arc<dyn ReadModel>> {
    vec![
        Arc::new(deliveries::Deliveries),
        Arc::new(audit_log::AuditLog),
        Arc::new(installations::Installations),
        Arc::new(pull_requests::PullRequests),
        Arc::new(conversations::Conversations),
    ]
}

/// The read model called `name`.
pub fn read_model(name: &str) -> Option<Arc<dyn ReadModel>> {
    read_models().into_iter().find(|m| m.name() == name)
}

/// No read model goes by the name asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no read model {name:?}; known: all, {known}")]
pub struct UnknownReadModel {
    pub name: String,
    /// The known names, comma-separated.
    pub known: String,
}

/// The read models `name` selects: one by name, or `all`.
pub fn select(name: &str) -> Result<Vec<Arc<dyn ReadModel>>, UnknownReadModel> {
    if name == "all" {
        return Ok(read_models());
    }
    read_model(name).map(|m| vec![m]).ok_or_else(|| {
        let known: Vec<&str> = read_models().iter().map(|m| m.name()).collect();
        UnknownReadModel { name: name.to_owned(), known: known.join(", ") }
    })
}
