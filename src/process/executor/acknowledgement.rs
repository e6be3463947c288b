//! `post_acknowledgement`: "I'm on it!" with the conversation's link.

use super::{event, reply, wording, StepContext, StepError, StepOutcome};
use crate::events::{AcknowledgementPosted, TriggerDetected};
use crate::triggers::TriggerState;

pub(super) async fn perform(
    ctx: &StepContext<'_>,
    trigger: &TriggerDetected,
    state: &TriggerState,
) -> Result<StepOutcome, StepError> {
    let started = state.started.as_ref().ok_or_else(|| StepError::Invalid("no conversation was started".into()))?;
    let body = wording::acknowledgement(&trigger.requester.login, &started.conversation_url);
    let (comment_id, comment_url) = reply::reply_once(ctx, trigger, &body).await?;
    let posted = AcknowledgementPosted { trigger_id: trigger.trigger_id, comment_id, comment_url };
    Ok(StepOutcome::Done(vec![event(&posted, ctx.ids.outcome())?]))
}
