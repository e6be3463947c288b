//! What the trigger events say about the delivery that caused them.

use serde_json::Value;

use super::conversations::{field, trigger_id};
use super::read_model::Tables;
use crate::sql::Statement;
use crate::sql_params;
use crate::store::RecordedEvent;

/// Until something decides otherwise, a delivery started nothing.
pub const OUTCOME_IGNORED: &str = "ignored";
pub const OUTCOME_TRIGGER: &str = "trigger";
pub const OUTCOME_REJECTED: &str = "rejected";

/// Statements that record on `deliveries` what became of a delivery.
pub fn delivery_outcome(t: &Tables, event: &RecordedEvent) -> Vec<Statement> {
    let Some(trigger) = trigger_id(event) else {
        return Vec::new();
    };
    let data: Value = serde_json::from_slice(&event.data).unwrap_or(Value::Null);
    match event.event_type.as_str() {
        "TriggerDetected" => {
            // The catalogue names the delivery by its log position; by its id otherwise.
            if let Some(position) = data.get("delivery_position").and_then(Value::as_u64) {
                return vec![Statement::new(
                    t.sql("UPDATE {p}deliveries SET outcome = ?, trigger_id = ? WHERE position = ? AND outcome = ?"),
                    sql_params![OUTCOME_TRIGGER, trigger, position, OUTCOME_IGNORED],
                )];
            }
            let Some(delivery_id) = field(&data, &["delivery_id", "delivery"]) else {
                return Vec::new();
            };
            vec![Statement::new(
                t.sql(
                    "UPDATE {p}deliveries SET outcome = ?, trigger_id = ?
                     WHERE delivery_id = ? AND outcome = ? AND hook_id = COALESCE(?, hook_id)",
                ),
                sql_params![OUTCOME_TRIGGER, trigger, delivery_id, OUTCOME_IGNORED, field(&data, &["hook_id"])],
            )]
        }
        "TriggerRejected" | "PermissionDenied" => vec![rejected(t, trigger, field(&data, &["reason", "message"]))],
        "PermissionChecked"
            if data.get("granted").and_then(Value::as_bool) == Some(false)
                || data.get("allowed").and_then(Value::as_bool) == Some(false) =>
        {
            vec![rejected(t, trigger, field(&data, &["reason", "message"]).or(Some("permission denied".into())))]
        }
        "TriggerRetried" => vec![Statement::new(
            t.sql("UPDATE {p}deliveries SET outcome = ?, reason = NULL WHERE trigger_id = ?"),
            sql_params![OUTCOME_TRIGGER, trigger],
        )],
        _ => Vec::new(),
    }
}

fn rejected(t: &Tables, trigger: &str, reason: Option<String>) -> Statement {
    Statement::new(
        t.sql("UPDATE {p}deliveries SET outcome = ?, reason = ? WHERE trigger_id = ?"),
        sql_params![OUTCOME_REJECTED, reason, trigger],
    )
}
