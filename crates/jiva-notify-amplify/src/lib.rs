//! `jiva-notify-amplify` delivers JivaChat notifications to Amplify: one AppSync GraphQL
//! `createNotification` mutation per [`Notification`], sent off the chat path.
//!
//! Layout:
//! - [`NotificationQueue`]: the [`Notifier`] the server gives the chat path. `notify` only puts
//!   the notification into a bounded queue and returns; one worker task delivers oldest first,
//!   with a bounded number of deliveries in flight. When the queue is full the oldest waiting
//!   notification is dropped and counted. A transient failure goes back into the queue; after a
//!   run of them a circuit breaker ([`BreakerPolicy`]) stops sending until a probe succeeds.
//!   [`shutdown`] stops accepting and flushes within a deadline; [`stats`] exposes depth, in
//!   flight, delivered, failed and dropped counters and the breaker's state.
//! - [`AmplifyClient`]: one delivery. It maps the notification to the mutation's variables by
//!   hand, POSTs them with the `x-api-key` header, classifies the answer and retries transient
//!   failures with jittered exponential backoff.
//! - [`Config`]: a plain struct the binary fills in; [`start`] builds both from it.
//!
//! ```no_run
//! # async fn run() -> Result<(), jiva_notify_amplify::SetupError> {
//! use std::{sync::Arc, time::Duration};
//! use jiva_core::Notifier;
//! use jiva_notify_amplify::{ApiKey, Config};
//!
//! let config = Config::new("https://example.appsync-api.invalid/graphql", ApiKey::new("da2-..."));
//! let queue = Arc::new(jiva_notify_amplify::start(config)?);
//! let notifier: Arc<dyn Notifier> = queue.clone(); // handed to the chat path
//! # drop(notifier);
//! // ... on stop:
//! let report = queue.shutdown(Duration::from_secs(5)).await;
//! # let _ = report;
//! # Ok(()) }
//! ```
//!
//! What this crate deliberately is not: it knows nothing of sockets, rooms, storage or the
//! copilot, and decides nothing about *when* to notify (that is
//! [`Notification::for_message`] in `jiva-core`). It never reads the environment and never
//! installs a tracing subscriber.
//!
//! Invariants:
//! - `notify` never waits for the network, the worker or a full queue: a hanging AppSync cannot
//!   slow a chat. Memory is bounded by the queue capacity.
//! - A delivery succeeds only on a 2xx answer whose `errors` is absent or empty. GraphQL errors
//!   and 4xx other than 429 are logged once and not retried; 5xx, 429, time-outs and connection
//!   errors are retried a bounded number of times, then the notification waits in the queue
//!   again: an outage loses only what overflows the queue. While the breaker is open nothing is
//!   sent but one probe per `open_for`, and nothing is given up.
//! - At most `concurrency` deliveries are in flight at once.
//! - The mutation selects `id primaryID secondaryID notification_type read createdAt updatedAt
//!   __typename`: AppSync sends subscribers only the selected fields, and the client needs all.
//! - `primaryID` is the agent id's first `-`-separated segment unless configured to the whole
//!   id; `secondaryID` is `supervisor` or `copilot`; `notification_type` is `AGENT`, `COPILOT`
//!   or the configured supervisor spelling (`SUPERVISOR` or `SUPER`).
//! - The API key is never logged or shown by `Debug`; it is sent as a sensitive header.
//!
//! [`shutdown`]: NotificationQueue::shutdown
//! [`stats`]: NotificationQueue::stats
//! [`Notification`]: jiva_core::Notification
//! [`Notification::for_message`]: jiva_core::Notification::for_message
//! [`Notifier`]: jiva_core::Notifier

mod breaker;
mod client;
mod config;
#[doc(hidden)]
pub mod fuzzing;
mod graphql;
mod queue;
mod retry;

pub use breaker::{BreakerPolicy, BreakerState};
pub use client::AmplifyClient;
pub use config::{
    ApiKey, Config, PrimaryId, RetryPolicy, SetupError, SupervisorSpelling,
    UnknownSupervisorSpelling,
};
pub use queue::{Deliver, NotificationQueue, QueueSettings, QueueStats, ShutdownReport};

/// Builds an [`AmplifyClient`] from `config` and starts a [`NotificationQueue`] of
/// `config.queue_capacity` in front of it, its worker spawned on the current tokio runtime.
///
/// Fails with the first of [`Config::problems`], or [`SetupError::NoRuntime`] outside a runtime.
pub fn start(config: Config) -> Result<NotificationQueue, SetupError> {
    let client = AmplifyClient::new(&config)?;
    tracing::info!(
        host = client.host(),
        capacity = config.queue_capacity,
        concurrency = config.concurrency,
        max_retries = config.retry.max_retries,
        "notifications go to Amplify"
    );
    let queue = NotificationQueue::start_with(client, config.queue_settings())?;
    Ok(queue)
}
