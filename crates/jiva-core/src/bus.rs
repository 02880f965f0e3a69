//! The fan-out port between servers: [`Bus`].
//!
//! Every server shows a stored message to its own sockets; a bus carries it to the *other*
//! servers that have sockets in the same chat. A server follows the chats it has sockets in
//! ([`Bus::follow`]) and stops when its last socket of a chat leaves ([`Bus::unfollow`]); it
//! publishes every message it stored ([`Bus::publish`], with its [`Message::seq`] set, so the
//! receivers can put it in the chat's order) and receives the other servers' messages of the
//! chats it follows from [`Bus::incoming`].
//!
//! What a bus promises: a message published is delivered at most once to each other server
//! following its chat, never back to its publisher. What it does not: delivery is best effort
//! (a message published while a server was disconnected from the broker is not delivered to it
//! later; the chat's order lets a receiver notice the gap, and the store has the message), and
//! [`Bus::publish`] never waits for the broker (a bus that cannot keep up drops, and counts).
//!
//! A bus also carries ephemeral events of the followed chats ([`Bus::publish_event`],
//! [`Bus::events`]): who is present, who is typing. They are never stored, and a server that
//! misses one learns the state again from the periodic [`EventKind::Present`] announcements.

use std::error::Error as StdError;
use std::pin::Pin;

use async_trait::async_trait;
use futures_core::Stream;

use crate::chat::ChatId;
use crate::message::{Message, MessageId};

/// The messages other servers published to followed chats, in the order received.
pub type Incoming = Pin<Box<dyn Stream<Item = Message> + Send>>;

/// The ephemeral events other servers published to followed chats (see [`Bus::events`]).
pub type Events = Pin<Box<dyn Stream<Item = ReceivedEvent> + Send>>;

/// Someone in a chat, as presence shows them: one per identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PresenceMember {
    /// The identity's id (an agent id), or a per-socket id when it has no identity.
    pub id: String,
    /// Its role.
    pub role: MemberRole,
}

/// The role of a [`PresenceMember`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberRole {
    /// A contact-centre agent.
    Agent,
    /// A supervisor.
    Supervisor,
    /// A socket without an identity (authentication off).
    Anonymous,
}

impl MemberRole {
    /// `agent`, `supervisor` or `anonymous`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Supervisor => "supervisor",
            Self::Anonymous => "anonymous",
        }
    }

    /// Parses [`MemberRole::as_str`]'s spelling.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "agent" => Some(Self::Agent),
            "supervisor" => Some(Self::Supervisor),
            "anonymous" => Some(Self::Anonymous),
            _ => None,
        }
    }
}

/// What an ephemeral event of a chat says. Never stored; not ordered with the chat's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The member has a socket of the chat on the publishing server (sent when its first one
    /// opens, in answer to [`EventKind::Query`], and again periodically while it stays).
    Present(PresenceMember),
    /// The member's last socket of the chat on the publishing server closed.
    Absent(PresenceMember),
    /// The member is typing (`active`) or stopped.
    Typing {
        /// Who.
        member: PresenceMember,
        /// True while typing.
        active: bool,
    },
    /// The publishing server asks the others who of theirs is present in the chat.
    Query,
    /// A client on the publishing server cancelled the copilot turn answering `question`, which
    /// does not run or wait there: the server where it does cancels it and answers
    /// [`EventKind::CancelTaken`] with the same `request`.
    CancelAsk {
        /// The question whose turn is to stop.
        question: MessageId,
        /// Names this ask (unique per ask), for the answer.
        request: String,
    },
    /// The publishing server cancelled the turn of the [`EventKind::CancelAsk`] `request`.
    CancelTaken {
        /// The ask's name.
        request: String,
    },
    /// A turn the publishing server cancelled for another server ended: the other servers end
    /// it on their sockets too (they did not see its chunks, but a client there stopped it).
    TurnCancelled {
        /// The question it answered.
        question: MessageId,
        /// The stored (partial) answer, when anything came.
        answer: Option<MessageId>,
    },
}

/// An ephemeral event of a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatEvent {
    /// The chat.
    pub chat: ChatId,
    /// What happened.
    pub kind: EventKind,
}

/// An event another server published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEvent {
    /// The publishing server's bus id (stable for the life of its process).
    pub from: String,
    /// The event.
    pub event: ChatEvent,
}

/// A stream that ends at once: the events of a bus that carries none.
struct NoEvents;

impl Stream for NoEvents {
    type Item = ReceivedEvent;

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<ReceivedEvent>> {
        std::task::Poll::Ready(None)
    }
}

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The broker cannot be reached now; the bus goes on trying (following included).
    #[error("the bus is unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync + 'static>),
    /// [`Bus::incoming`] was called a second time: there is one stream per bus.
    #[error("the incoming stream was already taken")]
    AlreadyTaken,
}

/// Fan-out of stored messages between servers.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Bus: Send + Sync {
    /// Hands `message` (stored, its `seq` set) to the other servers following its chat. Never
    /// waits for the broker: a message that cannot be queued is dropped (and counted).
    fn publish(&self, message: &Message);

    /// Starts receiving the messages other servers publish to `chat`. Idempotent. The bus keeps
    /// following across reconnections to the broker; an error means the broker did not confirm
    /// now, and the bus will follow once it is back.
    async fn follow(&self, chat: &ChatId) -> Result<(), BusError>;

    /// Stops receiving `chat`'s messages. Idempotent.
    async fn unfollow(&self, chat: &ChatId) -> Result<(), BusError>;

    /// The stream of messages received for followed chats. One stream per bus: a second call
    /// is [`BusError::AlreadyTaken`].
    fn incoming(&self) -> Result<Incoming, BusError>;

    /// Whether the bus is connected to its broker now (for readiness and metrics).
    fn connected(&self) -> bool;

    /// Whether this server is the only one appending to the chats it serves (the in-process
    /// bus): a sequence number missing from the store can then only be an append of this server
    /// that failed, never one still on its way from another server. The default is `false`.
    fn single_node(&self) -> bool {
        false
    }

    /// Hands an ephemeral event (presence, typing) to the other servers following its chat.
    /// Never waits; best effort, like [`Bus::publish`]. The default (a single server) sends
    /// nowhere.
    fn publish_event(&self, event: &ChatEvent) {
        let _ = event;
    }

    /// The stream of events other servers published to followed chats; one stream per bus.
    /// The default (a single server) ends at once.
    fn events(&self) -> Result<Events, BusError> {
        Ok(Box::pin(NoEvents))
    }
}
