//! Every text hookwise writes on GitHub or hands to the agent, in one place.

use uuid::Uuid;

use crate::events::{truncate_chars, TriggerDetected};
use crate::github::rest::{Comment, Issue};
use crate::triggers::classify::MARKER_PREFIX;

/// Comments the agent gets as context, each cut to this many characters.
const CONTEXT_COMMENTS: usize = 10;
const COMMENT_CHARS: usize = 500;

/// The summary when the agent left no message.
pub const NO_RESULT_TEXT: &str = "I'm done.";

/// The hidden marker that lets a retried step find its own comment.
pub fn marker(command_id: Uuid) -> String {
    format!("{MARKER_PREFIX}{command_id} -->")
}

pub fn acknowledgement(requester: &str, conversation_url: &str) -> String {
    format!("I'm on it! {requester} can [track my progress here]({conversation_url}).")
}

/// GitHub's limit on a comment's body, in characters.
const COMMENT_MAX_CHARS: usize = 65_536;

/// `text`, cut (with [`TRUNCATION_MARKER`](crate::events::TRUNCATION_MARKER))
/// so that it, `around` characters more, and the marker `reply_once` appends
/// after a blank line fit in one comment.
fn fit(text: &str, around: usize) -> String {
    let marker_room = 2 + marker(Uuid::nil()).chars().count();
    truncate_chars(text.to_owned(), COMMENT_MAX_CHARS.saturating_sub(around + marker_room))
}

/// The agent's result, with the link to the whole conversation.
pub fn summary(result: &str, conversation_url: &str) -> String {
    let link = format!("\n\n[See the whole conversation here]({conversation_url}).");
    format!("{}{link}", fit(result, link.chars().count()))
}

/// The run ended without a result: which state, and why when known.
pub fn stopped(state: &str, reason: Option<&str>, conversation_url: &str) -> String {
    let text = |reason: &str| {
        format!(
            "Sorry, I stopped before finishing (the agent ended in state `{state}`{reason}). \
             [See the conversation here]({conversation_url})."
        )
    };
    match reason {
        Some(reason) => text(&format!(": {}", fit(reason, text(": ").chars().count()))),
        None => text(""),
    }
}

/// A request waits for the one running on its issue or pull request.
pub fn queued_behind(link: &str) -> String {
    format!("Queued behind [the request I'm working on]({link}): I'll start on this one when it's done.")
}

/// The summary of a run someone stopped (`{handle} stop`).
pub fn stopped_by(login: &str, conversation_url: &str) -> String {
    format!("Stopped by @{login}. [See the conversation here]({conversation_url}).")
}

/// `{handle} stop` with nothing running on the issue or pull request.
pub const NOTHING_TO_STOP: &str = "There is nothing running here to stop.";

/// `{handle} stop`, and the runtime cannot stop the run.
pub fn cannot_stop(reason: &str) -> String {
    format!("Sorry, I can't stop this run: {}.", reason.trim_end_matches('.'))
}

/// The agent runtime refused to start.
pub fn could_not_start(message: &str) -> String {
    format!("Sorry, I couldn't start working on this: {}.", message.trim_end_matches('.'))
}

/// Failed workflow runs on a pull request.
pub fn suggestion(failed: &[&str], conflicts: bool, mention: &str) -> String {
    let mut body = String::from("Some checks failed on this pull request:\n");
    for name in failed {
        body.push_str(&format!("- {name}\n"));
    }
    if conflicts {
        body.push_str("\nIt also has merge conflicts with its base branch.\n");
    }
    body.push_str(&format!("\nMention {mention} in a comment and I'll try to fix this."));
    body
}

fn cut(text: &str, chars: usize) -> String {
    let mut cut: String = text.chars().take(chars).collect();
    if text.chars().count() > chars {
        cut.push('…');
    }
    cut
}

/// What the agent is told about the request: the issue or pull request, its
/// latest comments, and for an inline comment the file and line. It carries
/// the trigger id, so a conversation can be traced back to its trigger.
pub fn instructions(trigger: &TriggerDetected, issue: &Issue, comments: &[Comment]) -> String {
    let what = if trigger.kind.is_pull_request() { "pull request" } else { "issue" };
    let mut text = format!(
        "You are working on {what} #{} in {}: {}\n\n{}\n",
        trigger.number,
        trigger.repository.full_name,
        issue.title,
        cut(issue.body.as_deref().unwrap_or(""), 4000)
    );
    if let (Some(path), Some(line)) = (&trigger.path, trigger.line) {
        text.push_str(&format!("\nThe request is an inline review comment on {path}, line {line}.\n"));
    }
    let recent: Vec<_> = comments.iter().rev().take(CONTEXT_COMMENTS).collect();
    if !recent.is_empty() {
        text.push_str("\nLatest comments, oldest first:\n");
        for comment in recent.into_iter().rev() {
            let author = comment.user.as_ref().map_or("someone", |u| u.login.as_str());
            text.push_str(&format!("- {author}: {}\n", cut(comment.body.as_deref().unwrap_or(""), COMMENT_CHARS)));
        }
    }
    text.push_str(&format!("\n(hookwise:{})\n", trigger.trigger_id));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::TRUNCATION_MARKER;

    /// The comment `reply_once` posts.
    fn posted(body: &str) -> String {
        format!("{body}\n\n{}", marker(Uuid::new_v4()))
    }

    #[test]
    fn a_long_result_or_reason_is_cut_to_fit_one_comment() {
        let url = "https://agent.example/c/1";
        let long_summary = posted(&summary(&"ü".repeat(1 << 20), url));
        assert_eq!(long_summary.chars().count(), COMMENT_MAX_CHARS);
        assert!(long_summary.starts_with("üüü"));
        assert!(long_summary.contains(&format!("{TRUNCATION_MARKER}\n\n[See the whole")));
        let long_stop = posted(&stopped("error", Some(&"r".repeat(1 << 20)), url));
        assert_eq!(long_stop.chars().count(), COMMENT_MAX_CHARS);
        assert!(long_stop.contains(&format!("{TRUNCATION_MARKER}). [See the conversation here]({url}).")));
        // Short texts are left as they are.
        assert_eq!(summary("Fixed.", url), format!("Fixed.\n\n[See the whole conversation here]({url})."));
        assert_eq!(
            stopped("error", Some("no key"), url),
            format!("Sorry, I stopped before finishing (the agent ended in state `error`: no key). [See the conversation here]({url}).")
        );
    }
}
