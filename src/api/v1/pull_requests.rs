use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::{Object, OpenApi, Tags};

use super::{iso, limit_of, ok, time_window, Answer, ApiAuth};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::projections::pull_requests::{self, PullRequestFilter, PullRequestRow};

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

impl From<PullRequestRow> for PullRequest {
    fn from(row: PullRequestRow) -> Self {
        PullRequest {
            position: row.position,
            repository: row.repository,
            repository_id: row.repository_id,
            number: row.number,
            title: row.title,
            author: row.author,
            status: row.status,
            created_at: row.created_at.map(iso),
            closed_at: row.closed_at.map(iso),
            merged_at: row.merged_at.map(iso),
            commits: row.commits,
            changed_files: row.changed_files,
            additions: row.additions,
            deletions: row.deletions,
            review_comments: row.review_comments,
            general_comments: row.general_comments,
            reviewers: row.reviewers,
            num_openhands_commits: row.openhands_commits,
            num_openhands_review_comments: row.openhands_review_comments,
            num_openhands_general_comments: row.openhands_general_comments,
            openhands_helped_author: row.openhands_commits > 0,
            enriched: row.enriched,
            conversation_id: row.conversation_id,
        }
    }
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
    ) -> Answer<PullRequestPage> {
        let (since, until) = time_window(since.0.as_deref(), until.0.as_deref())?;
        let filter = PullRequestFilter {
            after: after.0.unwrap_or(0),
            repository: repository.0,
            status: status.0,
            author: author.0,
            since,
            until,
        };
        let page = pull_requests::list(&state.db, filter, limit_of(limit.0)).await?;
        ok(PullRequestPage {
            items: page.items.into_iter().map(PullRequest::from).collect(),
            next_cursor: page.next_cursor,
        })
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
    ) -> Answer<PullRequest> {
        let repository = format!("{}/{}", owner.0, name.0);
        match pull_requests::get(&state.db, &repository, number.0).await? {
            Some(row) => ok(row.into()),
            None => Err(ApiError::not_found(format!("no pull request {repository}#{}", number.0))),
        }
    }
}
