use std::collections::BTreeMap;

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::{Object, OpenApi, Tags};
use time::OffsetDateTime;

use super::{ok, time_window, Answer, ApiAuth};
use crate::api::AppState;
use crate::projections::conversations;
use crate::projections::pull_requests::{self, PullRequestRow};

#[derive(Tags)]
enum Tag {
    /// Aggregates over the read models.
    Stats,
}

/// Pull-request statistics over a time window.
#[derive(Debug, Clone, Default, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PullRequestStats {
    /// Created in the window.
    pub opened: u64,
    /// Merged in the window.
    pub merged: u64,
    /// Closed without merging in the window.
    pub closed: u64,
    /// Of the PRs merged or closed in the window: how many the agent helped (at least one agent commit).
    pub helped_by_agent: u64,
    /// Agent commits on the PRs merged or closed in the window.
    pub agent_commits: u64,
    /// Agent review comments on the PRs merged or closed in the window.
    pub agent_review_comments: u64,
    /// merged / (merged + closed) among the helped PRs resolved in the window; absent when there are none.
    pub merge_rate_with_agent: Option<f64>,
    /// The same among the PRs the agent did not help.
    pub merge_rate_without_agent: Option<f64>,
}

fn rate(merged: u64, resolved: u64) -> Option<f64> {
    (resolved > 0).then(|| merged as f64 / resolved as f64)
}

fn in_window(t: Option<i64>, since: Option<i64>, until: Option<i64>) -> bool {
    t.is_some_and(|t| since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u))
}

/// Computes the figures from the PRs' rows.
pub fn pull_request_stats(prs: &[PullRequestRow], since: Option<i64>, until: Option<i64>) -> PullRequestStats {
    let mut stats = PullRequestStats::default();
    let (mut helped_merged, mut helped_resolved, mut other_merged, mut other_resolved) = (0, 0, 0, 0);
    for pr in prs {
        if in_window(pr.created_at, since, until) {
            stats.opened += 1;
        }
        let merged = pr.status == "merged" && in_window(pr.merged_at, since, until);
        let closed = pr.status == "closed" && in_window(pr.closed_at, since, until);
        if !(merged || closed) {
            continue;
        }
        stats.merged += u64::from(merged);
        stats.closed += u64::from(closed);
        stats.agent_commits += pr.openhands_commits;
        stats.agent_review_comments += pr.openhands_review_comments;
        if pr.openhands_commits > 0 {
            stats.helped_by_agent += 1;
            helped_resolved += 1;
            helped_merged += u64::from(merged);
        } else {
            other_resolved += 1;
            other_merged += u64::from(merged);
        }
    }
    stats.merge_rate_with_agent = rate(helped_merged, helped_resolved);
    stats.merge_rate_without_agent = rate(other_merged, other_resolved);
    stats
}

/// One UTC day of pull-request activity.
#[derive(Debug, Clone, Default, PartialEq, Object)]
pub struct PullRequestDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Created that day.
    pub opened: u64,
    /// Merged that day, with at least one agent commit.
    pub merged_with_agent: u64,
    /// Merged that day, without an agent commit.
    pub merged_without_agent: u64,
    /// Closed without merging that day.
    pub closed: u64,
    /// Agent commits on the PRs merged or closed that day.
    pub agent_commits: u64,
}

/// Pull-request activity per day, oldest first.
#[derive(Debug, Clone, Object)]
pub struct PullRequestTimeline {
    /// Only the days on which something happened.
    pub days: Vec<PullRequestDay>,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The figures of [`pull_request_stats`] per UTC day, for the days that have any.
pub fn pull_requests_by_day(prs: &[PullRequestRow], since: Option<i64>, until: Option<i64>) -> Vec<PullRequestDay> {
    let mut days: BTreeMap<i64, PullRequestDay> = BTreeMap::new();
    for pr in prs {
        if let Some(created) = pr.created_at.filter(|&t| in_window(Some(t), since, until)) {
            days.entry(created.div_euclid(MICROS_PER_DAY)).or_default().opened += 1;
        }
        let resolved = match pr.status.as_str() {
            "merged" => pr.merged_at,
            "closed" => pr.closed_at,
            _ => None,
        };
        let Some(resolved) = resolved.filter(|&t| in_window(Some(t), since, until)) else { continue };
        let day = days.entry(resolved.div_euclid(MICROS_PER_DAY)).or_default();
        day.agent_commits += pr.openhands_commits;
        match (pr.status.as_str(), pr.openhands_commits > 0) {
            ("merged", true) => day.merged_with_agent += 1,
            ("merged", false) => day.merged_without_agent += 1,
            _ => day.closed += 1,
        }
    }
    days.into_iter()
        .map(|(number, mut day)| {
            day.day =
                OffsetDateTime::from_unix_timestamp(number * 86_400).map(|t| t.date().to_string()).unwrap_or_default();
            day
        })
        .collect()
}

/// How many triggers of one kind ended in one status.
#[derive(Debug, Clone, Object)]
pub struct TriggerCount {
    pub kind: String,
    pub status: String,
    pub count: u64,
}

/// Triggers by kind and outcome.
#[derive(Debug, Clone, Default, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TriggerStats {
    pub total: u64,
    pub by_kind_and_status: Vec<TriggerCount>,
    /// Median time from detection to the acknowledgement comment, over the acknowledged triggers.
    pub median_time_to_acknowledgement_ms: Option<u64>,
    pub acknowledged: u64,
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(mut values: Vec<u64>) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) { (values[mid - 1] + values[mid]) / 2 } else { values[mid] })
}

pub struct StatsApi;

#[OpenApi(tag = "Tag::Stats")]
impl StatsApi {
    /// PRs opened, merged and closed in a window; how many the agent helped; its commits and review
    /// comments; merge rate with and without the agent.
    #[oai(path = "/stats/pull-requests", method = "get", operation_id = "pull_request_stats")]
    async fn pull_requests(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        /// `owner/name`; all repositories when absent.
        repository: Query<Option<String>>,
        /// Window start (RFC 3339, inclusive).
        since: Query<Option<String>>,
        /// Window end (RFC 3339, exclusive).
        until: Query<Option<String>>,
    ) -> Answer<PullRequestStats> {
        let (since, until) = time_window(since.0.as_deref(), until.0.as_deref())?;
        let prs = pull_requests::all(&state.db, repository.0).await?;
        ok(pull_request_stats(&prs, since, until))
    }

    /// The same figures per UTC day (merged with and without the agent, closed, opened, agent commits), for
    /// the days in the window on which something happened, oldest first.
    #[oai(path = "/stats/pull-requests/daily", method = "get", operation_id = "pull_request_stats_daily")]
    async fn pull_requests_daily(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        /// `owner/name`; all repositories when absent.
        repository: Query<Option<String>>,
        /// Window start (RFC 3339, inclusive).
        since: Query<Option<String>>,
        /// Window end (RFC 3339, exclusive).
        until: Query<Option<String>>,
    ) -> Answer<PullRequestTimeline> {
        let (since, until) = time_window(since.0.as_deref(), until.0.as_deref())?;
        let prs = pull_requests::all(&state.db, repository.0).await?;
        ok(PullRequestTimeline { days: pull_requests_by_day(&prs, since, until) })
    }

    /// Triggers by kind and outcome, and the median time to acknowledgement.
    #[oai(path = "/stats/triggers", method = "get", operation_id = "trigger_stats")]
    async fn triggers(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        /// `owner/name`; all repositories when absent.
        repository: Query<Option<String>>,
        /// Detected at or after (RFC 3339).
        since: Query<Option<String>>,
        /// Detected before (RFC 3339).
        until: Query<Option<String>>,
    ) -> Answer<TriggerStats> {
        let (since, until) = time_window(since.0.as_deref(), until.0.as_deref())?;
        let counts = conversations::count_by_kind_and_status(&state.db, repository.0.clone(), since, until).await?;
        let waits = conversations::acknowledgement_waits(&state.db, repository.0, since, until).await?;
        let waits: Vec<u64> = waits.into_iter().map(|micros| u64::try_from(micros / 1000).unwrap_or(0)).collect();
        ok(TriggerStats {
            total: counts.iter().map(|c| c.count).sum(),
            by_kind_and_status: counts
                .into_iter()
                .map(|c| TriggerCount { kind: c.kind, status: c.status, count: c.count })
                .collect(),
            acknowledged: waits.len() as u64,
            median_time_to_acknowledgement_ms: median(waits),
        })
    }
}
