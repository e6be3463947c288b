//! The App's webhook deliveries API: list (cursor pagination) and redeliver.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, ACCEPT, LINK, RETRY_AFTER, USER_AGENT};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

/// Something that signs a GitHub App JWT (the App's own identity, needed by
/// `/app/hook/...`).
#[async_trait]
pub trait AppJwtSource: Send + Sync {
    async fn app_jwt(&self) -> Result<String, String>;
}

/// One delivery attempt as GitHub lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct DeliveryAttempt {
    pub id: u64,
    pub guid: String,
    /// RFC 3339.
    pub delivered_at: String,
    #[serde(default)]
    pub redelivery: bool,
    /// 0 when GitHub could not connect.
    #[serde(default)]
    pub status_code: u16,
    #[serde(default)]
    pub event: String,
    /// Listed by some GitHub versions; otherwise read from the attempt's request headers.
    #[serde(default)]
    pub hook_id: Option<u64>,
}

impl DeliveryAttempt {
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }

    pub fn delivered_at(&self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::parse(&self.delivered_at, &time::format_description::well_known::Rfc3339).ok()
    }
}

#[derive(Debug, Deserialize)]
struct DeliveryDetail {
    #[serde(default)]
    request: Option<DetailRequest>,
}

#[derive(Debug, Deserialize)]
struct DetailRequest {
    #[serde(default)]
    headers: std::collections::HashMap<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("signing the App JWT: {0}")]
    Jwt(String),
    #[error("GitHub could not be reached: {0}")]
    Unreachable(String),
    #[error("GitHub answered {status} to {route}")]
    Status { route: &'static str, status: u16 },
    #[error("GitHub's rate limit: retry after {0:?}, longer than this run waits")]
    RateLimited(Duration),
    #[error("GitHub's answer to {route} could not be read: {detail}")]
    BadAnswer { route: &'static str, detail: String },
}

/// A client for `/app/hook/deliveries`, authenticated as the App.
#[derive(Clone)]
pub struct DeliveriesClient {
    http: reqwest::Client,
    api_url: Url,
    jwt: Arc<dyn AppJwtSource>,
    /// The longest rate-limit wait honoured inside one run.
    pub max_rate_limit_wait: Duration,
}

/// Attempts per listing page (GitHub's maximum).
const PER_PAGE: &str = "100";
/// Rate-limited answers retried per request before giving up.
const RATE_LIMIT_RETRIES: u32 = 3;

impl DeliveriesClient {
    pub fn new(http: reqwest::Client, api_url: Url, jwt: Arc<dyn AppJwtSource>) -> Self {
        DeliveriesClient { http, api_url, jwt, max_rate_limit_wait: Duration::from_secs(120) }
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.api_url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        url
    }

    /// One page of attempts, newest first, and the cursor of the next page.
    pub async fn list_page(&self, cursor: Option<&str>) -> Result<(Vec<DeliveryAttempt>, Option<String>), GitHubError> {
        let route = "GET /app/hook/deliveries";
        let mut url = self.url("/app/hook/deliveries");
        url.query_pairs_mut().append_pair("per_page", PER_PAGE);
        if let Some(cursor) = cursor {
            url.query_pairs_mut().append_pair("cursor", cursor);
        }
        let response = self.send(Method::GET, url, route).await?;
        let next = next_cursor(response.headers());
        let attempts = response
            .json::<Vec<DeliveryAttempt>>()
            .await
            .map_err(|e| GitHubError::BadAnswer { route, detail: e.without_url().to_string() })?;
        Ok((attempts, next))
    }

    /// The hook id from one attempt's recorded request headers.
    pub async fn hook_id_of(&self, attempt_id: u64) -> Result<Option<String>, GitHubError> {
        let route = "GET /app/hook/deliveries/{id}";
        let url = self.url(&format!("/app/hook/deliveries/{attempt_id}"));
        let detail = self
            .send(Method::GET, url, route)
            .await?
            .json::<DeliveryDetail>()
            .await
            .map_err(|e| GitHubError::BadAnswer { route, detail: e.without_url().to_string() })?;
        let headers = detail.request.map(|r| r.headers).unwrap_or_default();
        Ok(headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("x-github-hook-id")).and_then(|(_, v)| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }))
    }

    /// Asks GitHub to deliver attempt `attempt_id` again.
    pub async fn redeliver(&self, attempt_id: u64) -> Result<(), GitHubError> {
        let url = self.url(&format!("/app/hook/deliveries/{attempt_id}/attempts"));
        self.send(Method::POST, url, "POST /app/hook/deliveries/{id}/attempts").await.map(drop)
    }

    /// Sends with the App JWT; waits out rate limits (`Retry-After`, or
    /// `x-ratelimit-reset` with no requests remaining) up to `max_rate_limit_wait`.
    async fn send(&self, method: Method, url: Url, route: &'static str) -> Result<reqwest::Response, GitHubError> {
        let mut retries = 0;
        loop {
            let jwt = self.jwt.app_jwt().await.map_err(GitHubError::Jwt)?;
            let response = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(jwt)
                .header(ACCEPT, "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28")
                .header(USER_AGENT, "hookwise")
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .map_err(|e| GitHubError::Unreachable(e.without_url().to_string()))?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            match rate_limit_wait(status, response.headers()) {
                Some(wait) if wait > self.max_rate_limit_wait => return Err(GitHubError::RateLimited(wait)),
                Some(wait) if retries < RATE_LIMIT_RETRIES => {
                    retries += 1;
                    tracing::info!(route, wait_ms = wait.as_millis() as u64, "GitHub rate limit; waiting");
                    tokio::time::sleep(wait).await;
                }
                Some(wait) => return Err(GitHubError::RateLimited(wait)),
                None => return Err(GitHubError::Status { route, status: status.as_u16() }),
            }
        }
    }
}

/// How long a rate-limited answer asks us to wait, if it is one.
fn rate_limit_wait(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let retry_after = header(RETRY_AFTER).and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
    let exhausted = header(reqwest::header::HeaderName::from_static("x-ratelimit-remaining")) == Some("0");
    let reset = header(reqwest::header::HeaderName::from_static("x-ratelimit-reset"))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map(|reset| {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            Duration::from_secs(reset.saturating_sub(now).max(1) as u64)
        });
    match status {
        StatusCode::TOO_MANY_REQUESTS => Some(retry_after.or(reset).unwrap_or(Duration::from_secs(60))),
        // A secondary limit carries Retry-After; a primary one has no requests remaining.
        StatusCode::FORBIDDEN if retry_after.is_some() => retry_after,
        StatusCode::FORBIDDEN if exhausted => reset.or(Some(Duration::from_secs(60))),
        _ => None,
    }
}

/// The `cursor` of the `rel="next"` link. Only the cursor is taken: the
/// next request goes to the configured API URL, never to a host a header names.
fn next_cursor(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.split(';').any(|p| p.trim().replace(' ', "") == "rel=\"next\"") {
            return None;
        }
        let target = target.trim().trim_start_matches('<').trim_end_matches('>');
        let url = Url::parse(target).ok()?;
        let cursor = url.query_pairs().find(|(k, _)| k == "cursor").map(|(_, v)| v.into_owned());
        cursor
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn finds_the_next_cursor() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(
                "<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_1>; rel=\"prev\", \
                 <https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_9%3D>; rel=\"next\"",
            ),
        );
        assert_eq!(next_cursor(&headers).as_deref(), Some("v1_9="));
        headers.insert(LINK, HeaderValue::from_static("<https://x/y?cursor=a>; rel=\"prev\""));
        assert_eq!(next_cursor(&headers), None);
        assert_eq!(next_cursor(&HeaderMap::new()), None);
    }

    #[test]
    fn recognises_rate_limits() {
        let mut headers = HeaderMap::new();
        assert_eq!(rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &headers), Some(Duration::from_secs(60)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &headers), Some(Duration::from_secs(3)));
        assert_eq!(rate_limit_wait(StatusCode::FORBIDDEN, &headers), Some(Duration::from_secs(3)));
        assert_eq!(rate_limit_wait(StatusCode::FORBIDDEN, &HeaderMap::new()), None);
        assert_eq!(rate_limit_wait(StatusCode::INTERNAL_SERVER_ERROR, &headers), None);
    }
}
