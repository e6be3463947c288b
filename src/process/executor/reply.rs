//! Replies where the request was made, at most once per command: GitHub
//! cannot deduplicate comments, so a retried command first looks for the
//! hidden marker its earlier attempt may have posted.

use super::{wording, StepContext, StepError};
use crate::config::ReplyStyle;
use crate::events::TriggerDetected;
use crate::triggers::TriggerState;

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

/// A comment hookwise wrote where the request was made.
pub(super) struct Written {
    pub comment_id: u64,
    pub comment_url: Option<String>,
    /// The status comment edited, rather than a reply posted.
    pub edited: bool,
}

/// Writes `body` into the trigger's status comment when replies are edited
/// in place (`HOOKWISE_REPLY_STYLE=edit`) and there is one, else posts it as
/// a reply of its own ([`reply_once`]). A retried edit first reads the
/// comment and writes nothing when it holds the text already; a status
/// comment someone deleted gets the text as a reply.
pub(super) async fn update_status_comment(
    ctx: &StepContext<'_>,
    trigger: &TriggerDetected,
    state: &TriggerState,
    body: &str,
) -> Result<Written, StepError> {
    if let Some(comment_id) = status_comment(ctx, state) {
        // The marker stays, so hookwise still knows the comment for its own.
        let edited = format!("{body}\n\n{}", wording::marker(ctx.command_id));
        let (installation, repo, inline) =
            (trigger.installation_id, trigger.repository.full_name.as_str(), trigger.kind.is_inline());
        // A retry (after a failure, or a crash between the edit and its
        // record) looks first: the same text is not written twice.
        if ctx.attempts > 1 {
            if let Ok(current) = ctx.github.comment(installation, repo, comment_id, inline).await {
                if current.body.as_deref() == Some(edited.as_str()) {
                    return Ok(Written { comment_id, comment_url: current.html_url, edited: true });
                }
            }
        }
        match ctx.github.edit_comment(installation, repo, comment_id, inline, &edited).await {
            Ok(comment) => return Ok(Written { comment_id, comment_url: comment.html_url, edited: true }),
            Err(e) if matches!(e.status(), Some(404 | 410)) => {
                tracing::info!(trigger = %trigger.trigger_id, comment_id, "the status comment is gone; replying instead");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let (comment_id, comment_url) = reply_once(ctx, trigger, body).await?;
    Ok(Written { comment_id, comment_url, edited: false })
}

/// The comment to edit, when replies are edited in place.
pub(super) fn status_comment(ctx: &StepContext<'_>, state: &TriggerState) -> Option<u64> {
    match ctx.settings.reply_style {
        ReplyStyle::Edit => state.status_comment,
        ReplyStyle::New => None,
    }
}
