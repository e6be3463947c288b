//! Every event of a `trigger-{id}` stream, as one type.

use serde::Serialize;

use crate::events::{
    AbandonmentReported, AcknowledgementPosted, ConversationRequested, ConversationStarted, ConversationStatusChanged,
    ConversationStopped, DecodeError, DomainEvent, PermissionChecked, QueuedNoticePosted, ReactionAdded, StepFailed,
    SummaryPosted, TriggerAbandoned, TriggerDetected, TriggerRejected, TriggerRetried,
};
use crate::store::RecordedEvent;

/// An event of a trigger's stream. Serialized tagged (`{"type": …, "data":
/// …}`) like the log names them; read from the log through
/// [`TriggerEvent::decode`], which upcasts older schema versions.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum TriggerEvent {
    TriggerDetected(Box<TriggerDetected>),
    PermissionChecked(PermissionChecked),
    TriggerRejected(TriggerRejected),
    ReactionAdded(ReactionAdded),
    ConversationRequested(ConversationRequested),
    ConversationStarted(ConversationStarted),
    AcknowledgementPosted(AcknowledgementPosted),
    ConversationStatusChanged(ConversationStatusChanged),
    SummaryPosted(SummaryPosted),
    StepFailed(StepFailed),
    TriggerAbandoned(TriggerAbandoned),
    TriggerRetried(TriggerRetried),
    AbandonmentReported(AbandonmentReported),
    QueuedNoticePosted(QueuedNoticePosted),
    ConversationStopped(ConversationStopped),
}

impl TriggerEvent {
    /// The trigger event a recorded event is; `Ok(None)` for any other type.
    pub fn decode(event: &RecordedEvent) -> Result<Option<TriggerEvent>, DecodeError> {
        fn read<T: DomainEvent>(
            event: &RecordedEvent,
            wrap: fn(T) -> TriggerEvent,
        ) -> Result<Option<TriggerEvent>, DecodeError> {
            T::decode(event).map(wrap).map(Some)
        }
        match event.event_type.as_str() {
            TriggerDetected::TYPE => read(event, |e: TriggerDetected| TriggerEvent::TriggerDetected(Box::new(e))),
            PermissionChecked::TYPE => read(event, TriggerEvent::PermissionChecked),
            TriggerRejected::TYPE => read(event, TriggerEvent::TriggerRejected),
            ReactionAdded::TYPE => read(event, TriggerEvent::ReactionAdded),
            ConversationRequested::TYPE => read(event, TriggerEvent::ConversationRequested),
            ConversationStarted::TYPE => read(event, TriggerEvent::ConversationStarted),
            AcknowledgementPosted::TYPE => read(event, TriggerEvent::AcknowledgementPosted),
            ConversationStatusChanged::TYPE => read(event, TriggerEvent::ConversationStatusChanged),
            SummaryPosted::TYPE => read(event, TriggerEvent::SummaryPosted),
            StepFailed::TYPE => read(event, TriggerEvent::StepFailed),
            TriggerAbandoned::TYPE => read(event, TriggerEvent::TriggerAbandoned),
            TriggerRetried::TYPE => read(event, TriggerEvent::TriggerRetried),
            AbandonmentReported::TYPE => read(event, TriggerEvent::AbandonmentReported),
            QueuedNoticePosted::TYPE => read(event, TriggerEvent::QueuedNoticePosted),
            ConversationStopped::TYPE => read(event, TriggerEvent::ConversationStopped),
            _ => Ok(None),
        }
    }
}
