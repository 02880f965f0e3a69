//! End-to-end tests: the real server on port 0, spoken to with real WebSocket frames.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

mod auth;
mod catch_up;
mod chat;
mod client;
mod cluster;
mod copilot;
mod copilot_relay;
mod faults;
mod handshake;
mod lifecycle;
mod limits;
mod metrics;
mod notify;
mod order;
mod shutdown;
mod tls;
mod v1;
