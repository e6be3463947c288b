//! `add_reaction`: 👀 on the comment (or the issue, for a label) that asked.

use super::{event, StepContext, StepError, StepOutcome};
use crate::events::{ReactionAdded, TriggerDetected, TriggerKind};
use crate::github::rest::ReactionTarget;

pub(super) async fn perform(ctx: &StepContext<'_>, trigger: &TriggerDetected) -> Result<StepOutcome, StepError> {
    let (target, name) = match (trigger.kind, trigger.comment_id) {
        (TriggerKind::ReviewComment, Some(id)) => (ReactionTarget::ReviewComment(id), "review_comment"),
        (TriggerKind::IssueComment | TriggerKind::PrComment, Some(id)) => {
            (ReactionTarget::IssueComment(id), "issue_comment")
        }
        _ => (ReactionTarget::Issue(trigger.number), "issue"),
    };
    let created = ctx.github.add_eyes(trigger.installation_id, &trigger.repository.full_name, target).await?;
    let added =
        ReactionAdded { trigger_id: trigger.trigger_id, target: name.to_owned(), reaction_id: Some(created.id) };
    Ok(StepOutcome::Done(vec![event(&added, ctx.ids.outcome())?]))
}
