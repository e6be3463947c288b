//! Who may reach the query API and `/metrics` (see docs/decisions/api-exposure.md).
//!
//! Without `HOOKWISE_API_TOKEN` (allowed on loopback binds only) the API is
//! open, so it answers only what evidently comes from this machine: a `Host`
//! that names the loopback, no proxy's forwarding headers, and no browser
//! page of another origin asking for a change. A loopback bind alone does not
//! say that: a reverse proxy or tunnel in front of intake forwards to the same
//! port, and a page on any site can make the browser send to `127.0.0.1`
//! (or to its own name rebound to `127.0.0.1`).
//!
//! Always, whatever the token: a state-changing request carries JSON or
//! nothing — never the form and text bodies a browser sends across sites
//! without asking first.

use std::net::{Ipv4Addr, Ipv6Addr};

use poem::http::{header, HeaderMap, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};

use super::error::ApiError;
use super::AppState;

/// Headers a proxy or tunnel adds (`Via` by RFC 9110; the others by
/// nginx, Caddy, Traefik, cloudflared, ngrok and friends).
const FORWARDING_HEADERS: [&str; 6] =
    ["forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "via"];

const SET_A_TOKEN: &str = "set HOOKWISE_API_TOKEN to reach the API through a proxy or tunnel";

/// Around the `/api/v1` and `/metrics` endpoints: a refused request is
/// answered here, in the API's error shape; the rest go on.
pub async fn guard<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let open = req.data::<AppState>().is_some_and(|s| s.api_token.is_none());
    let refusal = if open { local_only(&req).and_then(|()| same_origin(&req)) } else { Ok(()) };
    match refusal.and_then(|()| json_or_nothing(&req)) {
        Ok(()) => Ok(next.call(req).await?.into_response()),
        Err(e) => Ok(e.into_response()),
    }
}

fn refused(message: String) -> ApiError {
    ApiError::forbidden("api_token_required", message)
}

/// A `Host` naming the loopback, and no forwarding header.
fn local_only(req: &Request) -> Result<(), ApiError> {
    if let Some(name) = FORWARDING_HEADERS.iter().find(|name| req.headers().contains_key(**name)) {
        return Err(refused(format!(
            "this API has no token and answers only local requests; this one came through a proxy ({name}): {SET_A_TOKEN}"
        )));
    }
    match host_of(req) {
        Some(host) if is_loopback_host(host) => Ok(()),
        _ => Err(refused(format!(
            "this API has no token and answers only requests for a loopback Host (localhost, 127.0.0.1, [::1]): {SET_A_TOKEN}"
        ))),
    }
}

/// The one `Host` header (HTTP/1.1), else the URI's authority (HTTP/2).
fn host_of(req: &Request) -> Option<&str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.to_str().ok(),
        (None, _) => req.uri().authority().map(|a| a.as_str()),
        (Some(_), Some(_)) => None,
    }
}

/// `localhost`, `*.localhost` (RFC 6761: never looked up in DNS by
/// browsers, so no page can rebind them), `127.0.0.0/8` and `[::1]`, each
/// with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((address, port)) => {
                let loopback = address
                    .parse::<Ipv6Addr>()
                    .is_ok_and(|a| a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()));
                return loopback && (port.is_empty() || port.strip_prefix(':').is_some_and(is_port));
            }
            None => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    if !port.is_none_or(is_port) {
        return false;
    }
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.strip_suffix(".localhost").is_some_and(|sub| !sub.is_empty() && !sub.ends_with('.'))
        || name.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

fn is_port(digits: &str) -> bool {
    digits.parse::<u16>().is_ok()
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// A browser page may send a change to `127.0.0.1` without asking first (a
/// form, or `fetch` with `mode: "no-cors"` and no body); it always says
/// where from in `Origin`. Only the API's own pages (`/docs`) may.
fn same_origin(req: &Request) -> Result<(), ApiError> {
    if !changes_state(req.method()) {
        return Ok(());
    }
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let origin_host = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, host)| host);
    match (origin_host, host_of(req)) {
        (Some(from), Some(to)) if from.eq_ignore_ascii_case(to) => Ok(()),
        _ => Err(refused(format!(
            "this API has no token and takes no changes from a page of another origin: {SET_A_TOKEN}"
        ))),
    }
}

/// A change carries `application/json`, or no body type at all (the admin
/// POSTs take no body): never a form or `text/plain`.
fn json_or_nothing(req: &Request) -> Result<(), ApiError> {
    if !changes_state(req.method()) || is_json_or_absent(req.headers()) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "a request that changes something carries Content-Type: application/json, or no body and no Content-Type",
    ))
}

fn is_json_or_absent(headers: &HeaderMap) -> bool {
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    match (types.next(), types.next()) {
        (None, _) => true,
        (Some(value), None) => value
            .to_str()
            .is_ok_and(|v| v.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json")),
        (Some(_), Some(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST:8000",
            "app.localhost",
            "a.b.localhost:1",
            "127.0.0.1",
            "127.0.0.1:65535",
            "127.8.9.10:80",
            "[::1]",
            "[::1]:8000",
            "[::ffff:127.0.0.1]:8000",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn other_hosts() {
        for host in [
            "",
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "evillocalhost",
            ".localhost",
            "localhost.",
            "a..localhost",
            "127.0.0.1.nip.io",
            "128.0.0.1",
            "0.0.0.0",
            "10.0.0.1:8000",
            "127.1",
            "2130706433",
            "localhost:abc",
            "localhost:99999",
            "localhost:",
            "[::1",
            "[::1]x",
            "[::2]:8000",
            "[::]:8000",
            "::1",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
