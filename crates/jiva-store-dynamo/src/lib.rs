//! `jiva-store-dynamo` keeps JivaChat's chats and messages in DynamoDB, behind the
//! [`jiva_core::MessageStore`] port: [`DynamoStore`], built from a plain [`Config`] with
//! [`DynamoStore::connect`] (AWS SDK default credential chain) or [`DynamoStore::from_client`],
//! and [`DynamoStore::create_tables`] for the `create-tables` command of the server.
//!
//! Layout:
//! - `by_seq`: the legacy layout's replay in sequence order (two phases, phase cursors).
//! - `config`: [`Config`] (table names, endpoint, region, legacy index, retries, time-outs).
//! - `store`: [`DynamoStore`] and its [`MessageStore`](jiva_core::MessageStore) implementation;
//!   `store::claim`, the idempotency claims of client-named messages (native layout).
//! - `tables`: [`DynamoStore::create_tables`] and [`TableSetup`].
//! - `item`: items to and from core types, by hand; the attribute names of PROTOCOL.md §5.
//! - `counters`: each chat's next sequence number, remembered between appends.
//! - `cursor`: the opaque history cursor (hex of a JSON `LastEvaluatedKey`).
//! - `error`: SDK errors to [`jiva_core::StoreError`].
//! - `testing` (feature `testing`): a local DynamoDB-compatible server and a request log.
//!
//! Key design (details and table definitions in `docs/dynamodb.md`): `Chats` is keyed by
//! (`AgentID`, `SecondaryID`). `Messages` is keyed by (`ChatID`, `SortKey`) where `SortKey` is
//! `"seq#{Seq:020}"`, the message's sequence number in its chat, so a chat's history is one
//! Query in the chat's order and an append is one conditional put that claims the chat's next
//! number (the store remembers each chat's next number; a put that finds its number taken reads
//! the chat's newest numbers and tries again — see `counters` and `docs/dynamodb.md`). Items
//! written before sequence numbers keep `"{Timestamp:020}#{MessageID}"` and sort first, in time
//! order. Deployments whose `Messages` table is keyed by `MessageID` alone set
//! [`Config::legacy_index`]: numbers come from a counter on the `Chats` item and history is read
//! through a GSI on (`ChatID`, `Timestamp`), in time order — or, with
//! [`Config::legacy_seq_index`], the unnumbered items in time order then the numbered ones
//! through a sparse GSI on (`ChatID`, `Seq`), in number order (`by_seq`). The GSIs are
//! eventually consistent:
//! the append also keeps the chat's [`RECENT_IDS`] newest message ids on its `Chats` item, and
//! the last history page and `recent` fetch by id, consistently, those the index does not show
//! yet.
//!
//! What this crate deliberately is not: it does not read the environment (the binary fills in
//! [`Config`]; the SDK's default chain reads its own variables), install tracing, define wire
//! frames or know about sockets. It never scans a table, and no SDK type, raw item or
//! `LastEvaluatedKey` crosses its public API except the SDK client itself
//! ([`DynamoStore::client`]) for tools and tests.
//!
//! Invariants:
//! - Items keep the attribute names and types of PROTOCOL.md §5 exactly; the attributes added
//!   are `Seq` (N) and `SortKey` (native layout), and `LastSeq` and `Recent` on `Chats` (legacy
//!   layout). An
//!   item is a copilot answer exactly when it has `Action`.
//! - Reading never splits `ChatID`: the chat of a message read is the chat that was queried.
//! - Every chat read is a Query of that chat's partition (of the table or the legacy index);
//!   a history page of `n` messages is one Query with `Limit` `n + 1` (in the legacy layout the
//!   last page and `recent` add a `GetItem` of the chat's `Chats` item and, when the index lags,
//!   a `BatchGetItem` of that chat's newest messages by id).
//! - `append` is a conditional put that never overwrites; a retried append returns the number
//!   the message was stored with (in the native layout, while the message is among its chat's
//!   [`RECENT_WINDOW`] newest; always for a message whose id a client named
//!   ([`MessageId::is_for_client`](jiva_core::MessageId::is_for_client)), which is written in
//!   one transaction with a claim of its id, an item under [`CLAIM_PREFIX`]).
//! - No read of a chat returns a claim: claims live in partitions of their own
//!   (`"claim#{chat}"`), and a chat id never contains `#`.
//! - An item that cannot be read as a message (missing or mistyped attribute, an id that is not
//!   a UUID, an unknown sender) is skipped with a `tracing::warn!` naming its `MessageID`, so
//!   one bad legacy item cannot make a whole chat unreadable; a page may then hold fewer
//!   messages than asked, with a cursor to go on.
//! - SDK errors are translated at the edge: throttling to `Throttled`, no connection,
//!   time-outs and server errors to `Unavailable`, rejected requests and malformed cursors to
//!   `InvalidInput`, lost transactional writes to `Conflict`.

mod by_seq;
mod config;
mod counters;
mod cursor;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod item;
mod store;
mod tables;

#[cfg(feature = "testing")]
pub mod testing;

pub use by_seq::EARLIER_SERVER_OVERLAP;
pub use config::Config;
pub use item::{
    ACTION, AGENT_ID, CHAT_ID, CLAIM_PREFIX, COMBINED, LAST_SEQ, MESSAGE, MESSAGE_ID, OUTPUT,
    SECONDARY_ID, SENDER, SEQ, SEQ_PREFIX, SORT_KEY, TIMESTAMP,
};
pub use store::{DynamoStore, MAX_PAGE, RECENT_IDS, RECENT_WINDOW};
pub use tables::TableSetup;
