//! Shared helpers: the local server, chats, messages and raw items.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use jiva_core::{
    AgentId, Body, ChatId, ConnectionType, Message, MessageId, Sender, Seq, Timestamp,
};
use jiva_store_dynamo::testing::LocalDynamo;
use jiva_store_dynamo::{Config, DynamoStore};
use uuid::Uuid;

pub type Item = HashMap<String, AttributeValue>;

/// The legacy index name used by the tests.
pub const LEGACY_INDEX: &str = "ChatID-Timestamp-index";

/// The test server; a test fails here with moto's or the variable's problem spelled out.
pub fn dynamo() -> &'static LocalDynamo {
    match LocalDynamo::shared() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

/// A store on fresh tables (native layout).
pub async fn store() -> DynamoStore {
    dynamo().store().await.expect("create tables")
}

/// A fresh config with the legacy index set.
pub fn legacy_config() -> Config {
    Config {
        legacy_index: Some(LEGACY_INDEX.to_owned()),
        ..dynamo().config()
    }
}

/// The legacy sequence index name used by the tests.
pub const LEGACY_SEQ_INDEX: &str = "ChatID-Seq-index";

/// A fresh config with both legacy indexes set (replay in sequence order).
pub fn legacy_seq_config() -> Config {
    Config {
        legacy_seq_index: Some(LEGACY_SEQ_INDEX.to_owned()),
        ..legacy_config()
    }
}

/// A chat of a fresh agent whose id is a UUID (so it contains `-`).
pub fn chat(kind: ConnectionType) -> ChatId {
    ChatId::new(AgentId::parse(&Uuid::new_v4().to_string()).unwrap(), kind)
}

/// A user message with a given time and a fresh v7 id.
pub fn text(chat: &ChatId, sender: Sender, millis: i64, text: &str) -> Message {
    Message {
        id: MessageId::new_v7(),
        chat: chat.clone(),
        sender,
        timestamp: Timestamp::from_millis(millis),
        body: Body::Text(text.to_owned()),
        seq: None,
    }
}

/// A copilot answer with a given time and a fresh v7 id.
pub fn answer(chat: &ChatId, millis: i64, output: &str) -> Message {
    Message {
        id: MessageId::new_v7(),
        chat: chat.clone(),
        sender: Sender::Copilot,
        timestamp: Timestamp::from_millis(millis),
        body: Body::CopilotAnswer(output.to_owned()),
        seq: None,
    }
}

/// `m` as read back with number `n`.
pub fn numbered(m: &Message, n: u64) -> Message {
    Message {
        seq: Some(Seq::new(n)),
        ..m.clone()
    }
}

pub fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

pub fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A raw user-message item with the PROTOCOL.md §5 attributes, written independently of the
/// crate's own conversion.
pub fn raw_text(chat: &str, id: &str, millis: i64, sender: &str, text: &str) -> Item {
    HashMap::from([
        ("MessageID".to_owned(), s(id)),
        ("ChatID".to_owned(), s(chat)),
        ("Sender".to_owned(), s(sender)),
        ("Timestamp".to_owned(), n(millis)),
        ("Message".to_owned(), s(text)),
    ])
}

/// Adds the native layout's sort key to a raw item.
pub fn with_sort_key(mut item: Item) -> Item {
    let id = match item.get("MessageID") {
        Some(AttributeValue::S(id)) => id.clone(),
        _ => panic!("no MessageID"),
    };
    let millis: i64 = match item.get("Timestamp") {
        Some(AttributeValue::N(t)) => t.parse().unwrap(),
        _ => panic!("no Timestamp"),
    };
    item.insert("SortKey".to_owned(), s(&format!("{millis:020}#{id}")));
    item
}

/// Writes messages of `chat` as the release before sequence numbers did (the time-based sort
/// key, no `Seq`), at epoch milliseconds `1_600_000_000_000 + offset` for each offset.
pub async fn write_unnumbered(store: &DynamoStore, chat: &ChatId, offsets: &[i64]) {
    let canonical = chat.canonical();
    let items: Vec<_> = offsets
        .iter()
        .map(|t| {
            let id = uuid::Uuid::now_v7().to_string();
            with_sort_key(raw_text(
                &canonical,
                &id,
                1_600_000_000_000 + t,
                "agent",
                "old",
            ))
        })
        .collect();
    batch_write(store.client(), &store.config().messages_table, items).await;
}

/// Writes raw items with BatchWriteItem, 25 at a time, retrying unprocessed items.
pub async fn batch_write(client: &Client, table: &str, items: Vec<Item>) {
    let mut chunks: Vec<Vec<Item>> = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(25));
        chunks.push(rest);
        rest = tail;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in chunks {
        let client = client.clone();
        let table = table.to_owned();
        tasks.spawn(async move {
            let mut requests: Vec<WriteRequest> = chunk
                .into_iter()
                .map(|item| {
                    WriteRequest::builder()
                        .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                        .build()
                })
                .collect();
            for _ in 0..10 {
                let out = client
                    .batch_write_item()
                    .request_items(&table, requests)
                    .send()
                    .await
                    .expect("BatchWriteItem");
                requests = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&table))
                    .unwrap_or_default();
                if requests.is_empty() {
                    return;
                }
            }
            panic!("BatchWriteItem kept leaving items unprocessed");
        });
        // At most a few batches in flight.
        if tasks.len() >= 8 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// Reads one raw item by key.
pub async fn get_raw(client: &Client, table: &str, key: Item) -> Option<Item> {
    client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
}

/// Adds a global secondary index on (`ChatID` S, `range` of type `kind`), projecting all
/// attributes, to an existing table: what `aws dynamodb update-table` in docs/dynamodb.md does.
pub async fn add_chat_index(
    client: &Client,
    table: &str,
    index: &str,
    range: &str,
    kind: aws_sdk_dynamodb::types::ScalarAttributeType,
) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndexUpdate,
        KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType,
    };
    let definition = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .unwrap()
    };
    let key = |name: &str, role: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(role)
            .build()
            .unwrap()
    };
    client
        .update_table()
        .table_name(table)
        .attribute_definitions(definition("ChatID", ScalarAttributeType::S))
        .attribute_definitions(definition(range, kind))
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder()
                .create(
                    CreateGlobalSecondaryIndexAction::builder()
                        .index_name(index)
                        .key_schema(key("ChatID", KeyType::Hash))
                        .key_schema(key(range, KeyType::Range))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
}
