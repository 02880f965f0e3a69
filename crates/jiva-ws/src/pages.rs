//! Plain pages served over HTTP.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// `GET /` without an upgrade.
pub(crate) fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "JivaChat: connect a WebSocket to /?agentID=<agent>&secondaryID=supervisor|copilot\n",
    )
        .into_response()
}
