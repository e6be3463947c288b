use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::types::ToJSON;
use poem_openapi::{Object, OpenApi, Tags};
use serde::Serialize;
use serde_json::value::RawValue;

use super::{iso, limit_of, ok, ok_json_bytes, time_window, Answer, ApiAuth};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::process::explain::{explain_delivery, DeliveryExplanation, ExplainError};
use crate::projections::deliveries::{self, DeliveryFilter, DeliveryRow};

#[derive(Tags)]
enum Tag {
    /// Verified GitHub deliveries as stored, and what became of each.
    Deliveries,
}

/// A stored delivery.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Delivery {
    /// Log position of its `WebhookReceived` event; the pagination cursor.
    pub position: u64,
    /// `X-GitHub-Delivery`.
    pub delivery_id: String,
    /// `X-GitHub-Hook-ID`.
    pub hook_id: String,
    /// `X-GitHub-Event`.
    pub event: String,
    pub action: Option<String>,
    /// `owner/name`.
    pub repository: Option<String>,
    pub repository_id: Option<u64>,
    pub sender: Option<String>,
    /// `User`, `Bot` or `Organization`.
    pub sender_type: Option<String>,
    pub installation_id: Option<u64>,
    /// When it was recorded (RFC 3339).
    pub received_at: String,
    /// Which configured secret verified it: `current` or `previous`.
    pub secret: String,
    /// `ignored`, `trigger` or `rejected`.
    pub outcome: String,
    /// Why it was rejected, if it was.
    pub reason: Option<String>,
    /// The trigger it caused, if any.
    pub trigger_id: Option<String>,
}

/// A stored delivery with its body.
// The spec's shape; the answer itself is written by `DetailJson`.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryDetail {
    #[oai(flatten)]
    pub delivery: Delivery,
    /// The body exactly as GitHub sent it, as JSON.
    pub payload: serde_json::Value,
}

/// [`DeliveryDetail`] as written: the payload is embedded as the stored
/// text, never parsed into a tree, so that a body of any depth comes back
/// whole (serde_json builds a `Value` at most 128 levels deep).
#[derive(Serialize)]
struct DetailJson<'a> {
    #[serde(flatten)]
    delivery: serde_json::Map<String, serde_json::Value>,
    payload: &'a RawValue,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<u64>,
}

/// Why a delivery did or did not ask for the agent, by the rules in force
/// now and the same classification the process manager uses.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Explanation {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    /// Whether it asks for the agent.
    pub asks: bool,
    /// The deciding reason's stable code: why it does not ask (`no_mention`,
    /// `bot_sender`, `edit_already_mentioned`, …) or why its trigger stopped
    /// (`permission_denied`, …); absent for a trigger that went on.
    pub code: Option<String>,
    /// The answer in one sentence.
    pub summary: String,
    /// Each way of asking (`HOOKWISE_TRIGGERS`' names), and why it does not ask.
    pub ways: Vec<WayOfAsking>,
    /// The trigger it asks for, when it does.
    pub trigger: Option<ExplainedTrigger>,
}

/// One way of asking's verdict.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WayOfAsking {
    /// `label`, `mention`, `review`, `assign`, `pr-label`, `edited-mention` or `failed-run`.
    pub way: String,
    pub asks: bool,
    /// Why not: a stable code (absent when it asks).
    pub code: Option<String>,
    /// Why not, in words.
    pub reason: Option<String>,
}

/// The trigger a delivery asks for, as its stream stands.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ExplainedTrigger {
    pub trigger_id: String,
    /// As in `/conversations` (`issue_comment`, `label`, …).
    pub kind: String,
    /// Whether its stream exists yet.
    pub recorded: bool,
    /// The delivery that recorded it, when another did (a redelivery, another hook).
    pub recorded_by: Option<String>,
    /// As in `/conversations` (`rejected`, `finished`, …).
    pub status: Option<String>,
    /// The rejection's code (`permission_denied`, `installation_suspended`, …).
    pub rejection_code: Option<String>,
    pub rejection: Option<String>,
    /// The last error of an abandoned trigger.
    pub abandoned_error: Option<String>,
}

impl From<DeliveryExplanation> for Explanation {
    fn from(e: DeliveryExplanation) -> Self {
        Explanation {
            delivery_id: e.delivery_id,
            event: e.event,
            action: e.action,
            asks: e.asks,
            code: e.code,
            summary: e.summary,
            ways: e
                .ways
                .into_iter()
                .map(|w| WayOfAsking {
                    way: w.way.to_owned(),
                    asks: w.asks,
                    code: w.code.map(str::to_owned),
                    reason: w.reason,
                })
                .collect(),
            trigger: e.trigger.map(|t| ExplainedTrigger {
                trigger_id: t.trigger_id.to_string(),
                kind: t.kind.as_str().to_owned(),
                recorded: t.recorded,
                recorded_by: t.recorded_by,
                status: t.status,
                rejection_code: t.rejection_code,
                rejection: t.rejection,
                abandoned_error: t.abandoned_error,
            }),
        }
    }
}

impl From<DeliveryRow> for Delivery {
    fn from(row: DeliveryRow) -> Self {
        Delivery {
            position: row.position,
            delivery_id: row.delivery_id,
            hook_id: row.hook_id,
            event: row.event,
            action: row.action,
            repository: row.repository,
            repository_id: row.repository_id,
            sender: row.sender,
            sender_type: row.sender_type,
            installation_id: row.installation_id,
            received_at: iso(row.received_at),
            secret: row.secret,
            outcome: row.outcome,
            reason: row.reason,
            trigger_id: row.trigger_id,
        }
    }
}

pub struct DeliveriesApi;

#[OpenApi(tag = "Tag::Deliveries")]
impl DeliveriesApi {
    /// List deliveries, oldest first.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/deliveries", method = "get", operation_id = "list_deliveries")]
    async fn list(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        /// Only rows after this cursor (a log position).
        after: Query<Option<u64>>,
        /// Page size (1–500, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// `owner/name`.
        repository: Query<Option<String>>,
        /// `X-GitHub-Event`, e.g. `issue_comment`.
        event: Query<Option<String>>,
        action: Query<Option<String>>,
        /// The sender's login.
        sender: Query<Option<String>>,
        /// `ignored`, `trigger` or `rejected`.
        status: Query<Option<String>>,
        /// Received at or after (RFC 3339).
        since: Query<Option<String>>,
        /// Received before (RFC 3339).
        until: Query<Option<String>>,
    ) -> Answer<DeliveryPage> {
        let (since, until) = time_window(since.0.as_deref(), until.0.as_deref())?;
        let filter = DeliveryFilter {
            after: after.0.unwrap_or(0),
            repository: repository.0,
            event: event.0,
            action: action.0,
            sender: sender.0,
            outcome: status.0,
            since,
            until,
        };
        let page = deliveries::list(&state.db, filter, limit_of(limit.0)).await?;
        ok(DeliveryPage { items: page.items.into_iter().map(Delivery::from).collect(), next_cursor: page.next_cursor })
    }

    /// One delivery with its raw payload.
    #[oai(path = "/deliveries/:delivery_id", method = "get", operation_id = "get_delivery")]
    async fn get(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        /// `X-GitHub-Delivery`.
        delivery_id: Path<String>,
    ) -> Answer<DeliveryDetail> {
        let Some(row) = deliveries::get(&state.db, &delivery_id.0).await? else {
            return Err(ApiError::not_found(format!("no delivery {}", delivery_id.0)));
        };
        let events = state.store.read_stream(&row.stream, 0, 1).await?;
        // Verified JSON at intake; checked again (without a depth limit) so that the answer is JSON.
        let payload = events
            .first()
            .and_then(|e| e.payload.as_deref())
            .and_then(|p| serde_json::from_slice::<&RawValue>(p).ok())
            .unwrap_or(RawValue::NULL);
        let delivery = match Delivery::from(row).to_json() {
            Some(serde_json::Value::Object(fields)) => fields,
            _ => serde_json::Map::new(),
        };
        // Cannot fail (string keys, JSON already checked); mapped rather than unwrapped all the same.
        let json = serde_json::to_vec(&DetailJson { delivery, payload }).map_err(ApiError::database_unavailable)?;
        ok_json_bytes::<DeliveryDetail>(json)
    }

    /// Why a delivery did or did not ask for the agent: for each way of
    /// asking, whether it matched or why not, and when it asked, what became
    /// of its trigger (its status and rejection).
    #[oai(path = "/deliveries/:delivery_id/explanation", method = "get", operation_id = "explain_delivery")]
    async fn explanation(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        /// `X-GitHub-Delivery`.
        delivery_id: Path<String>,
    ) -> Answer<Explanation> {
        match explain_delivery(state.store.as_ref(), &delivery_id.0, &state.rules).await {
            Ok(Some(explanation)) => ok(Explanation::from(explanation)),
            Ok(None) => Err(ApiError::not_found(format!("no delivery {}", delivery_id.0))),
            Err(ExplainError::Store(e)) => Err(e.into()),
            // An event hookwise wrote and cannot read back: logged, answered like the log being down.
            Err(e @ ExplainError::Decode { .. }) => Err(ApiError::database_unavailable(e)),
        }
    }
}
