//! The client against a scripted v1 peer on a loopback socket: a real WebSocket server whose
//! every frame the test writes, so each rule of the client (resend until acked, resume point,
//! duplicates, reload, answers matched by `ref`, the subprotocol check, giving up) is shown
//! exactly. The client against the real JivaChat server is tested in the server's `it` suite
//! (`bins/jivachat-server/tests/it/client`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod peer;
mod v1;
