//! Integration tests of `jiva-copilot` against a real HTTP stand-in on loopback.

// clippy.toml allows these inside `#[test]` functions; the stand-in's helpers are test code too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod failures;
mod framing;
mod request;
mod server;
mod timeouts;
