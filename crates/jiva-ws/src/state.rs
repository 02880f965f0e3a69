//! What every connection shares.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use jiva_core::{
    Authenticator, ChatId, Copilot, Disabled, Message, MessageStore, NoAuth, Notification,
    Notifier, StoreError, Unconfigured,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::frames;
use crate::limits::Limiter;
use crate::rooms::Rooms;
use crate::sequencer::GAP_WAIT;
use crate::turns::Turns;

/// The ports the transport uses. It never knows which adapters are behind them.
#[derive(Clone)]
pub struct Services {
    /// Where chats and messages are stored.
    pub store: Arc<dyn MessageStore>,
    /// Who is told about stored messages. Must return promptly (see [`Notifier`]).
    pub notifier: Arc<dyn Notifier>,
    /// Who answers copilot questions.
    pub copilot: Arc<dyn Copilot>,
    /// Who verifies callers' tokens ([`NoAuth`] by default: everyone may open every chat).
    pub authenticator: Arc<dyn Authenticator>,
}

impl Services {
    /// `store` with notifications disabled and no copilot configured.
    pub fn new(store: Arc<dyn MessageStore>) -> Self {
        Self {
            store,
            notifier: Arc::new(Disabled),
            copilot: Arc::new(Unconfigured),
            authenticator: Arc::new(NoAuth),
        }
    }

    /// Replaces the notifier.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Replaces the copilot.
    pub fn with_copilot(mut self, copilot: Arc<dyn Copilot>) -> Self {
        self.copilot = copilot;
        self
    }

    /// Replaces the authenticator.
    pub fn with_authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = authenticator;
        self
    }
}

pub(crate) struct State {
    pub config: Config,
    pub services: Services,
    pub rooms: Rooms,
    pub turns: Turns,
    /// Connection and turn tasks, awaited on shutdown.
    pub tracker: TaskTracker,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    registered: Mutex<HashSet<ChatId>>,
    next_conn: AtomicU64,
    /// Socket counts and rate limits.
    pub limiter: Limiter,
    /// Renders `/metrics`; set once by the embedding program (see `Transport::with_metrics`).
    pub metrics: OnceLock<MetricsRender>,
}

/// Renders the process's metrics in Prometheus text format.
pub(crate) type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

impl State {
    pub fn new(config: Config, services: Services) -> Self {
        let limiter = Limiter::new(config.limits.clone());
        Self {
            config,
            services,
            rooms: Rooms::default(),
            turns: Turns::default(),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            registered: Mutex::new(HashSet::new()),
            next_conn: AtomicU64::new(1),
            limiter,
            metrics: OnceLock::new(),
        }
    }

    /// The metrics text for `/metrics`, when the embedding program installed a renderer.
    pub fn render_metrics(&self) -> Option<String> {
        self.metrics.get().map(|render| render())
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers `chat` in the store once per process.
    pub async fn register(&self, chat: &ChatId) -> Result<(), StoreError> {
        let known = self
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(chat);
        if !known {
            self.services.store.register_chat(chat).await?;
            let inserted = self
                .registered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(chat.clone());
            if inserted {
                metrics::gauge!("jiva_chats_registered").increment(1.0);
            }
        }
        Ok(())
    }

    /// Forgets that `chat` is registered once no socket of it is left, so that this memory
    /// follows the open chats rather than every chat ever seen. Registering again is
    /// idempotent in every store.
    pub fn forget_if_unused(&self, chat: &ChatId) {
        if self.rooms.sockets(chat) > 0 {
            return;
        }
        let removed = self
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(chat);
        if removed {
            metrics::gauge!("jiva_chats_registered").decrement(1.0);
        }
    }

    /// Stores `message`, then shows it to every socket of its chat, in the chat's sequence
    /// order. Nothing is shown that is not stored. When numbers before the message's are still
    /// on their way, this waits (at most [`GAP_WAIT`]) until the message has gone out, so that
    /// a sender's messages keep their order.
    pub async fn store_and_show(&self, message: &Message) -> Result<(), StoreError> {
        let started = Instant::now();
        // Counted in flight until shown; dropped (a failure) if the append fails.
        let flight = self.rooms.begin(&message.chat);
        let stored = self.services.store.append(message).await;
        metrics::histogram!("jiva_store_append_seconds").record(started.elapsed().as_secs_f64());
        if let Err(e) = &stored {
            metrics::counter!("jiva_store_failures_total").increment(1);
            tracing::error!(chat = %message.chat, message_id = %message.id, error = %e, "storing a message failed");
        }
        let seq = stored?.seq();
        let frame = frames::stored(message, Some(seq));
        if let Some(shown) = self.rooms.show(flight, seq, frame) {
            if tokio::time::timeout(GAP_WAIT, shown).await.is_err() {
                self.rooms.expire(&message.chat);
            }
        }
        Ok(())
    }

    /// Hands a notification to the notifier; failures are logged here, once.
    pub async fn notify(&self, notification: Notification) {
        if let Err(e) = self.services.notifier.notify(notification).await {
            tracing::warn!(error = %e, "notification not accepted");
        }
    }
}
