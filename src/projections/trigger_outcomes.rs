//! What the trigger events say about the delivery that caused them, on
//! `deliveries`: it asked for the agent (`trigger`), or its trigger was
//! rejected (`rejected`, with the reason code).

use super::conversations::trigger_id;
use super::read_model::Tables;
use crate::runner::HandlerError;
use crate::sql::Statement;
use crate::sql_params;
use crate::store::RecordedEvent;
use crate::triggers::TriggerEvent;

/// Until something decides otherwise, a delivery started nothing.
pub const OUTCOME_IGNORED: &str = "ignored";
pub const OUTCOME_TRIGGER: &str = "trigger";
pub const OUTCOME_REJECTED: &str = "rejected";

/// Statements that record on `deliveries` what became of a delivery.
pub fn delivery_outcome(t: &Tables, event: &RecordedEvent) -> Result<Vec<Statement>, HandlerError> {
    let Some(trigger) = trigger_id(event) else {
        return Ok(Vec::new());
    };
    let typed = TriggerEvent::decode(event).map_err(|e| HandlerError::decode(event, e))?;
    Ok(match typed {
        Some(TriggerEvent::TriggerDetected(detected)) => vec![Statement::new(
            t.sql("UPDATE {p}deliveries SET outcome = ?, trigger_id = ? WHERE position = ? AND outcome = ?"),
            sql_params![OUTCOME_TRIGGER, trigger, detected.delivery_position, OUTCOME_IGNORED],
        )],
        Some(TriggerEvent::TriggerRejected(rejected)) => vec![Statement::new(
            t.sql("UPDATE {p}deliveries SET outcome = ?, reason = ? WHERE trigger_id = ?"),
            sql_params![OUTCOME_REJECTED, rejected.reason, trigger],
        )],
        Some(TriggerEvent::TriggerRetried(_)) => vec![Statement::new(
            t.sql("UPDATE {p}deliveries SET outcome = ?, reason = NULL WHERE trigger_id = ?"),
            sql_params![OUTCOME_TRIGGER, trigger],
        )],
        _ => Vec::new(),
    })
}
