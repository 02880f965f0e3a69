//! `jiva-auth` against real tokens: keys generated here, a real JWKS server on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cognito;
mod hmac;
