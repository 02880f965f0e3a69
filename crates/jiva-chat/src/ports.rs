//! What the chat's use cases are given: its ports, the transport's encoder and the limits of a
//! copilot turn.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiva_core::{
    Bus, BusError, ChatId, Copilot, CopilotChunk, Disabled, HistoryLimits, Incoming, LeaseToken,
    Message, MessageId, MessageStore, Notifier, TurnLock, TurnLockError, Unconfigured,
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

    /// A streamed chunk of the turn answering `question` (by default [`Encoder::chunk`]).
    fn turn_chunk(&self, question: MessageId, chunk: &CopilotChunk) -> Self::Frame {
        let _ = question;
        self.chunk(chunk)
    }

    /// The failure of the turn answering `question`, told to every socket of the chat (by
    /// default [`Encoder::error`] with `reason`, which is `failure.reason()`).
    fn turn_error(&self, question: MessageId, failure: TurnError, reason: &str) -> Self::Frame {
        let _ = (question, failure);
        self.error(reason)
    }

    /// An answer shown but not stored (a failed turn's notice; by default
    /// [`Encoder::stored`]).
    fn turn_notice(&self, question: MessageId, notice: &Message) -> Self::Frame {
        let _ = question;
        self.stored(notice)
    }

    /// The end of the turn answering `question`: how it ended and the stored answer's id (by
    /// default [`Encoder::end`]).
    fn turn_end(
        &self,
        question: MessageId,
        ending: TurnEnding,
        answer: Option<MessageId>,
    ) -> Self::Frame {
        let _ = (question, ending, answer);
        self.end()
    }
}

/// How a copilot turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TurnEnding {
    /// The copilot answered; the answer is stored.
    Answered,
    /// The turn failed (its [`TurnError`] was told); what came is stored with a notice.
    Failed,
    /// A client cancelled it ([`crate::Chats::cancel`]); what came is stored, marked.
    Cancelled,
}

/// Why a copilot turn failed: a stable code and the short reason clients are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TurnError {
    /// No copilot endpoint is configured.
    NotConfigured,
    /// The copilot could not be reached.
    Unavailable,
    /// The copilot answered with an error status.
    Status,
    /// The copilot (or the turn lease) did not answer in time.
    Timeout,
    /// The answer was cut off.
    CutOff,
    /// The answer could not be read.
    Unreadable,
    /// The answer grew past the limit.
    TooLong,
    /// The chat's history could not be read for the request.
    HistoryUnavailable,
    /// The server is shutting down.
    ShuttingDown,
    /// The answer could not be stored.
    AnswerNotStored,
    /// A client cancelled the turn (not a failure it is told about).
    Cancelled,
}

impl TurnError {
    /// A stable code (for metrics, logs and v1's error codes).
    pub fn code(self) -> &'static str {
        match self {
            Self::NotConfigured => "copilot_not_configured",
            Self::Unavailable => "copilot_unavailable",
            Self::Status => "copilot_error",
            Self::Timeout => "copilot_timeout",
            Self::CutOff | Self::Unreadable => "copilot_cut_off",
            Self::TooLong => "copilot_too_long",
            Self::HistoryUnavailable => "history_unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::AnswerNotStored => "answer_not_stored",
            Self::Cancelled => "cancelled",
        }
    }

    /// The reason clients are given (v0 shows it as is).
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotConfigured => "copilot is not configured",
            Self::Unavailable => "copilot is unavailable",
            Self::Status => "copilot returned an error",
            Self::Timeout => "copilot timed out",
            Self::CutOff => "copilot answer was cut off",
            Self::Unreadable => "copilot answer could not be read",
            Self::TooLong => "copilot answer was too long",
            Self::HistoryUnavailable => "chat history unavailable",
            Self::ShuttingDown => "server is shutting down",
            Self::AnswerNotStored => "copilot answer was not stored",
            Self::Cancelled => "copilot answer was stopped",
        }
    }
}

/// Why a [`crate::Chats::cancel`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelRefusal {
    /// The chat is a supervisor chat: it has no copilot turns.
    NotACopilotChat,
    /// No turn answering that question waits or runs on this server.
    NoSuchTurn,
}

impl CancelRefusal {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotACopilotChat => "not_a_copilot_chat",
            Self::NoSuchTurn => "no_such_turn",
        }
    }

    /// The reason the client is given.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotACopilotChat => "not a copilot chat",
            Self::NoSuchTurn => "no copilot turn for that question here",
        }
    }
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

    fn single_node(&self) -> bool {
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
