//! `jiva-bus-redis` is JivaChat's [`Bus`] over Redis (7+, or Valkey) pub/sub, standalone: each
//! chat is one channel, `{prefix}{canonical chat id}` (default `jiva:chat:…`). A server
//! publishes every message it stored to its chat's channel and subscribes to the channels of
//! the chats it has sockets in.
//!
//! Design: one [`redis::aio::ConnectionManager`] (RESP3, so subscriptions and commands share
//! one connection) carries everything. [`RedisBus::connect`] succeeds even when Redis cannot be
//! reached at start-up: the bus then starts disconnected and a task keeps trying to connect
//! with the same backoff (meanwhile publishes fail as during an outage, and follows are
//! subscribed once connected). The manager reconnects by itself and re-subscribes the
//! followed channels after a reconnection; a supervisor task notices a lost connection, marks
//! the bus disconnected ([`Bus::connected`], gauge `jiva_bus_connected`) and pings with
//! exponential backoff ([`Config::min_backoff`] to [`Config::max_backoff`]) until the manager
//! is back. [`Bus::publish`] only queues (a bounded queue of [`Config::publish_queue`]
//! messages, drained by a publisher task): a slow or absent Redis never blocks a chat; a full
//! queue drops the message, counted in `jiva_bus_publish_dropped_total`. Received messages go
//! through a bounded queue too ([`Config::incoming_queue`]; drops counted in
//! `jiva_bus_received_dropped_total`).
//!
//! Metrics: gauge `jiva_bus_connected`; counters `jiva_bus_published_total`,
//! `jiva_bus_publish_dropped_total` (publish queue full), `jiva_bus_publish_failures_total`
//! (Redis refused or was away), `jiva_bus_received_total`, `jiva_bus_received_dropped_total`
//! (incoming queue full), `jiva_bus_undecodable_total`.
//!
//! What it deliberately is not: durable. Redis pub/sub is fire and forget: a message published
//! while a server is disconnected is never delivered to it (the store has it, and the chat's
//! sequence numbers show the gap). It is not Redis Cluster (sharded pub/sub) and keeps no state
//! in Redis. Payloads are JSON written by hand (`wire`), carrying the publishing bus's id so
//! that a bus never hands its own messages back.
//!
//! The bus is also the cluster's [`TurnLock`](jiva_core::TurnLock) (`lease`): a chat's copilot
//! turn lease is a Redis key with an expiry, taken with `SET NX PX`, renewed and released by
//! compare-and-set scripts.
//!
//! Invariants: a message a bus publishes is delivered at most once to each other bus following
//! its chat, and never to itself; messages of a chat no longer followed are not handed on;
//! message text and the Redis URL's password are never logged.

mod lease;
mod wire;

#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jiva_core::{Bus, BusError, ChatEvent, ChatId, Events, Incoming, Message, ReceivedEvent};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

/// A Redis URL (`redis://[user:password@]host:port[/db]`); `Debug` hides it, as it may hold a
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    fn with_resp3(&self) -> String {
        let separator = if self.0.contains('?') { '&' } else { '?' };
        format!("{}{separator}protocol=resp3", self.0)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisUrl(<redacted>)")
    }
}

/// How a [`RedisBus`] reaches Redis and how much it queues.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where Redis is.
    pub url: RedisUrl,
    /// Channel name prefix; a chat's channel is the prefix and its canonical id.
    pub channel_prefix: String,
    /// Messages waiting to be published before [`Bus::publish`] drops (default 4096).
    pub publish_queue: usize,
    /// Received messages waiting to be taken from [`Bus::incoming`] before more are dropped
    /// (default 4096).
    pub incoming_queue: usize,
    /// The first wait between reconnection attempts (default 100 ms).
    pub min_backoff: Duration,
    /// The longest wait between reconnection attempts (default 5 s).
    pub max_backoff: Duration,
    /// How long a command (publish, subscribe, ping) may take (default 2 s).
    pub response_timeout: Duration,
}

impl Config {
    /// Defaults for Redis at `url`.
    pub fn new(url: RedisUrl) -> Self {
        Self {
            url,
            channel_prefix: "jiva:chat:".to_owned(),
            publish_queue: 4096,
            incoming_queue: 4096,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            response_timeout: Duration::from_secs(2),
        }
    }
}

/// What the push handler and the tasks share.
struct Shared {
    /// This bus's id, in every payload it publishes.
    origin: String,
    prefix: String,
    followed: Mutex<HashSet<String>>,
    incoming: mpsc::Sender<Message>,
    /// Received ephemeral events (presence, typing).
    events: mpsc::Sender<ReceivedEvent>,
    connected: watch::Sender<bool>,
    lost: Notify,
}

impl Shared {
    /// Handles one push from Redis, without blocking (it runs on the connection's task).
    fn push(&self, info: PushInfo) {
        match info.kind {
            PushKind::Disconnection => {
                self.connected.send_replace(false);
                metrics::gauge!("jiva_bus_connected").set(0.0);
                self.lost.notify_one();
            }
            PushKind::Message => self.received(&info.data),
            _ => {}
        }
    }

    fn received(&self, data: &[Value]) {
        let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
            (data.first(), data.get(1))
        else {
            return;
        };
        let (origin, message) = match wire::decode_any(payload) {
            Ok(wire::Decoded::Message(origin, message)) => (origin, message),
            Ok(wire::Decoded::Event(event)) => return self.received_event(channel, event),
            Err(e) => {
                metrics::counter!("jiva_bus_undecodable_total").increment(1);
                tracing::warn!(error = %e, "ignoring a bus message");
                return;
            }
        };
        if origin == self.origin {
            return;
        }
        let channel = String::from_utf8_lossy(channel);
        let followed = self
            .followed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(channel.as_ref());
        if !followed || channel != self.channel(&message.chat) {
            return;
        }
        metrics::counter!("jiva_bus_received_total").increment(1);
        if self.incoming.try_send(message).is_err() {
            metrics::counter!("jiva_bus_received_dropped_total").increment(1);
        }
    }

    /// An ephemeral event of another server, on a followed chat's channel.
    fn received_event(&self, channel: &[u8], event: ReceivedEvent) {
        if event.from == self.origin {
            return;
        }
        let channel = String::from_utf8_lossy(channel);
        let followed = self
            .followed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(channel.as_ref());
        if !followed || channel != self.channel(&event.event.chat) {
            return;
        }
        if self.events.try_send(event).is_err() {
            metrics::counter!("jiva_bus_events_dropped_total").increment(1);
        }
    }

    /// Subscribes every followed channel on `manager` (SUBSCRIBE is idempotent).
    async fn subscribe_followed(
        &self,
        manager: &mut ConnectionManager,
    ) -> Result<(), redis::RedisError> {
        let followed: Vec<String> = self
            .followed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        if followed.is_empty() {
            return Ok(());
        }
        manager.subscribe(&followed).await
    }

    fn channel(&self, chat: &ChatId) -> String {
        format!("{}{}", self.prefix, chat.canonical())
    }
}

/// The Redis [`Bus`]. Cheap to share behind an `Arc`; its tasks stop when it is dropped.
pub struct RedisBus {
    shared: Arc<Shared>,
    /// Set once the first connection is made (at [`RedisBus::connect`], or later in the
    /// background when Redis was unreachable then).
    manager: Arc<OnceLock<ConnectionManager>>,
    outgoing: mpsc::Sender<(String, String)>,
    incoming: Mutex<Option<mpsc::Receiver<Message>>>,
    events: Mutex<Option<mpsc::Receiver<ReceivedEvent>>>,
    _stop: DropGuard,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("origin", &self.shared.origin)
            .field("connected", &*self.shared.connected.borrow())
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Connects to Redis and starts the publisher and supervisor tasks (on the current tokio
    /// runtime). When Redis cannot be reached within [`Config::response_timeout`], the bus
    /// still starts, disconnected ([`Bus::connected`] false, gauge `jiva_bus_connected` 0), and
    /// keeps trying in the background with backoff ([`Config::min_backoff`] to
    /// [`Config::max_backoff`]). Fails only on a URL the client cannot use.
    pub async fn connect(config: Config) -> Result<Self, BusError> {
        let client = redis::Client::open(config.url.with_resp3()).map_err(unavailable)?;
        let (incoming_tx, incoming_rx) = mpsc::channel(config.incoming_queue.max(1));
        let (events_tx, events_rx) = mpsc::channel(config.incoming_queue.max(1));
        let (connected, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            origin: uuid::Uuid::new_v4().to_string(),
            prefix: config.channel_prefix.clone(),
            followed: Mutex::new(HashSet::new()),
            incoming: incoming_tx,
            events: events_tx,
            connected,
            lost: Notify::new(),
        });
        let handler = Arc::clone(&shared);
        let manager_config = ConnectionManagerConfig::new()
            .set_push_sender(move |info: PushInfo| {
                handler.push(info);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription()
            .set_min_delay(config.min_backoff)
            .set_max_delay(config.max_backoff)
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.response_timeout));
        let stop = CancellationToken::new();
        let (outgoing, queue) = mpsc::channel(config.publish_queue.max(1));
        let manager = Arc::new(OnceLock::new());
        let first = tokio::time::timeout(
            config.response_timeout,
            client.get_connection_manager_with_config(manager_config.clone()),
        )
        .await;
        match first {
            Ok(Ok(connected)) => {
                let _ = manager.set(connected.clone());
                start(&shared, connected, queue, &config, &stop);
            }
            outcome => {
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                tracing::warn!(
                    error = %error,
                    "Redis unreachable at start-up; the bus starts disconnected and keeps trying"
                );
                metrics::gauge!("jiva_bus_connected").set(0.0);
                tokio::spawn(connect_later(
                    client,
                    manager_config,
                    Arc::clone(&shared),
                    Arc::clone(&manager),
                    queue,
                    config.clone(),
                    stop.clone(),
                ));
            }
        }
        Ok(Self {
            shared,
            manager,
            outgoing,
            incoming: Mutex::new(Some(incoming_rx)),
            events: Mutex::new(Some(events_rx)),
            _stop: stop.drop_guard(),
        })
    }

    /// The connection, once there is one.
    fn manager(&self) -> Result<ConnectionManager, redis::RedisError> {
        self.manager.get().cloned().ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::Io,
                "Redis has not been reachable since start-up",
            ))
        })
    }

    /// Watches [`Bus::connected`]: the receiver sees every change.
    pub fn watch_connected(&self) -> watch::Receiver<bool> {
        self.shared.connected.subscribe()
    }

    /// This bus's id (carried by the messages it publishes).
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }
}

/// Marks the bus connected and starts its publisher and supervisor on `manager`.
fn start(
    shared: &Arc<Shared>,
    manager: ConnectionManager,
    queue: mpsc::Receiver<(String, String)>,
    config: &Config,
    stop: &CancellationToken,
) {
    shared.connected.send_replace(true);
    metrics::gauge!("jiva_bus_connected").set(1.0);
    tokio::spawn(publisher(manager.clone(), queue, stop.clone()));
    tokio::spawn(supervisor(
        Arc::clone(shared),
        manager,
        config.min_backoff,
        config.max_backoff,
        stop.clone(),
    ));
}

/// Redis was unreachable at start-up: tries to connect with backoff until it succeeds, then
/// subscribes the chats followed meanwhile and starts the bus as [`RedisBus::connect`] would.
async fn connect_later(
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    shared: Arc<Shared>,
    slot: Arc<OnceLock<ConnectionManager>>,
    mut queue: mpsc::Receiver<(String, String)>,
    config: Config,
    stop: CancellationToken,
) {
    let mut backoff = config.min_backoff;
    let mut manager = loop {
        let attempt = tokio::select! {
            attempt = tokio::time::timeout(
                config.response_timeout,
                client.get_connection_manager_with_config(manager_config.clone()),
            ) => attempt,
            () = stop.cancelled() => return,
        };
        if let Ok(Ok(manager)) = attempt {
            break manager;
        }
        // Messages stored meanwhile are not published later (pub/sub is best effort, and a
        // late frame would arrive after its gap was skipped): as during an outage.
        while let Ok(_dropped) = queue.try_recv() {
            metrics::counter!("jiva_bus_publish_failures_total").increment(1);
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
        backoff = backoff.saturating_mul(2).min(config.max_backoff);
    };
    while let Ok(_dropped) = queue.try_recv() {
        metrics::counter!("jiva_bus_publish_failures_total").increment(1);
    }
    let _ = slot.set(manager.clone());
    if let Err(e) = shared.subscribe_followed(&mut manager).await {
        tracing::warn!(error = %e, "subscribing the followed chats failed");
        // The supervisor retries once it runs.
        shared.lost.notify_one();
    }
    tracing::info!("bus connected to Redis");
    start(&shared, manager, queue, &config, &stop);
}

fn unavailable(e: redis::RedisError) -> BusError {
    BusError::Unavailable(Box::new(e))
}

/// Publishes queued messages; a failure loses that message (pub/sub is best effort).
async fn publisher(
    mut manager: ConnectionManager,
    mut queue: mpsc::Receiver<(String, String)>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            next = queue.recv() => next,
            () = stop.cancelled() => None,
        };
        let Some((channel, payload)) = next else {
            return;
        };
        let sent: redis::RedisResult<usize> = manager.publish(&channel, payload).await;
        match sent {
            Ok(_) => metrics::counter!("jiva_bus_published_total").increment(1),
            Err(e) => {
                metrics::counter!("jiva_bus_publish_failures_total").increment(1);
                tracing::debug!(error = %e, "publishing to the bus failed");
            }
        }
    }
}

/// After a lost connection: pings with exponential backoff until the manager has reconnected
/// (and re-subscribed), then marks the bus connected again.
async fn supervisor(
    shared: Arc<Shared>,
    mut manager: ConnectionManager,
    min_backoff: Duration,
    max_backoff: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shared.lost.notified() => {}
            () = stop.cancelled() => return,
        }
        tracing::warn!("bus connection to Redis lost; reconnecting");
        let mut backoff = min_backoff;
        loop {
            let pong: redis::RedisResult<String> =
                redis::cmd("PING").query_async(&mut manager).await;
            if pong.is_ok() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => return,
            }
            backoff = backoff.saturating_mul(2).min(max_backoff);
        }
        // The manager re-subscribes what it had confirmed; a follow that failed while Redis
        // was away is subscribed here (SUBSCRIBE is idempotent).
        if let Err(e) = shared.subscribe_followed(&mut manager).await {
            tracing::warn!(error = %e, "re-subscribing the followed chats failed");
            shared.lost.notify_one();
            continue;
        }
        shared.connected.send_replace(true);
        metrics::gauge!("jiva_bus_connected").set(1.0);
        tracing::info!("bus connection to Redis restored");
    }
}

#[async_trait]
impl Bus for RedisBus {
    fn publish(&self, message: &Message) {
        let channel = self.shared.channel(&message.chat);
        let payload = wire::encode(&self.shared.origin, message);
        if self.outgoing.try_send((channel, payload)).is_err() {
            metrics::counter!("jiva_bus_publish_dropped_total").increment(1);
        }
    }

    async fn follow(&self, chat: &ChatId) -> Result<(), BusError> {
        let channel = self.shared.channel(chat);
        let added = self
            .shared
            .followed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(channel.clone());
        if !added {
            return Ok(());
        }
        let mut manager = self.manager().map_err(unavailable)?;
        manager.subscribe(&channel).await.map_err(unavailable)
    }

    async fn unfollow(&self, chat: &ChatId) -> Result<(), BusError> {
        let channel = self.shared.channel(chat);
        let removed = self
            .shared
            .followed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&channel);
        if !removed {
            return Ok(());
        }
        let mut manager = self.manager().map_err(unavailable)?;
        manager.unsubscribe(&channel).await.map_err(unavailable)
    }

    fn incoming(&self) -> Result<Incoming, BusError> {
        Ok(Box::pin(take_stream(&self.incoming)?))
    }

    fn connected(&self) -> bool {
        *self.shared.connected.borrow()
    }

    fn publish_event(&self, event: &ChatEvent) {
        let channel = self.shared.channel(&event.chat);
        let payload = wire::encode_event(&self.shared.origin, event);
        if self.outgoing.try_send((channel, payload)).is_err() {
            metrics::counter!("jiva_bus_publish_dropped_total").increment(1);
        }
    }

    fn events(&self) -> Result<Events, BusError> {
        Ok(Box::pin(take_stream(&self.events)?))
    }
}

/// The stream of a receiver that can be taken once.
fn take_stream<T: Send + 'static>(
    slot: &Mutex<Option<mpsc::Receiver<T>>>,
) -> Result<impl futures_util::Stream<Item = T> + Send + 'static, BusError> {
    let receiver = slot
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .ok_or(BusError::AlreadyTaken)?;
    Ok(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
    ))
}
