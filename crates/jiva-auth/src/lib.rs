//! `jiva-auth` verifies the tokens of JivaChat's callers and implements the `jiva-core`
//! [`Authenticator`](jiva_core::Authenticator) port twice:
//!
//! - [`HmacAuthenticator`]: HS256 JWTs signed with a shared secret (development, tests, service
//!   clients); [`issue_hs256`] makes such tokens (the server's `token` command).
//! - [`CognitoAuthenticator`]: RS256 JWTs of an AWS Cognito user pool, verified against the
//!   pool's JWKS, which is fetched once, cached, and fetched again when a token names an unknown
//!   `kid` (at most once per configured interval, so key rotation needs no restart and a flood
//!   of made-up `kid`s is not a flood of fetches).
//!
//! Both turn the verified claims into an [`Identity`](jiva_core::Identity): the agent id from a
//! configurable claim (default `custom:profileId`), and the supervisor role from membership of
//! a configurable group (default `Supervisor`) in a configurable groups claim (default
//! `cognito:groups`). Whether that identity may open a chat is `jiva_core::authorize`'s
//! business, not this crate's.
//!
//! Invariants:
//! - The algorithm is pinned by configuration (HS256 or RS256); the token's own `alg` never
//!   chooses how it is verified, so `alg: none` and algorithm confusion (an HS256 token "signed"
//!   with the RSA public key) are refused.
//! - `exp` is required and `nbf` checked, both with a configurable clock skew.
//! - Secrets are wrapped ([`JwtSecret`]) so `Debug` cannot print them; tokens and keys are never
//!   logged; failures reach the caller as a stable `AuthError`, never as internal text.
//!
//! What it is not: it knows nothing of sockets, HTTP requests, chats or where a token came
//! from. Signatures are checked by `jsonwebtoken` on the aws-lc-rs backend (already in the
//! dependency tree through rustls and the AWS SDK, so no second crypto stack is added).

mod claims;
mod cognito;
mod config;
mod hmac;
mod jwks;
#[cfg(feature = "testing")]
pub mod testing;

pub use cognito::{BuildError, CognitoAuthenticator};
pub use config::{ClaimNames, CognitoConfig, JwtConfig, JwtSecret, MIN_SECRET_BYTES};
pub use hmac::{HmacAuthenticator, IssueError, issue_hs256};

/// Makes `jsonwebtoken` use aws-lc-rs whatever other crates in the build enable (with both of
/// its backends on, it would otherwise refuse to pick one). Idempotent.
pub(crate) fn use_crypto_provider() {
    // Err only means a provider is installed already, which is what we want.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}
