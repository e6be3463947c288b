//! `start_conversation` and `follow_conversation`: the agent runtime's side
//! of a trigger, through the [`AgentRuntime`](crate::agent::AgentRuntime) port.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures_util::future::try_join_all;

use super::context::clean;
use super::permission::may_write;
use super::wording::CommentTrust;
use super::{event, wording, StepContext, StepError, StepOutcome};
use crate::agent::{ConversationRequest, RunStatus, Secret, StartOutcome};
use crate::events::{
    derived_id, streams, ConversationRequested, ConversationStarted, ConversationStatusChanged, TriggerDetected,
};
use crate::github::rest::{Comment, User};
use crate::store::{now_micros, ExpectedVersion};
use crate::triggers::TriggerState;

/// The longest wait between two looks at a running conversation.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(5 * 60);

pub(super) async fn start(
    ctx: &StepContext<'_>,
    trigger: &TriggerDetected,
    state: &TriggerState,
) -> Result<StepOutcome, StepError> {
    let agent = ctx.agent.ok_or_else(|| StepError::Invalid("AGENT_API_URL is not set".into()))?;
    let (installation, repo) = (trigger.installation_id, trigger.repository.full_name.as_str());
    let branch = match (trigger.kind.is_pull_request(), &trigger.head_branch) {
        (false, _) => None,
        (true, Some(branch)) => Some(branch.clone()),
        (true, None) => Some(ctx.github.pull_request_branch(installation, repo, trigger.number).await?),
    };
    // The intent comes first: should the call's outcome be unknown, the
    // stream says a conversation may exist for this trigger, and the next
    // attempt asks the runtime to look for it before starting one.
    let retrying = state.requested.is_some();
    let requested = ConversationRequested {
        trigger_id: trigger.trigger_id,
        command_id: ctx.command_id,
        repository: repo.to_owned(),
        branch: branch.clone(),
    };
    ctx.store
        .append(
            &streams::trigger(trigger.trigger_id),
            ExpectedVersion::StreamExists,
            vec![event(&requested, ctx.ids.intent())?],
        )
        .await?;

    // Two reads that need not wait for each other.
    let (issue, comments) = tokio::try_join!(
        ctx.github.issue(installation, repo, trigger.number),
        ctx.github.latest_comments(installation, repo, trigger.number),
    )?;
    let trust = comment_trust(ctx, trigger, wording::context_comments(&comments)).await?;
    let github_token = match agent.needs_github_token() {
        true => Some(Secret::new(ctx.github.installation_token(installation).await?)),
        false => None,
    };
    let conversation_id = conversation_id(trigger);
    // A runtime that takes hookwise's id (V1) may call back before its start
    // answers: the conversation is known from now on, so its first events are
    // kept. (The process manager maps it too, from `ConversationStarted`.)
    if agent.takes_conversation_id() {
        let mapping = crate::process::map_conversation(&conversation_id.to_string(), trigger.trigger_id);
        ctx.db.write(vec![mapping]).await?;
    }
    let request = ConversationRequest {
        conversation_id,
        repository: repo.to_owned(),
        branch,
        pr_number: trigger.kind.is_pull_request().then_some(trigger.number),
        title: format!("{repo}#{}: {}", trigger.number, clean(&issue.title)),
        // The request itself, too: a comment hidden in it must not reach the agent.
        message: clean(&trigger.message),
        instructions: wording::instructions(trigger, &issue, &comments, &trust),
        github_token,
    };
    match agent.start(&request, retrying).await? {
        StartOutcome::Started { conversation_id } => {
            let conversation_url = agent.conversation_url(&conversation_id);
            let started = ConversationStarted { trigger_id: trigger.trigger_id, conversation_id, conversation_url };
            Ok(StepOutcome::Done(vec![event(&started, ctx.ids.outcome())?]))
        }
        StartOutcome::Refused { reason } => ctx.reject(trigger, crate::triggers::CONVERSATION_REFUSED, reason),
    }
}

/// Who among the authors of the context's comments could have asked for the
/// agent: the requester (the permission step let them), and everyone else
/// with write permission, asked once per distinct author, all at once. A bot
/// never could (classify ignores bots), nor could a deleted user.
async fn comment_trust(
    ctx: &StepContext<'_>,
    trigger: &TriggerDetected,
    comments: &[Comment],
) -> Result<CommentTrust, StepError> {
    let requester = trigger.requester.login.to_lowercase();
    let is_bot = |user: &User| user.kind.as_deref() == Some("Bot") || user.login.ends_with("[bot]");
    // Lowercased (GitHub's logins ignore case) to the login as written.
    let authors: BTreeMap<String, &str> = comments
        .iter()
        .filter_map(|c| c.user.as_ref())
        .filter(|user| !is_bot(user))
        .map(|user| (user.login.to_lowercase(), user.login.as_str()))
        .filter(|(login, _)| *login != requester)
        .collect();
    let (installation, repo) = (trigger.installation_id, trigger.repository.full_name.as_str());
    let permissions =
        try_join_all(authors.values().map(|login| ctx.github.collaborator_permission(installation, repo, login)))
            .await?;
    let mut trusted: HashSet<String> = authors
        .into_keys()
        .zip(permissions)
        .filter(|(_, permission)| may_write(permission))
        .map(|(login, _)| login)
        .collect();
    trusted.insert(requester);
    Ok(CommentTrust { trusted, untrusted: ctx.settings.untrusted_comments })
}

/// The conversation a trigger asks for: the same on every attempt, an
/// admin's retry of an abandoned start included (a start is abandoned after
/// attempts whose outcome may be unknown, so the retry must find what they
/// may have started rather than start another).
fn conversation_id(trigger: &TriggerDetected) -> uuid::Uuid {
    derived_id(&["conversation", &trigger.trigger_id.to_string()])
}

/// Asks the runtime how the run stands; records its end, or looks again later.
pub(super) async fn follow(ctx: &StepContext<'_>, state: &TriggerState) -> Result<StepOutcome, StepError> {
    let (Some(agent), Some(settings)) = (ctx.agent, ctx.settings.agent.as_ref()) else {
        return Err(StepError::Invalid("AGENT_API_URL is not set".into()));
    };
    let started = state.started.as_ref().ok_or_else(|| StepError::Invalid("no conversation was started".into()))?;
    let elapsed = Duration::from_micros(
        u64::try_from(now_micros() - state.started_at_micros.unwrap_or_else(now_micros)).unwrap_or(0),
    );
    let (agent_state, reason, last_message) = match agent.status(&started.conversation_id).await? {
        RunStatus::Finished { result } => ("finished".to_owned(), None, result),
        RunStatus::Failed { state, detail } => (state, detail, None),
        // Just started: the runtime may not list it yet.
        RunStatus::Unknown if elapsed < settings.poll_interval * 3 => {
            return Ok(StepOutcome::Later(settings.poll_interval));
        }
        RunStatus::Unknown => {
            ("conversation_missing".to_owned(), Some("the agent runtime does not know this conversation".into()), None)
        }
        RunStatus::Starting | RunStatus::Running if elapsed >= settings.run_timeout => {
            let limit = humantime::format_duration(settings.run_timeout);
            ("timed_out".to_owned(), Some(format!("still running after {limit} (AGENT_RUN_TIMEOUT)")), None)
        }
        RunStatus::Starting | RunStatus::Running => {
            return Ok(StepOutcome::Later(poll_delay(settings.poll_interval, elapsed)))
        }
    };
    let changed = ConversationStatusChanged::new(
        started.trigger_id,
        started.conversation_id.clone(),
        agent_state,
        reason,
        last_message,
    );
    Ok(StepOutcome::Done(vec![event(&changed, ctx.ids.outcome())?]))
}

/// `interval` at first, then a tenth of the time the run has taken, up to
/// five minutes: a long run is looked at less often.
fn poll_delay(interval: Duration, elapsed: Duration) -> Duration {
    interval.max((elapsed / 10).min(MAX_POLL_INTERVAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_slow_down_as_a_run_goes_on_up_to_five_minutes() {
        let interval = Duration::from_secs(10);
        assert_eq!(poll_delay(interval, Duration::from_secs(5)), interval);
        assert_eq!(poll_delay(interval, Duration::from_secs(600)), Duration::from_secs(60));
        assert_eq!(poll_delay(interval, Duration::from_secs(7200)), MAX_POLL_INTERVAL);
    }
}
