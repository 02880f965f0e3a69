//! `jiva-core` is the domain of JivaChat: what a chat and a message are, the pure rules of a chat
//! (which notification a stored message raises, how a copilot answer is assembled, which earlier
//! turns a copilot sees, who may open which chat), and the port traits that adapters implement
//! ([`MessageStore`], [`Notifier`], [`Copilot`], [`Authenticator`], [`Bus`], [`TurnLock`]).
//!
//! Layout:
//! - [`chat`]: [`AgentId`], [`ConnectionType`] and [`ChatId`]. A chat is the *pair* (agent id,
//!   connection type); its canonical string `"{agent}-{kind}"` is only ever produced, never split.
//! - [`message`]: [`Message`], [`MessageId`] (UUID v7), [`Timestamp`] (epoch milliseconds),
//!   [`Seq`] (a message's place in its chat, assigned by the store), [`Sender`], [`Body`].
//! - [`store`]: the [`MessageStore`] port, history pages and the opaque [`Cursor`].
//! - [`copilot`]: the [`Copilot`] port, chunks, [`AnswerAssembler`] and [`history_turns`].
//! - [`notify`]: the [`Notifier`] port and [`Notification::for_message`].
//! - [`auth`]: the [`Authenticator`] port, [`Identity`], and the pure rules [`authorize`] (who
//!   may open which chat) and [`sender_for`] (which sender a message is stored as).
//! - [`bus`]: the [`Bus`] port: stored messages fanned out between servers.
//! - [`turn_lock`]: the [`TurnLock`] port: one copilot turn at a time per chat in a cluster.
//!
//! What this crate deliberately is not: it does no I/O. It knows nothing of sockets, HTTP, JSON,
//! SQLite, DynamoDB or AppSync, and starts no runtime. Serialization belongs to the adapters, which
//! convert to and from these types by hand at their edge, so a renamed field here cannot silently
//! change a wire frame, a table item or a GraphQL variable.
//!
//! Invariants:
//! - Every [`AgentId`] is non-empty, at most [`AgentId::MAX_LEN`] bytes, and made of
//!   `[A-Za-z0-9._:@-]` only; it is kept whole (agent ids are UUIDs and contain `-`).
//! - A chat has one order: the [`Seq`] its store assigns. History is read in that order and
//!   live frames are shown in it.
//! - Ports speak core types only: no SDK error, raw item or pagination key crosses a trait.
//! - With the `mocks` feature, mockall mocks of the ports are exported (`MockMessageStore`,
//!   `MockNotifier`, `MockCopilot`, `MockBus`, `MockTurnLock`; none of `Authenticator`); enable it only in
//!   dev-dependencies.

pub mod auth;
pub mod bus;
pub mod chat;
pub mod copilot;
pub mod message;
pub mod notify;
pub mod store;
pub mod turn_lock;

pub use auth::{
    AuthError, Authenticator, Denied, Identity, NoAuth, UserRole, authorize, sender_for,
};
pub use bus::{
    Bus, BusError, ChatEvent, EventKind, Events, Incoming, MemberRole, PresenceMember,
    ReceivedEvent,
};
pub use chat::{AgentId, ChatId, ConnectionType, InvalidAgentId, UnknownConnectionType};
pub use copilot::{
    AnswerAssembler, ChunkStream, Copilot, CopilotChunk, CopilotError, CopilotRequest,
    HistoryLimits, Role, TOOL_STATUS, TimeoutKind, Turn, TurnTimeouts, Unconfigured, history_turns,
};
pub use message::{
    Body, InvalidMessageId, Message, MessageId, Sender, Seq, Timestamp, UnknownSender,
};
pub use notify::{Disabled, Notification, NotificationKind, Notifier, NotifyError};
pub use store::{Appended, Cursor, HistoryPage, MessageStore, OlderPage, StoreError};
pub use turn_lock::{LeaseToken, TurnLock, TurnLockError};

#[cfg(any(test, feature = "mocks"))]
pub use bus::MockBus;
#[cfg(any(test, feature = "mocks"))]
pub use copilot::MockCopilot;
#[cfg(any(test, feature = "mocks"))]
pub use notify::MockNotifier;
#[cfg(any(test, feature = "mocks"))]
pub use store::MockMessageStore;
#[cfg(any(test, feature = "mocks"))]
pub use turn_lock::MockTurnLock;
