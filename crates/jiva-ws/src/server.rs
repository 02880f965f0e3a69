//! HTTP routing, the upgrade, and serving with graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::handshake::{chat_from_query, names_a_chat};
use crate::state::{Services, State};
use crate::{auth, conn, pages};

/// A running transport's handle on its shared state: lets the embedding program start shutdown
/// and wait for sockets and copilot turns to finish.
#[derive(Clone)]
pub struct Transport {
    state: Arc<State>,
}

impl Transport {
    /// Builds the transport over `services`.
    pub fn new(config: Config, services: Services) -> Self {
        Self {
            state: Arc::new(State::new(config, services)),
        }
    }

    /// Serves `render()` at `GET /metrics` (Prometheus text format). The transport only emits
    /// through the `metrics` facade; the embedding program owns the recorder and renders it.
    /// The first renderer given to a transport stays.
    #[must_use]
    pub fn with_metrics(self, render: Arc<dyn Fn() -> String + Send + Sync>) -> Self {
        if self.state.metrics.set(render).is_err() {
            tracing::warn!("a metrics renderer was already set; keeping the first");
        }
        self
    }

    /// The axum router: WebSocket upgrades on any path, `/healthz`, `/readyz`, `/metrics`, the
    /// chat page at `/` (with `/app.js`, `/app.css`), and plain-HTTP answers elsewhere. Mount it in a larger router to embed JivaChat.
    /// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so that the per-IP
    /// limits see the client's address; without that connect info (and without a trusted
    /// `X-Forwarded-For`) only the total socket limit applies. Turn Nagle's algorithm off on
    /// the sockets your listener accepts (`TcpStream::set_nodelay(true)`, as the transport's
    /// own listener does): with it on, a frame written after another can wait for the client's
    /// delayed ACK, about 40 ms.
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/auth-mode", get(auth::mode));
        if self.state.config.metrics_on_main_listener {
            router = router.route("/metrics", get(pages::metrics));
        }
        router
            .route("/app.js", get(pages::app_js))
            .route("/app.css", get(pages::app_css))
            .fallback(plain_http)
            .layer(middleware::from_fn_with_state(
                Arc::clone(&self.state),
                upgrades_first,
            ))
            .with_state(Arc::clone(&self.state))
    }

    /// The admin router: `/metrics`, `/healthz` and `/readyz` only (see [`serve_admin`]).
    pub fn admin_router(&self) -> Router {
        Router::new()
            .route("/metrics", get(pages::metrics))
            .route("/healthz", get(healthz_full))
            .route("/readyz", get(readyz))
            .with_state(Arc::clone(&self.state))
    }

    /// Completes once shutdown has started (for tasks the embedding program runs beside the
    /// transport).
    pub fn shutting_down(&self) -> impl Future<Output = ()> + Send + 'static {
        self.state.shutdown.clone().cancelled_owned()
    }

    /// Cancelled when shutdown starts.
    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// How long a connection may take to send its request headers.
    pub(crate) fn request_header_timeout(&self) -> Duration {
        self.state.config.limits.request_header_timeout
    }

    /// Starts shutdown: every socket is closed with 1001 and running copilot turns end.
    /// The first call fixes the [`shutdown_deadline`](Self::shutdown_deadline).
    pub fn begin_shutdown(&self) {
        let _ = self.state.shutdown_started.set(tokio::time::Instant::now());
        self.state.shutdown.cancel();
    }

    /// When every shutdown step must be over: [`Config::shutdown_grace`] after shutdown began
    /// (after now, if it has not begun). The steps share it, so that draining the sockets and
    /// then anything the embedding program flushes (notifications) take one grace in all, not
    /// one each.
    pub fn shutdown_deadline(&self) -> tokio::time::Instant {
        let started = self
            .state
            .shutdown_started
            .get()
            .copied()
            .unwrap_or_else(tokio::time::Instant::now);
        started + self.state.config.shutdown_grace
    }

    /// Waits (until the [`shutdown_deadline`](Self::shutdown_deadline)) for sockets and copilot
    /// turns to finish. Returns false when the grace period ran out first.
    pub async fn drain(&self) -> bool {
        self.state.tracker.close();
        tokio::time::timeout_at(self.shutdown_deadline(), self.state.tracker.wait())
            .await
            .is_ok()
    }
}

/// Serves JivaChat on an already-bound listener until `shutdown` completes, then closes every
/// socket with 1001, lets in-flight writes finish, and returns within the configured grace.
pub async fn serve<F>(
    listener: TcpListener,
    transport: Transport,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    crate::listen::serve_connections(listener, transport, None, shutdown).await
}

/// Serves [`Transport::admin_router`] on its own listener (plain HTTP) until the transport
/// starts shutting down.
pub async fn serve_admin(listener: TcpListener, transport: Transport) -> std::io::Result<()> {
    let stop = transport.shutdown_token();
    axum::serve(listener, transport.admin_router())
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn bad_request(reason: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response()
}

/// Every upgrade request is a chat socket, whatever its path.
async fn upgrades_first(
    AxumState(state): AxumState<Arc<State>>,
    request: Request,
    next: Next,
) -> Response {
    if !is_upgrade(request.headers()) {
        return next.run(request).await;
    }
    // Counted from here until the socket closes; refused before any other work.
    let permit = match state.limiter.admit(state.limiter.client_ip(&request)) {
        Ok(permit) => permit,
        Err(refusal) => return refusal.response(),
    };
    let chat = match chat_from_query(request.uri().query()) {
        Ok(chat) => chat,
        Err(reason) => return bad_request(reason),
    };
    let identity = match auth::admit(&state, request.headers(), request.uri().query(), &chat).await
    {
        Ok(identity) => identity,
        Err(refusal) => return refusal,
    };
    // Protocol v1 when the client offers it (with its resume point); v0 otherwise.
    let v1 = match crate::v1::offered(request.headers()) {
        false => None,
        true => match crate::v1::since_from_query(request.uri().query()) {
            Ok(since) => Some(since),
            Err(reason) => return bad_request(reason),
        },
    };
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "server is shutting down\n").into_response();
    }
    if let Err(e) = state.chats.register(&chat).await {
        tracing::error!(chat = %chat, error = %e, "registering a chat failed");
        return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response();
    }
    let config = &state.config;
    // Taken before the upgrade so that shutdown waits for this socket.
    let token = state.tracker.token();
    let task_state = Arc::clone(&state);
    let upgrade = match v1 {
        Some(_) => upgrade.protocols([jiva_protocol::SUBPROTOCOL]),
        None => upgrade,
    };
    upgrade
        .read_buffer_size(config.read_buffer_bytes)
        .write_buffer_size(config.write_buffer_bytes)
        .max_message_size(config.max_frame_bytes)
        .max_frame_size(config.max_frame_bytes)
        .on_upgrade({
            // One box for what the socket's task needs: axum's upgrade task keeps the callback's
            // captures for the socket's whole life after they were moved on.
            let pending = Box::new((task_state, chat, identity, v1, (permit, token)));
            move |socket| {
                let (state, chat, identity, v1, held) = *pending;
                socket_task(state, chat, identity, socket, v1, held)
            }
        })
}

/// The future of an upgraded socket's task: its protocol's connection, then `held` (the socket
/// permit and the shutdown tracker's token) released.
///
/// Built by a plain function rather than an `async` block: the block would keep its captured
/// arguments (the `WebSocket` among them) beside the connection's future they were moved into,
/// for as long as the socket is open.
fn socket_task(
    state: Arc<State>,
    chat: jiva_core::ChatId,
    identity: Option<jiva_core::Identity>,
    socket: axum::extract::ws::WebSocket,
    v1: Option<Option<jiva_core::Seq>>,
    held: impl Send + 'static,
) -> impl std::future::Future<Output = ()> + Send {
    use futures_util::FutureExt;
    let connection = match v1 {
        // Boxed: a v0 socket's task does not hold room for v1's future.
        Some(since) => futures_util::future::Either::Left(Box::pin(crate::v1::run(
            state, chat, identity, socket, since,
        ))),
        None => futures_util::future::Either::Right(conn::run(state, chat, identity, socket)),
    };
    connection.map(move |()| drop(held))
}

/// A request that is not an upgrade always gets an HTTP answer. One that names a chat gets the
/// answer its upgrade would get (400, 401, 403) or 426.
async fn plain_http(AxumState(state): AxumState<Arc<State>>, request: Request) -> Response {
    let query = request.uri().query();
    if names_a_chat(query) {
        let chat = match chat_from_query(query) {
            Ok(chat) => chat,
            Err(reason) => return bad_request(reason),
        };
        return match auth::admit(&state, request.headers(), query, &chat).await {
            Err(refusal) => refusal,
            Ok(_) => (
                StatusCode::UPGRADE_REQUIRED,
                [(header::UPGRADE, "websocket")],
                "this is a WebSocket endpoint\n",
            )
                .into_response(),
        };
    }
    if request.uri().path() == "/" {
        return pages::index();
    }
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn healthz(AxumState(state): AxumState<Arc<State>>) -> Response {
    // With authentication on, anonymous callers learn nothing about the build.
    if state.authenticator.required() {
        return (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ok"}"#,
        )
            .into_response();
    }
    healthz_full(AxumState(state)).await
}

/// `/healthz` with the version and store kind: on the admin listener always, on the main one
/// only while authentication is off.
async fn healthz_full(AxumState(state): AxumState<Arc<State>>) -> Response {
    let body = format!(
        "{{\"status\":\"ok\",\"version\":\"{}\",\"store\":\"{}\"}}",
        env!("CARGO_PKG_VERSION"),
        state.chats.store().kind()
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Ready while the store answers (503 otherwise). A bus that cannot reach the other servers
/// does not make a server unready, since its chats go on here: the answer is still 200, with
/// the body saying so (`jiva_bus_connected` is 0 meanwhile).
async fn readyz(AxumState(state): AxumState<Arc<State>>) -> Response {
    match state.chats.store().check().await {
        Ok(()) if !state.chats.bus_connected() => {
            (StatusCode::OK, "ready; bus down (degraded)\n").into_response()
        }
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}
