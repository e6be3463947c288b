//! Operators' commands on read models: rebuild and replay, each recorded on
//! the `admin` stream. Neither runs a side effect.

use std::sync::Arc;

use uuid::Uuid;

use crate::events::admin::{ReadModelRebuilt, ReadModelReplayed};
use crate::events::{streams, DomainEvent};
use crate::projections::read_model::{self, RebuildReport, ReplayReport};
use crate::projections::ReadModel;
use crate::runner::HandlerError;
use crate::sql::SqlDb;
use crate::store::{EventStore, ExpectedVersion, Position, StoreError};

/// Rebuilds `models` (reading the log once) and records a `ReadModelRebuilt` for each.
pub async fn rebuild(
    store: &dyn EventStore,
    db: &SqlDb,
    models: &[Arc<dyn ReadModel>],
    requested_by: &str,
) -> Result<Vec<RebuildReport>, HandlerError> {
    let reports = read_model::rebuild_many(store, db, models).await?;
    for report in &reports {
        let event = ReadModelRebuilt {
            read_model: report.read_model.clone(),
            events: report.events,
            position: report.position,
            duration_ms: report.duration_ms,
            requested_by: requested_by.to_owned(),
        };
        record(store, event.to_new_event(Uuid::new_v4(), None)).await?;
    }
    Ok(reports)
}

/// Replays `from..=to` through `model` and records `ReadModelReplayed`.
pub async fn replay(
    store: &dyn EventStore,
    db: &SqlDb,
    model: &dyn ReadModel,
    from: Position,
    to: Option<Position>,
    requested_by: &str,
) -> Result<ReplayReport, HandlerError> {
    let report = read_model::replay(store, db, model, from, to).await?;
    let event = ReadModelReplayed {
        read_model: report.read_model.clone(),
        from: from.0,
        to: report.position,
        events: report.events,
        requested_by: requested_by.to_owned(),
    };
    record(store, event.to_new_event(Uuid::new_v4(), None)).await?;
    Ok(report)
}

async fn record(
    store: &dyn EventStore,
    event: Result<crate::store::NewEvent, serde_json::Error>,
) -> Result<(), HandlerError> {
    let event = event?;
    store.append(streams::ADMIN, ExpectedVersion::Any, vec![event]).await.map_err(|e: StoreError| e)?;
    Ok(())
}
