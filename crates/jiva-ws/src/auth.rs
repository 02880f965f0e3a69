//! Who may open a socket, decided before the upgrade: the Origin allow-list, the caller's token
//! (`?token=` or `Authorization: Bearer`), and the chat rules of `jiva_core::authorize`.
//!
//! Answers: 403 `origin not allowed` for a browser from another origin; 401 with a one-line
//! reason (and `WWW-Authenticate: Bearer`) for a missing or bad token; 403 with a reason for a
//! chat that is not the caller's; 503 when the signing keys cannot be fetched. The token itself
//! is never logged nor echoed. A plain GET that names a chat gets the same answers, so a
//! browser page (which cannot read a failed upgrade's status) can learn why with `fetch`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiva_core::{AuthError, ChatId, Identity, Timestamp, authorize};
use percent_encoding::percent_decode_str;

use crate::state::State;

/// Checks the origin, authenticates and authorizes a request for `chat`. `Ok(None)`: auth is
/// off and the caller may proceed without an identity.
pub(crate) async fn admit(
    state: &State,
    headers: &HeaderMap,
    query: Option<&str>,
    chat: &ChatId,
) -> Result<Option<Identity>, Response> {
    if !origin_allowed(&state.config.allowed_origins, headers) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "origin",
            "origin not allowed",
        ));
    }
    let authenticator = &state.authenticator;
    if !authenticator.required() {
        return Ok(None);
    }
    let token = match token_of(headers, query) {
        Ok(token) => token,
        Err(reason) => return Err(refuse(StatusCode::BAD_REQUEST, "malformed", reason)),
    };
    let identity = match authenticator.authenticate(token.as_deref()).await {
        Ok(Some(identity)) => identity,
        // An authenticator that is on never lets a caller in without an identity.
        Ok(None) => return Err(unauthorized(&AuthError::Missing)),
        Err(e) => return Err(unauthorized(&e)),
    };
    // The verifier counts whole seconds; the socket would be closed at `expires_at` to the
    // millisecond. A token past it is refused here, so that a reconnect never opens a socket
    // only to close it at once.
    if identity.expires_at.is_some_and(|at| at <= Timestamp::now()) {
        return Err(unauthorized(&AuthError::Expired));
    }
    if let Err(denied) = authorize(&identity, chat) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            denied.code(),
            &denied.to_string(),
        ));
    }
    tracing::debug!(chat = %chat, role = identity.role.as_str(), subject = %identity.subject, "caller authorized");
    Ok(Some(identity))
}

/// `GET /auth-mode`: `{"token":"required"}` when callers must present a token, else
/// `{"token":"none"}`. The built-in page asks it to know whether to show its token field.
pub(crate) async fn mode(AxumState(state): AxumState<Arc<State>>) -> Response {
    let body = if state.authenticator.required() {
        r#"{"token":"required"}"#
    } else {
        r#"{"token":"none"}"#
    };
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Completes when a token that expires at `at` has expired.
pub(crate) async fn expiry(at: Timestamp) {
    let left = at.as_millis().saturating_sub(Timestamp::now().as_millis());
    tokio::time::sleep(Duration::from_millis(u64::try_from(left).unwrap_or(0))).await;
}

fn unauthorized(error: &AuthError) -> Response {
    if matches!(error, AuthError::KeysUnavailable) {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            error.code(),
            &error.to_string(),
        );
    }
    let mut response = refuse(StatusCode::UNAUTHORIZED, error.code(), &error.to_string());
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"jivachat\""),
    );
    response
}

fn refuse(status: StatusCode, code: &'static str, reason: &str) -> Response {
    metrics::counter!("jiva_auth_refusals_total", "reason" => code).increment(1);
    tracing::info!(status = status.as_u16(), reason = code, "request refused");
    (status, format!("{reason}\n")).into_response()
}

/// Whether a request may come from its `Origin`: always when no allow-list is set or the
/// request has no `Origin` (not a browser); otherwise only from a listed origin.
fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// The caller's token: `?token=` (URL-decoded) or `Authorization: Bearer`. Giving it twice is
/// refused, so that no two parts of the stack can disagree on which one counts.
fn token_of(headers: &HeaderMap, query: Option<&str>) -> Result<Option<String>, &'static str> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "token" {
            continue;
        }
        let value = percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| "token is not valid UTF-8")?;
        if found.replace(value.into_owned()).is_some() {
            return Err("token is given more than once");
        }
    }
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let bearer = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned())
            .ok_or("the Authorization header is not a Bearer token")?;
        if found.replace(bearer).is_some() {
            return Err("token is given more than once");
        }
    }
    Ok(found.filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_token_comes_from_the_query_or_the_bearer_header() {
        let none = HeaderMap::new();
        assert_eq!(token_of(&none, None), Ok(None));
        assert_eq!(token_of(&none, Some("agentID=a&token=")), Ok(None));
        assert_eq!(
            token_of(&none, Some("agentID=a&token=a.b.c&secondaryID=x")),
            Ok(Some("a.b.c".into()))
        );
        // A client that URL-encodes the whole value.
        assert_eq!(
            token_of(&none, Some("token=a%2Eb%2Ec%2D_")),
            Ok(Some("a.b.c-_".into()))
        );
        let bearer = headers(&[("authorization", "Bearer x.y.z")]);
        assert_eq!(token_of(&bearer, None), Ok(Some("x.y.z".into())));
        let lower = headers(&[("authorization", "bearer x.y.z")]);
        assert_eq!(token_of(&lower, None), Ok(Some("x.y.z".into())));
    }

    #[test]
    fn a_token_given_twice_or_badly_is_refused() {
        let none = HeaderMap::new();
        assert_eq!(
            token_of(&none, Some("token=a&token=b")),
            Err("token is given more than once")
        );
        let bearer = headers(&[("authorization", "Bearer x")]);
        assert_eq!(
            token_of(&bearer, Some("token=x")),
            Err("token is given more than once")
        );
        let basic = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
        assert_eq!(
            token_of(&basic, None),
            Err("the Authorization header is not a Bearer token")
        );
        assert_eq!(
            token_of(&none, Some("token=%FF")),
            Err("token is not valid UTF-8")
        );
    }

    #[test]
    fn origins_are_checked_only_against_a_list_and_only_for_browsers() {
        let list = vec!["https://chat.example.com".to_owned()];
        let from = |o: &str| headers(&[("origin", o)]);
        assert!(origin_allowed(&[], &from("https://evil.example")));
        assert!(origin_allowed(&list, &HeaderMap::new()));
        assert!(origin_allowed(&list, &from("https://chat.example.com")));
        assert!(origin_allowed(&list, &from("https://CHAT.example.com/")));
        assert!(!origin_allowed(&list, &from("https://evil.example")));
        assert!(!origin_allowed(&list, &from("null")));
        assert!(!origin_allowed(
            &list,
            &from("https://chat.example.com:8443")
        ));
    }
}
