//! `jiva-ws` is JivaChat's transport: one HTTP listener that serves the deployed Jiva web
//! client's WebSocket protocol (`shared/PROTOCOL.md`) on any path, plus `/healthz` and
//! `/readyz`.
//!
//! Layout:
//! - `server`: the axum router, the upgrade (query validation answers 400 with a reason), and
//!   [`serve`] with graceful shutdown.
//! - `conn`: one socket: a reader that accepts chat messages and a writer task that replays
//!   history and then writes live frames through a bounded queue.
//! - `rooms`: the sockets of each chat and fan-out (each frame encoded once, shared by all).
//! - `turns`: copilot turns, one at a time per chat, in their own tasks.
//! - `frames`: the wire frames, converted by hand from and to core types.
//!
//! It receives its ports as [`Services`] (`Arc<dyn MessageStore>` and friends) and never names a
//! concrete store, notification service or copilot endpoint. It never reads the environment.
//!
//! Invariants:
//! - Stored before shown: a message is broadcast only after the store acknowledged it; a store
//!   failure gives the sender an error frame and shows nothing.
//! - A socket first receives its chat's history, oldest first, then live frames, with no
//!   duplicate and no gap (it joins its room before reading history and drops live copies of
//!   replayed messages).
//! - Every socket of a chat sees that chat's frames in the same order.
//! - Memory is bounded per socket: a socket whose queue of [`Config::outbound_queue`] frames is
//!   full is closed with [`CLOSE_SLOW_CONSUMER`]; frames over [`Config::max_frame_bytes`] close
//!   that socket with [`CLOSE_TOO_BIG`].
//! - A copilot turn always ends with `{"action":"end","output":""}`.

mod config;
mod conn;
mod frames;
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod pages;
mod rooms;
mod server;
mod state;
mod turns;

pub use config::Config;
pub use server::{Transport, serve};
pub use state::Services;

/// Close code for a server shutting down (RFC 6455 "going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a frame larger than [`Config::max_frame_bytes`] (RFC 6455 "message too big").
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for a socket that did not read its frames fast enough (private-use range).
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
