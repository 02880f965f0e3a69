//! [`DynamoStore`]: the [`MessageStore`] port over two DynamoDB tables.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use jiva_core::{Appended, ChatId, Cursor, HistoryPage, Message, MessageStore, StoreError};

use crate::config::Config;
use crate::cursor;
use crate::error::{Problem, translate};
use crate::item::{self, AGENT_ID, CHAT_ID, Item, ItemError, MESSAGE_ID, SORT_KEY, TIMESTAMP};

/// The most messages one history page returns, whatever the caller asks for.
pub const MAX_PAGE: usize = 1000;

/// Which key design the `Messages` table has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Key (`ChatID` S, `SortKey` S); history is a Query of the table itself.
    Native,
    /// Key `MessageID` S; history is a Query of the named GSI on (`ChatID` S, `Timestamp` N).
    Legacy {
        /// The index name.
        index: String,
    },
}

impl Layout {
    /// The attributes of a `LastEvaluatedKey` of a history Query (the cursor's content).
    pub(crate) fn cursor_key(&self) -> &'static [&'static str] {
        match self {
            Self::Native => &[CHAT_ID, SORT_KEY],
            Self::Legacy { .. } => &[MESSAGE_ID, CHAT_ID, TIMESTAMP],
        }
    }

    /// The hash key of the `Messages` table, which an append checks for absence.
    fn table_hash_key(&self) -> &'static str {
        match self {
            Self::Native => CHAT_ID,
            Self::Legacy { .. } => MESSAGE_ID,
        }
    }
}

/// A [`MessageStore`] backed by DynamoDB. Cheap to clone (the SDK client is shared).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    pub(crate) client: Client,
    pub(crate) config: Config,
    pub(crate) layout: Layout,
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

    /// Uses `client` as it is: only the table names and [`Config::legacy_index`] of `config` are
    /// read (the client keeps its own endpoint, region, retry and timeout settings; use
    /// [`Config::apply_to`] when building it to get ours).
    pub fn from_client(client: Client, config: Config) -> Self {
        let layout = match &config.legacy_index {
            Some(index) => Layout::Legacy {
                index: index.clone(),
            },
            None => Layout::Native,
        };
        Self {
            client,
            config,
            layout,
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
            Layout::Legacy { index } => request.index_name(index),
        };
        request.send().await.map_err(|e| translate("Query", e))
    }

    /// Reads items of `chat`, skipping (and logging) those that are not messages.
    fn read_items(chat: &ChatId, items: &[Item]) -> Vec<Message> {
        let mut messages: Vec<Message> = items
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
        // A no-op in the native layout; in the legacy layout it orders messages of the same
        // millisecond within the page by id.
        messages.sort_by_key(|m| (m.timestamp, m.id));
        messages
    }
}

#[async_trait]
impl MessageStore for DynamoStore {
    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    async fn register_chat(&self, chat: &ChatId) -> Result<(), StoreError> {
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
        let native = self.layout == Layout::Native;
        let item = item::message_item(message, native).map_err(|e| match e {
            ItemError::NegativeTimestamp => StoreError::InvalidInput(e.to_string()),
            other => StoreError::Corrupt(other.to_string()),
        })?;
        let result = self
            .client
            .put_item()
            .table_name(&self.config.messages_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", self.layout.table_hash_key())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Appended::Stored),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(Appended::AlreadyStored)
            }
            Err(err) => Err(translate("PutItem", err)),
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
        let canonical = chat.canonical();
        let key_names = self.layout.cursor_key();
        let start = cursor
            .map(|c| cursor::decode(&c, key_names, &canonical))
            .transpose()
            .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
        // One item more than asked tells whether another page exists, so the last page never
        // hands out a cursor to an empty page.
        let output = self.query(&canonical, true, limit + 1, start).await?;
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
        Ok(HistoryPage {
            messages: Self::read_items(chat, &items),
            next,
        })
    }

    async fn recent(&self, chat: &ChatId, limit: usize) -> Result<Vec<Message>, StoreError> {
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
        messages.sort_by_key(|m| (m.timestamp, m.id));
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
        if let Layout::Legacy { index } = &self.layout {
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
        Ok(())
    }
}

pub(crate) fn unavailable(reason: impl Into<String>) -> StoreError {
    StoreError::Unavailable(Box::new(Problem(reason.into())))
}
