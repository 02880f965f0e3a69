//! Plain pages served over HTTP: the built-in chat page (`/`, `/app.js`, `/app.css`) and
//! `/metrics`.
//!
//! The page is three static files under `src/page/`, embedded at compile time: no build step,
//! no template. It speaks protocol v1 (`docs/PROTOCOL-v1.md`, subprotocol `jivachat.v1`) to the
//! host that served it.

use std::sync::Arc;

use axum::extract::State as AxumState;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::State;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");

/// Scripts and styles only from this origin, sockets only to it, no framing, no inline code.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            // Small files, revalidated on each load so that a new server version shows at once.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// `GET /` without an upgrade: the chat page.
pub(crate) fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /app.js`.
pub(crate) async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /app.css`.
pub(crate) async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// `GET /metrics`: the embedding program's metrics in Prometheus text format, or 404 when it
/// gave the transport no renderer.
pub(crate) async fn metrics(AxumState(state): AxumState<Arc<State>>) -> Response {
    match state.render_metrics() {
        Some(text) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        assert!(INDEX_HTML.contains(r#"src="/app.js""#));
        assert!(INDEX_HTML.contains(r#"href="/app.css""#));
        assert!(
            !INDEX_HTML.contains("<script>"),
            "inline scripts break the CSP"
        );
        assert!(
            !INDEX_HTML.contains("style="),
            "inline styles break the CSP"
        );
    }

    #[test]
    fn the_page_never_renders_text_as_html() {
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!APP_JS.contains(forbidden), "app.js uses {forbidden}");
        }
    }

    #[test]
    fn assets_have_their_content_types() {
        let html = index();
        assert_eq!(
            html.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(html.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }
}
