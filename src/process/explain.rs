//! Why a delivery did or did not ask for the agent (`hookwise explain`,
//! `GET /api/v1/deliveries/{id}/explanation`): the process manager's own
//! classification ([`classify::explain`]) of the stored delivery, and, when
//! it asked, what became of its trigger as the trigger's stream tells it.
//! Read-only; the rules are the operator's in force now, with the repository's
//! `.github/hookwise.yml` as the log had it before the delivery.

use serde::Serialize;
use uuid::Uuid;

use crate::events::{streams, DomainEvent, TriggerKind, WebhookReceived};
use crate::store::{EventStore, StoreError};
use crate::triggers::classify::{self, NotAsking, TriggerRules, TriggerSwitch};
use crate::triggers::{status, TriggerState};

/// The answer for one delivery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryExplanation {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    /// Whether it asks for the agent, by the rules in force now.
    pub asks: bool,
    /// The deciding reason's stable code: why it does not ask (e.g.
    /// `no_mention`), or why its trigger stopped (e.g. `permission_denied`);
    /// `None` for a trigger that went on.
    pub code: Option<String>,
    /// The whole answer in one sentence.
    pub summary: String,
    /// Each way of asking, in `HOOKWISE_TRIGGERS` order.
    pub ways: Vec<WayExplanation>,
    /// The trigger it asks for, when it does.
    pub trigger: Option<TriggerExplanation>,
}

/// What one way of asking makes of the delivery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WayExplanation {
    /// The way's name in `HOOKWISE_TRIGGERS` (`mention`, `label`, …).
    pub way: &'static str,
    pub asks: bool,
    /// Why not (absent when it asks).
    pub code: Option<&'static str>,
    pub reason: Option<String>,
}

/// The trigger a delivery asks for, as its stream stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggerExplanation {
    pub trigger_id: Uuid,
    pub kind: TriggerKind,
    /// Whether its stream exists (not yet, while the process manager has not
    /// read the delivery; never, if other rules were in force then).
    pub recorded: bool,
    /// The delivery that recorded it, when another did (a redelivery, another hook).
    pub recorded_by: Option<String>,
    /// `detected`, `rejected`, `starting`, `running`, `finished`, `failed`, `abandoned`.
    pub status: Option<String>,
    /// The rejection's code and message (`permission_denied`, …).
    pub rejection_code: Option<String>,
    pub rejection: Option<String>,
    /// The last error of an abandoned trigger.
    pub abandoned_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading {what} from the log: {message}")]
    Decode { what: &'static str, message: String },
}

/// The explanation of delivery `delivery_id`; `None` when the log has no such delivery.
pub async fn explain_delivery(
    store: &dyn EventStore,
    delivery_id: &str,
    rules: &TriggerRules,
) -> Result<Option<DeliveryExplanation>, ExplainError> {
    let stream = streams::delivery(delivery_id);
    let Some(event) = store.read_stream(&stream, 0, 1).await?.into_iter().next() else { return Ok(None) };
    if event.event_type != WebhookReceived::TYPE {
        return Ok(None);
    }
    let received = WebhookReceived::decode(&event)
        .map_err(|e| ExplainError::Decode { what: "the delivery", message: e.to_string() })?;
    let payload = event.payload.as_deref().unwrap_or_default();
    // The repository's `.github/hookwise.yml` as the process manager had it for this delivery.
    let in_force = match &received.repository {
        Some(repository) => super::repository_settings::as_of(store, repository.id, event.position).await?.settings,
        None => None,
    };
    let rules = &match &in_force {
        Some(in_force) => crate::triggers::settings::rules_for(rules, &in_force.settings),
        None => rules.clone(),
    };
    let verdicts = classify::explain(&received, payload, &event.stream, event.position.0, rules);
    let detected = verdicts.iter().find_map(|(_, verdict)| verdict.as_ref().ok());
    let trigger = match detected {
        None => None,
        Some(detected) => {
            let history = store.read_stream(&streams::trigger(detected.trigger_id), 0, usize::MAX).await?;
            let state = TriggerState::fold(&history)
                .map_err(|e| ExplainError::Decode { what: "the trigger", message: e.to_string() })?;
            Some(trigger_explanation(detected.trigger_id, detected.kind, delivery_id, &state))
        }
    };
    Ok(Some(explanation(&received, &verdicts, trigger, rules)))
}

fn trigger_explanation(id: Uuid, kind: TriggerKind, delivery_id: &str, state: &TriggerState) -> TriggerExplanation {
    let recorded = state.detected.is_some();
    TriggerExplanation {
        trigger_id: id,
        kind,
        recorded,
        recorded_by: state.detected.as_ref().and_then(|d| d.delivery_id.clone()).filter(|first| first != delivery_id),
        status: recorded.then(|| status(state).as_str().to_owned()),
        rejection_code: state.rejected.as_ref().map(|r| r.reason.clone()),
        rejection: state.rejected.as_ref().map(|r| r.message.clone()),
        abandoned_error: state.abandoned.as_ref().map(|(a, _)| a.error.clone()),
    }
}

/// The explanation from the verdicts of every way and the trigger's state. Pure.
fn explanation(
    received: &WebhookReceived,
    verdicts: &[(TriggerSwitch, classify::Verdict)],
    trigger: Option<TriggerExplanation>,
    rules: &TriggerRules,
) -> DeliveryExplanation {
    let ways: Vec<WayExplanation> = verdicts
        .iter()
        .map(|(way, verdict)| WayExplanation {
            way: way.name(),
            asks: verdict.is_ok(),
            code: verdict.as_ref().err().map(NotAsking::code),
            reason: verdict.as_ref().err().map(|why| why.sentence(*way, rules)),
        })
        .collect();
    let what = match &received.action {
        Some(action) => format!("{}.{action}", received.event),
        None => received.event.clone(),
    };
    // The way that reads this delivery (at most one does), if any.
    let reading = verdicts.iter().find(|(_, verdict)| !matches!(verdict, Err(NotAsking::OtherEvent { .. })));
    let (code, summary) = match (reading, &trigger) {
        (None, _) => (Some("event_not_a_trigger".to_owned()), format!("{what} is no way of asking for the agent")),
        (Some((way, Err(why))), _) => {
            let sentence = why.sentence(*way, rules);
            (Some(why.code().to_owned()), format!("{what} does not ask by `{}`: {sentence}", way.name()))
        }
        (Some((way, Ok(_))), Some(trigger)) => return asked(received, way.name(), &what, ways, trigger.clone()),
        // Not reached: a trigger that asks is always looked up.
        (Some((way, Ok(_))), None) => (None, format!("{what} asks by `{}`", way.name())),
    };
    DeliveryExplanation {
        delivery_id: received.delivery_id.clone(),
        event: received.event.clone(),
        action: received.action.clone(),
        asks: reading.is_some_and(|(_, verdict)| verdict.is_ok()),
        code,
        summary,
        ways,
        trigger,
    }
}

/// A delivery that asks: the summary says what became of its trigger.
fn asked(
    received: &WebhookReceived,
    way: &str,
    what: &str,
    ways: Vec<WayExplanation>,
    trigger: TriggerExplanation,
) -> DeliveryExplanation {
    let id = trigger.trigger_id;
    let summary = match (&trigger.status, &trigger.rejection_code, &trigger.abandoned_error) {
        (None, _, _) => format!(
            "{what} asks by `{way}` for trigger {id}, which is not recorded (yet: the process manager has not \
             read the delivery; or other rules were in force when it did)"
        ),
        (Some(status), Some(code), _) => format!(
            "{what} asks by `{way}`: trigger {id} is {status}, {code}: {}",
            trigger.rejection.as_deref().unwrap_or("")
        ),
        (Some(status), None, Some(error)) => format!("{what} asks by `{way}`: trigger {id} is {status}: {error}"),
        (Some(status), None, None) => format!("{what} asks by `{way}`: trigger {id} is {status}"),
    };
    let code = trigger.rejection_code.clone().or_else(|| trigger.abandoned_error.as_ref().map(|_| "abandoned".into()));
    DeliveryExplanation {
        delivery_id: received.delivery_id.clone(),
        event: received.event.clone(),
        action: received.action.clone(),
        asks: true,
        code,
        summary,
        ways,
        trigger: Some(trigger),
    }
}
