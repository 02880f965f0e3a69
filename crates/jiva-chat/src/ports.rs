//! What the chat's use cases are given: its ports, the transport's encoder and the limits of a
//! copilot turn.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiva_core::{
    Bus, BusError, ChatId, Copilot, CopilotChunk, Disabled, HistoryLimits, Incoming, LeaseToken,
    Message, MessageStore, Notifier, TurnLock, TurnLockError, Unconfigured,
};

/// Turns what the chat shows into the transport's frames. The transport supplies it, so wire
/// formats stay in the transport; the chat encodes each stored message once and hands the same
/// frame (cloned: make it cheap, e.g. reference-counted bytes) to every subscriber.
pub trait Encoder: Send + Sync + 'static {
    /// An encoded frame, shared between subscribers.
    type Frame: Clone + Send + Sync + 'static;

    /// The frame that shows a stored message (its [`Message::seq`] set when the store numbered
    /// it).
    fn stored(&self, message: &Message) -> Self::Frame;

    /// A streamed copilot chunk.
    fn chunk(&self, chunk: &CopilotChunk) -> Self::Frame;

    /// An error every socket of the chat is told (a copilot turn that failed).
    fn error(&self, reason: &str) -> Self::Frame;

    /// The end of a copilot turn.
    fn end(&self) -> Self::Frame;
}

/// The ports a chat uses. It never knows which adapters are behind them.
#[derive(Clone)]
pub struct Ports {
    /// Where chats and messages are stored.
    pub store: Arc<dyn MessageStore>,
    /// Who is told about stored messages. Must return promptly (see [`Notifier`]).
    pub notifier: Arc<dyn Notifier>,
    /// Who answers copilot questions.
    pub copilot: Arc<dyn Copilot>,
    /// Fan-out to the other servers ([`SingleNode`] by default: there are none).
    pub bus: Arc<dyn Bus>,
    /// The cluster's copilot turn leases ([`SingleNode`] by default: always granted).
    pub turn_lock: Arc<dyn TurnLock>,
}

impl Ports {
    /// `store` with notifications disabled, no copilot configured and a single node.
    pub fn new(store: Arc<dyn MessageStore>) -> Self {
        Self {
            store,
            notifier: Arc::new(Disabled),
            copilot: Arc::new(Unconfigured),
            bus: Arc::new(SingleNode),
            turn_lock: Arc::new(SingleNode),
        }
    }

    /// Replaces the notifier.
    #[must_use]
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Replaces the copilot.
    #[must_use]
    pub fn with_copilot(mut self, copilot: Arc<dyn Copilot>) -> Self {
        self.copilot = copilot;
        self
    }

    /// Replaces the turn lock.
    #[must_use]
    pub fn with_turn_lock(mut self, turn_lock: Arc<dyn TurnLock>) -> Self {
        self.turn_lock = turn_lock;
        self
    }

    /// Replaces the bus.
    #[must_use]
    pub fn with_bus(mut self, bus: Arc<dyn Bus>) -> Self {
        self.bus = bus;
        self
    }
}

impl fmt::Debug for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ports")
            .field("store", &self.store.kind())
            .finish_non_exhaustive()
    }
}

/// The in-process bus: this server is the only one, so nothing is published anywhere and
/// nothing arrives. Publishing costs one call that does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleNode;

#[async_trait]
impl Bus for SingleNode {
    fn publish(&self, _message: &Message) {}

    async fn follow(&self, _chat: &ChatId) -> Result<(), BusError> {
        Ok(())
    }

    async fn unfollow(&self, _chat: &ChatId) -> Result<(), BusError> {
        Ok(())
    }

    fn incoming(&self) -> Result<Incoming, BusError> {
        Ok(Box::pin(futures_util::stream::empty()))
    }

    fn connected(&self) -> bool {
        true
    }
}

/// On a single server, its turn queue already runs one turn at a time per chat: every lease is
/// granted.
#[async_trait]
impl TurnLock for SingleNode {
    async fn try_acquire(
        &self,
        _chat: &ChatId,
        _token: &LeaseToken,
        _ttl: Duration,
    ) -> Result<bool, TurnLockError> {
        Ok(true)
    }

    async fn renew(
        &self,
        _chat: &ChatId,
        _token: &LeaseToken,
        _ttl: Duration,
    ) -> Result<bool, TurnLockError> {
        Ok(true)
    }

    async fn release(&self, _chat: &ChatId, _token: &LeaseToken) -> Result<(), TurnLockError> {
        Ok(())
    }
}

/// Limits of the chat's use cases. `Config::default()` is what the server uses unless told
/// otherwise.
#[derive(Debug, Clone)]
pub struct Config {
    /// How much earlier conversation a copilot request carries.
    pub copilot_history: HistoryLimits,
    /// The longest a whole copilot turn may take, from the request to `end`.
    pub copilot_turn_timeout: Duration,
    /// Copilot questions of one chat that may wait behind the running turn. A question beyond
    /// that is refused ([`Rejection::CopilotBusy`]) and not stored.
    pub copilot_queue: usize,
    /// The largest copilot answer kept, in bytes of answer text (a DynamoDB item holds at
    /// most 400 KB). A chunk that would take the answer past it ends the turn: the copilot
    /// request is dropped, and the answer so far is stored and shown with a cut-off notice.
    pub copilot_max_answer_bytes: usize,
    /// How long a chat's copilot turn lease lasts unless renewed (it is renewed every third of
    /// this while the turn runs): how long a chat stays blocked after a server died mid-turn.
    pub turn_lease: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            copilot_history: HistoryLimits::default(),
            copilot_turn_timeout: Duration::from_secs(120),
            copilot_queue: 4,
            copilot_max_answer_bytes: 256 * 1024,
            turn_lease: Duration::from_secs(15),
        }
    }
}

/// Why a message was not accepted: told to its sender alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The store did not acknowledge it: nobody saw it.
    NotStored,
    /// Its copilot chat already has [`Config::copilot_queue`] questions waiting: not stored.
    CopilotBusy,
}

impl Rejection {
    /// A stable code (for metrics and logs).
    pub fn code(self) -> &'static str {
        match self {
            Self::NotStored => "not_stored",
            Self::CopilotBusy => "copilot_busy",
        }
    }

    /// The reason the sender is given (the deployed client shows it).
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotStored => "message not stored",
            Self::CopilotBusy => "copilot is busy; message not stored",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for Rejection {}
