//! `post_queued_notice`: a request that waits for the one running on its
//! issue or pull request (`HOOKWISE_PER_THREAD=queue`) says so, once, with a
//! link to what it waits for.

use std::time::Duration;

use super::{event, reply, wording, StepContext, StepError, StepOutcome};
use crate::events::{streams, QueuedNoticePosted, TriggerDetected};
use crate::triggers::thread::ThreadState;
use crate::triggers::TriggerState;

/// How soon to look again when the request ahead has no link yet (its
/// conversation is still starting).
const LINK_WAIT: Duration = Duration::from_millis(500);

pub(super) async fn perform(ctx: &StepContext<'_>, trigger: &TriggerDetected) -> Result<StepOutcome, StepError> {
    let stream = streams::thread(trigger.repository.id, trigger.number);
    let history = ctx.store.read_stream(&stream, 0, usize::MAX).await?;
    let line = ThreadState::fold(&history).map_err(|e| StepError::Invalid(format!("{stream}: {e}")))?;
    // Its turn came (or it left) before the notice went out: nothing to say.
    let Some(behind) = line.waits_behind(trigger.trigger_id) else { return Ok(StepOutcome::Done(Vec::new())) };
    let ahead = ctx.store.read_stream(&streams::trigger(behind), 0, usize::MAX).await?;
    let ahead = TriggerState::fold(&ahead).map_err(|e| StepError::Invalid(format!("trigger {behind}: {e}")))?;
    let link = ahead
        .acknowledged
        .and_then(|acknowledged| acknowledged.comment_url)
        .or(ahead.started.map(|started| started.conversation_url));
    let Some(link) = link else { return Ok(StepOutcome::Later(LINK_WAIT)) };
    let (comment_id, comment_url) = reply::reply_once(ctx, trigger, &wording::queued_behind(&link)).await?;
    let posted = QueuedNoticePosted { trigger_id: trigger.trigger_id, behind, comment_id, comment_url };
    Ok(StepOutcome::Done(vec![event(&posted, ctx.ids.outcome())?]))
}
