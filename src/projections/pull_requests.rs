//! `pull_requests`: the data collector's figures per PR (REFERENCE.md), from
//! what the webhooks carry, overridden by `PullRequestEnriched` where the
//! GitHub API was asked. Counts of things seen one by one (commits pushed to
//! the head branch, comments, reviewers) come from child rows keyed by id, so
//! that seeing an event twice never counts it twice.
//!
//! A PR is linked to the agent conversation that opened it when its
//! description links that conversation (the `conversation_url` of a
//! `ConversationStarted`), as the agent does in the PRs it opens. Both sides
//! are kept as child rows (the links of each PR's description, the link of
//! each conversation) and the PR's `conversation_id` is recomputed from their
//! join whichever side arrives second, so the order of the webhook and the
//! conversation in the log does not matter and a replay yields the same rows.

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::query::{fetch_page, Filter, Page};
use super::read_model::{ReadModel, Tables};
use crate::events::pull_request::{is_openhands, PullRequestEnriched};
use crate::events::{ConversationStarted, DomainEvent, WebhookReceived};
use crate::github::prefilter::may_contain;
use crate::runner::HandlerError;
use crate::sql::{SqlDb, SqlError, SqlRow, Statement};
use crate::sql_params;
use crate::store::RecordedEvent;

pub struct PullRequests;

const TABLES: &[&str] =
    &["pull_requests", "pr_commits", "pr_comments", "pr_reviewers", "pr_description_links", "pr_conversation_links"];

/// Links read from one PR description at most (bots' PRs list many).
const MAX_DESCRIPTION_LINKS: usize = 50;

const CREATE_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS {p}pull_requests (
    repository_id BIGINT NOT NULL,
    number BIGINT NOT NULL,
    position BIGINT NOT NULL UNIQUE,
    repository TEXT NOT NULL,
    title TEXT,
    author TEXT,
    status TEXT NOT NULL,
    head_ref TEXT,
    created_at BIGINT,
    closed_at BIGINT,
    merged_at BIGINT,
    commits BIGINT,
    changed_files BIGINT,
    additions BIGINT,
    deletions BIGINT,
    review_comments BIGINT,
    general_comments BIGINT,
    observed_commits BIGINT NOT NULL DEFAULT 0,
    observed_openhands_commits BIGINT NOT NULL DEFAULT 0,
    observed_review_comments BIGINT NOT NULL DEFAULT 0,
    observed_openhands_review_comments BIGINT NOT NULL DEFAULT 0,
    observed_general_comments BIGINT NOT NULL DEFAULT 0,
    observed_openhands_general_comments BIGINT NOT NULL DEFAULT 0,
    observed_reviewers BIGINT NOT NULL DEFAULT 0,
    enriched BIGINT NOT NULL DEFAULT 0,
    enriched_commits BIGINT,
    enriched_openhands_commits BIGINT,
    enriched_review_comments BIGINT,
    enriched_openhands_review_comments BIGINT,
    enriched_general_comments BIGINT,
    enriched_openhands_general_comments BIGINT,
    enriched_reviewers BIGINT,
    conversation_id TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, number)
)",
    "CREATE TABLE IF NOT EXISTS {p}pr_commits (
    repository_id BIGINT NOT NULL,
    number BIGINT NOT NULL,
    sha TEXT NOT NULL,
    openhands BIGINT NOT NULL,
    PRIMARY KEY (repository_id, number, sha)
)",
    "CREATE TABLE IF NOT EXISTS {p}pr_comments (
    repository_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    comment_id BIGINT NOT NULL,
    number BIGINT NOT NULL,
    author TEXT,
    openhands BIGINT NOT NULL,
    PRIMARY KEY (repository_id, kind, comment_id)
)",
    "CREATE TABLE IF NOT EXISTS {p}pr_reviewers (
    repository_id BIGINT NOT NULL,
    number BIGINT NOT NULL,
    login TEXT NOT NULL,
    PRIMARY KEY (repository_id, number, login)
)",
    "CREATE TABLE IF NOT EXISTS {p}pr_description_links (
    repository_id BIGINT NOT NULL,
    number BIGINT NOT NULL,
    url TEXT NOT NULL,
    PRIMARY KEY (repository_id, number, url)
)",
    "CREATE TABLE IF NOT EXISTS {p}pr_conversation_links (
    url TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    position BIGINT NOT NULL
)",
    // Used while projecting (pushes find their PR by head branch; counts by PR;
    // a conversation finds the PRs linking it), so built with the tables.
    "CREATE INDEX IF NOT EXISTS {p}pr_description_links_by_url ON {p}pr_description_links (url)",
    "CREATE INDEX IF NOT EXISTS {p}pull_requests_by_head ON {p}pull_requests (repository_id, head_ref)",
    "CREATE INDEX IF NOT EXISTS {p}pr_comments_by_pr ON {p}pr_comments (repository_id, number)",
];

const CREATE_INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS {p}pull_requests_by_repository ON {p}pull_requests (repository, position)",
    "CREATE INDEX IF NOT EXISTS {p}pull_requests_by_created_at ON {p}pull_requests (created_at)",
];

#[derive(Deserialize)]
struct Repository {
    id: u64,
    full_name: String,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "ref")]
    branch: Option<String>,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    title: Option<String>,
    state: Option<String>,
    merged: Option<bool>,
    merged_at: Option<String>,
    closed_at: Option<String>,
    created_at: Option<String>,
    user: Option<User>,
    body: Option<String>,
    head: Option<Head>,
    commits: Option<u64>,
    changed_files: Option<u64>,
    additions: Option<u64>,
    deletions: Option<u64>,
    comments: Option<u64>,
    review_comments: Option<u64>,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    user: Option<User>,
    body: Option<String>,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    title: Option<String>,
    state: Option<String>,
    created_at: Option<String>,
    user: Option<User>,
    pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct CommitAuthor {
    name: Option<String>,
    username: Option<String>,
}

#[derive(Deserialize)]
struct Commit {
    id: String,
    author: Option<CommitAuthor>,
}

#[derive(Deserialize)]
struct Payload {
    repository: Option<Repository>,
    pull_request: Option<PullRequest>,
    review: Option<Comment>,
    comment: Option<Comment>,
    issue: Option<Issue>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    #[serde(default)]
    commits: Vec<Commit>,
}

fn micros(iso: Option<&str>) -> Option<i64> {
    let t = OffsetDateTime::parse(iso?, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

fn login(user: &Option<User>) -> Option<&str> {
    user.as_ref().map(|u| u.login.as_str())
}

impl ReadModel for PullRequests {
    fn name(&self) -> &'static str {
        "pull_requests"
    }

    fn schema_version(&self) -> i64 {
        // 2: the description and conversation links.
        2
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn create_tables(&self) -> &'static [&'static str] {
        CREATE_TABLES
    }

    fn create_indexes(&self) -> &'static [&'static str] {
        CREATE_INDEXES
    }

    fn apply(&self, t: &Tables, event: &RecordedEvent) -> Result<Vec<Statement>, HandlerError> {
        if event.event_type == PullRequestEnriched::TYPE {
            return Ok(PullRequestEnriched::decode(event).map(|e| enriched(t, event, &e)).unwrap_or_default());
        }
        if event.event_type == ConversationStarted::TYPE {
            return Ok(ConversationStarted::decode(event).map(|c| conversation_link(t, event, &c)).unwrap_or_default());
        }
        if event.event_type != WebhookReceived::TYPE {
            return Ok(vec![]);
        }
        let Ok(delivery) = WebhookReceived::decode(event) else {
            return Ok(vec![]);
        };
        let relevant = matches!(
            delivery.event.as_str(),
            "pull_request" | "pull_request_review" | "pull_request_review_comment" | "issue_comment" | "push"
        );
        if !relevant {
            return Ok(vec![]);
        }
        let Some(body) = event.payload.as_deref() else {
            return Ok(vec![]);
        };
        // Most comments are on issues, and only those on pull requests count.
        if delivery.event == "issue_comment" && !may_contain(body, "pull_request") {
            return Ok(vec![]);
        }
        let Ok(payload) = serde_json::from_slice::<Payload>(body) else {
            return Ok(vec![]);
        };
        let Some(repository) = &payload.repository else {
            return Ok(vec![]);
        };
        let action = delivery.action.as_deref().unwrap_or("");
        let mut statements = Vec::new();
        match delivery.event.as_str() {
            "pull_request" => {
                if let Some(pr) = &payload.pull_request {
                    statements.push(upsert_pr(t, event, repository, pr));
                    statements.extend(description_links(t, repository.id, pr));
                }
            }
            "pull_request_review" => {
                let (Some(pr), Some(review)) = (&payload.pull_request, &payload.review) else {
                    return Ok(vec![]);
                };
                statements.push(upsert_pr(t, event, repository, pr));
                if action == "submitted" {
                    if let Some(reviewer) = login(&review.user) {
                        statements.push(Statement::new(
                            t.sql(
                                "INSERT INTO {p}pr_reviewers (repository_id, number, login) VALUES (?, ?, ?)
                                 ON CONFLICT (repository_id, number, login) DO NOTHING",
                            ),
                            sql_params![repository.id, pr.number, reviewer],
                        ));
                    }
                    // A review's body counts as a review comment when it says something.
                    if review.body.as_deref().is_some_and(|b| !b.trim().is_empty()) {
                        statements.push(insert_comment(t, repository.id, pr.number, "review", review));
                    }
                }
                statements.extend(refresh_counts(t, repository.id, pr.number));
            }
            "pull_request_review_comment" => {
                let (Some(pr), Some(comment)) = (&payload.pull_request, &payload.comment) else {
                    return Ok(vec![]);
                };
                statements.push(upsert_pr(t, event, repository, pr));
                match action {
                    "created" => {
                        statements.push(insert_comment(t, repository.id, pr.number, "review_comment", comment))
                    }
                    "deleted" => statements.push(delete_comment(t, repository.id, "review_comment", comment.id)),
                    _ => {}
                }
                statements.extend(refresh_counts(t, repository.id, pr.number));
            }
            "issue_comment" => {
                let (Some(issue), Some(comment)) = (&payload.issue, &payload.comment) else {
                    return Ok(vec![]);
                };
                if issue.pull_request.is_none() {
                    return Ok(vec![]);
                }
                statements.push(insert_pr_from_issue(t, event, repository, issue));
                match action {
                    "created" => statements.push(insert_comment(t, repository.id, issue.number, "general", comment)),
                    "deleted" => statements.push(delete_comment(t, repository.id, "general", comment.id)),
                    _ => {}
                }
                statements.extend(refresh_counts(t, repository.id, issue.number));
            }
            "push" => {
                let Some(branch) = payload.git_ref.as_deref().and_then(|r| r.strip_prefix("refs/heads/")) else {
                    return Ok(vec![]);
                };
                for commit in &payload.commits {
                    let author = commit.author.as_ref();
                    let openhands = is_openhands(
                        author.and_then(|a| a.username.as_deref()),
                        author.and_then(|a| a.name.as_deref()),
                    );
                    // Every open PR whose head is this branch gets the commit.
                    statements.push(Statement::new(
                        t.sql(
                            "INSERT INTO {p}pr_commits (repository_id, number, sha, openhands)
                             SELECT repository_id, number, ?, ? FROM {p}pull_requests
                             WHERE repository_id = ? AND head_ref = ? AND status = 'open'
                             ON CONFLICT (repository_id, number, sha) DO NOTHING",
                        ),
                        sql_params![commit.id.as_str(), openhands, repository.id, branch],
                    ));
                }
                if !payload.commits.is_empty() {
                    statements.push(Statement::new(
                        t.sql(
                            "UPDATE {p}pull_requests SET
                                observed_commits = (SELECT COUNT(*) FROM {p}pr_commits c
                                    WHERE c.repository_id = {p}pull_requests.repository_id
                                    AND c.number = {p}pull_requests.number),
                                observed_openhands_commits = (SELECT COUNT(*) FROM {p}pr_commits c
                                    WHERE c.repository_id = {p}pull_requests.repository_id
                                    AND c.number = {p}pull_requests.number AND c.openhands = 1)
                             WHERE repository_id = ? AND head_ref = ? AND status = 'open'",
                        ),
                        sql_params![repository.id, branch],
                    ));
                }
            }
            _ => {}
        }
        Ok(statements)
    }
}

fn status_of(pr: &PullRequest) -> &'static str {
    if pr.merged == Some(true) || pr.merged_at.is_some() {
        "merged"
    } else if pr.state.as_deref() == Some("closed") {
        "closed"
    } else {
        "open"
    }
}

/// The PR as the payload shows it; figures the payload lacks keep their value.
fn upsert_pr(t: &Tables, event: &RecordedEvent, repository: &Repository, pr: &PullRequest) -> Statement {
    Statement::new(
        t.sql(
            "INSERT INTO {p}pull_requests (repository_id, number, position, repository, title, author, status, head_ref,
                created_at, closed_at, merged_at, commits, changed_files, additions, deletions, review_comments,
                general_comments, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (repository_id, number) DO UPDATE SET
                repository = excluded.repository,
                title = COALESCE(excluded.title, {p}pull_requests.title),
                author = COALESCE(excluded.author, {p}pull_requests.author),
                status = excluded.status,
                head_ref = COALESCE(excluded.head_ref, {p}pull_requests.head_ref),
                created_at = COALESCE(excluded.created_at, {p}pull_requests.created_at),
                closed_at = excluded.closed_at,
                merged_at = excluded.merged_at,
                commits = COALESCE(excluded.commits, {p}pull_requests.commits),
                changed_files = COALESCE(excluded.changed_files, {p}pull_requests.changed_files),
                additions = COALESCE(excluded.additions, {p}pull_requests.additions),
                deletions = COALESCE(excluded.deletions, {p}pull_requests.deletions),
                review_comments = COALESCE(excluded.review_comments, {p}pull_requests.review_comments),
                general_comments = COALESCE(excluded.general_comments, {p}pull_requests.general_comments),
                updated_at = excluded.updated_at",
        ),
        sql_params![
            repository.id,
            pr.number,
            event.position.0,
            repository.full_name.as_str(),
            pr.title.as_deref(),
            login(&pr.user),
            status_of(pr),
            pr.head.as_ref().and_then(|h| h.branch.as_deref()),
            micros(pr.created_at.as_deref()),
            micros(pr.closed_at.as_deref()),
            micros(pr.merged_at.as_deref()),
            pr.commits,
            pr.changed_files,
            pr.additions,
            pr.deletions,
            pr.review_comments,
            pr.comments,
            event.recorded_at_micros
        ],
    )
}

/// An issue comment on a PR not seen before: the row exists from then on
/// (its status is refined by the PR's own deliveries).
fn insert_pr_from_issue(t: &Tables, event: &RecordedEvent, repository: &Repository, issue: &Issue) -> Statement {
    let status = if issue.state.as_deref() == Some("closed") { "closed" } else { "open" };
    Statement::new(
        t.sql(
            "INSERT INTO {p}pull_requests (repository_id, number, position, repository, title, author, status,
                created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (repository_id, number) DO NOTHING",
        ),
        sql_params![
            repository.id,
            issue.number,
            event.position.0,
            repository.full_name.as_str(),
            issue.title.as_deref(),
            login(&issue.user),
            status,
            micros(issue.created_at.as_deref()),
            event.recorded_at_micros
        ],
    )
}

fn insert_comment(t: &Tables, repository_id: u64, number: u64, kind: &str, comment: &Comment) -> Statement {
    let author = login(&comment.user);
    Statement::new(
        t.sql(
            "INSERT INTO {p}pr_comments (repository_id, kind, comment_id, number, author, openhands)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (repository_id, kind, comment_id) DO NOTHING",
        ),
        sql_params![repository_id, kind, comment.id, number, author, is_openhands(author, None)],
    )
}

fn delete_comment(t: &Tables, repository_id: u64, kind: &str, comment_id: u64) -> Statement {
    Statement::new(
        t.sql("DELETE FROM {p}pr_comments WHERE repository_id = ? AND kind = ? AND comment_id = ?"),
        sql_params![repository_id, kind, comment_id],
    )
}

/// Recounts the PR's comments and reviewers from its child rows.
fn refresh_counts(t: &Tables, repository_id: u64, number: u64) -> Vec<Statement> {
    vec![Statement::new(
        t.sql(
            "UPDATE {p}pull_requests SET
                observed_review_comments = (SELECT COUNT(*) FROM {p}pr_comments c
                    WHERE c.repository_id = ? AND c.number = ? AND c.kind IN ('review', 'review_comment')),
                observed_openhands_review_comments = (SELECT COUNT(*) FROM {p}pr_comments c
                    WHERE c.repository_id = ? AND c.number = ? AND c.kind IN ('review', 'review_comment')
                    AND c.openhands = 1),
                observed_general_comments = (SELECT COUNT(*) FROM {p}pr_comments c
                    WHERE c.repository_id = ? AND c.number = ? AND c.kind = 'general'),
                observed_openhands_general_comments = (SELECT COUNT(*) FROM {p}pr_comments c
                    WHERE c.repository_id = ? AND c.number = ? AND c.kind = 'general' AND c.openhands = 1),
                observed_reviewers = (SELECT COUNT(*) FROM {p}pr_reviewers r
                    WHERE r.repository_id = ? AND r.number = ?)
             WHERE repository_id = ? AND number = ?",
        ),
        sql_params![
            repository_id,
            number,
            repository_id,
            number,
            repository_id,
            number,
            repository_id,
            number,
            repository_id,
            number,
            repository_id,
            number
        ],
    )]
}

/// The `http(s)` links of a text: markdown and angle-bracket delimiters
/// and trailing punctuation dropped, each once, in order.
fn links(text: &str) -> Vec<&str> {
    let mut found: Vec<&str> = Vec::new();
    let tokens = text.split(|c: char| c.is_whitespace() || "()<>[]\"'`|".contains(c));
    for token in tokens {
        if !(token.starts_with("https://") || token.starts_with("http://")) {
            continue;
        }
        let link = normalized_link(token);
        if !found.contains(&link) {
            found.push(link);
        }
        if found.len() == MAX_DESCRIPTION_LINKS {
            break;
        }
    }
    found
}

/// A link as both sides store it: without trailing punctuation or slash.
fn normalized_link(link: &str) -> &str {
    link.trim_end_matches(['.', ',', ';', ':', '!', '?', '/'])
}

/// The PR's conversation: the earliest-started conversation its description links.
fn refresh_conversation(t: &Tables, repository_id: u64, number: u64) -> Statement {
    Statement::new(
        t.sql(
            "UPDATE {p}pull_requests SET conversation_id = (
                SELECT c.conversation_id FROM {p}pr_description_links l
                JOIN {p}pr_conversation_links c ON c.url = l.url
                WHERE l.repository_id = ? AND l.number = ? ORDER BY c.position LIMIT 1)
             WHERE repository_id = ? AND number = ?",
        ),
        sql_params![repository_id, number, repository_id, number],
    )
}

/// Records the links of the PR's description (kept when it is edited:
/// the link shows which conversation opened it), then relinks the PR.
fn description_links(t: &Tables, repository_id: u64, pr: &PullRequest) -> Vec<Statement> {
    let found = links(pr.body.as_deref().unwrap_or(""));
    if found.is_empty() {
        return Vec::new();
    }
    let mut statements: Vec<Statement> = found
        .into_iter()
        .map(|url| {
            Statement::new(
                t.sql(
                    "INSERT INTO {p}pr_description_links (repository_id, number, url) VALUES (?, ?, ?)
                     ON CONFLICT (repository_id, number, url) DO NOTHING",
                ),
                sql_params![repository_id, pr.number, url],
            )
        })
        .collect();
    statements.push(refresh_conversation(t, repository_id, pr.number));
    statements
}

/// Records a conversation's link, then relinks the PRs whose description has it.
fn conversation_link(t: &Tables, event: &RecordedEvent, started: &ConversationStarted) -> Vec<Statement> {
    let url = normalized_link(&started.conversation_url);
    vec![
        Statement::new(
            t.sql(
                "INSERT INTO {p}pr_conversation_links (url, conversation_id, position) VALUES (?, ?, ?)
                 ON CONFLICT (url) DO NOTHING",
            ),
            sql_params![url, started.conversation_id.as_str(), event.position.0],
        ),
        Statement::new(
            t.sql(
                "UPDATE {p}pull_requests SET conversation_id = (
                    SELECT c.conversation_id FROM {p}pr_description_links l
                    JOIN {p}pr_conversation_links c ON c.url = l.url
                    WHERE l.repository_id = {p}pull_requests.repository_id AND l.number = {p}pull_requests.number
                    ORDER BY c.position LIMIT 1)
                 WHERE EXISTS (SELECT 1 FROM {p}pr_description_links l WHERE l.url = ?
                    AND l.repository_id = {p}pull_requests.repository_id AND l.number = {p}pull_requests.number)",
            ),
            sql_params![url],
        ),
    ]
}

fn enriched(t: &Tables, event: &RecordedEvent, e: &PullRequestEnriched) -> Vec<Statement> {
    vec![Statement::new(
        t.sql(
            "INSERT INTO {p}pull_requests (repository_id, number, position, repository, status, changed_files,
                additions, deletions, enriched, enriched_commits, enriched_openhands_commits,
                enriched_review_comments, enriched_openhands_review_comments, enriched_general_comments,
                enriched_openhands_general_comments, enriched_reviewers, updated_at)
             VALUES (?, ?, ?, ?, 'closed', ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (repository_id, number) DO UPDATE SET
                changed_files = excluded.changed_files,
                additions = excluded.additions,
                deletions = excluded.deletions,
                enriched = 1,
                enriched_commits = excluded.enriched_commits,
                enriched_openhands_commits = excluded.enriched_openhands_commits,
                enriched_review_comments = excluded.enriched_review_comments,
                enriched_openhands_review_comments = excluded.enriched_openhands_review_comments,
                enriched_general_comments = excluded.enriched_general_comments,
                enriched_openhands_general_comments = excluded.enriched_openhands_general_comments,
                enriched_reviewers = excluded.enriched_reviewers,
                updated_at = excluded.updated_at",
        ),
        sql_params![
            e.repository_id,
            e.number,
            event.position.0,
            e.repository.as_str(),
            e.changed_files,
            e.additions,
            e.deletions,
            e.commits,
            e.openhands_commits,
            e.review_comments,
            e.openhands_review_comments,
            e.general_comments,
            e.openhands_general_comments,
            e.reviewers.len() as u64,
            event.recorded_at_micros
        ],
    )]
}

// Queries.

/// One row of `pull_requests` with its figures settled: the enriched count
/// where the GitHub API was asked, else the larger of what the webhooks
/// reported as a total and what was seen one by one. Times are microseconds
/// since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct PullRequestRow {
    /// Log position of the first event about it.
    pub position: u64,
    pub repository: String,
    pub repository_id: u64,
    pub number: u64,
    pub title: Option<String>,
    pub author: Option<String>,
    /// `open`, `closed` or `merged`.
    pub status: String,
    pub created_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub merged_at: Option<i64>,
    pub commits: u64,
    pub changed_files: Option<u64>,
    pub additions: Option<u64>,
    pub deletions: Option<u64>,
    pub review_comments: u64,
    pub general_comments: u64,
    pub reviewers: u64,
    pub openhands_commits: u64,
    pub openhands_review_comments: u64,
    pub openhands_general_comments: u64,
    /// Its figures come from the GitHub API.
    pub enriched: bool,
    /// The agent conversation whose link its description carries.
    pub conversation_id: Option<String>,
}

const COLUMNS: &str = "position, repository, repository_id, number, title, author, status, created_at,
    closed_at, merged_at, commits, changed_files, additions, deletions, review_comments, general_comments,
    observed_commits, observed_openhands_commits, observed_review_comments, observed_openhands_review_comments,
    observed_general_comments, observed_openhands_general_comments, observed_reviewers, enriched, enriched_commits,
    enriched_openhands_commits, enriched_review_comments, enriched_openhands_review_comments,
    enriched_general_comments, enriched_openhands_general_comments, enriched_reviewers, conversation_id";

impl PullRequestRow {
    fn from_row(row: &SqlRow) -> Result<Self, SqlError> {
        let enriched: bool = row.get_by_name("enriched")?;
        // The enriched figure when there is one, else `fallback`.
        let pick = |enriched_column: &str, fallback: u64| -> Result<u64, SqlError> {
            Ok(if enriched { row.get_by_name::<Option<u64>>(enriched_column)?.unwrap_or(fallback) } else { fallback })
        };
        // What the webhooks reported as a total and what was seen one by one; the larger wins.
        let larger = |reported: &str, observed: &str| -> Result<u64, SqlError> {
            Ok(row.get_by_name::<Option<u64>>(reported)?.unwrap_or(0).max(row.get_by_name(observed)?))
        };
        Ok(PullRequestRow {
            position: row.get_by_name("position")?,
            repository: row.get_by_name("repository")?,
            repository_id: row.get_by_name("repository_id")?,
            number: row.get_by_name("number")?,
            title: row.get_by_name("title")?,
            author: row.get_by_name("author")?,
            status: row.get_by_name("status")?,
            created_at: row.get_by_name("created_at")?,
            closed_at: row.get_by_name("closed_at")?,
            merged_at: row.get_by_name("merged_at")?,
            commits: pick("enriched_commits", larger("commits", "observed_commits")?)?,
            changed_files: row.get_by_name("changed_files")?,
            additions: row.get_by_name("additions")?,
            deletions: row.get_by_name("deletions")?,
            review_comments: pick("enriched_review_comments", larger("review_comments", "observed_review_comments")?)?,
            general_comments: pick(
                "enriched_general_comments",
                larger("general_comments", "observed_general_comments")?,
            )?,
            reviewers: pick("enriched_reviewers", row.get_by_name("observed_reviewers")?)?,
            openhands_commits: pick("enriched_openhands_commits", row.get_by_name("observed_openhands_commits")?)?,
            openhands_review_comments: pick(
                "enriched_openhands_review_comments",
                row.get_by_name("observed_openhands_review_comments")?,
            )?,
            openhands_general_comments: pick(
                "enriched_openhands_general_comments",
                row.get_by_name("observed_openhands_general_comments")?,
            )?,
            enriched,
            conversation_id: row.get_by_name("conversation_id")?,
        })
    }
}

/// Which pull requests a [`list`] returns; `since`/`until` bound `created_at`.
#[derive(Debug, Clone, Default)]
pub struct PullRequestFilter {
    /// Only rows after this position (the cursor).
    pub after: u64,
    pub repository: Option<String>,
    pub status: Option<String>,
    pub author: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// A page of pull requests in the order they were first seen.
pub async fn list(db: &SqlDb, f: PullRequestFilter, limit: u32) -> Result<Page<PullRequestRow>, SqlError> {
    let mut filter = Filter::default();
    filter.and("position > ?", f.after);
    filter.and_some("repository = ?", f.repository);
    filter.and_some("status = ?", f.status);
    filter.and_some("author = ?", f.author);
    filter.time_range("created_at", f.since, f.until);
    let sql = format!("SELECT {COLUMNS} FROM pull_requests{} ORDER BY position LIMIT {limit}", filter.sql());
    fetch_page(db, &sql, filter.params, limit, PullRequestRow::from_row, |row| row.position).await
}

/// Pull request `number` of `repository` (`owner/name`).
pub async fn get(db: &SqlDb, repository: &str, number: u64) -> Result<Option<PullRequestRow>, SqlError> {
    let sql = format!("SELECT {COLUMNS} FROM pull_requests WHERE repository = ? AND number = ? LIMIT 1");
    db.query(&sql, sql_params![repository, number]).await?.first().map(PullRequestRow::from_row).transpose()
}

/// Every pull request of `repository` (all when `None`), in no particular order.
pub async fn all(db: &SqlDb, repository: Option<String>) -> Result<Vec<PullRequestRow>, SqlError> {
    let mut filter = Filter::default();
    filter.and_some("repository = ?", repository);
    let sql = format!("SELECT {COLUMNS} FROM pull_requests{}", filter.sql());
    db.query(&sql, filter.params).await?.iter().map(PullRequestRow::from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::links;

    #[test]
    fn links_are_read_from_markdown_and_plain_text() {
        let body = "Fixes #1.\n\n@alice can click here to [continue refining the PR](https://agent.example/c/conv-1).\n\
                    See <https://example.com/a/>, https://example.com/b. And https://agent.example/c/conv-1 again; ftp://x";
        assert_eq!(
            links(body),
            vec!["https://agent.example/c/conv-1", "https://example.com/a", "https://example.com/b"]
        );
        assert!(links("no links here").is_empty());
    }
}
