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

/// The newest messages before a point of a chat's history (see [`MessageStore::before`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OlderPage {
    /// At most the requested number of messages, oldest first, in chat order.
    pub messages: Vec<Message>,
    /// Whether the chat has messages older than the first of `messages`.
    pub has_older: bool,
}

/// Messages read per page by the default [`MessageStore::after`] and
/// [`MessageStore::before`], which walk the history from its start.
const WALK_PAGE: usize = 500;

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

    /// Whether [`MessageStore::after`] and [`MessageStore::before`] seek to a number (read only
    /// the messages they return) rather than walk the history from the start. A caller that
    /// could use either `after` or a [`MessageStore::history`] cursor picks `after` only then.
    fn seeks_by_number(&self) -> bool {
        false
    }

    /// Up to `limit` messages of `chat` numbered after `after`, oldest first (fewer than
    /// `limit`: the end of the history was reached). Messages without a number are left out.
    ///
    /// The default walks [`MessageStore::history`] from the start; a store that can seek to a
    /// number should override it.
    async fn after(
        &self,
        chat: &ChatId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        after_by_walking(self, chat, after, limit).await
    }

    /// The newest `limit` messages of `chat` that come before number `before` in chat order
    /// (numbered below it, and the messages without a number, which come first), returned
    /// oldest first, and whether older ones exist.
    ///
    /// The default walks [`MessageStore::history`] from the start; a store that can seek to a
    /// number should override it.
    async fn before(
        &self,
        chat: &ChatId,
        before: Seq,
        limit: usize,
    ) -> Result<OlderPage, StoreError> {
        before_by_walking(self, chat, before, limit).await
    }
}

/// [`MessageStore::after`] by walking `store`'s history from the start (the default, for
/// stores that cannot seek to a number).
pub async fn after_by_walking<S: MessageStore + ?Sized>(
    store: &S,
    chat: &ChatId,
    after: Seq,
    limit: usize,
) -> Result<Vec<Message>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = None;
    while out.len() < limit {
        let page = store.history(chat, cursor, WALK_PAGE.max(limit)).await?;
        let empty = page.messages.is_empty();
        for message in page.messages {
            if message.seq.is_some_and(|seq| seq > after) && out.len() < limit {
                out.push(message);
            }
        }
        match page.next {
            Some(next) if !empty => cursor = Some(next),
            _ => break,
        }
    }
    Ok(out)
}

/// [`MessageStore::before`] by walking `store`'s history from the start (the default, for
/// stores that cannot seek to a number).
pub async fn before_by_walking<S: MessageStore + ?Sized>(
    store: &S,
    chat: &ChatId,
    before: Seq,
    limit: usize,
) -> Result<OlderPage, StoreError> {
    let mut kept = std::collections::VecDeque::new();
    let mut has_older = false;
    let mut cursor = None;
    'walk: loop {
        let page = store.history(chat, cursor, WALK_PAGE).await?;
        let empty = page.messages.is_empty();
        for message in page.messages {
            if message.seq.is_some_and(|seq| seq >= before) {
                break 'walk;
            }
            kept.push_back(message);
            if kept.len() > limit {
                kept.pop_front();
                has_older = true;
            }
        }
        match page.next {
            Some(next) if !empty => cursor = Some(next),
            _ => break,
        }
    }
    Ok(OlderPage {
        messages: kept.into(),
        has_older,
    })
}
