//! The App's webhook deliveries API (list with cursor pagination, read one,
//! redeliver), through the shared [`GitHubClient`] (App JWT, error
//! classification, `Retry-After`).

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, LINK};
use reqwest::{Method, Url};
use serde::Deserialize;

use crate::github::client::{GitHubClient, GitHubError};

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
}

impl DeliveryAttempt {
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }

    pub fn delivered_at(&self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::parse(&self.delivered_at, &time::format_description::well_known::Rfc3339).ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveriesError {
    #[error("{route}: {source}")]
    GitHub {
        route: &'static str,
        #[source]
        source: GitHubError,
    },
    #[error("{route}: GitHub's rate limit asks to wait {wait:?}, longer than a run waits")]
    RateLimited { route: &'static str, wait: Duration },
}

/// Attempts per listing page (GitHub's maximum).
const PER_PAGE: &str = "100";
/// Rate-limited answers retried per request before giving up.
const RATE_LIMIT_RETRIES: u32 = 3;

/// `/app/hook/deliveries`, authenticated as the App.
#[derive(Clone)]
pub struct DeliveriesClient {
    github: Arc<GitHubClient>,
    /// The longest rate-limit wait honoured inside one run.
    pub max_rate_limit_wait: Duration,
}

impl DeliveriesClient {
    pub fn new(github: Arc<GitHubClient>) -> Self {
        DeliveriesClient { github, max_rate_limit_wait: Duration::from_secs(120) }
    }

    /// One page of attempts, newest first, and the cursor of the next page.
    pub async fn list_page(
        &self,
        cursor: Option<&str>,
    ) -> Result<(Vec<DeliveryAttempt>, Option<String>), DeliveriesError> {
        let route = "GET /app/hook/deliveries";
        let response = self
            .send(route, || {
                let request = self.github.app_request(Method::GET, "/app/hook/deliveries")?;
                let request = request.query(&[("per_page", PER_PAGE)]);
                Ok(match cursor {
                    Some(cursor) => request.query(&[("cursor", cursor)]),
                    None => request,
                })
            })
            .await?;
        let next = next_cursor(response.headers());
        let attempts = response.json::<Vec<DeliveryAttempt>>().await.map_err(|e| unreadable(route, e))?;
        Ok((attempts, next))
    }

    /// Asks GitHub to deliver attempt `attempt_id` again.
    pub async fn redeliver(&self, attempt_id: u64) -> Result<(), DeliveriesError> {
        let route = "POST /app/hook/deliveries/{id}/attempts";
        let path = format!("/app/hook/deliveries/{attempt_id}/attempts");
        self.send(route, || self.github.app_request(Method::POST, &path)).await.map(drop)
    }

    /// Sends (a fresh request, so a fresh JWT, each time) and waits out rate
    /// limits — 429, or 403 with `Retry-After` or the limit spent — up to
    /// [`RATE_LIMIT_RETRIES`] times and `max_rate_limit_wait` each.
    async fn send(
        &self,
        route: &'static str,
        build: impl Fn() -> Result<reqwest::RequestBuilder, GitHubError>,
    ) -> Result<reqwest::Response, DeliveriesError> {
        let mut retries = 0;
        loop {
            let request = build().map_err(|source| DeliveriesError::GitHub { route, source })?;
            let error = match self.github.send(request).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            let rate_limited = matches!(error.status(), Some(429) | Some(403));
            match error.retry_after().filter(|_| rate_limited) {
                Some(wait) if wait > self.max_rate_limit_wait || retries >= RATE_LIMIT_RETRIES => {
                    return Err(DeliveriesError::RateLimited { route, wait });
                }
                Some(wait) => {
                    retries += 1;
                    tracing::info!(route, wait_ms = wait.as_millis() as u64, "GitHub rate limit; waiting");
                    tokio::time::sleep(wait).await;
                }
                None => return Err(DeliveriesError::GitHub { route, source: error }),
            }
        }
    }
}

fn unreadable(route: &'static str, e: reqwest::Error) -> DeliveriesError {
    DeliveriesError::GitHub { route, source: GitHubError::Transport(format!("unreadable answer: {}", e.without_url())) }
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
}
