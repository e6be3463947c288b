//! `post_acknowledgement`: "I'm on it!" with the conversation's link; when
//! replies are edited in place, the status comment, saying since when the
//! agent runs.

use super::{event, reply, wording, StepContext, StepError, StepOutcome};
use crate::config::ReplyStyle;
use crate::events::{AcknowledgementPosted, TriggerDetected};
use crate::triggers::TriggerState;

pub(super) async fn perform(
    ctx: &StepContext<'_>,
    trigger: &TriggerDetected,
    state: &TriggerState,
) -> Result<StepOutcome, StepError> {
    let started = state.started.as_ref().ok_or_else(|| StepError::Invalid("no conversation was started".into()))?;
    let (requester, url) = (&trigger.requester.login, &started.conversation_url);
    let body = match (ctx.settings.reply_style, state.started_at_micros) {
        (ReplyStyle::Edit, Some(since)) => wording::status_running(requester, url, since),
        _ => wording::acknowledgement(requester, url),
    };
    // Edited in place, a comment posted before (the report of an abandonment
    // an admin then retried) becomes the acknowledgement.
    let written = reply::update_status_comment(ctx, trigger, state, &body).await?;
    let posted = AcknowledgementPosted {
        trigger_id: trigger.trigger_id,
        comment_id: written.comment_id,
        comment_url: written.comment_url,
    };
    Ok(StepOutcome::Done(vec![event(&posted, ctx.ids.outcome())?]))
}
