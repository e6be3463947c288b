//! `post_summary`: the agent's result where the request was made, or a short
//! reply naming why there is none — written into the status comment when
//! replies are edited in place.

use super::{event, reply, wording, StepContext, StepError, StepOutcome};
use crate::agent::RunStatus;
use crate::events::{ConversationStarted, ConversationStatusChanged, SummaryPosted, TriggerDetected};
use crate::process::agent_events;
use crate::triggers::stop::STOPPED_BY_REQUEST;
use crate::triggers::{self, AgentOutcome, TriggerState, TriggerStatus};

pub(super) async fn perform(
    ctx: &StepContext<'_>,
    trigger: &TriggerDetected,
    state: &TriggerState,
) -> Result<StepOutcome, StepError> {
    // A status line only where the text replaces the status comment.
    let in_status_comment = reply::status_comment(ctx, state).is_some();
    let status = |agent_state: &str| match in_status_comment {
        true => wording::final_status(wording::final_state_of(agent_state)),
        false => String::new(),
    };
    let (body, outcome) = match (&state.ended, &state.started) {
        // Stopped by someone (`{handle} stop`), whatever the runtime said after.
        (_, Some(started)) if triggers::status(state) == TriggerStatus::Stopped => {
            let stopped_by = state.stopped.as_ref().map_or("someone", |stopped| stopped.stopped_by.as_str());
            let body = wording::stopped_by(in_status_comment, stopped_by, &started.conversation_url);
            (body, STOPPED_BY_REQUEST.to_owned())
        }
        (Some(ended), Some(started)) => {
            let (link, status) = (&started.conversation_url, status(&ended.agent_state));
            let body = match AgentOutcome::of(&ended.agent_state) {
                AgentOutcome::Finished => wording::summary(&status, &result_text(ctx, ended, started).await?, link),
                _ => wording::stopped(&status, &ended.agent_state, ended.reason.as_deref(), link),
            };
            (body, ended.agent_state.clone())
        }
        _ => match &state.rejected {
            Some(rejected) => (wording::could_not_start(&rejected.message), rejected.reason.clone()),
            None => return Err(StepError::Invalid("nothing to report yet".into())),
        },
    };
    let written = reply::update_status_comment(ctx, trigger, state, &body).await?;
    let posted = SummaryPosted {
        trigger_id: trigger.trigger_id,
        comment_id: written.comment_id,
        outcome,
        edited: written.edited,
    };
    Ok(StepOutcome::Done(vec![event(&posted, ctx.ids.outcome())?]))
}

/// The agent's result: its last message in the callbacks hookwise stored
/// (V0), else what the end of the run carried (the finish action's message),
/// else what the runtime says now.
async fn result_text(
    ctx: &StepContext<'_>,
    ended: &ConversationStatusChanged,
    started: &ConversationStarted,
) -> Result<String, StepError> {
    let stored = agent_events::last_agent_message(ctx.store, &started.conversation_id)
        .await
        .map_err(|e| StepError::NotYet(e.to_string()))?;
    if let Some(text) = stored.or_else(|| ended.last_message.clone()) {
        return Ok(text);
    }
    if let Some(agent) = ctx.agent {
        if let RunStatus::Finished { result: Some(text) } = agent.status(&started.conversation_id).await? {
            return Ok(text);
        }
    }
    Ok(wording::NO_RESULT_TEXT.to_owned())
}
