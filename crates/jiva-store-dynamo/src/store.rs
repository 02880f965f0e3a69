//! [`DynamoStore`]: the [`MessageStore`] port over two DynamoDB tables.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValue, ReturnValuesOnConditionCheckFailure,
};
use jiva_core::{Appended, ChatId, Cursor, HistoryPage, Message, MessageStore, Seq, StoreError};

use crate::config::Config;
use crate::counters::Counters;
use crate::cursor;
use crate::error::{Problem, translate};
use crate::item::{
    self, AGENT_ID, CHAT_ID, Item, LAST_SEQ, MESSAGE_ID, RECENT, SECONDARY_ID, SEQ, SEQ_PREFIX,
    SORT_KEY, TIMESTAMP,
};

mod claim;
mod seek;

/// The most messages one history page returns, whatever the caller asks for.
pub const MAX_PAGE: usize = 1000;

/// How many of a chat's newest numbered messages an append reads when it must find the chat's
/// last number (or whether its message is already stored). A retried append of a server-made id
/// is recognised as a duplicate while its first attempt is among these (a client-named id, by
/// its claim, always).
pub const RECENT_WINDOW: usize = 64;

/// How many of a chat's newest message ids a legacy-layout append keeps on the chat's `Chats`
/// item, so that reads can find messages the eventually consistent index does not show yet.
pub const RECENT_IDS: usize = 16;

/// Conflicts an append always goes through before it may give up, whatever its deadline.
const MIN_CONFLICTS: u32 = 8;

/// The longest pause between two conflicting puts of one append (full jitter below it).
const MAX_CONFLICT_PAUSE: Duration = Duration::from_millis(50);

/// Conflicts in a row after which an append reads the chat's newest number rather than trying
/// the number after the one it lost.
const PROBES_BEFORE_READ: u32 = 3;

/// What a conditional put of a numbered item found.
enum Claim {
    /// The item was written: the number is the message's.
    Written,
    /// Another item holds the number: its `MessageID` when the server returned it.
    Held(Option<String>),
    /// The message's id is claimed: it is stored, with this number (`claim`).
    Stored(Seq),
}

/// The pause before the `conflicts`-th retry of an append: a random duration (full jitter)
/// below 1 ms doubled per conflict, at most [`MAX_CONFLICT_PAUSE`], so servers that collided
/// on a number do not collide again in step.
fn backoff(conflicts: u32) -> Duration {
    let ceiling = Duration::from_millis(1u64 << conflicts.min(6)).min(MAX_CONFLICT_PAUSE);
    let random = RandomState::new().hash_one(conflicts);
    let micros = u64::try_from(ceiling.as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_micros(random % micros)
}

/// Which key design the `Messages` table has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Key (`ChatID` S, `SortKey` S); history is a Query of the table itself.
    Native,
    /// Key `MessageID` S; history is a Query of the named GSI on (`ChatID` S, `Timestamp` N).
    Legacy {
        /// The index name.
        index: String,
        /// The sparse index on (`ChatID` S, `Seq` N), when configured: history in number order.
        seq_index: Option<String>,
    },
}

impl Layout {
    /// The two indexes of the legacy layout with a sequence index, when it is that.
    pub(crate) fn seq_indexes(&self) -> Option<crate::by_seq::Indexes<'_>> {
        match self {
            Self::Legacy {
                index,
                seq_index: Some(seq),
            } => Some(crate::by_seq::Indexes { time: index, seq }),
            _ => None,
        }
    }

    /// The attributes of a `LastEvaluatedKey` of a history Query (the cursor's content).
    pub(crate) fn cursor_key(&self) -> &'static [&'static str] {
        match self {
            Self::Native => &[CHAT_ID, SORT_KEY],
            Self::Legacy { .. } => &[MESSAGE_ID, CHAT_ID, TIMESTAMP],
        }
    }
}

/// A [`MessageStore`] backed by DynamoDB. Cheap to clone (the SDK client is shared).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    pub(crate) client: Client,
    pub(crate) config: Config,
    pub(crate) layout: Layout,
    counters: Arc<Counters>,
    /// The turns of [`Config::max_in_flight`] (`None`: no limit).
    turns: Option<Arc<Semaphore>>,
}

impl DynamoStore {
    /// Builds a client from the AWS SDK's default chain (credentials, region, `~/.aws`,
    /// `AWS_ENDPOINT_URL`), overridden by `config`'s endpoint, region, retry and timeout
    /// settings. Sends no request: call [`DynamoStore::check`](MessageStore::check) or
    /// [`DynamoStore::create_tables`] to find out whether the tables are there.
    pub async fn connect(config: Config) -> Self {
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let builder = config.apply_to(aws_sdk_dynamodb::config::Builder::from(&shared));
        let client = Client::from_conf(builder.build());
        Self::from_client(client, config)
    }

    /// Uses `client` as it is: only the table names, [`Config::legacy_index`],
    /// [`Config::append_deadline`], [`Config::max_in_flight`] and (as the longest wait for a
    /// turn) [`Config::operation_timeout`] of `config` are read (the client keeps its own
    /// endpoint, region, retry and timeout settings; use [`Config::apply_to`] when building it
    /// to get ours).
    pub fn from_client(client: Client, config: Config) -> Self {
        let layout = match &config.legacy_index {
            Some(index) => {
                if config.legacy_seq_index.is_none() {
                    tracing::warn!(
                        index = %index,
                        "legacy-index mode without legacy_seq_index: history is replayed in \
                         timestamp order, which may differ from the order shown live (see \
                         docs/dynamodb.md, \"Replay in sequence order\")"
                    );
                }
                Layout::Legacy {
                    index: index.clone(),
                    seq_index: config.legacy_seq_index.clone(),
                }
            }
            None => Layout::Native,
        };
        // More than a semaphore can count is no limit in practice.
        let turns = (config.max_in_flight > 0).then(|| {
            Arc::new(Semaphore::new(
                config.max_in_flight.min(Semaphore::MAX_PERMITS),
            ))
        });
        Self {
            client,
            config,
            layout,
            counters: Arc::default(),
            turns,
        }
    }

    /// Waits for a turn to run one store operation ([`Config::max_in_flight`]), at most
    /// [`Config::operation_timeout`]. Held until the operation ends.
    async fn turn(&self) -> Result<Option<SemaphorePermit<'_>>, StoreError> {
        let Some(turns) = self.turns.as_deref() else {
            return Ok(None);
        };
        if let Ok(permit) = turns.try_acquire() {
            return Ok(Some(permit));
        }
        let waiting = Waiting::new();
        let turn = tokio::time::timeout(self.config.operation_timeout, turns.acquire()).await;
        drop(waiting);
        match turn {
            Ok(Ok(permit)) => Ok(Some(permit)),
            // The semaphore is never closed.
            Ok(Err(closed)) => Err(StoreError::Unavailable(Box::new(closed))),
            Err(_) => {
                metrics::counter!("jiva_dynamo_turn_timeouts_total").increment(1);
                Err(unavailable(format!(
                    "{} DynamoDB operations were already running and none ended in time",
                    self.config.max_in_flight
                )))
            }
        }
    }

    /// The SDK client, for tools and tests that need to reach the tables directly.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The configuration this store was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// One Query of `chat`'s messages, in time order (`forward`) or newest first.
    async fn query(
        &self,
        chat: &str,
        forward: bool,
        limit: usize,
        start: Option<Item>,
    ) -> Result<QueryOutput, StoreError> {
        let mut request = self
            .client
            .query()
            .table_name(&self.config.messages_table)
            .key_condition_expression("#chat = :chat")
            .expression_attribute_names("#chat", CHAT_ID)
            .expression_attribute_values(":chat", AttributeValue::S(chat.to_owned()))
            .scan_index_forward(forward)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start);
        request = match &self.layout {
            // Strongly consistent: an acknowledged append is visible to the next read.
            Layout::Native => request.consistent_read(true),
            // A GSI can only be read eventually consistently.
            Layout::Legacy { index, .. } => request.index_name(index),
        };
        request.send().await.map_err(|e| translate("Query", e))
    }

    /// Reads items of `chat`, skipping (and logging) those that are not messages.
    pub(crate) fn read_items(chat: &ChatId, items: &[Item]) -> Vec<Message> {
        let messages: Vec<Message> = items
            .iter()
            .filter_map(|raw| match item::message_from_item(raw, chat) {
                Ok(message) => Some(message),
                Err(err) => {
                    tracing::warn!(
                        message_id = item::item_message_id(raw),
                        chat = %chat,
                        error = %err,
                        "skipping a Messages item that is not a readable message"
                    );
                    None
                }
            })
            .collect();
        messages
    }

    /// Native design: the message goes to the chat's next number's sort key with a conditional
    /// put (one round trip). When the chat's next number is unknown or in doubt, the chat's
    /// newest numbers are read first (and a retry of a stored message finds itself there). When
    /// another writer holds the number, the put's failed condition returns the holder (so a
    /// holder that is this very message, written by an SDK retry, is recognised exactly); the
    /// store then tries the next number after a short jittered pause (reading the chat's newest
    /// number every few conflicts), until [`Config::append_deadline`] has passed. A message
    /// whose id a client named is written with a claim of its id in one transaction instead
    /// (`claim`): a resend, however old, finds the claim and its number.
    async fn append_native(&self, message: &Message) -> Result<Appended, StoreError> {
        if let Some(seq) = self.counters.appended(message.id) {
            return Ok(Appended::AlreadyStored(seq));
        }
        let chat = message.chat.canonical();
        let id = message.id.to_string();
        if self.counters.must_read(&chat, message.id) {
            if let Some(seq) = self.read_newest(&chat, &id).await? {
                self.counters.settled(message.id, seq);
                return Ok(Appended::AlreadyStored(seq));
            }
        }
        let deadline = Instant::now() + self.config.append_deadline;
        let mut conflicts: u32 = 0;
        loop {
            let Some(seq) = self.counters.take(&chat) else {
                // Forgotten meanwhile (the memory was cleared, or another append left the
                // chat in doubt): read again, with the same check for this message.
                if let Some(seq) = self.read_newest(&chat, &id).await? {
                    self.counters.settled(message.id, seq);
                    return Ok(Appended::AlreadyStored(seq));
                }
                continue;
            };
            let written = if message.id.is_for_client() {
                self.claim_with_id(message, seq).await
            } else {
                self.claim(item::message_item(message, seq, true), CHAT_ID)
                    .await
            };
            let claim = match written {
                Ok(claim) => claim,
                Err(err) => {
                    self.counters.doubt(&chat, message.id);
                    return Err(err);
                }
            };
            match claim {
                Claim::Written => {
                    self.counters.settled(message.id, seq);
                    return Ok(Appended::Stored(seq));
                }
                // A resend of a client-named message: stored before, at `stored`.
                Claim::Stored(stored) => {
                    self.counters.put_back(&chat, seq);
                    self.counters.settled(message.id, stored);
                    return Ok(Appended::AlreadyStored(stored));
                }
                // This message's own earlier attempt (an SDK retry after a lost answer) wrote
                // it at this number, within this append: it is stored there, once.
                Claim::Held(Some(holder)) if holder == id => {
                    self.counters.settled(message.id, seq);
                    return Ok(Appended::Stored(seq));
                }
                Claim::Held(holder) => {
                    metrics::counter!("jiva_dynamo_seq_conflicts_total").increment(1);
                    conflicts = conflicts.saturating_add(1);
                    let now = Instant::now();
                    // Never fewer tries than before deadlines (on a slow server 3 s may be a
                    // few round trips only).
                    if now >= deadline && conflicts >= MIN_CONFLICTS {
                        metrics::counter!("jiva_dynamo_seq_give_ups_total").increment(1);
                        tracing::warn!(
                            chat = %message.chat,
                            message_id = %message.id,
                            conflicts,
                            "no free sequence number before the append deadline"
                        );
                        return Err(StoreError::Conflict(Box::new(Problem(format!(
                            "no free sequence number within {:?} ({conflicts} conflicts)",
                            self.config.append_deadline
                        )))));
                    }
                    tokio::time::sleep(backoff(conflicts)).await;
                    if holder.is_some() {
                        // The holder is another message. Usually the next number is free (the
                        // racers are in step): try it at once, one request per conflict. Every
                        // `PROBES_BEFORE_READ` conflicts in a row, read the chat's newest number
                        // instead, in case this store is far behind.
                        self.counters.saw(&chat, seq.get());
                        if conflicts % PROBES_BEFORE_READ == 0 {
                            let head = self.newest_head(&chat).await?;
                            self.counters.saw(&chat, head);
                        }
                    } else if let Some(seq) = self.read_newest(&chat, &id).await? {
                        // A server that does not return the holder: the window read tells
                        // whether an earlier attempt of this append wrote the message.
                        self.counters.settled(message.id, seq);
                        return Ok(Appended::Stored(seq));
                    }
                }
            }
        }
    }

    /// Reads `chat`'s newest [`RECENT_WINDOW`] numbers: the number message `id` is stored at, if
    /// it is among them; otherwise records the chat's newest number and returns `None`.
    async fn read_newest(&self, chat: &str, id: &str) -> Result<Option<Seq>, StoreError> {
        let newest = self.newest_numbers(chat, RECENT_WINDOW).await?;
        if let Some((_, seq)) = newest.iter().find(|(held, _)| held == id) {
            return Ok(Some(*seq));
        }
        let head = newest.iter().map(|(_, seq)| seq.get()).max().unwrap_or(0);
        self.counters.saw(chat, head);
        Ok(None)
    }

    /// `chat`'s newest number (0: none): one strongly consistent Query, newest first, `Limit 1`.
    async fn newest_head(&self, chat: &str) -> Result<u64, StoreError> {
        let newest = self.newest_numbers(chat, 1).await?;
        Ok(newest.first().map_or(0, |(_, seq)| seq.get()))
    }

    /// Puts a `Messages` item on the condition that its `key` attribute does not exist yet,
    /// asking DynamoDB to return the item that holds the key when it does.
    async fn claim(&self, item: Item, key: &str) -> Result<Claim, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.config.messages_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", key)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Written),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => Ok(Claim::Held(
                    failed
                        .item()
                        .map(|holder| item::item_message_id(holder).to_owned()),
                )),
                _ => Err(translate("PutItem", err)),
            },
        }
    }

    /// The (message id, number) of `chat`'s newest `limit` numbered messages, newest first: one
    /// strongly consistent Query of the `seq#` sort keys.
    async fn newest_numbers(
        &self,
        chat: &str,
        limit: usize,
    ) -> Result<Vec<(String, Seq)>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.config.messages_table)
            .key_condition_expression("#chat = :chat AND begins_with(#key, :prefix)")
            .expression_attribute_names("#chat", CHAT_ID)
            .expression_attribute_names("#key", SORT_KEY)
            .expression_attribute_names("#id", MESSAGE_ID)
            .expression_attribute_names("#seq", SEQ)
            .expression_attribute_values(":chat", AttributeValue::S(chat.to_owned()))
            .expression_attribute_values(":prefix", AttributeValue::S(SEQ_PREFIX.to_owned()))
            .projection_expression("#id, #seq")
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| translate("Query", e))?;
        let mut newest = Vec::new();
        for raw in output.items.unwrap_or_default() {
            let seq = item::seq(&raw)
                .ok()
                .flatten()
                .ok_or_else(|| StoreError::Corrupt("a numbered item has no readable Seq".into()))?;
            newest.push((item::item_message_id(&raw).to_owned(), seq));
        }
        Ok(newest)
    }

    /// Legacy design (`Messages` keyed by `MessageID`): the number comes from an atomic counter
    /// on the chat's `Chats` item (`ADD LastSeq 1`), then the message is put on the condition
    /// that its id is new (two round trips). A retry of a stored message returns the number it
    /// was stored with; the number the retry took is left unused.
    async fn append_legacy(&self, message: &Message) -> Result<Appended, StoreError> {
        let counted = self
            .client
            .update_item()
            .table_name(&self.config.chats_table)
            .set_key(Some(chats_key(&message.chat)))
            // The id goes on the `Recent` list in the same atomic update that takes the number,
            // so the list's last entry is always `LastSeq`'s message.
            .update_expression(
                "ADD #last :one SET #recent = list_append(if_not_exists(#recent, :empty), :me)",
            )
            .expression_attribute_names("#last", LAST_SEQ)
            .expression_attribute_names("#recent", RECENT)
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(
                ":me",
                AttributeValue::L(vec![AttributeValue::S(message.id.to_string())]),
            )
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| translate("UpdateItem", e))?;
        if let Some(AttributeValue::L(recent)) =
            counted.attributes.as_ref().and_then(|a| a.get(RECENT))
        {
            if recent.len() >= 2 * RECENT_IDS {
                if let Some(AttributeValue::S(first)) = recent.first() {
                    self.trim_recent(&message.chat, recent.len(), first).await;
                }
            }
        }
        let seq = match counted.attributes.as_ref().and_then(|a| a.get(LAST_SEQ)) {
            Some(AttributeValue::N(n)) => n.parse::<u64>().ok().map(Seq::new),
            _ => None,
        }
        .ok_or_else(|| unavailable("UpdateItem returned no readable LastSeq"))?;
        if self
            .put_new(item::message_item(message, seq, false), MESSAGE_ID)
            .await?
        {
            return Ok(Appended::Stored(seq));
        }
        // A retry: the message is there with the number it was stored with.
        let stored = self
            .client
            .get_item()
            .table_name(&self.config.messages_table)
            .set_key(Some(HashMap::from([(
                MESSAGE_ID.to_owned(),
                AttributeValue::S(message.id.to_string()),
            )])))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| translate("GetItem", e))?;
        stored
            .item
            .as_ref()
            .and_then(|raw| item::seq(raw).ok().flatten())
            .map(Appended::AlreadyStored)
            .ok_or_else(|| {
                StoreError::Conflict(Box::new(Problem(
                    "the message id is stored without a sequence number".to_owned(),
                )))
            })
    }

    /// Drops the oldest entries of `chat`'s `Recent` list (`len` long, starting with `first`,
    /// when this append read it), keeping at least the newest [`RECENT_IDS`]. Concurrent
    /// appends only add at the end, so the condition is that the list still starts with
    /// `first` (no other trim ran since) and is at least `len` long; under contention another
    /// append's trim may win instead. Best effort: a failure only leaves the list longer (reads
    /// look at its newest `2 × RECENT_IDS` entries whatever its length).
    async fn trim_recent(&self, chat: &ChatId, len: usize, first: &str) {
        let drop: Vec<String> = (0..len.saturating_sub(RECENT_IDS))
            .map(|i| format!("#recent[{i}]"))
            .collect();
        let result = self
            .client
            .update_item()
            .table_name(&self.config.chats_table)
            .set_key(Some(chats_key(chat)))
            .update_expression(format!("REMOVE {}", drop.join(", ")))
            .condition_expression("size(#recent) >= :len AND #recent[0] = :first")
            .expression_attribute_names("#recent", RECENT)
            .expression_attribute_values(":len", AttributeValue::N(len.to_string()))
            .expression_attribute_values(":first", AttributeValue::S(first.to_owned()))
            .send()
            .await;
        if let Err(err) = result {
            tracing::debug!(chat = %chat, error = %translate("UpdateItem", err), "Recent not trimmed");
        }
    }

    /// Legacy layout: adds to `messages` (read from the index) the messages among the chat's
    /// newest ([`RECENT_IDS`], from its `Chats` item, read consistently) that the index does
    /// not show yet, read consistently from the table by id. `after` is the page's start key:
    /// messages before it belong to earlier pages. Costs one GetItem, plus one BatchGetItem
    /// only when the index lags.
    async fn cover_index_lag(
        &self,
        chat: &ChatId,
        messages: &mut Vec<Message>,
        after: Option<&Item>,
    ) -> Result<(), StoreError> {
        let start_id = after.map(item::item_message_id);
        let not_before = after.and_then(|start| item::timestamp(start).ok());
        self.cover_index_lag_where(chat, messages, start_id, |raw| {
            not_before.is_none_or(|t| item::timestamp(raw).is_ok_and(|ts| ts >= t))
        })
        .await
    }

    /// [`DynamoStore::cover_index_lag`] with the page's bounds given by the caller: `start_id`
    /// (the page's start item, never added) and `keep`, which tells whether a message read by
    /// id belongs to the page.
    pub(crate) async fn cover_index_lag_where(
        &self,
        chat: &ChatId,
        messages: &mut Vec<Message>,
        start_id: Option<&str>,
        keep: impl Fn(&Item) -> bool,
    ) -> Result<(), StoreError> {
        if !matches!(self.layout, Layout::Legacy { .. }) {
            return Ok(());
        }
        let counter = self
            .client
            .get_item()
            .table_name(&self.config.chats_table)
            .set_key(Some(chats_key(chat)))
            .projection_expression("#recent")
            .expression_attribute_names("#recent", RECENT)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| translate("GetItem", e))?;
        let Some(AttributeValue::L(recent)) = counter.item.as_ref().and_then(|i| i.get(RECENT))
        else {
            return Ok(());
        };
        let mut missing: Vec<&str> = Vec::new();
        // The newest entries only: the list may be longer than trimming keeps it when appends
        // race (and a BatchGetItem takes at most 100 keys).
        let newest = recent.get(recent.len().saturating_sub(2 * RECENT_IDS)..);
        for entry in newest.unwrap_or_default() {
            if let AttributeValue::S(id) = entry {
                let shown = messages.iter().any(|m| m.id.to_string() == *id);
                if !shown && start_id != Some(id.as_str()) && !missing.contains(&id.as_str()) {
                    missing.push(id);
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let keys = missing
            .iter()
            .map(|id| HashMap::from([(MESSAGE_ID.to_owned(), AttributeValue::S((*id).to_owned()))]))
            .collect();
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(|e| unavailable(format!("BatchGetItem request: {e}")))?;
        let output = self
            .client
            .batch_get_item()
            .request_items(&self.config.messages_table, request)
            .send()
            .await
            .map_err(|e| translate("BatchGetItem", e))?;
        let found = output
            .responses
            .and_then(|mut r| r.remove(&self.config.messages_table))
            .unwrap_or_default();
        let canonical = chat.canonical();
        let found: Vec<Item> = found
            .into_iter()
            .filter(|raw| {
                matches!(raw.get(CHAT_ID), Some(AttributeValue::S(c)) if *c == canonical)
                    && keep(raw)
            })
            .collect();
        messages.extend(Self::read_items(chat, &found));
        Ok(())
    }

    /// Puts a `Messages` item on the condition that its `key` attribute does not exist yet:
    /// `Ok(true)` when written, `Ok(false)` when an item with that key is already there.
    async fn put_new(&self, item: Item, key: &str) -> Result<bool, StoreError> {
        Ok(matches!(self.claim(item, key).await?, Claim::Written))
    }

    /// Puts a page read from the legacy index in order: by time, and within a millisecond by
    /// number (unnumbered first), then id. (The native design's Query order is already right.)
    fn order_legacy(&self, messages: &mut [Message]) {
        if matches!(self.layout, Layout::Legacy { .. }) {
            messages.sort_by_key(|m| (m.timestamp, m.seq, m.id));
        }
    }
}

/// One operation counted in `jiva_dynamo_operations_waiting` while it lives (a caller that
/// gives up waiting drops it too).
struct Waiting(metrics::Gauge);

impl Waiting {
    fn new() -> Self {
        let gauge = metrics::gauge!("jiva_dynamo_operations_waiting");
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[async_trait]
impl MessageStore for DynamoStore {
    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    async fn register_chat(&self, chat: &ChatId) -> Result<(), StoreError> {
        let _turn = self.turn().await?;
        let result = self
            .client
            .put_item()
            .table_name(&self.config.chats_table)
            .set_item(Some(item::chat_item(chat)))
            .condition_expression("attribute_not_exists(#agent)")
            .expression_attribute_names("#agent", AGENT_ID)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(translate("PutItem", err)),
        }
    }

    async fn append(&self, message: &Message) -> Result<Appended, StoreError> {
        let _turn = self.turn().await?;
        match self.layout {
            Layout::Native => self.append_native(message).await,
            Layout::Legacy { .. } => self.append_legacy(message).await,
        }
    }

    async fn history(
        &self,
        chat: &ChatId,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        if limit == 0 {
            return Err(StoreError::InvalidInput(
                "a history page must ask for at least one message".to_owned(),
            ));
        }
        let limit = limit.min(MAX_PAGE);
        let _turn = self.turn().await?;
        if let Some(indexes) = self.layout.seq_indexes() {
            return self.history_by_seq(chat, cursor, limit, &indexes).await;
        }
        let canonical = chat.canonical();
        let key_names = self.layout.cursor_key();
        let start = cursor
            .map(|c| cursor::decode(&c, key_names, &canonical))
            .transpose()
            .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
        // One item more than asked tells whether another page exists, so the last page never
        // hands out a cursor to an empty page.
        let output = self
            .query(&canonical, true, limit + 1, start.clone())
            .await?;
        let mut items = output.items.unwrap_or_default();
        let next = if items.len() > limit {
            items.truncate(limit);
            let last = items.last().ok_or_else(|| {
                StoreError::Corrupt("a full history page has no last item".to_owned())
            })?;
            Some(cursor::encode(last, key_names).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "Messages item {} lacks a key attribute",
                    item::item_message_id(last)
                ))
            })?)
        } else {
            // Fewer items than asked: either the end, or DynamoDB's 1 MB page limit.
            match output.last_evaluated_key {
                Some(key) => Some(cursor::encode(&key, key_names).ok_or_else(|| {
                    StoreError::Unavailable(Box::new(Problem(
                        "DynamoDB returned an unexpected LastEvaluatedKey".to_owned(),
                    )))
                })?),
                None => None,
            }
        };
        let mut messages = Self::read_items(chat, &items);
        if next.is_none() {
            // The last page may be missing what the index has not caught up with yet.
            self.cover_index_lag(chat, &mut messages, start.as_ref())
                .await?;
        }
        self.order_legacy(&mut messages);
        Ok(HistoryPage { messages, next })
    }

    fn seeks_by_number(&self) -> bool {
        // The legacy layouts walk (`seek_after`).
        matches!(self.layout, Layout::Native)
    }

    async fn after(
        &self,
        chat: &ChatId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let _turn = self.turn().await?;
        self.seek_after(chat, after, limit).await
    }

    async fn before(
        &self,
        chat: &ChatId,
        before: Seq,
        limit: usize,
    ) -> Result<jiva_core::OlderPage, StoreError> {
        let _turn = self.turn().await?;
        self.seek_before(chat, before, limit).await
    }

    async fn recent(&self, chat: &ChatId, limit: usize) -> Result<Vec<Message>, StoreError> {
        let _turn = self.turn().await?;
        if let Some(indexes) = self.layout.seq_indexes() {
            return self.recent_by_seq(chat, limit, &indexes).await;
        }
        let canonical = chat.canonical();
        let mut messages = Vec::new();
        let mut start = None;
        while messages.len() < limit {
            // Newest first; only another round when an item was unreadable or 1 MB was reached.
            let output = self
                .query(&canonical, false, limit - messages.len(), start)
                .await?;
            messages.extend(Self::read_items(chat, &output.items.unwrap_or_default()));
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        messages.truncate(limit);
        messages.reverse();
        self.cover_index_lag(chat, &mut messages, None).await?;
        self.order_legacy(&mut messages);
        let extra = messages.len().saturating_sub(limit);
        messages.drain(..extra);
        Ok(messages)
    }

    async fn check(&self) -> Result<(), StoreError> {
        let table = self
            .client
            .describe_table()
            .table_name(&self.config.messages_table)
            .send()
            .await
            .map_err(|e| translate("DescribeTable", e))?
            .table
            .ok_or_else(|| unavailable("DescribeTable returned no table"))?;
        if let Layout::Legacy { index, seq_index } = &self.layout {
            for index in std::iter::once(index).chain(seq_index) {
                let found = table
                    .global_secondary_indexes()
                    .iter()
                    .any(|gsi| gsi.index_name() == Some(index.as_str()));
                if !found {
                    return Err(unavailable(format!(
                        "table {} has no index {index} (see docs/dynamodb.md)",
                        self.config.messages_table
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The key of `chat`'s `Chats` item.
fn chats_key(chat: &ChatId) -> Item {
    HashMap::from([
        (
            AGENT_ID.to_owned(),
            AttributeValue::S(chat.agent().as_str().to_owned()),
        ),
        (
            SECONDARY_ID.to_owned(),
            AttributeValue::S(chat.kind().as_str().to_owned()),
        ),
    ])
}

pub(crate) fn unavailable(reason: impl Into<String>) -> StoreError {
    StoreError::Unavailable(Box::new(Problem(reason.into())))
}
