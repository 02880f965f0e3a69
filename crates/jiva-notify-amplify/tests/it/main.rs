//! Integration tests of `jiva-notify-amplify` against a real HTTP server on loopback standing in
//! for AppSync.

// clippy.toml allows these in `#[test]` functions only; the support code here is test code too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod appsync;
mod delivery;
mod outage;
mod queue;

use std::time::Duration;

use jiva_core::{AgentId, ChatId, ConnectionType, Notification, NotificationKind};
use jiva_notify_amplify::{ApiKey, Config};

/// An agent id shaped like the deployed ones: a UUID, so it contains `-`.
pub const UUID: &str = "0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21";

/// The key every test configures; the stand-in records the header it receives.
pub const API_KEY: &str = "da2-test-key-0123456789";

/// How long the breaker of [`config`] stays open.
pub const OPEN_FOR: Duration = Duration::from_millis(100);

/// A configuration for `url` with quick retries, a breaker that probes soon, and a request
/// limit far beyond any test.
pub fn config(url: &str) -> Config {
    let mut config = Config::new(url, ApiKey::new(API_KEY));
    config.retry.max_retries = 3;
    config.retry.base_delay = Duration::from_millis(1);
    config.retry.max_delay = Duration::from_millis(4);
    config.breaker.open_for = OPEN_FOR;
    config.request_timeout = Duration::from_secs(60);
    config
}

/// A notification of `kind` on `agent`'s chat of type `chat`.
pub fn notification(agent: &str, chat: ConnectionType, kind: NotificationKind) -> Notification {
    Notification {
        chat: ChatId::new(AgentId::parse(agent).unwrap(), chat),
        kind,
    }
}

/// The notification an agent's message on its supervisor chat raises.
pub fn agent_message(agent: &str) -> Notification {
    notification(agent, ConnectionType::Supervisor, NotificationKind::Agent)
}
