//! `report_abandonment`: a step failed its last attempt, so the trigger will
//! not go on by itself — say so where the request was made (the status
//! comment edited to its final state, or a reply), naming what failed.

use super::{event, reply, wording, StepContext, StepError, StepOutcome};
use crate::events::{AbandonmentReported, TriggerDetected};
use crate::triggers::TriggerState;

pub(super) async fn perform(
    ctx: &StepContext<'_>,
    trigger: &TriggerDetected,
    state: &TriggerState,
) -> Result<StepOutcome, StepError> {
    let (abandoned, _) = state.abandoned.as_ref().ok_or_else(|| StepError::Invalid("nothing is abandoned".into()))?;
    let status = match reply::status_comment(ctx, state) {
        Some(_) => wording::final_status("failed"),
        None => String::new(),
    };
    let link = state.started.as_ref().map(|s| s.conversation_url.as_str());
    let body = wording::abandoned(&status, abandoned, link);
    let written = reply::update_status_comment(ctx, trigger, state, &body).await?;
    let reported = AbandonmentReported {
        trigger_id: trigger.trigger_id,
        step: abandoned.step.clone(),
        comment_id: written.comment_id,
        edited: written.edited,
    };
    Ok(StepOutcome::Done(vec![event(&reported, ctx.ids.outcome())?]))
}
