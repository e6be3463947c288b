//! The GitHub REST client of a GitHub App: an RS256 JWT for `/app/…`
//! endpoints, installation access tokens for everything else (cached until
//! five minutes before they expire, never used past their hour), and
//! responses classified so that callers can honour `Retry-After` and the
//! rate-limit headers.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// How long before its expiry an installation token is replaced.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// GitHub accepts App JWTs of at most ten minutes; nine leaves room for clock skew.
const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);
const USER_AGENT: &str = concat!("hookwise/", env!("CARGO_PKG_VERSION"));

/// The App's id and private key. Never printed.
#[derive(Clone)]
pub struct AppCredentials {
    app_id: String,
    key: EncodingKey,
}

impl AppCredentials {
    /// `pem` is the App's private key (PKCS#1 or PKCS#8 PEM).
    pub fn parse(app_id: &str, pem: &str) -> Result<Self, String> {
        if app_id.trim().is_empty() {
            return Err("GITHUB_APP_ID is empty".into());
        }
        let key = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|_| "the GitHub App private key is not an RSA key in PEM format".to_owned())?;
        Ok(AppCredentials { app_id: app_id.trim().to_owned(), key })
    }
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials").field("app_id", &self.app_id).field("key", &"<redacted>").finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("the GitHub App is not configured (GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY)")]
    NotConfigured,
    #[error("signing the App JWT: {0}")]
    Jwt(String),
    /// No answer, or an unreadable one: the outcome of a write is unknown.
    #[error("GitHub request failed: {0}")]
    Transport(String),
    #[error("GitHub answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        /// When GitHub said to come back (`Retry-After`, or the rate-limit reset).
        retry_after: Option<Duration>,
    },
}

impl GitHubError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Worth trying again: transport failures, 5xx, 429 and rate-limit 403s.
    pub fn is_retryable(&self) -> bool {
        match self {
            GitHubError::Transport(_) => true,
            GitHubError::Status { status, retry_after, .. } => {
                *status >= 500 || *status == 429 || (*status == 403 && retry_after.is_some())
            }
            GitHubError::NotConfigured | GitHubError::Jwt(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GitHubError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    expires_at: SystemTime,
}

pub struct GitHubClient {
    http: reqwest::Client,
    api_url: String,
    credentials: Option<AppCredentials>,
    /// One slot per installation: a refresh holds only its own
    /// installation's slot across the HTTP call (concurrent steps of the same
    /// installation wait for that one request instead of each making theirs);
    /// the map's own lock is held only to find the slot.
    tokens: std::sync::Mutex<HashMap<u64, Arc<Mutex<Option<CachedToken>>>>>,
}

#[derive(Serialize)]
struct JwtClaims<'a> {
    iat: u64,
    exp: u64,
    iss: &'a str,
}

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: String,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl GitHubClient {
    /// `api_url` is `https://api.github.com`, a GitHub Enterprise Server API
    /// root, or a test double.
    pub fn new(api_url: &str, credentials: Option<AppCredentials>) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        GitHubClient {
            http,
            api_url: api_url.trim_end_matches('/').to_owned(),
            credentials,
            tokens: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn is_configured(&self) -> bool {
        self.credentials.is_some()
    }

    /// A fresh App JWT (RS256; issued a minute in the past for clock skew).
    pub fn app_jwt(&self) -> Result<String, GitHubError> {
        let credentials = self.credentials.as_ref().ok_or(GitHubError::NotConfigured)?;
        let now = unix_now();
        let claims =
            JwtClaims { iat: now.saturating_sub(60), exp: now + JWT_LIFETIME.as_secs(), iss: &credentials.app_id };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &credentials.key)
            .map_err(|e| GitHubError::Jwt(e.to_string()))
    }

    /// An installation access token, from the cache while it has more than
    /// five minutes left.
    pub async fn installation_token(&self, installation_id: u64) -> Result<String, GitHubError> {
        let slot = {
            let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            tokens.entry(installation_id).or_default().clone()
        };
        let mut cached = slot.lock().await;
        if let Some(cached) = cached.as_ref() {
            if cached.expires_at > SystemTime::now() + TOKEN_REFRESH_MARGIN {
                return Ok(cached.token.clone());
            }
        }
        let request = self.app_request(Method::POST, &format!("/app/installations/{installation_id}/access_tokens"))?;
        let fresh: AccessToken = self.send_json(request).await?;
        let expires_at = time::OffsetDateTime::parse(&fresh.expires_at, &time::format_description::well_known::Rfc3339)
            .map(|t| UNIX_EPOCH + Duration::from_secs(t.unix_timestamp().max(0) as u64))
            // Unknown expiry: assume GitHub's documented hour.
            .unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(3600));
        *cached = Some(CachedToken { token: fresh.token.clone(), expires_at });
        Ok(fresh.token)
    }

    /// A request to an `/app/…` endpoint, authenticated as the App.
    pub fn app_request(&self, method: Method, path: &str) -> Result<RequestBuilder, GitHubError> {
        let jwt = self.app_jwt()?;
        Ok(self.request(method, path).bearer_auth(jwt))
    }

    /// A request authenticated as one installation of the App.
    pub async fn installation_request(
        &self,
        installation_id: u64,
        method: Method,
        path: &str,
    ) -> Result<RequestBuilder, GitHubError> {
        let token = self.installation_token(installation_id).await?;
        Ok(self.request(method, path).bearer_auth(token))
    }

    /// The path of `url` relative to the API root, if `url` is under it
    /// (pagination links are absolute).
    pub fn api_path<'a>(&self, url: &'a str) -> Option<&'a str> {
        url.strip_prefix(&self.api_url).filter(|rest| rest.starts_with('/'))
    }

    /// A request without credentials (the App manifest conversion takes none: its code is the credential).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.api_url, path))
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
    }

    /// Sends `request`; a non-2xx answer becomes [`GitHubError::Status`]
    /// with GitHub's message and when to retry.
    pub async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, GitHubError> {
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                metrics::counter!(crate::metrics::GITHUB_CALLS, "status" => "error").increment(1);
                return Err(GitHubError::Transport(e.without_url().to_string()));
            }
        };
        let status = response.status();
        metrics::counter!(crate::metrics::GITHUB_CALLS, "status" => status.as_str().to_owned()).increment(1);
        let remaining = response.headers().get("x-ratelimit-remaining").and_then(|v| v.to_str().ok());
        if let Some(remaining) = remaining.and_then(|v| v.trim().parse::<f64>().ok()) {
            metrics::gauge!(crate::metrics::GITHUB_RATE_REMAINING).set(remaining);
        }
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(status, response.headers());
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| body.chars().take(200).collect());
        Err(GitHubError::Status { status: status.as_u16(), message, retry_after })
    }

    pub async fn send_json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, GitHubError> {
        let response = self.send(request).await?;
        response.json().await.map_err(|e| GitHubError::Transport(format!("unreadable answer: {}", e.without_url())))
    }
}

/// When to come back: `Retry-After` (seconds), else for a 403/429 with the
/// rate limit spent, the time until `x-ratelimit-reset`.
pub fn retry_after(status: StatusCode, headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(seconds) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(seconds));
    }
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN && header("x-ratelimit-remaining") == Some("0"));
    if !limited {
        return None;
    }
    let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok());
    Some(match reset {
        Some(reset) => Duration::from_secs(reset.saturating_sub(unix_now()).max(1)),
        // GitHub's advice for secondary limits without a header: wait a minute.
        None => Duration::from_secs(60),
    })
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue};

    use super::*;

    #[test]
    fn retry_after_honours_the_header_and_the_rate_limit_reset() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers), Some(Duration::from_secs(7)));

        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        let reset = (unix_now() + 30).to_string();
        headers.insert("x-ratelimit-reset", HeaderValue::from_str(&reset).expect("ascii"));
        let wait = retry_after(StatusCode::FORBIDDEN, &headers).expect("rate limited");
        assert!((Duration::from_secs(28)..=Duration::from_secs(30)).contains(&wait), "{wait:?}");

        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("12"));
        assert_eq!(retry_after(StatusCode::FORBIDDEN, &headers), None, "a permission 403 is not a rate limit");
    }

    #[test]
    fn credentials_are_never_printed() {
        let error = AppCredentials::parse("1", "not a key").expect_err("not a PEM key");
        assert!(!error.contains("not a key"));
    }
}
