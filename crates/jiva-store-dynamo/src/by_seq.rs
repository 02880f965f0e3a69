//! Legacy layout with a sequence index: history and `recent` in the chat's one order.
//!
//! A `Messages` table keyed by `MessageID` has two global secondary indexes here: the time
//! index on (`ChatID`, `Timestamp`) ([`Config::legacy_index`](crate::Config::legacy_index)) and
//! a sparse one on (`ChatID`, `Seq`)
//! ([`Config::legacy_seq_index`](crate::Config::legacy_seq_index)), which holds only numbered
//! items. A chat's order is its earlier server's unnumbered items in time order, then its
//! numbered messages in number order. History reads it in two phases:
//!
//! 1. **Time phase**: the unnumbered items, from the time index, with `FilterExpression
//!    attribute_not_exists(Seq)`. An item of the earlier server is older than the chat's first
//!    numbered message, or at most [`EARLIER_SERVER_OVERLAP`] younger (while both servers ran,
//!    during an upgrade), so the Query's key condition stops there
//!    (`Timestamp < first + overlap`, `first` read from the sequence index, `Limit 1`): the
//!    numbered items the filter drops are only those of that window, not the whole chat.
//! 2. **Sequence phase**: the numbered items, from the sequence index, by `Seq`.
//!
//! The cursor says which phase a page ends in: the time index's key (`MessageID`, `ChatID`,
//! `Timestamp`: the same cursor as the legacy layout without a sequence index), the sequence
//! index's key (`MessageID`, `ChatID`, `Seq`), or `ChatID` alone for "the sequence phase, from
//! its start". Each is validated like every cursor (exact attributes, this chat).
//!
//! Both indexes are eventually consistent: the last page and `recent` add the chat's newest
//! messages the sequence index does not show yet (the `Recent` list on the `Chats` item, as in
//! the legacy layout), merged by number.

use std::time::Duration;

use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use jiva_core::{ChatId, Cursor, HistoryPage, Message, StoreError};

use crate::cursor;
use crate::error::translate;
use crate::item::{self, CHAT_ID, Item, MESSAGE_ID, SEQ, TIMESTAMP};
use crate::store::{DynamoStore, MAX_PAGE};

/// How much younger than a chat's first numbered message an item of the earlier server may be
/// and still be replayed (both servers writing the same chat during an upgrade). Items of the
/// earlier server written later than this into a chat are not replayed in this mode.
pub const EARLIER_SERVER_OVERLAP: Duration = Duration::from_secs(600);

/// The cursor layouts of this mode, in [`Phase`] order.
const TIME_KEY: &[&str] = &[MESSAGE_ID, CHAT_ID, TIMESTAMP];
const SEQ_KEY: &[&str] = &[MESSAGE_ID, CHAT_ID, SEQ];
const SEQ_START: &[&str] = &[CHAT_ID];
pub(crate) const CURSOR_LAYOUTS: &[&[&str]] = &[TIME_KEY, SEQ_KEY, SEQ_START];

/// Queries a time-phase read may make in one call once it has a message to return: a chat
/// whose numbered items crowd the window returns a shorter page with a cursor instead.
const TIME_ROUNDS: usize = 4;

/// Where a history page starts.
enum Phase {
    /// The unnumbered items, after this key of the time index (from the start: `None`).
    Time(Option<Item>),
    /// The numbered items, after this key of the sequence index (from the start: `None`).
    Seq(Option<Item>),
}

/// The indexes of the mode.
pub(crate) struct Indexes<'a> {
    /// On (`ChatID`, `Timestamp`).
    pub time: &'a str,
    /// On (`ChatID`, `Seq`), sparse.
    pub seq: &'a str,
}

/// The order of a page in this mode: unnumbered messages first, by time (ties by id), then
/// numbered ones by number.
pub(crate) fn order(messages: &mut [Message]) {
    messages.sort_by_key(|m| (m.seq.is_some(), m.seq, m.timestamp, m.id));
}

impl DynamoStore {
    /// One Query of an index of `chat`: `forward` or newest first, at most `limit` items
    /// evaluated; `unnumbered_before`: only items without `Seq`, with a `Timestamp` below the
    /// given bound when there is one.
    async fn query_index(
        &self,
        index: &str,
        chat: &str,
        forward: bool,
        limit: usize,
        start: Option<Item>,
        unnumbered_before: Option<Option<i64>>,
    ) -> Result<QueryOutput, StoreError> {
        let mut request = self
            .client
            .query()
            .table_name(&self.config.messages_table)
            .index_name(index)
            .expression_attribute_names("#chat", CHAT_ID)
            .expression_attribute_values(":chat", AttributeValue::S(chat.to_owned()))
            .scan_index_forward(forward)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start);
        request = match unnumbered_before {
            None => request.key_condition_expression("#chat = :chat"),
            Some(bound) => {
                let request = request
                    .filter_expression("attribute_not_exists(#seq)")
                    .expression_attribute_names("#seq", SEQ);
                match bound {
                    None => request.key_condition_expression("#chat = :chat"),
                    Some(bound) => request
                        .key_condition_expression("#chat = :chat AND #ts < :bound")
                        .expression_attribute_names("#ts", TIMESTAMP)
                        .expression_attribute_values(
                            ":bound",
                            AttributeValue::N(bound.to_string()),
                        ),
                }
            }
        };
        request.send().await.map_err(|e| translate("Query", e))
    }

    /// The bound of the time phase: the `Timestamp` of the chat's first numbered message plus
    /// [`EARLIER_SERVER_OVERLAP`]; `None` when the sequence index has no item of the chat.
    async fn time_phase_bound(&self, index: &str, chat: &str) -> Result<Option<i64>, StoreError> {
        let first = self.query_index(index, chat, true, 1, None, None).await?;
        let overlap = i64::try_from(EARLIER_SERVER_OVERLAP.as_millis()).unwrap_or(i64::MAX);
        Ok(first
            .items
            .unwrap_or_default()
            .first()
            .and_then(|raw| item::timestamp(raw).ok())
            .map(|t| t.as_millis().saturating_add(overlap)))
    }

    /// Reads unnumbered items of `chat` from the time index until `wanted` are found or the
    /// phase ends: the items (at most `wanted`) and, when the phase may hold more, the key to
    /// go on after. Each Query evaluates a few more items than the previous one, as numbered
    /// items the filter drops may be in the way.
    async fn unnumbered(
        &self,
        indexes: &Indexes<'_>,
        chat: &str,
        forward: bool,
        wanted: usize,
        mut start: Option<Item>,
        bound: Option<i64>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let mut items: Vec<Item> = Vec::new();
        let mut evaluate = wanted.saturating_add(1);
        let mut rounds = 0;
        loop {
            let output = self
                .query_index(indexes.time, chat, forward, evaluate, start, Some(bound))
                .await?;
            items.extend(output.items.unwrap_or_default());
            if items.len() >= wanted {
                let more = items.len() > wanted || output.last_evaluated_key.is_some();
                items.truncate(wanted);
                let next = if more { items.last().cloned() } else { None };
                return Ok((items, next));
            }
            let Some(key) = output.last_evaluated_key else {
                return Ok((items, None));
            };
            rounds += 1;
            if rounds >= TIME_ROUNDS && !items.is_empty() {
                return Ok((items, Some(key)));
            }
            start = Some(key);
            evaluate = evaluate.saturating_mul(4).min(MAX_PAGE + 1);
        }
    }

    /// A history page in the chat's one order (see the module's documentation).
    pub(crate) async fn history_by_seq(
        &self,
        chat: &ChatId,
        cursor: Option<Cursor>,
        limit: usize,
        indexes: &Indexes<'_>,
    ) -> Result<HistoryPage, StoreError> {
        let canonical = chat.canonical();
        let phase = match cursor {
            None => Phase::Time(None),
            Some(c) => match cursor::decode_one_of(&c, CURSOR_LAYOUTS, &canonical)
                .map_err(|e| StoreError::InvalidInput(e.to_string()))?
            {
                (0, key) => Phase::Time(Some(key)),
                (1, key) => {
                    if item::seq(&key).ok().flatten().is_none() {
                        return Err(StoreError::InvalidInput(
                            "malformed history cursor: bad sequence number".to_owned(),
                        ));
                    }
                    Phase::Seq(Some(key))
                }
                _ => Phase::Seq(None),
            },
        };
        let (mut items, seq_start) = match phase {
            Phase::Time(start) => {
                let bound = self.time_phase_bound(indexes.seq, &canonical).await?;
                // A cursor issued before the chat's first numbered message was visible may lie
                // past the bound (DynamoDB refuses a start key outside the key condition): the
                // time phase is over then.
                let past = start.as_ref().is_some_and(|key| {
                    bound.is_some_and(|b| item::timestamp(key).is_ok_and(|t| t.as_millis() >= b))
                });
                let (items, next) = if past {
                    (Vec::new(), None)
                } else {
                    self.unnumbered(indexes, &canonical, true, limit, start, bound)
                        .await?
                };
                if let Some(next) = next {
                    // More of the time phase: the page ends in it.
                    let next = encode(&next, TIME_KEY)?;
                    return Ok(HistoryPage {
                        messages: Self::read_items(chat, &items),
                        next: Some(next),
                    });
                }
                (items, None)
            }
            Phase::Seq(start) => (Vec::new(), start),
        };
        let after_seq = seq_start
            .as_ref()
            .and_then(|start| item::seq(start).ok().flatten());
        let room = limit.saturating_sub(items.len());
        // One item more than there is room for tells whether another page exists.
        let output = self
            .query_index(
                indexes.seq,
                &canonical,
                true,
                room + 1,
                seq_start.clone(),
                None,
            )
            .await?;
        let mut numbered = output.items.unwrap_or_default();
        let next = if numbered.len() > room {
            numbered.truncate(room);
            Some(match numbered.last() {
                Some(last) => encode(last, SEQ_KEY)?,
                // The page is full of the time phase; the sequence phase starts on the next.
                None => encode(
                    &std::collections::HashMap::from([(
                        CHAT_ID.to_owned(),
                        AttributeValue::S(canonical.clone()),
                    )]),
                    SEQ_START,
                )?,
            })
        } else {
            match output.last_evaluated_key {
                Some(key) => Some(encode(&key, SEQ_KEY)?),
                None => None,
            }
        };
        items.extend(numbered);
        let mut messages = Self::read_items(chat, &items);
        if next.is_none() {
            // The last page may lack what the sequence index has not caught up with yet.
            let start_id = seq_start.as_ref().map(item::item_message_id);
            self.cover_index_lag_where(
                chat,
                &mut messages,
                start_id,
                |raw| matches!(item::seq(raw), Ok(Some(seq)) if after_seq.is_none_or(|a| seq > a)),
            )
            .await?;
        }
        order(&mut messages);
        Ok(HistoryPage { messages, next })
    }

    /// The newest `limit` messages of `chat` in the chat's one order: its newest numbered
    /// messages (sequence index, newest first) and, when there are fewer than `limit`, the
    /// newest unnumbered ones before them (time index, newest first, filtered), plus what the
    /// sequence index does not show yet.
    pub(crate) async fn recent_by_seq(
        &self,
        chat: &ChatId,
        limit: usize,
        indexes: &Indexes<'_>,
    ) -> Result<Vec<Message>, StoreError> {
        let canonical = chat.canonical();
        let mut numbered: Vec<Item> = Vec::new();
        let mut start = None;
        let mut complete = false;
        while numbered.len() < limit {
            let output = self
                .query_index(
                    indexes.seq,
                    &canonical,
                    false,
                    limit - numbered.len(),
                    start,
                    None,
                )
                .await?;
            numbered.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => {
                    complete = true;
                    break;
                }
            }
        }
        let mut items = Vec::new();
        if complete && numbered.len() < limit {
            // Every numbered message is read: the oldest of them gives the time phase's bound.
            let overlap = i64::try_from(EARLIER_SERVER_OVERLAP.as_millis()).unwrap_or(i64::MAX);
            // `numbered` is newest first: its last item is the chat's first numbered message.
            let bound = numbered
                .last()
                .and_then(|raw| item::timestamp(raw).ok())
                .map(|t| t.as_millis().saturating_add(overlap));
            let (older, _) = self
                .unnumbered(
                    indexes,
                    &canonical,
                    false,
                    limit - numbered.len(),
                    None,
                    bound,
                )
                .await?;
            items = older;
        }
        items.extend(numbered);
        let mut messages = Self::read_items(chat, &items);
        self.cover_index_lag_where(chat, &mut messages, None, |raw| {
            matches!(item::seq(raw), Ok(Some(_)))
        })
        .await?;
        order(&mut messages);
        let extra = messages.len().saturating_sub(limit);
        messages.drain(..extra);
        Ok(messages)
    }
}

/// Encodes a cursor of `names`, or says which item could not be.
fn encode(key: &Item, names: &[&str]) -> Result<Cursor, StoreError> {
    cursor::encode(key, names).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "Messages item {} lacks a key attribute",
            item::item_message_id(key)
        ))
    })
}
