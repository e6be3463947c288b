//! Records one batch of the agent runtime's callbacks: each conversation's
//! operations are appended to `conversation-{id}` as `AgentEventsReceived`,
//! before the runtime gets its 202. Operations for conversations hookwise did
//! not start are ignored (and counted).
//!
//! A batch is bounded in what it may make the log hold: at most
//! [`MAX_BATCH_OPERATIONS`] operations and [`MAX_BATCH_STATE_CHANGES`] state
//! changes (each becomes a `ConversationStatusChanged` of its own), refused
//! whole before anything is stored when over.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::agent::v0_callbacks::{read_operation, Reported};
use crate::events::{derived_id, streams, AgentEventsReceived, AgentOperation, DomainEvent};
use crate::sql::{SqlDb, SqlError};
use crate::sql_params;
use crate::store::{EventStore, ExpectedVersion, StoreError};

/// Operations one batch may carry. V0 flushes its batch at 1 MiB or after
/// 5 s, each operation one file write of an agent event (a few hundred bytes
/// at the least), so its batches hold hundreds of operations at most.
pub const MAX_BATCH_OPERATIONS: usize = 10_000;

/// Agent state changes one batch may report. V0 reports a few per agent step.
pub const MAX_BATCH_STATE_CHANGES: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BatchReceipt {
    /// Operations stored.
    pub accepted: usize,
    /// Operations for unknown conversations, or outside `sessions/{id}/`.
    pub ignored: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("operation {index}: {problem}")]
    Invalid { index: usize, problem: String },
    #[error("the batch reports more than {MAX_BATCH_STATE_CHANGES} agent state changes; nothing was stored")]
    TooManyStateChanges,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sql(#[from] SqlError),
}

/// The conversation an operation's path belongs to: `sessions/{id}/…`.
fn conversation_of(path: &str) -> Option<&str> {
    let rest = path.trim_start_matches('/').strip_prefix("sessions/")?;
    let (id, _) = rest.split_once('/')?;
    (!id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .then_some(id)
}

pub async fn receive_agent_batch(
    store: &dyn EventStore,
    db: &SqlDb,
    operations: Vec<AgentOperation>,
) -> Result<BatchReceipt, BatchError> {
    let state_changes = operations
        .iter()
        .filter(|operation| {
            let (content, encoding) = (operation.content.as_deref(), operation.encoding.as_deref());
            matches!(
                read_operation(&operation.method, &operation.path, content, encoding),
                Some(Reported::State { .. })
            )
        })
        .count();
    if state_changes > MAX_BATCH_STATE_CHANGES {
        return Err(BatchError::TooManyStateChanges);
    }
    let mut by_conversation: BTreeMap<String, Vec<AgentOperation>> = BTreeMap::new();
    let mut ignored = 0;
    for (index, operation) in operations.into_iter().enumerate() {
        if operation.method != "POST" && operation.method != "DELETE" {
            return Err(BatchError::Invalid { index, problem: format!("unknown method {:?}", operation.method) });
        }
        if operation.encoding.as_deref().is_some_and(|e| e != "base64") {
            return Err(BatchError::Invalid { index, problem: "encoding must be base64 when given".into() });
        }
        match conversation_of(&operation.path) {
            Some(id) => by_conversation.entry(id.to_owned()).or_default().push(operation),
            None => ignored += 1,
        }
    }
    let mut accepted = 0;
    for (conversation_id, operations) in by_conversation {
        let rows = db
            .query(
                "SELECT trigger_id FROM agent_conversations WHERE conversation_id = ?",
                sql_params![conversation_id.as_str()],
            )
            .await?;
        let Some(trigger_id) =
            rows.first().and_then(|r| r.get::<String>(0).ok()).and_then(|t| Uuid::parse_str(&t).ok())
        else {
            ignored += operations.len();
            continue;
        };
        let count = operations.len();
        let received = AgentEventsReceived { conversation_id: conversation_id.clone(), trigger_id, operations };
        let data = serde_json::to_vec(&received).map_err(StoreError::Encode)?;
        // The same batch sent again is the same event.
        let digest = hex::encode(Sha256::digest(&data));
        let event_id = derived_id(&["agent-batch", &conversation_id, &digest]);
        let event = received.to_new_event(event_id, None).map_err(StoreError::Encode)?;
        store.append(&streams::conversation(&conversation_id), ExpectedVersion::Any, vec![event]).await?;
        accepted += count;
    }
    Ok(BatchReceipt { accepted, ignored })
}

#[cfg(test)]
mod tests {
    use super::conversation_of;

    #[test]
    fn the_conversation_comes_from_the_session_path() {
        assert_eq!(conversation_of("sessions/abc123/events/4.json"), Some("abc123"));
        assert_eq!(conversation_of("/sessions/abc/metadata.json"), Some("abc"));
        assert_eq!(conversation_of("sessions//x"), None);
        assert_eq!(conversation_of("other/abc/x"), None);
        assert_eq!(conversation_of("sessions/../x"), None);
    }
}
