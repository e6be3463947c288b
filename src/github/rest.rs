//! The REST calls the executor makes, as one installation of the App.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::client::{GitHubClient, GitHubError};

/// Where a reaction or a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionTarget {
    Issue(u64),
    IssueComment(u64),
    ReviewComment(u64),
}

#[derive(Debug, Deserialize)]
pub struct Installation {
    pub suspended_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Permission {
    permission: String,
}

#[derive(Debug, Deserialize)]
pub struct Created {
    pub id: u64,
    pub html_url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Issue {
    pub title: String,
    pub body: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Comment {
    pub id: u64,
    pub body: Option<String>,
    pub user: Option<User>,
    pub html_url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct User {
    pub login: String,
    /// `User`, `Bot` or `Organization`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PullRequest {
    head: Head,
}

#[derive(Debug, Deserialize)]
struct Head {
    #[serde(rename = "ref")]
    branch: String,
}

#[derive(Debug, Deserialize)]
pub struct WorkflowRun {
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WorkflowRuns {
    workflow_runs: Vec<WorkflowRun>,
}

#[derive(Debug, Deserialize)]
struct Mergeable {
    mergeable: Option<bool>,
}

/// A pull request's totals, as `GET /repos/{repo}/pulls/{number}` gives them.
#[derive(Debug, Deserialize)]
pub struct PullRequestTotals {
    #[serde(default)]
    pub changed_files: u64,
    #[serde(default)]
    pub additions: u64,
    #[serde(default)]
    pub deletions: u64,
}

#[derive(Debug, Deserialize)]
pub struct GitAuthor {
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct GitCommit {
    pub author: Option<GitAuthor>,
}

/// One commit of a pull request: its git author and, when GitHub matched
/// one, the author's account.
#[derive(Debug, Deserialize)]
pub struct PullRequestCommit {
    pub sha: String,
    pub commit: GitCommit,
    pub author: Option<User>,
}

#[derive(Debug, Deserialize)]
pub struct Review {
    pub id: u64,
    pub user: Option<User>,
    pub body: Option<String>,
    /// `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, `DISMISSED` or `PENDING`.
    pub state: Option<String>,
}

/// Everything the data collector counts about one pull request, each list
/// read over all its pages and deduplicated by id.
#[derive(Debug)]
pub struct PullRequestActivity {
    pub totals: PullRequestTotals,
    pub commits: Vec<PullRequestCommit>,
    pub review_comments: Vec<Comment>,
    pub reviews: Vec<Review>,
    pub comments: Vec<Comment>,
}

/// Pages followed at most for one list: GitHub serves at most 250 commits
/// and a few thousand comments per PR; this stops a `next` link that loops.
const MAX_PAGES: usize = 100;

/// The `rel="next"` URL of a `Link` header, if any.
fn next_link(link: Option<&str>) -> Option<&str> {
    link?
        .split(',')
        .find(|part| part.split(';').skip(1).any(|p| p.trim() == "rel=\"next\""))
        .and_then(|part| part.split(';').next())
        .map(|url| url.trim().trim_start_matches('<').trim_end_matches('>'))
}

/// The `rel="last"` page of a `Link` header, if any.
fn last_page(link: Option<&str>) -> Option<u32> {
    link?.split(',').find(|part| part.contains("rel=\"last\"")).and_then(|part| {
        let url = part.split(';').next()?.trim().trim_start_matches('<').trim_end_matches('>');
        url.split(['?', '&']).find_map(|pair| pair.strip_prefix("page=")).and_then(|n| n.parse().ok())
    })
}

#[derive(Deserialize)]
struct App {
    slug: String,
}

impl GitHubClient {
    /// The login of the App's bot user: its slug (`GET /app`) and `[bot]`.
    pub async fn bot_login(&self) -> Result<String, GitHubError> {
        let app: App = self.send_json(self.app_request(Method::GET, "/app")?).await?;
        Ok(format!("{}[bot]", app.slug))
    }

    /// The installation, or `None` when it does not exist (uninstalled).
    pub async fn installation(&self, installation_id: u64) -> Result<Option<Installation>, GitHubError> {
        let request = self.app_request(Method::GET, &format!("/app/installations/{installation_id}"))?;
        match self.send_json(request).await {
            Ok(installation) => Ok(Some(installation)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `admin`, `maintain`, `write`, `triage`, `read` or `none`.
    pub async fn collaborator_permission(
        &self,
        installation_id: u64,
        repo: &str,
        login: &str,
    ) -> Result<String, GitHubError> {
        let path = format!("/repos/{repo}/collaborators/{login}/permission");
        let request = self.installation_request(installation_id, Method::GET, &path).await?;
        match self.send_json::<Permission>(request).await {
            Ok(p) => Ok(p.permission),
            Err(e) if e.status() == Some(404) => Ok("none".to_owned()),
            Err(e) => Err(e),
        }
    }

    /// Adds 👀. GitHub answers an existing identical reaction with itself, so a retry is harmless.
    pub async fn add_eyes(
        &self,
        installation_id: u64,
        repo: &str,
        target: ReactionTarget,
    ) -> Result<Created, GitHubError> {
        let path = match target {
            ReactionTarget::Issue(n) => format!("/repos/{repo}/issues/{n}/reactions"),
            ReactionTarget::IssueComment(id) => format!("/repos/{repo}/issues/comments/{id}/reactions"),
            ReactionTarget::ReviewComment(id) => format!("/repos/{repo}/pulls/comments/{id}/reactions"),
        };
        let request = self.installation_request(installation_id, Method::POST, &path).await?;
        self.send_json(request.json(&json!({"content": "eyes"}))).await
    }

    pub async fn issue(&self, installation_id: u64, repo: &str, number: u64) -> Result<Issue, GitHubError> {
        let request =
            self.installation_request(installation_id, Method::GET, &format!("/repos/{repo}/issues/{number}")).await?;
        self.send_json(request).await
    }

    /// The head branch of a pull request.
    pub async fn pull_request_branch(
        &self,
        installation_id: u64,
        repo: &str,
        number: u64,
    ) -> Result<String, GitHubError> {
        let request =
            self.installation_request(installation_id, Method::GET, &format!("/repos/{repo}/pulls/{number}")).await?;
        let pull: PullRequest = self.send_json(request).await?;
        Ok(pull.head.branch)
    }

    /// Every workflow run of a commit.
    pub async fn workflow_runs(
        &self,
        installation_id: u64,
        repo: &str,
        sha: &str,
    ) -> Result<Vec<WorkflowRun>, GitHubError> {
        let path = format!("/repos/{repo}/actions/runs?head_sha={sha}&per_page=100");
        let request = self.installation_request(installation_id, Method::GET, &path).await?;
        Ok(self.send_json::<WorkflowRuns>(request).await?.workflow_runs)
    }

    /// `Some(false)` only when GitHub says there are conflicts (`null`: not computed yet).
    pub async fn mergeable(&self, installation_id: u64, repo: &str, number: u64) -> Result<Option<bool>, GitHubError> {
        let request =
            self.installation_request(installation_id, Method::GET, &format!("/repos/{repo}/pulls/{number}")).await?;
        Ok(self.send_json::<Mergeable>(request).await?.mergeable)
    }

    /// The latest comments of an issue or pull request (its last page, oldest first).
    pub async fn latest_comments(
        &self,
        installation_id: u64,
        repo: &str,
        number: u64,
    ) -> Result<Vec<Comment>, GitHubError> {
        let path = format!("/repos/{repo}/issues/{number}/comments?per_page=100");
        let request = self.installation_request(installation_id, Method::GET, &path).await?;
        let response = self.send(request).await?;
        let last = last_page(response.headers().get("link").and_then(|v| v.to_str().ok()));
        let mut comments: Vec<Comment> = match last {
            Some(page) if page > 1 => {
                let path = format!("{path}&page={page}");
                let request = self.installation_request(installation_id, Method::GET, &path).await?;
                self.send_json(request).await?
            }
            _ => response.json().await.map_err(|e| GitHubError::Transport(e.without_url().to_string()))?,
        };
        // Also read the page before a short last page, for enough context.
        if comments.len() < 10 {
            if let Some(page) = last.filter(|p| *p > 1) {
                let path = format!("{path}&page={}", page - 1);
                let request = self.installation_request(installation_id, Method::GET, &path).await?;
                let mut earlier: Vec<Comment> = self.send_json(request).await?;
                earlier.append(&mut comments);
                comments = earlier;
            }
        }
        Ok(comments)
    }

    /// Every item of a list endpoint (`path` asks for `per_page=100`),
    /// following `Link: rel="next"` and keeping the first item of each `key`,
    /// so that pages that overlap or repeat (the list changed while it was
    /// read) never count an item twice. Only links under the API root are
    /// followed: the installation token goes nowhere else.
    pub async fn all_pages<T, K>(
        &self,
        installation_id: u64,
        path: &str,
        key: impl Fn(&T) -> K,
    ) -> Result<Vec<T>, GitHubError>
    where
        T: serde::de::DeserializeOwned,
        K: Ord,
    {
        let mut seen = std::collections::BTreeSet::new();
        let mut items = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(path) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(GitHubError::Transport(format!("more than {MAX_PAGES} pages of {}", path_only(&path))));
            }
            let request = self.installation_request(installation_id, Method::GET, &path).await?;
            let response = self.send(request).await?;
            let link = response.headers().get("link").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let page: Vec<T> = response
                .json()
                .await
                .map_err(|e| GitHubError::Transport(format!("unreadable answer: {}", e.without_url())))?;
            for item in page {
                if seen.insert(key(&item)) {
                    items.push(item);
                }
            }
            if let Some(url) = next_link(link.as_deref()) {
                let relative = self.api_path(url).ok_or_else(|| {
                    GitHubError::Transport(format!("the next page {} is outside the API", path_only(url)))
                })?;
                next = Some(relative.to_owned());
            }
        }
        Ok(items)
    }

    /// A pull request's totals, commits, review comments, reviews and
    /// general comments, for `PullRequestEnriched`.
    pub async fn pull_request_activity(
        &self,
        installation_id: u64,
        repo: &str,
        number: u64,
    ) -> Result<PullRequestActivity, GitHubError> {
        let request =
            self.installation_request(installation_id, Method::GET, &format!("/repos/{repo}/pulls/{number}")).await?;
        let totals = self.send_json(request).await?;
        let pulls = format!("/repos/{repo}/pulls/{number}");
        let commits = self
            .all_pages(installation_id, &format!("{pulls}/commits?per_page=100"), |c: &PullRequestCommit| c.sha.clone())
            .await?;
        let review_comments =
            self.all_pages(installation_id, &format!("{pulls}/comments?per_page=100"), |c: &Comment| c.id).await?;
        let reviews =
            self.all_pages(installation_id, &format!("{pulls}/reviews?per_page=100"), |r: &Review| r.id).await?;
        let comments = self
            .all_pages(
                installation_id,
                &format!("/repos/{repo}/issues/{number}/comments?per_page=100"),
                |c: &Comment| c.id,
            )
            .await?;
        Ok(PullRequestActivity { totals, commits, review_comments, reviews, comments })
    }

    /// Posts `body` as a comment on the issue or pull request, or as a reply
    /// in the review thread of an inline comment.
    pub async fn reply(
        &self,
        installation_id: u64,
        repo: &str,
        number: u64,
        review_comment: Option<u64>,
        body: &str,
    ) -> Result<Created, GitHubError> {
        let path = match review_comment {
            Some(id) => format!("/repos/{repo}/pulls/{number}/comments/{id}/replies"),
            None => format!("/repos/{repo}/issues/{number}/comments"),
        };
        let request = self.installation_request(installation_id, Method::POST, &path).await?;
        self.send_json(request.json(&json!({"body": body}))).await
    }

    /// One comment on an issue or pull request, or one inline review comment
    /// (`review_comment`).
    pub async fn comment(
        &self,
        installation_id: u64,
        repo: &str,
        comment_id: u64,
        review_comment: bool,
    ) -> Result<Comment, GitHubError> {
        let path = match review_comment {
            true => format!("/repos/{repo}/pulls/comments/{comment_id}"),
            false => format!("/repos/{repo}/issues/comments/{comment_id}"),
        };
        let request = self.installation_request(installation_id, Method::GET, &path).await?;
        self.send_json(request).await
    }

    /// Replaces the body of a comment on an issue or pull request, or of an
    /// inline review comment (`review_comment`). Setting the same body twice
    /// is harmless, so an edit needs no marker to be retried.
    pub async fn edit_comment(
        &self,
        installation_id: u64,
        repo: &str,
        comment_id: u64,
        review_comment: bool,
        body: &str,
    ) -> Result<Created, GitHubError> {
        let path = match review_comment {
            true => format!("/repos/{repo}/pulls/comments/{comment_id}"),
            false => format!("/repos/{repo}/issues/comments/{comment_id}"),
        };
        let request = self.installation_request(installation_id, Method::PATCH, &path).await?;
        self.send_json(request.json(&json!({"body": body}))).await
    }

    /// A comment already carrying `marker`, among the latest of the issue or
    /// pull request (or of its review comments, for a review thread).
    pub async fn find_reply(
        &self,
        installation_id: u64,
        repo: &str,
        number: u64,
        review_thread: bool,
        marker: &str,
    ) -> Result<Option<Created>, GitHubError> {
        let comments = if review_thread {
            let path = format!("/repos/{repo}/pulls/{number}/comments?per_page=100&sort=created&direction=desc");
            let request = self.installation_request(installation_id, Method::GET, &path).await?;
            self.send_json::<Vec<Comment>>(request).await?
        } else {
            self.latest_comments(installation_id, repo, number).await?
        };
        Ok(comments
            .into_iter()
            .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
            .map(|c| Created { id: c.id, html_url: c.html_url }))
    }
}

/// A URL without its query (which may carry anything), for messages.
fn path_only(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::{last_page, next_link};

    #[test]
    fn the_next_page_is_read_from_the_link_header() {
        let link = r#"<https://api.github.com/repositories/1/pulls/2/commits?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/pulls/2/commits?per_page=100&page=3>; rel="last""#;
        assert_eq!(
            next_link(Some(link)),
            Some("https://api.github.com/repositories/1/pulls/2/commits?per_page=100&page=2")
        );
        let last_only =
            r#"<https://api.github.com/x?page=1>; rel="prev", <https://api.github.com/x?page=1>; rel="first""#;
        assert_eq!(next_link(Some(last_only)), None);
        assert_eq!(next_link(None), None);
    }

    #[test]
    fn the_last_page_is_read_from_the_link_header() {
        let link = r#"<https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=7>; rel="last""#;
        assert_eq!(last_page(Some(link)), Some(7));
        assert_eq!(last_page(None), None);
        assert_eq!(last_page(Some(r#"<https://x/y?page=1>; rel="prev""#)), None);
    }
}

/// A file as the contents API gives it: its blob sha, its size and its
/// bytes (`None` when it is larger than the caller reads).
#[derive(Debug)]
pub struct RepositoryFile {
    pub sha: String,
    pub size: usize,
    pub content: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct Contents {
    sha: String,
    /// Base64 with line breaks; absent or empty for a file over 1 MB.
    #[serde(default)]
    content: String,
    #[serde(default)]
    size: usize,
}

#[derive(Deserialize)]
struct TeamMembership {
    state: String,
}

impl GitHubClient {
    /// The file at `path` on `branch` (GitHub's default branch when `None`),
    /// or `None` when there is none. A file larger than `max_bytes` comes back
    /// without its content.
    pub async fn repository_file(
        &self,
        installation_id: u64,
        repo: &str,
        path: &str,
        branch: Option<&str>,
        max_bytes: usize,
    ) -> Result<Option<RepositoryFile>, GitHubError> {
        let mut request =
            self.installation_request(installation_id, Method::GET, &format!("/repos/{repo}/contents/{path}")).await?;
        if let Some(branch) = branch {
            request = request.query(&[("ref", branch)]);
        }
        let contents: Contents = match self.send_json(request).await {
            Ok(contents) => contents,
            Err(e) if e.status() == Some(404) => return Ok(None),
            Err(e) => return Err(e),
        };
        if contents.size > max_bytes {
            return Ok(Some(RepositoryFile { sha: contents.sha, size: contents.size, content: None }));
        }
        use base64::Engine as _;
        let encoded: String = contents.content.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let content = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| GitHubError::Transport(format!("unreadable file content: {e}")))?;
        Ok(Some(RepositoryFile { sha: contents.sha, size: contents.size, content: Some(content) }))
    }

    /// Whether `login` is an active member of `org`'s team `team_slug`
    /// (a pending invitation is not; an unknown team or user is not).
    pub async fn is_active_team_member(
        &self,
        installation_id: u64,
        org: &str,
        team_slug: &str,
        login: &str,
    ) -> Result<bool, GitHubError> {
        let path = format!("/orgs/{org}/teams/{team_slug}/memberships/{login}");
        let request = self.installation_request(installation_id, Method::GET, &path).await?;
        match self.send_json::<TeamMembership>(request).await {
            Ok(membership) => Ok(membership.state == "active"),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
