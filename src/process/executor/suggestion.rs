//! `post_suggestion`: once every workflow run of a pull request's head is
//! done, one comment naming the failed ones (proactive starters).

use super::{event, reply, wording, StepContext, StepError, StepOutcome};
use crate::events::{SummaryPosted, TriggerDetected};

pub(super) async fn perform(ctx: &StepContext<'_>, trigger: &TriggerDetected) -> Result<StepOutcome, StepError> {
    if !ctx.github.is_configured() {
        return ctx.reject(trigger, "github_not_configured", "GITHUB_APP_ID and its key are not set".into());
    }
    let (installation, repo) = (trigger.installation_id, trigger.repository.full_name.as_str());
    let sha = trigger.head_sha.as_deref().ok_or_else(|| StepError::Invalid("no head sha".into()))?;
    let runs = ctx.github.workflow_runs(installation, repo, sha).await?;
    if runs.iter().any(|r| r.status != "completed") {
        return Err(StepError::NotYet("workflow runs for this commit are still in progress".into()));
    }
    let failed: Vec<&str> =
        runs.iter().filter(|r| r.conclusion.as_deref() == Some("failure")).map(|r| r.name.as_str()).collect();
    if failed.is_empty() {
        return ctx.reject(trigger, "nothing_to_do", "no workflow run failed in the end".into());
    }
    let conflicts = ctx.github.mergeable(installation, repo, trigger.number).await? == Some(false);
    let body = wording::suggestion(&failed, conflicts, &ctx.settings.rules.mention);
    let (comment_id, _) = reply::reply_once(ctx, trigger, &body).await?;
    let posted =
        SummaryPosted { trigger_id: trigger.trigger_id, comment_id, outcome: "suggested".to_owned(), edited: false };
    Ok(StepOutcome::Done(vec![event(&posted, ctx.ids.outcome())?]))
}
