//! `enrich_pull_request`: a closed PR's figures from the GitHub API, recorded
//! as `PullRequestEnriched` on the PR's stream (its id is fixed by the
//! command, so a retry after a crash finds it instead of fetching again).

use super::{event, StepContext, StepError, StepOutcome};
use crate::events::pull_request::{is_openhands, PullRequestEnriched};
use crate::github::rest::PullRequestActivity;
use crate::process::PullRequestRef;

pub(super) async fn perform(ctx: &StepContext<'_>, pr: &PullRequestRef) -> Result<StepOutcome, StepError> {
    let event_id = ctx.ids.outcome();
    let history = ctx.store.read_stream(&pr.stream(), 0, usize::MAX).await?;
    if history.iter().any(|e| e.event_id == event_id) {
        return Ok(StepOutcome::Done(Vec::new()));
    }
    if !ctx.github.is_configured() {
        return Err(StepError::Invalid("GITHUB_APP_ID and its key are not set".into()));
    }
    let activity = ctx.github.pull_request_activity(pr.installation_id, &pr.repository, pr.number).await?;
    Ok(StepOutcome::Done(vec![event(&enriched(pr, &activity), event_id)?]))
}

/// The data collector's figures (REFERENCE.md, "Pull-request statistics")
/// from a PR's activity, whose lists hold each item once.
fn enriched(pr: &PullRequestRef, activity: &PullRequestActivity) -> PullRequestEnriched {
    let login = |user: &Option<crate::github::rest::User>| user.as_ref().map(|u| u.login.clone());
    let openhands_commits = activity
        .commits
        .iter()
        .filter(|c| {
            let name = c.commit.author.as_ref().and_then(|a| a.name.as_deref());
            is_openhands(c.author.as_ref().map(|a| a.login.as_str()), name)
        })
        .count();
    // Pending reviews are drafts only their author sees.
    let reviews: Vec<_> = activity.reviews.iter().filter(|r| r.state.as_deref() != Some("PENDING")).collect();
    let review_bodies: Vec<_> =
        reviews.iter().filter(|r| r.body.as_deref().is_some_and(|b| !b.trim().is_empty())).collect();
    let openhands_review_comments = activity
        .review_comments
        .iter()
        .map(|c| login(&c.user))
        .chain(review_bodies.iter().map(|r| login(&r.user)))
        .filter(|l| is_openhands(l.as_deref(), None))
        .count();
    let openhands_general_comments =
        activity.comments.iter().filter(|c| is_openhands(login(&c.user).as_deref(), None)).count();
    let reviewers: std::collections::BTreeSet<String> = reviews.iter().filter_map(|r| login(&r.user)).collect();
    PullRequestEnriched {
        repository_id: pr.repository_id,
        repository: pr.repository.clone(),
        number: pr.number,
        commits: activity.commits.len() as u64,
        openhands_commits: openhands_commits as u64,
        changed_files: activity.totals.changed_files,
        additions: activity.totals.additions,
        deletions: activity.totals.deletions,
        review_comments: (activity.review_comments.len() + review_bodies.len()) as u64,
        openhands_review_comments: openhands_review_comments as u64,
        general_comments: activity.comments.len() as u64,
        openhands_general_comments: openhands_general_comments as u64,
        reviewers: reviewers.into_iter().collect(),
    }
}
