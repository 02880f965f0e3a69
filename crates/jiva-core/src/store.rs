//! The storage port.

use std::error::Error as StdError;

use async_trait::async_trait;

use crate::chat::ChatId;
use crate::message::{Message, Seq};

/// The boxed cause of a [`StoreError`].
pub type Cause = Box<dyn StdError + Send + Sync + 'static>;

/// A position in a chat's history, opaque to everyone but the store that issued it.
///
/// A caller passes back exactly what it received in [`HistoryPage::next`]; a store rejects a
/// cursor it cannot read with [`StoreError::InvalidInput`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// Wraps a store's own token. Only stores call this.
    pub fn from_token(token: String) -> Self {
        Self(token)
    }

    /// The store's token, for the store that issued it (or for a caller that must carry the
    /// cursor over a wire untouched).
    pub fn token(&self) -> &str {
        &self.0
    }
}

/// One page of a chat's history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryPage {
    /// At most the requested number of messages, oldest first.
    pub messages: Vec<Message>,
    /// Where the next page starts; `None` when this page reached the end.
    pub next: Option<Cursor>,
}

/// The result of an append: the message's place in its chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The message was written with this sequence number.
    Stored(Seq),
    /// A message with this id was already stored (a retry); nothing was written, and this is
    /// the number it was stored with.
    AlreadyStored(Seq),
}

impl Appended {
    /// The message's sequence number, either way.
    pub fn seq(self) -> Seq {
        match self {
            Self::Stored(seq) | Self::AlreadyStored(seq) => seq,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store is rate-limiting us; retrying later may succeed.
    #[error("the store is throttling requests")]
    Throttled(#[source] Cause),
    /// The store cannot be reached or failed transiently.
    #[error("the store is unavailable")]
    Unavailable(#[source] Cause),
    /// The request was malformed (for example a cursor the store did not issue).
    #[error("invalid store request: {0}")]
    InvalidInput(String),
    /// A write conflicted with concurrent state in a way that retrying will not fix.
    #[error("conflicting write")]
    Conflict(#[source] Cause),
    /// Stored data could not be read back as a message.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Throttled(_) | Self::Unavailable(_))
    }
}

/// Where chats and messages are kept.
///
/// Implementations must be safe to call from many tasks at once. A message whose `append`
/// returned `Ok` is durable: a later `history` or `recent` call, even from a new process, sees it.
/// Reading a chat must never read other chats' messages (no scans).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// A short name for logs and `/healthz` (`sqlite`, `dynamodb`, ...).
    fn kind(&self) -> &'static str;

    /// Records that `chat` exists. Idempotent: registering twice is not an error.
    async fn register_chat(&self, chat: &ChatId) -> Result<(), StoreError>;

    /// Stores `message`, idempotently by [`Message::id`]: appending an id that is already stored
    /// writes nothing and returns [`Appended::AlreadyStored`] with its number.
    ///
    /// The store gives the message the chat's next [`Seq`] as it stores it (`message.seq` is
    /// ignored). Numbers of one chat are unique and increase in the order messages are stored;
    /// that order is the chat's order everywhere (history, live frames).
    async fn append(&self, message: &Message) -> Result<Appended, StoreError>;

    /// Up to `limit` messages of `chat`, oldest first, starting after `cursor` (from the very
    /// first message when `None`), each with its [`Message::seq`]. Messages are in sequence
    /// order; messages stored before stores numbered them (`seq` `None`) come first, by
    /// timestamp, then id.
    async fn history(
        &self,
        chat: &ChatId,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError>;

    /// The newest `limit` messages of `chat`, returned oldest first, in the order of
    /// [`MessageStore::history`].
    async fn recent(&self, chat: &ChatId, limit: usize) -> Result<Vec<Message>, StoreError>;

    /// Whether the store answers (for readiness checks).
    async fn check(&self) -> Result<(), StoreError>;
}
