//! `stop_conversation`: a stop's one step (`{handle} stop`). The requester
//! may write (as for a request; anyone else gets nothing, not even a
//! reply); then every conversation running on the issue or pull request (the
//! triggers in its line with a started, unended run) is stopped on the
//! runtime and gets a `ConversationStopped` on its trigger's stream, whose
//! summary then says who stopped it. With nothing running, or a runtime that
//! cannot stop, one short reply says so. Retried, it stops only what still
//! runs, and its reply goes out once (`reply_once`).

use uuid::Uuid;

use super::{event, permission, reply, wording, StepContext, StepError, StepOutcome};
use crate::agent::StopOutcome;
use crate::events::{derived_id, streams, ConversationStopped, StopAnswered};
use crate::store::ExpectedVersion;
use crate::triggers::stop::{is_running, StopState};
use crate::triggers::thread::ThreadState;
use crate::triggers::TriggerState;

pub(super) async fn perform(ctx: &StepContext<'_>, stop_id: Uuid) -> Result<StepOutcome, StepError> {
    let history = ctx.store.read_stream(&streams::stop(stop_id), 0, usize::MAX).await?;
    let stop = StopState::fold(&history).map_err(|e| StepError::Invalid(format!("stop {stop_id}: {e}")))?;
    if stop.answered.is_some() {
        return Ok(StepOutcome::Done(Vec::new()));
    }
    let request = stop
        .requested
        .map(|requested| requested.request)
        .ok_or_else(|| StepError::Invalid("the stop stream has no StopRequested".into()))?;
    if !ctx.github.is_configured() {
        return Err(StepError::Invalid("GITHUB_APP_ID and its key are not set".into()));
    }
    let (installation, repo, login) =
        (request.installation_id, request.repository.full_name.as_str(), request.requester.login.as_str());
    let permission = ctx.github.collaborator_permission(installation, repo, login).await?;
    let answer = |outcome: &str, stopped: Vec<Uuid>, comment_id: Option<u64>| -> Result<StepOutcome, StepError> {
        let answered =
            StopAnswered { stop_id, permission: permission.clone(), outcome: outcome.to_owned(), stopped, comment_id };
        Ok(StepOutcome::Done(vec![event(&answered, ctx.ids.outcome())?]))
    };
    if !permission::may_write(&permission) {
        return answer("denied", Vec::new(), None);
    }

    let thread = streams::thread(request.repository.id, request.number);
    let line = ThreadState::fold(&ctx.store.read_stream(&thread, 0, usize::MAX).await?)
        .map_err(|e| StepError::Invalid(format!("{thread}: {e}")))?;
    let (mut running, mut stopped) = (Vec::new(), Vec::new());
    for trigger_id in line.line() {
        let history = ctx.store.read_stream(&streams::trigger(trigger_id), 0, usize::MAX).await?;
        let state =
            TriggerState::fold(&history).map_err(|e| StepError::Invalid(format!("trigger {trigger_id}: {e}")))?;
        match (&state.started, &state.stopped) {
            // An earlier attempt of this stop got that far.
            (_, Some(done)) if done.stop_id == stop_id => stopped.push(trigger_id),
            (Some(started), _) if is_running(&state) => running.push((trigger_id, started.conversation_id.clone())),
            _ => {}
        }
    }
    if running.is_empty() && stopped.is_empty() {
        let (comment_id, _) = reply::reply_once(ctx, &request, wording::NOTHING_TO_STOP).await?;
        return answer("nothing_running", Vec::new(), Some(comment_id));
    }
    let agent = ctx.agent.ok_or_else(|| StepError::Invalid("AGENT_API_URL is not set".into()))?;
    let mut cannot = None;
    for (trigger_id, conversation_id) in running {
        match agent.stop(&conversation_id).await? {
            StopOutcome::Stopped => {
                let done = ConversationStopped { trigger_id, conversation_id, stopped_by: login.to_owned(), stop_id };
                let id = derived_id(&[&ctx.command_id.to_string(), "stopped", &trigger_id.to_string()]);
                ctx.store
                    .append(&streams::trigger(trigger_id), ExpectedVersion::StreamExists, vec![event(&done, id)?])
                    .await?;
                stopped.push(trigger_id);
            }
            StopOutcome::CannotStop { reason } => cannot = Some(reason),
        }
    }
    match cannot {
        Some(reason) if stopped.is_empty() => {
            let (comment_id, _) = reply::reply_once(ctx, &request, &wording::cannot_stop(&reason)).await?;
            answer("cannot_stop", Vec::new(), Some(comment_id))
        }
        _ => answer("stopped", stopped, None),
    }
}
