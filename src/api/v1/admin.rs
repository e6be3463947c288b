use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::{Object, OpenApi, Tags};

use super::{ok, Answer, ApiAuth};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::commands::retry::RetryError;
use crate::projections::{read_model, read_models};

#[derive(Tags)]
enum Tag {
    /// Operators' actions, each recorded on the `admin` stream.
    Admin,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RebuildResult {
    pub read_model: String,
    /// Events applied to the new tables.
    pub events: u64,
    /// The log position the new tables reflected when they were swapped in.
    pub position: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ReadModelStatus {
    pub name: String,
    /// Position of the last event applied.
    pub checkpoint: u64,
    /// Log head minus checkpoint.
    pub lag: u64,
}

/// The outcome of a rebuild request: one entry per rebuilt read model.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RebuildResults {
    pub rebuilt: Vec<RebuildResult>,
}

/// A retry was recorded.
#[derive(Debug, Clone, Object)]
pub struct RetryAccepted {
    pub trigger_id: String,
    /// Log position of the `TriggerRetried` event.
    pub position: u64,
}

pub struct AdminApi;

#[OpenApi(tag = "Tag::Admin")]
impl AdminApi {
    /// Each read model's checkpoint and lag behind the log.
    #[oai(path = "/admin/read-models", method = "get", operation_id = "list_read_models")]
    async fn read_models(&self, state: Data<&AppState>, _auth: ApiAuth) -> Answer<Vec<ReadModelStatus>> {
        let head = state.store.head().await?;
        let names: Vec<&'static str> = read_models().iter().map(|m| m.name()).collect();
        let lags = read_model::lag(&state.db, head, &names).await?;
        ok(lags
            .into_iter()
            .map(|(name, lag)| ReadModelStatus { name: name.to_owned(), checkpoint: head.0.saturating_sub(lag), lag })
            .collect())
    }

    /// Rebuild a read model from the log into new tables, then swap them in;
    /// the old tables answer queries meanwhile. Never repeats a side effect.
    #[oai(path = "/admin/rebuild/:read_model", method = "post", operation_id = "rebuild_read_model")]
    async fn rebuild(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        /// A read model's name, or `all`.
        read_model: Path<String>,
    ) -> Answer<RebuildResults> {
        let models = crate::projections::select(&read_model.0).map_err(|e| ApiError::not_found(e.to_string()))?;
        let Ok(_guard) = state.admin_lock.try_lock() else {
            return Err(ApiError::conflict("rebuild_in_progress", "another rebuild is running; try again later"));
        };
        let reports = crate::commands::admin::rebuild(state.store.as_ref(), &state.db, &models, "api")
            .await
            .map_err(ApiError::database_unavailable)?;
        ok(RebuildResults {
            rebuilt: reports
                .into_iter()
                .map(|report| RebuildResult {
                    read_model: report.read_model,
                    events: report.events,
                    position: report.position,
                    duration_ms: report.duration_ms,
                })
                .collect(),
        })
    }

    /// Try an abandoned trigger again, or a pull request's abandoned enrichment (by the subject id its
    /// `EnrichmentAbandoned` carries): appends `TriggerRetried` (`EnrichmentRetried`) to its stream, once per
    /// abandonment (`409` after that); the process manager takes it from there.
    #[oai(path = "/admin/triggers/:trigger_id/retry", method = "post", operation_id = "retry_trigger")]
    async fn retry_trigger(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        trigger_id: Path<String>,
    ) -> Answer<RetryAccepted> {
        let Ok(id) = uuid::Uuid::parse_str(&trigger_id.0) else {
            return Err(ApiError::not_found(format!("no trigger {}", trigger_id.0)));
        };
        let recorded =
            crate::commands::retry::retry(state.store.as_ref(), &state.db, id, "api").await.map_err(|e| match e {
                RetryError::NotFound(_) => ApiError::not_found(e.to_string()),
                RetryError::NotAbandoned { .. } => ApiError::conflict("not_abandoned", e.to_string()),
                _ => ApiError::database_unavailable(e),
            })?;
        ok(RetryAccepted { trigger_id: trigger_id.0, position: recorded.position })
    }
}
