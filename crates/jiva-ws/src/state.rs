//! What every connection shares.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use jiva_chat::{Chats, Ports};
use jiva_core::{Authenticator, Bus, Copilot, MessageStore, NoAuth, Notifier, TurnLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::frames::Wire;
use crate::limits::Limiter;

/// The ports the transport uses. It never knows which adapters are behind them.
#[derive(Clone)]
pub struct Services {
    /// Where chats and messages are stored, who is notified, who answers copilot questions and
    /// how the other servers hear of stored messages (see [`jiva_chat::Ports`]).
    pub ports: Ports,
    /// Who verifies callers' tokens ([`NoAuth`] by default: everyone may open every chat).
    pub authenticator: Arc<dyn Authenticator>,
}

impl Services {
    /// `store` with notifications disabled, no copilot configured and a single server.
    pub fn new(store: Arc<dyn MessageStore>) -> Self {
        Self {
            ports: Ports::new(store),
            authenticator: Arc::new(NoAuth),
        }
    }

    /// Replaces the notifier.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.ports = self.ports.with_notifier(notifier);
        self
    }

    /// Replaces the copilot.
    pub fn with_copilot(mut self, copilot: Arc<dyn Copilot>) -> Self {
        self.ports = self.ports.with_copilot(copilot);
        self
    }

    /// Replaces the bus (the in-process [`jiva_chat::SingleNode`] by default).
    pub fn with_bus(mut self, bus: Arc<dyn Bus>) -> Self {
        self.ports = self.ports.with_bus(bus);
        self
    }

    /// Replaces the cluster's copilot turn lock (always granted by default).
    pub fn with_turn_lock(mut self, turn_lock: Arc<dyn TurnLock>) -> Self {
        self.ports = self.ports.with_turn_lock(turn_lock);
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
    /// The chat's use cases: what happens to a message once it is parsed and authorized.
    pub chats: Chats<Wire>,
    /// Who verifies callers' tokens.
    pub authenticator: Arc<dyn Authenticator>,
    /// Connection and turn tasks, awaited on shutdown.
    pub tracker: TaskTracker,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// When shutdown started: every shutdown step ends by this plus the grace.
    pub shutdown_started: OnceLock<tokio::time::Instant>,
    next_conn: AtomicU64,
    /// Socket counts and rate limits.
    pub limiter: Limiter,
    /// Renders `/metrics`; set once by the embedding program (see `Transport::with_metrics`).
    pub metrics: OnceLock<MetricsRender>,
    /// Who is in each chat (protocol v1's presence and typing).
    pub presence: crate::v1::Presence,
}

/// Renders the process's metrics in Prometheus text format.
pub(crate) type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

impl State {
    pub fn new(config: Config, services: Services) -> Self {
        let limiter = Limiter::new(config.limits.clone());
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let presence = crate::v1::Presence::new(Arc::clone(&services.ports.bus));
        let chats = Chats::new(
            config.chat(),
            services.ports,
            Wire,
            tracker.clone(),
            shutdown.clone(),
        );
        presence.relay_cancels(chats.cancel_relay());
        Self {
            config,
            chats,
            authenticator: services.authenticator,
            tracker,
            shutdown,
            shutdown_started: OnceLock::new(),
            next_conn: AtomicU64::new(1),
            limiter,
            metrics: OnceLock::new(),
            presence,
        }
    }

    /// The metrics text for `/metrics`, when the embedding program installed a renderer.
    pub fn render_metrics(&self) -> Option<String> {
        self.metrics.get().map(|render| render())
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}
