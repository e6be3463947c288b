//! A closed pull request's enrichment as its PR's stream tells it, per
//! closing (subject id). Logs written before enrichments had events of their
//! own carry `StepFailed`/`TriggerAbandoned`/`TriggerRetried` on the PR's
//! stream with the subject as `trigger_id`: they are read as the enrichment
//! events they stood for.

use uuid::Uuid;

use crate::events::pull_request::{EnrichmentAbandoned, EnrichmentRetried};
use crate::events::{derived_id, DecodeError, DomainEvent, TriggerAbandoned, TriggerRetried};
use crate::store::RecordedEvent;

/// An enrichment event of one closing, whichever way it was recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum EnrichmentEvent {
    Abandoned(EnrichmentAbandoned),
    Retried(EnrichmentRetried),
}

impl EnrichmentEvent {
    /// The enrichment event a recorded event of a PR's stream is, if any.
    pub fn decode(event: &RecordedEvent) -> Result<Option<EnrichmentEvent>, DecodeError> {
        Ok(match event.event_type.as_str() {
            EnrichmentAbandoned::TYPE => Some(EnrichmentEvent::Abandoned(EnrichmentAbandoned::decode(event)?)),
            EnrichmentRetried::TYPE => Some(EnrichmentEvent::Retried(EnrichmentRetried::decode(event)?)),
            TriggerAbandoned::TYPE => {
                let legacy = TriggerAbandoned::decode(event)?;
                Some(EnrichmentEvent::Abandoned(EnrichmentAbandoned {
                    subject_id: legacy.trigger_id,
                    error: legacy.error,
                    attempts: legacy.attempts,
                }))
            }
            TriggerRetried::TYPE => {
                let legacy = TriggerRetried::decode(event)?;
                Some(EnrichmentEvent::Retried(EnrichmentRetried {
                    subject_id: legacy.trigger_id,
                    retry: legacy.retry,
                    requested_by: legacy.requested_by,
                }))
            }
            _ => None,
        })
    }
}

/// One closing's enrichment: abandoned or not, and its retries so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnrichmentState {
    /// The abandonment not yet retried, with its event id.
    pub abandoned: Option<(EnrichmentAbandoned, Uuid)>,
    pub retries: u32,
    /// The version of the PR stream's last event (any closing's).
    pub version: Option<u64>,
}

impl EnrichmentState {
    /// Folds the PR stream's events that concern `subject`.
    pub fn fold(events: &[RecordedEvent], subject: Uuid) -> Result<EnrichmentState, DecodeError> {
        let mut state = EnrichmentState::default();
        for recorded in events {
            state.version = Some(recorded.version);
            match EnrichmentEvent::decode(recorded)? {
                Some(EnrichmentEvent::Abandoned(abandoned)) if abandoned.subject_id == subject => {
                    state.abandoned = Some((abandoned, recorded.event_id));
                }
                Some(EnrichmentEvent::Retried(retried)) if retried.subject_id == subject => {
                    state.abandoned = None;
                    state.retries = state.retries.max(retried.retry);
                }
                _ => {}
            }
        }
        Ok(state)
    }

    /// The retry an admin may ask for, with its event id (one per abandonment).
    pub fn retry(&self, requested_by: &str) -> Option<(EnrichmentRetried, Uuid)> {
        let (abandoned, abandoned_id) = self.abandoned.as_ref()?;
        let retried = EnrichmentRetried {
            subject_id: abandoned.subject_id,
            retry: self.retries + 1,
            requested_by: requested_by.to_owned(),
        };
        Some((retried, derived_id(&["enrichment-retried", &abandoned_id.to_string()])))
    }
}
