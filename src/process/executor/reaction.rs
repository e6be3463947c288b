//! `add_reaction`: 👀 on the comment that asked; on the issue or pull request
//! itself for a label, an assignment, a failed run or a review (GitHub has
//! no reactions on a pull request review).

use super::{event, StepContext, StepError, StepOutcome};
use crate::events::{ReactionAdded, TriggerDetected};
use crate::github::rest::ReactionTarget;

pub(super) async fn perform(ctx: &StepContext<'_>, trigger: &TriggerDetected) -> Result<StepOutcome, StepError> {
    let (target, name) = match (trigger.kind, trigger.comment_id) {
        (kind, Some(id)) if kind.is_inline() => (ReactionTarget::ReviewComment(id), "review_comment"),
        (kind, Some(id)) if kind.is_conversation_comment() => (ReactionTarget::IssueComment(id), "issue_comment"),
        _ => (ReactionTarget::Issue(trigger.number), "issue"),
    };
    let created = ctx.github.add_eyes(trigger.installation_id, &trigger.repository.full_name, target).await?;
    let added =
        ReactionAdded { trigger_id: trigger.trigger_id, target: name.to_owned(), reaction_id: Some(created.id) };
    Ok(StepOutcome::Done(vec![event(&added, ctx.ids.outcome())?]))
}
