//! What the trigger events say about the delivery that caused them.

use super::read_model::Tables;
use crate::sql::Statement;
use crate::store::RecordedEvent;

/// Statements that record on `deliveries` what became of a delivery.
pub fn delivery_outcome(_t: &Tables, _event: &RecordedEvent) -> Vec<Statement> {
    Vec::new()
}
