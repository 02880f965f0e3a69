//! `jiva-ws` is JivaChat's transport: one HTTP listener that serves the deployed Jiva web
//! client's WebSocket protocol (`shared/PROTOCOL.md`) on any path, plus `/healthz` and
//! `/readyz`.
//!
//! Layout:
//! - `server`: the axum router, the upgrade (query validation answers 400 with a reason), and
//!   [`serve`] with graceful shutdown.
//! - `conn`: one socket: a reader that parses and authorizes chat messages and hands them to
//!   the chat service (`jiva_chat::Chats`), and a writer task that replays history and then
//!   writes live frames through a bounded queue.
//! - `frames`: the wire frames, converted by hand from and to core types.
//! - `limits`: socket counts per IP and in total, handshake, message and copilot rate limits
//!   (`governor`), and the idle timeout.
//! - `listen`: the accept loop of [`serve`] and [`serve_tls`] (hyper HTTP/1.1 with upgrades,
//!   the peer address for the per-IP limits, a request-head timeout, graceful shutdown).
//! - `tls`: [`serve_tls`], native TLS (rustls, explicit `ring` provider) with certificates
//!   swapped without a restart.
//! - `v1`: protocol v1 (`docs/PROTOCOL-v1.md`), chosen by the subprotocol `jivachat.v1`: its
//!   socket reader and writer, the catch-up (latest page, resume, reload), and the conversion of
//!   the room's frames to v1 frames (`jiva-protocol`'s types).
//! - `auth`: before the upgrade, the Origin allow-list, the caller's token and
//!   `jiva_core::authorize` (401/403 with a reason); `GET /auth-mode`.
//!
//! What a chat does (store, order, show, publish, notify, the copilot turn) is `jiva-chat`'s:
//! this crate parses, authenticates, applies the client limits and calls it, and supplies the
//! encoder (`frames::Wire`) that makes each frame once for every socket. It receives its ports
//! as [`Services`] (`Arc<dyn MessageStore>` and friends) and never names a concrete store,
//! notification service, copilot endpoint or bus. It never reads the environment.
//!
//! Invariants:
//! - Stored before shown: a message is broadcast only after the store acknowledged it; a store
//!   failure gives the sender an error frame and shows nothing.
//! - A socket first receives its chat's history, oldest first, then live frames, with no
//!   duplicate and no gap (it replays from the store until it has caught up, then joins its
//!   room, replays what was stored meanwhile below the room's next frame, and drops live frames
//!   of messages it replayed). Live frames queue only after it caught up, so a long replay
//!   under a busy chat does not overflow its queue.
//! - Every socket of a chat sees that chat's stored frames in the chat's sequence order, the
//!   order a replay returns (a number that never arrives is skipped after a bounded wait).
//! - Memory is bounded per socket: a socket whose queue of [`Config::outbound_queue`] frames is
//!   full is closed with [`CLOSE_SLOW_CONSUMER`]; frames over [`Config::max_frame_bytes`] close
//!   that socket with [`CLOSE_TOO_BIG`].
//! - A copilot turn always ends with `{"action":"end","output":""}`.
//! - Every limit answers with a stable reason (HTTP status, error frame or close code) and
//!   counts into a `jiva_*` metric; per-IP, per-agent and per-chat state is dropped when unused,
//!   so memory follows what is open rather than everything ever seen.
//! - With an [`Authenticator`](jiva_core::Authenticator) that is on, no socket opens without a
//!   verified identity allowed on its chat; on a supervisor chat a message is stored as the
//!   identity's role (a claim of the other role gets an error frame and is not stored); a socket
//!   is closed with [`CLOSE_TOKEN_EXPIRED`] when its token expires. Tokens are never logged.

mod auth;
mod config;
mod conn;
mod frames;
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod limits;
mod listen;
mod pages;
mod server;
mod signals;
mod state;
mod tls;
mod v1;

/// Benchmark hooks (`benches/`); not public API.
#[doc(hidden)]
pub mod bench;

pub use config::Config;
pub use limits::{EXCESS_FRAMES_BEFORE_CLOSE, Limits};
pub use server::{Transport, serve, serve_admin};
pub use state::Services;
pub use tls::{HANDSHAKE_TIMEOUT, Tls, TlsError, TlsFiles, serve_tls};

/// Close code for a server shutting down (RFC 6455 "going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a frame larger than [`Config::max_frame_bytes`] (RFC 6455 "message too big").
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for a socket that did not read its frames fast enough (private-use range).
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code for a socket that kept sending over its message rate (RFC 6455 "policy
/// violation"; see [`Limits::messages_per_sec`]).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code for a socket that sent nothing and answered no ping for
/// [`Limits::idle_timeout`] (private-use range). A dead connection never sees it.
pub const CLOSE_IDLE: u16 = 4000;
/// Close code for a socket whose token expired while it was open (private-use range): the
/// client should get a fresh token and reconnect.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
