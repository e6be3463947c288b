//! Replies where the request was made, at most once per command: GitHub
//! cannot deduplicate comments, so a retried command first looks for the
//! hidden marker its earlier attempt may have posted.

use super::{wording, StepContext, StepError};
use crate::events::TriggerDetected;

/// Posts `body` where the request was made, unless an earlier attempt of
/// this command already did. Returns the comment's id and link.
pub(super) async fn reply_once(
    ctx: &StepContext<'_>,
    trigger: &TriggerDetected,
    body: &str,
) -> Result<(u64, Option<String>), StepError> {
    let (installation, repo) = (trigger.installation_id, trigger.repository.full_name.as_str());
    // Inline comments are answered in their thread (replies go to its first
    // comment); everything else, a review included, on the conversation.
    let review_comment = if trigger.kind.is_inline() { trigger.thread_id.or(trigger.comment_id) } else { None };
    let marker = wording::marker(ctx.command_id);
    if ctx.attempts > 1 {
        let found =
            ctx.github.find_reply(installation, repo, trigger.number, review_comment.is_some(), &marker).await?;
        if let Some(found) = found {
            return Ok((found.id, found.html_url));
        }
    }
    let created =
        ctx.github.reply(installation, repo, trigger.number, review_comment, &format!("{body}\n\n{marker}")).await?;
    Ok((created.id, created.html_url))
}
