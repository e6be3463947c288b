//! Records one verified GitHub delivery as `WebhookReceived` in its own
//! stream, `delivery-{guid}`, appended with `NoStream` so that a redelivery
//! is recognised and stores nothing. A GUID is one delivery: the same GUID
//! with a different body is a conflict, refused and counted, never stored.

use bytes::Bytes;

use crate::events::{streams, DomainEvent, SecretSlot, WebhookReceived};
use crate::github::webhook::{PayloadEnvelope, PayloadError};
use crate::store::{EventStore, ExpectedVersion, Position, StoreError};

/// Delivery headers after validation.
pub struct DeliveryHeaders<'a> {
    pub event: &'a str,
    pub delivery_id: &'a str,
    pub hook_id: &'a str,
    pub signature: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Where the delivery is in the log.
    pub position: Position,
    /// It was already in the log: nothing was written.
    pub duplicate: bool,
    /// The payload's `action`, for the delivery's log line.
    pub action: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The GUID is in the log with a different body (at `position`).
    #[error("delivery {delivery_id} is already in the log with a different body (position {position})")]
    Conflict { delivery_id: String, position: Position },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The event that records a verified delivery (the body itself is stored as
/// the event's payload).
pub fn webhook_received(
    headers: &DeliveryHeaders<'_>,
    secret: SecretSlot,
    body: &[u8],
) -> Result<WebhookReceived, PayloadError> {
    let envelope = PayloadEnvelope::parse(body)?;
    Ok(WebhookReceived {
        delivery_id: headers.delivery_id.to_owned(),
        hook_id: headers.hook_id.to_owned(),
        event: headers.event.to_owned(),
        action: envelope.action.as_deref().map(str::to_owned),
        installation_id: envelope.installation.as_ref().map(|i| i.id),
        repository: envelope.repository_ref(),
        sender: envelope.sender_ref(),
        signature: headers.signature.to_owned(),
        secret,
    })
}

/// Parses the verified `body` and appends it durably; returns once committed.
pub async fn receive_webhook(
    store: &dyn EventStore,
    headers: &DeliveryHeaders<'_>,
    secret: SecretSlot,
    body: Bytes,
) -> Result<Receipt, ReceiveError> {
    let event = webhook_received(headers, secret, &body)?;
    let action = event.action.clone();
    let stream = streams::delivery(headers.delivery_id);
    // The stream, not the event id, recognises a redelivery (`NoStream`), so the id
    // is free to be time-ordered: a random one put every append on a random leaf
    // of the log's event-id index, a page written to the WAL per delivery.
    let event_id = uuid::Uuid::now_v7();
    let new_event = event.to_new_event(event_id, Some(body.clone())).map_err(StoreError::Encode)?;
    match store.append(&stream, ExpectedVersion::NoStream, vec![new_event]).await {
        Ok(result) => Ok(Receipt {
            position: result.first_position.unwrap_or_default(),
            duplicate: result.already_stored,
            action,
        }),
        // The stream exists with another event id: the same delivery when the
        // body is the same (a redelivery), else a conflict.
        Err(StoreError::WrongExpectedVersion { .. }) => {
            let stored = store.read_stream(&stream, 0, 1).await?;
            let Some(first) = stored.first() else {
                return Err(StoreError::Unavailable(format!("{stream} exists but could not be read")).into());
            };
            if first.payload.as_deref() != Some(&body[..]) {
                return Err(ReceiveError::Conflict {
                    delivery_id: headers.delivery_id.to_owned(),
                    position: first.position,
                });
            }
            Ok(Receipt { position: first.position, duplicate: true, action })
        }
        Err(e) => Err(e.into()),
    }
}
