use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};

use super::{ApiAuth, ApiResult};
use crate::api::AppState;
use crate::events::DomainEvent;
use crate::events::{streams, TriggerAbandoned, TriggerRetried};
use crate::process::{PullRequestRef, Step};
use crate::projections::{read_model, read_models};
use crate::sql::SqlError;
use crate::sql_params;
use crate::store::ExpectedVersion;

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
    async fn read_models(&self, state: Data<&AppState>, _auth: ApiAuth) -> ApiResult<Vec<ReadModelStatus>> {
        let head = match state.store.head().await {
            Ok(head) => head,
            Err(e) => return ApiResult::unavailable(e),
        };
        let names: Vec<&'static str> = read_models().iter().map(|m| m.name()).collect();
        match read_model::lag(&state.db, head, &names).await {
            Ok(lags) => ApiResult::Ok(Json(
                lags.into_iter()
                    .map(|(name, lag)| ReadModelStatus {
                        name: name.to_owned(),
                        checkpoint: head.0.saturating_sub(lag),
                        lag,
                    })
                    .collect(),
            )),
            Err(e) => e.into(),
        }
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
    ) -> ApiResult<RebuildResults> {
        let models = match crate::projections::select(&read_model.0) {
            Ok(models) => models,
            Err(unknown) => return ApiResult::not_found(unknown.to_string()),
        };
        let Ok(_guard) = state.admin_lock.try_lock() else {
            return ApiResult::conflict("rebuild_in_progress", "another rebuild is running; try again later");
        };
        match crate::commands::admin::rebuild(state.store.as_ref(), &state.db, &models, "api").await {
            Ok(reports) => ApiResult::Ok(Json(RebuildResults {
                rebuilt: reports
                    .into_iter()
                    .map(|report| RebuildResult {
                        read_model: report.read_model,
                        events: report.events,
                        position: report.position,
                        duration_ms: report.duration_ms,
                    })
                    .collect(),
            })),
            Err(e) => ApiResult::unavailable(e),
        }
    }

    /// Try an abandoned trigger again, or a pull request's abandoned enrichment (by the subject id its
    /// `TriggerAbandoned` carries): appends `TriggerRetried` to its stream; the process manager takes it from
    /// there.
    #[oai(path = "/admin/triggers/:trigger_id/retry", method = "post", operation_id = "retry_trigger")]
    async fn retry_trigger(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        trigger_id: Path<String>,
    ) -> ApiResult<RetryAccepted> {
        let Ok(id) = uuid::Uuid::parse_str(&trigger_id.0) else {
            return ApiResult::not_found(format!("no trigger {}", trigger_id.0));
        };
        let (stream, status) = match abandonable(&state, id).await {
            Ok(Some(found)) => found,
            Ok(None) => return ApiResult::not_found(format!("no trigger {}", trigger_id.0)),
            Err(e) => return e.into(),
        };
        if status != "abandoned" {
            return ApiResult::conflict(
                "not_abandoned",
                format!("trigger {} is {status}; only abandoned triggers can be retried", trigger_id.0),
            );
        }
        // Retry the step it gave up on; `retry` counts the retries so far. A
        // pull request's stream holds every closing's enrichment: only this one counts.
        let history = match state.store.read_stream(&stream, 0, 10_000).await {
            Ok(history) => history,
            Err(e) => return ApiResult::unavailable(e),
        };
        let Some(abandoned) =
            history.iter().rev().filter_map(|e| TriggerAbandoned::decode(e).ok()).find(|a| a.trigger_id == id)
        else {
            return ApiResult::conflict("not_abandoned", format!("trigger {} was never abandoned", trigger_id.0));
        };
        let retries = history
            .iter()
            .filter(|e| e.event_type == TriggerRetried::TYPE)
            .filter_map(|e| TriggerRetried::decode(e).ok())
            .filter(|r| r.trigger_id == id)
            .count();
        let event = TriggerRetried {
            trigger_id: id,
            step: abandoned.step,
            retry: u32::try_from(retries + 1).unwrap_or(u32::MAX),
            requested_by: "api".into(),
        };
        let new_event = match event.to_new_event(uuid::Uuid::new_v4(), None) {
            Ok(e) => e,
            Err(e) => return ApiResult::unavailable(e),
        };
        match state.store.append(&stream, ExpectedVersion::StreamExists, vec![new_event]).await {
            Ok(result) => ApiResult::Ok(Json(RetryAccepted {
                trigger_id: trigger_id.0,
                position: result.first_position.map(|p| p.0).unwrap_or(0),
            })),
            Err(e) => ApiResult::unavailable(e),
        }
    }
}

/// The stream and status of what `id` names: a trigger (its conversation's
/// status), or else a pull request's enrichment (its latest command's status).
async fn abandonable(state: &AppState, id: uuid::Uuid) -> Result<Option<(String, String)>, SqlError> {
    let key = id.to_string();
    let rows =
        state.db.query("SELECT status FROM conversations WHERE trigger_id = ?", sql_params![key.as_str()]).await?;
    if let Some(row) = rows.first() {
        return Ok(Some((streams::trigger(id), row.get::<String>(0)?)));
    }
    let rows = state
        .db
        .query(
            "SELECT status, arguments FROM outbox WHERE trigger_id = ? AND step = ?
             ORDER BY created_at DESC LIMIT 1",
            sql_params![key.as_str(), Step::EnrichPullRequest.as_str()],
        )
        .await?;
    let Some(row) = rows.first() else { return Ok(None) };
    let pull_request: PullRequestRef = serde_json::from_str(&row.get::<String>(1)?)
        .map_err(|e| SqlError::Database(format!("outbox arguments of {key}: {e}")))?;
    Ok(Some((pull_request.stream(), row.get::<String>(0)?)))
}
