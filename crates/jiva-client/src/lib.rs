//! `jiva-client` is the Rust client of JivaChat: the crate other Rust services embed, and what
//! the server's tests use instead of hand-written frames. It speaks protocol v1
//! (`docs/PROTOCOL-v1.md`, the frames of `jiva-protocol`) or the deployed client's v0
//! (`shared/PROTOCOL.md`), and keeps one chat's connection alive on its own.
//!
//! Layout: [`Client::connect`] opens the first connection and hands back a [`Client`] (cheap to
//! clone; every method sends a command to one background task) and the [`Events`] it reads.
//! The task (`driver`) owns the socket; `pending` is the table of unacknowledged sends, `seq`
//! the resume point, `backoff` the reconnection policy, `endpoints` which node to try,
//! `tls` the `wss://` dial, `v0` the v0 frames.
//!
//! What it guarantees on v1:
//! - **Acknowledged sends.** [`Client::send`] gives every message a client id (or takes yours,
//!   [`Client::send_with_id`]) and resolves to the server's [`Ack`]. Until acknowledged, a send
//!   is written again, with the same client id, on every new connection: the server stores it
//!   once whatever happens (its idempotency), so no message is lost or doubled by a reconnect.
//! - **Resume.** The client keeps the highest sequence number delivered (`message`, `latest`,
//!   `live`; not `ack`, whose message may not have been shown yet) and reconnects with
//!   `since=` it. A replayed message at or below that number is dropped (counted in
//!   [`Stats::duplicates_dropped`], which a correct server keeps at 0). A `reload` frame resets
//!   the point; the `latest` after it starts the view again. When the server says it could not
//!   read the history to catch up (`error` `history_unavailable` without a `ref`), the client
//!   drops that connection before reading further (what follows would leave a hole behind
//!   the resume point) and resumes from the same point on a new one, the attempt counting as
//!   failed (the backoff grows).
//! - **Failover.** [`Config::fallback_urls`] lists the other nodes of a cluster: the first
//!   connection tries them in turn; after a drop the client retries the node that served it,
//!   then moves to the next one after each failed attempt. Sequence numbers are the chat's,
//!   so a client of a killed node resumes on another one with nothing lost or shown twice.
//! - **Reconnection** after any drop (close frame, error, server gone), waiting as [`Backoff`]
//!   says (exponential, capped, jittered, optionally bounded). A refusal that will not change
//!   (HTTP 4xx, v1 not spoken, a TLS certificate it cannot trust) ends the client instead.
//! - **TLS** (`wss://`) with rustls and its `ring` provider, trusting only what the caller
//!   gives: root certificates in PEM ([`Config::tls_roots_pem`]) or a whole
//!   [`rustls::ClientConfig`] ([`Config::tls_config`]). There are no built-in roots and no
//!   "accept any certificate" mode. A certificate that does not chain to the roots or does
//!   not name the URL's host is [`ClientError::Tls`]: returned by [`Client::connect`], or, on
//!   a reconnection, the [`Event::Closed`] error that ends the client (it does not retry).
//!
//! What it is not: no store, no UI state, no message history beyond the resume point (an
//! application keeps its own view from the events), no client certificates unless given in a
//! `tls_config`, and on v0
//! no acks or resume (v0 replays the whole history on every connection; an application
//! de-duplicates by `message_id`, as the deployed client does).
//!
//! Invariants: one socket per [`Client`] at a time; every queue is bounded (the events by
//! `events_capacity`: a reader that stops reading stops the socket being read, and the server
//! eventually closes it as a slow consumer, after which the client resumes); the token never
//! appears in `Debug` output or logs, message text is never logged.
//!
//! ```no_run
//! # async fn demo() -> Result<(), jiva_client::ClientError> {
//! use jiva_client::{ChatKind, Client, Config, Event};
//!
//! let config = Config::new("ws://127.0.0.1:3030/", "0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21", ChatKind::Supervisor);
//! let (client, mut events) = Client::connect(config).await?;
//! let ack = client.send("hello").await?.await?;
//! println!("stored as {} (seq {})", ack.message_id, ack.seq);
//! while let Some(event) = events.next().await {
//!     if let Event::V1(frame) = event {
//!         println!("{}", frame.to_json());
//!     }
//! }
//! client.close().await;
//! # Ok(()) }
//! ```

mod backoff;
mod config;
mod driver;
mod endpoints;
mod error;
mod pending;
mod seq;
mod tls;
mod v0;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

pub use jiva_protocol::{self as protocol, Ack, Page, ServerFrame, UserSender};
/// The rustls this crate is built with, for [`Config::tls_config`].
pub use rustls;
use tokio::sync::{mpsc, oneshot};

pub use backoff::Backoff;
pub use config::{ChatKind, Config, Protocol, Token, TokenPlacement};
pub use error::ClientError;
pub use v0::{V0Frame, V0Timestamp};

use driver::{Command, Driver, Shared};

/// How many commands wait for the task at most (a caller beyond it waits).
const COMMAND_QUEUE: usize = 256;

/// What happened, in the order it happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A connection opened (the first, or a reconnection). `since`: the resume point it asked
    /// for (v1; `None` for a fresh connection or v0).
    Connected {
        /// The protocol spoken.
        protocol: Protocol,
        /// The `since=` of the connection.
        since: Option<u64>,
    },
    /// A v1 frame from the server: every frame, acks and pages included, except `message`
    /// frames already delivered.
    V1(ServerFrame),
    /// A v0 frame from the server.
    V0(V0Frame),
    /// The connection dropped; the client reconnects.
    Disconnected {
        /// Why, for people.
        reason: String,
    },
    /// Reconnection attempt `attempt` starts after `delay`.
    Reconnecting {
        /// 1 for the first attempt after a drop.
        attempt: u32,
        /// The wait before it.
        delay: Duration,
    },
    /// The client ended: closed by [`Client::close`] (no error), or it gave up (the error).
    Closed {
        /// Why it gave up, if it did.
        error: Option<ClientError>,
    },
}

/// The events of a client, read with [`Events::next`]. Read them (or drop this): a full
/// queue stops the client reading its socket.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client has ended and every event was read.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// Skips events until `pick` keeps one (returns `Some`); `None` once the client ended
    /// first. Wrap it in a timeout when the event may never come.
    pub async fn next_matching<T>(
        &mut self,
        mut pick: impl FnMut(Event) -> Option<T>,
    ) -> Option<T> {
        while let Some(event) = self.rx.recv().await {
            if let Some(found) = pick(event) {
                return Some(found);
            }
        }
        None
    }
}

/// Counters of a client's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections opened (the first one included).
    pub connections: u64,
    /// Of those, connections that asked to resume (`since=`, v1).
    pub resumed: u64,
    /// Replayed `message` frames dropped because they were already delivered.
    pub duplicates_dropped: u64,
}

/// The answer to a [`Client::send`]: resolves to the [`Ack`], or to
/// [`ClientError::Rejected`] (an `error` frame answered the send), or to
/// [`ClientError::Closed`] (the client ended before an answer came). Dropping it does not
/// cancel the send.
#[derive(Debug)]
pub struct AckFuture {
    rx: oneshot::Receiver<Result<Ack, ClientError>>,
    client_id: String,
}

impl AckFuture {
    /// The send's client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

impl Future for AckFuture {
    type Output = Result<Ack, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(ClientError::Closed)))
    }
}

/// A new client id: `c-` and a UUID v7 (time-ordered, unique without coordination).
pub fn new_client_id() -> String {
    format!("c-{}", uuid::Uuid::now_v7().simple())
}

/// A handle on one chat connection (kept alive by a background task). Clones share it.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    protocol: Protocol,
}

impl Client {
    /// Checks `config`, opens the first connection (an error here is returned, not retried),
    /// and starts the task that keeps it alive. Must run inside a tokio runtime.
    pub async fn connect(config: Config) -> Result<(Self, Events), ClientError> {
        config.validate()?;
        let dialer = tls::Dialer::new(&config)?;
        let mut endpoints = endpoints::Endpoints::new(&config.url, &config.fallback_urls);
        let first = driver::open_first(&config, &dialer, &mut endpoints).await?;
        let shared = Arc::new(Shared::new(config.since));
        shared.endpoint.store(endpoints.index(), Ordering::Relaxed);
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(config.events_capacity);
        let protocol = config.protocol;
        let driver = Driver::new(
            config,
            dialer,
            endpoints,
            Arc::clone(&shared),
            commands_rx,
            events_tx,
        );
        tokio::spawn(driver.run(first));
        Ok((
            Self {
                commands: commands_tx,
                shared,
                protocol,
            },
            Events { rx: events_rx },
        ))
    }

    async fn command(&self, command: Command) -> Result<(), ClientError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| ClientError::Closed)
    }

    fn need_v1(&self) -> Result<(), ClientError> {
        match self.protocol {
            Protocol::V1 => Ok(()),
            Protocol::V0 => Err(ClientError::NotV1),
        }
    }

    /// v1: sends `text` with a new client id ([`new_client_id`]); the returned future resolves
    /// to its [`Ack`]. Awaiting this method only queues the send.
    pub async fn send(&self, text: impl Into<String>) -> Result<AckFuture, ClientError> {
        self.send_with_id(new_client_id(), text).await
    }

    /// v1: sends `text` with the idempotency key `client_id` (1–64 bytes of
    /// `[A-Za-z0-9._:-]`). Sending the same id again is safe: the server stores one message and
    /// acknowledges each send with the same [`Ack`].
    pub async fn send_with_id(
        &self,
        client_id: impl Into<String>,
        text: impl Into<String>,
    ) -> Result<AckFuture, ClientError> {
        self.need_v1()?;
        let client_id = client_id.into();
        if !jiva_protocol::valid_id(&client_id) {
            return Err(ClientError::InvalidId);
        }
        let (reply, rx) = oneshot::channel();
        self.command(Command::Send {
            client_id: client_id.clone(),
            text: text.into(),
            reply,
        })
        .await?;
        Ok(AckFuture { rx, client_id })
    }

    /// Sends `text` without waiting for anything: on v1 a [`Client::send`] whose ack is not
    /// awaited (still resent until acknowledged); on v0 the message frame, written once (a
    /// message said while disconnected is written after reconnecting).
    pub async fn say(&self, text: impl Into<String>) -> Result<(), ClientError> {
        match self.protocol {
            Protocol::V1 => self.send(text).await.map(drop),
            Protocol::V0 => self.command(Command::Say { text: text.into() }).await,
        }
    }

    /// v1: the newest `limit` (default 50, at most 100) messages numbered below `before`,
    /// oldest first. [`ClientError::Disconnected`] when the connection drops before the answer.
    pub async fn page(&self, before: u64, limit: Option<u32>) -> Result<Page, ClientError> {
        self.need_v1()?;
        let (reply, rx) = oneshot::channel();
        self.command(Command::Page {
            before,
            limit,
            reply,
        })
        .await?;
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// v1: stops the copilot turn answering `question_id` (its `message_id`). The turn's
    /// `turn_end` (or an `error`, e.g. `no_such_turn`) arrives as an event.
    pub async fn cancel(&self, question_id: impl Into<String>) -> Result<(), ClientError> {
        self.need_v1()?;
        self.command(Command::Cancel {
            question_id: question_id.into(),
        })
        .await
    }

    /// v1: tells the chat the user is typing (`true`) or stopped (`false`). Dropped while
    /// disconnected; the server relays at most one per second.
    pub async fn typing(&self, active: bool) -> Result<(), ClientError> {
        self.need_v1()?;
        self.command(Command::Typing { active }).await
    }

    /// Whether the client speaks v1.
    pub fn protocol_is_v1(&self) -> bool {
        self.protocol == Protocol::V1
    }

    /// The resume point: the highest sequence number delivered so far (v1).
    pub fn last_seq(&self) -> Option<u64> {
        self.shared.last_seq()
    }

    /// Which endpoint the current (or, while disconnected, the last) connection is to: 0 for
    /// [`Config::url`], `i` for `fallback_urls[i - 1]`.
    pub fn endpoint(&self) -> usize {
        self.shared.endpoint.load(Ordering::Relaxed)
    }

    /// The client's counters.
    pub fn stats(&self) -> Stats {
        Stats {
            connections: self.shared.connections.load(Ordering::Relaxed),
            resumed: self.shared.resumed.load(Ordering::Relaxed),
            duplicates_dropped: self.shared.duplicates_dropped.load(Ordering::Relaxed),
        }
    }

    /// Closes the connection cleanly (close handshake, bounded) and ends the client; sends
    /// still waiting for an ack resolve to [`ClientError::Closed`]. Returns once the task has
    /// ended; closing an ended client returns at once.
    pub async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.command(Command::Close { done }).await.is_ok() {
            let _ = finished.await;
        }
    }
}
