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

use std::error::Error as StdError;
use std::pin::Pin;

use async_trait::async_trait;
use futures_core::Stream;

use crate::chat::ChatId;
use crate::message::Message;

/// The messages other servers published to followed chats, in the order received.
pub type Incoming = Pin<Box<dyn Stream<Item = Message> + Send>>;

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
}
