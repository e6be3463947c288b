use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};

use super::{fetch_page, iso, limit_of, time_range, ApiAuth, ApiResult, Filter};
use crate::api::AppState;
use crate::sql::{SqlError, SqlRow};
use crate::sql_params;

#[derive(Tags)]
enum Tag {
    /// Pull requests and the data collector's figures.
    PullRequests,
}

/// A pull request with the data collector's figures (REFERENCE.md).
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PullRequest {
    /// Log position of the first event about it; the pagination cursor.
    pub position: u64,
    /// `owner/name`.
    pub repository: String,
    pub repository_id: u64,
    pub number: u64,
    pub title: Option<String>,
    pub author: Option<String>,
    /// `open`, `closed` or `merged`.
    pub status: String,
    pub created_at: Option<String>,
    pub closed_at: Option<String>,
    pub merged_at: Option<String>,
    pub commits: u64,
    pub changed_files: Option<u64>,
    pub additions: Option<u64>,
    pub deletions: Option<u64>,
    pub review_comments: u64,
    pub general_comments: u64,
    pub reviewers: u64,
    pub num_openhands_commits: u64,
    pub num_openhands_review_comments: u64,
    pub num_openhands_general_comments: u64,
    /// At least one OpenHands commit.
    pub openhands_helped_author: bool,
    /// Figures come from the GitHub API (complete) rather than the webhooks alone: done when a PR
    /// closes in a repository where the agent has started a conversation.
    pub enriched: bool,
    /// The agent conversation that opened it: the one whose link its description carries.
    pub conversation_id: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PullRequestPage {
    pub items: Vec<PullRequest>,
    pub next_cursor: Option<u64>,
}

pub(super) const COLUMNS: &str = "position, repository, repository_id, number, title, author, status, created_at,
    closed_at, merged_at, commits, changed_files, additions, deletions, review_comments, general_comments,
    observed_commits, observed_openhands_commits, observed_review_comments, observed_openhands_review_comments,
    observed_general_comments, observed_openhands_general_comments, observed_reviewers, enriched, enriched_commits,
    enriched_openhands_commits, enriched_review_comments, enriched_openhands_review_comments,
    enriched_general_comments, enriched_openhands_general_comments, enriched_reviewers, conversation_id";

/// What the webhooks reported as a total and what was seen one by one; the larger wins.
fn larger(reported: Option<u64>, observed: u64) -> u64 {
    reported.unwrap_or(0).max(observed)
}

pub(super) fn pull_request(row: &SqlRow) -> Result<PullRequest, SqlError> {
    let enriched: bool = row.get(23)?;
    let pick = |enriched_col: usize, fallback: u64| -> Result<u64, SqlError> {
        Ok(if enriched { row.get::<Option<u64>>(enriched_col)?.unwrap_or(fallback) } else { fallback })
    };
    let commits = pick(24, larger(row.get(10)?, row.get(16)?))?;
    let num_openhands_commits = pick(25, row.get(17)?)?;
    Ok(PullRequest {
        position: row.get(0)?,
        repository: row.get(1)?,
        repository_id: row.get(2)?,
        number: row.get(3)?,
        title: row.get(4)?,
        author: row.get(5)?,
        status: row.get(6)?,
        created_at: row.get::<Option<i64>>(7)?.map(iso),
        closed_at: row.get::<Option<i64>>(8)?.map(iso),
        merged_at: row.get::<Option<i64>>(9)?.map(iso),
        commits,
        changed_files: row.get(11)?,
        additions: row.get(12)?,
        deletions: row.get(13)?,
        review_comments: pick(26, larger(row.get(14)?, row.get(18)?))?,
        general_comments: pick(28, larger(row.get(15)?, row.get(20)?))?,
        reviewers: pick(30, row.get(22)?)?,
        num_openhands_commits,
        num_openhands_review_comments: pick(27, row.get(19)?)?,
        num_openhands_general_comments: pick(29, row.get(21)?)?,
        openhands_helped_author: num_openhands_commits > 0,
        enriched,
        conversation_id: row.get(31)?,
    })
}

pub struct PullRequestsApi;

#[OpenApi(tag = "Tag::PullRequests")]
impl PullRequestsApi {
    /// List pull requests, in the order they were first seen.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/pull-requests", method = "get", operation_id = "list_pull_requests")]
    async fn list(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        /// Only rows after this cursor (a log position).
        after: Query<Option<u64>>,
        /// Page size (1–500, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// `owner/name`.
        repository: Query<Option<String>>,
        /// `open`, `closed` or `merged`.
        status: Query<Option<String>>,
        author: Query<Option<String>>,
        /// Created at or after (RFC 3339).
        since: Query<Option<String>>,
        /// Created before (RFC 3339).
        until: Query<Option<String>>,
    ) -> ApiResult<PullRequestPage> {
        let limit = limit_of(limit.0);
        let mut filter = Filter::default();
        filter.and("position > ?", after.0.unwrap_or(0));
        filter.and_some("repository = ?", repository.0);
        filter.and_some("status = ?", status.0);
        filter.and_some("author = ?", author.0);
        if let Err(e) = time_range(&mut filter, "created_at", since.0.as_deref(), until.0.as_deref()) {
            return e;
        }
        let sql = format!("SELECT {COLUMNS} FROM pull_requests{} ORDER BY position LIMIT {limit}", filter.sql());
        match fetch_page(&state.db, &sql, filter.params, limit, pull_request, |item| item.position).await {
            Ok((items, next_cursor)) => ApiResult::Ok(Json(PullRequestPage { items, next_cursor })),
            Err(e) => e.into(),
        }
    }

    /// One pull request.
    #[oai(path = "/pull-requests/:owner/:name/:number", method = "get", operation_id = "get_pull_request")]
    async fn get(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        owner: Path<String>,
        name: Path<String>,
        number: Path<u64>,
    ) -> ApiResult<PullRequest> {
        let repository = format!("{}/{}", owner.0, name.0);
        let sql = format!("SELECT {COLUMNS} FROM pull_requests WHERE repository = ? AND number = ? LIMIT 1");
        let rows = match state.db.query(&sql, sql_params![repository.as_str(), number.0]).await {
            Ok(rows) => rows,
            Err(e) => return e.into(),
        };
        match rows.first().map(pull_request) {
            Some(Ok(item)) => ApiResult::Ok(Json(item)),
            Some(Err(e)) => e.into(),
            None => ApiResult::not_found(format!("no pull request {repository}#{}", number.0)),
        }
    }
}
