//! Items written by the earlier server (random v4 ids, its attributes) and the legacy-index
//! layout for `Messages` tables keyed by `MessageID` alone.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use jiva_core::{
    Body, ChatId, ConnectionType, Cursor, Message, MessageId, MessageStore, Sender, StoreError,
    Timestamp,
};
use jiva_store_dynamo::DynamoStore;

use crate::support::{
    Item, LEGACY_INDEX, batch_write, chat, dynamo, legacy_config, n, raw_text, s, text,
    with_sort_key,
};

/// Items shaped like the earlier server's: v4 ids (not time-ordered), `copilot` in lower case on
/// some answers, an extra attribute, written out of time order. Returns them with the
/// messages they must read back as, oldest first.
fn earlier_server_items(chat: &ChatId) -> (Vec<Item>, Vec<Message>) {
    let canonical = chat.canonical();
    let mut items = Vec::new();
    let mut expected = Vec::new();
    let times = [
        1_600_000_000_900i64,
        1_600_000_000_100,
        1_600_000_000_500,
        1_600_000_000_500,
        1_600_000_000_300,
        1_600_000_001_000,
        1_600_000_000_200,
    ];
    for (i, millis) in times.into_iter().enumerate() {
        let id = uuid::Uuid::new_v4();
        let (item, sender, body) = if i % 3 == 1 {
            let sender = if i == 1 { "copilot" } else { "Copilot" };
            let item = HashMap::from([
                ("MessageID".to_owned(), s(&id.to_string())),
                ("ChatID".to_owned(), s(&canonical)),
                ("Sender".to_owned(), s(sender)),
                ("Timestamp".to_owned(), n(millis)),
                ("Action".to_owned(), s("Combined")),
                ("Output".to_owned(), s(&format!("old answer {i}"))),
            ]);
            (
                item,
                Sender::Copilot,
                Body::CopilotAnswer(format!("old answer {i}")),
            )
        } else {
            let sender = if i % 2 == 0 { "agent" } else { "supervisor" };
            let mut item = raw_text(
                &canonical,
                &id.to_string(),
                millis,
                sender,
                &format!("old {i}"),
            );
            item.insert("Extra".to_owned(), s("ignored by readers"));
            (
                item,
                Sender::parse(sender).unwrap(),
                Body::Text(format!("old {i}")),
            )
        };
        items.push(item);
        expected.push(Message {
            id: MessageId::from_uuid(id),
            chat: chat.clone(),
            sender,
            timestamp: Timestamp::from_millis(millis),
            body,
            seq: None,
        });
    }
    expected.sort_by_key(|m| (m.timestamp, m.id));
    (items, expected)
}

async fn read_all(store: &DynamoStore, chat: &ChatId, size: usize) -> Vec<Message> {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for _ in 0..100 {
        let page = store.history(chat, cursor.take(), size).await.unwrap();
        out.extend(page.messages);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
    panic!("pagination does not end");
}

#[tokio::test]
async fn earlier_server_items_read_back_in_time_order_through_the_legacy_index() {
    let store = dynamo().store_with(legacy_config()).await.unwrap();
    store.check().await.unwrap();
    let chat = chat(ConnectionType::Copilot);
    let neighbour = ChatId::new(chat.agent().clone(), ConnectionType::Supervisor);
    let (mut items, expected) = earlier_server_items(&chat);
    let (neighbour_items, _) = earlier_server_items(&neighbour);
    items.extend(neighbour_items);
    batch_write(store.client(), &store.config().messages_table, items).await;

    // Distinct timestamps are strictly ordered; the two of the same millisecond are adjacent.
    let got = read_all(&store, &chat, 2).await;
    assert_same_up_to_ties(&got, &expected);
    let got = read_all(&store, &chat, 100).await;
    assert_eq!(got, expected, "within one page ties are ordered by id");

    let recent = store.recent(&chat, 3).await.unwrap();
    assert_eq!(recent, expected[4..].to_vec());

    // New messages go in next to the old ones, numbered from 1.
    let new = text(&chat, Sender::Agent, 1_700_000_000_000, "new");
    assert_eq!(
        store.append(&new).await.unwrap(),
        jiva_core::Appended::Stored(jiva_core::Seq::new(1))
    );
    let got = read_all(&store, &chat, 3).await;
    assert_eq!(got.len(), expected.len() + 1);
    assert_eq!(got.last(), Some(&crate::support::numbered(&new, 1)));
}

/// Equal as multisets, and in (timestamp) order; items of the same millisecond may come in
/// either order across a page boundary (a GSI does not order equal keys).
fn assert_same_up_to_ties(got: &[Message], expected: &[Message]) {
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    let times: Vec<_> = got.iter().map(|m| m.timestamp).collect();
    let expected_times: Vec<_> = expected.iter().map(|m| m.timestamp).collect();
    assert_eq!(times, expected_times);
    for m in expected {
        assert!(got.contains(m), "missing {m:?}");
    }
}

#[tokio::test]
async fn earlier_server_items_with_a_sort_key_read_back_in_time_order_in_the_native_layout() {
    let store = crate::support::store().await;
    let chat = chat(ConnectionType::Supervisor);
    let (items, expected) = earlier_server_items(&chat);
    let items = items.into_iter().map(with_sort_key).collect();
    batch_write(store.client(), &store.config().messages_table, items).await;
    assert_eq!(read_all(&store, &chat, 2).await, expected);
    assert_eq!(
        store.recent(&chat, 2).await.unwrap(),
        expected[5..].to_vec()
    );
}

#[tokio::test]
async fn an_unreadable_item_is_skipped_and_the_rest_of_the_chat_still_reads() {
    let store = crate::support::store().await;
    let chat = chat(ConnectionType::Supervisor);
    let good = text(&chat, Sender::Agent, 1_700_000_000_002, "good");
    store.append(&good).await.unwrap();
    let mut broken = raw_text(
        &chat.canonical(),
        "not-a-uuid",
        1_700_000_000_001,
        "agent",
        "x",
    );
    broken = with_sort_key(broken);
    let mut no_text = raw_text(
        &chat.canonical(),
        &uuid::Uuid::new_v4().to_string(),
        1_700_000_000_003,
        "HUMAN",
        "x",
    );
    no_text.remove("Message");
    batch_write(
        store.client(),
        &store.config().messages_table,
        vec![broken, with_sort_key(no_text)],
    )
    .await;
    let good = crate::support::numbered(&good, 1);
    assert_eq!(read_all(&store, &chat, 1).await, vec![good.clone()]);
    assert_eq!(store.recent(&chat, 1).await.unwrap(), vec![good]);
}

async fn create_legacy_table_without_index(store: &DynamoStore) {
    store
        .client()
        .create_table()
        .table_name(&store.config().messages_table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("MessageID")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("MessageID")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn an_existing_legacy_table_is_never_altered_and_works_once_the_index_is_added() {
    let dynamo = dynamo();
    let config = legacy_config();
    let store = DynamoStore::from_client(dynamo.client(&config), config.clone());
    create_legacy_table_without_index(&store).await;
    let chat = chat(ConnectionType::Copilot);
    let (items, expected) = earlier_server_items(&chat);
    batch_write(store.client(), &config.messages_table, items).await;

    // create_tables reports the missing index instead of adding it.
    let err = store.create_tables().await.unwrap_err();
    match &err {
        StoreError::InvalidInput(why) => assert!(why.contains("update-table"), "{why}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert!(
        store.check().await.is_err(),
        "check reports the missing index"
    );

    // A native-layout store refuses the legacy table rather than using it wrongly.
    let native = DynamoStore::from_client(
        dynamo.client(&config),
        jiva_store_dynamo::Config {
            legacy_index: None,
            ..config.clone()
        },
    );
    match native.create_tables().await {
        Err(StoreError::InvalidInput(why)) => assert!(why.contains("legacy"), "{why}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }

    // What `aws dynamodb update-table` in docs/dynamodb.md does.
    crate::support::add_chat_index(
        store.client(),
        &config.messages_table,
        LEGACY_INDEX,
        "Timestamp",
        aws_sdk_dynamodb::types::ScalarAttributeType::N,
    )
    .await;

    let setup = store.create_tables().await.unwrap();
    // Chats was created by the first, failed call.
    assert!(setup.created.is_empty(), "{setup:?}");
    assert_eq!(
        setup.existing,
        vec![config.chats_table.clone(), config.messages_table.clone()]
    );
    store.check().await.unwrap();
    assert_same_up_to_ties(&read_all(&store, &chat, 3).await, &expected);
}

/// A legacy-layout store on fresh tables whose index answers can be made to lag.
async fn lagging_legacy_store() -> (DynamoStore, jiva_store_dynamo::testing::IndexLag) {
    let config = legacy_config();
    dynamo().store_with(config.clone()).await.unwrap();
    let (client, lag) = dynamo().client_with_lag(&config);
    (DynamoStore::from_client(client, config), lag)
}

#[tokio::test]
async fn messages_the_legacy_index_has_not_caught_up_with_are_still_read_back() {
    let (store, lag) = lagging_legacy_store().await;
    let chat = chat(ConnectionType::Supervisor);
    let mut stored = Vec::new();
    for i in 0..5 {
        let m = text(
            &chat,
            Sender::Agent,
            1_700_000_000_000 + i,
            &format!("m{i}"),
        );
        let seq = store.append(&m).await.unwrap().seq();
        stored.push(Message {
            seq: Some(seq),
            ..m
        });
    }
    // The two newest messages are stored but not in the index yet.
    for m in &stored[3..] {
        lag.hide(m.id);
    }
    assert_eq!(read_all(&store, &chat, 100).await, stored, "one page");
    assert_eq!(read_all(&store, &chat, 2).await, stored, "pages of two");
    assert_eq!(store.recent(&chat, 3).await.unwrap(), stored[2..].to_vec());
    assert_eq!(store.recent(&chat, 10).await.unwrap(), stored);
}

#[tokio::test]
async fn the_legacy_list_of_newest_ids_stays_bounded_and_still_covers_the_index_lag() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use jiva_store_dynamo::RECENT_IDS;

    let (store, lag) = lagging_legacy_store().await;
    let chat = chat(ConnectionType::Copilot);
    let mut stored = Vec::new();
    for i in 0..2 * RECENT_IDS + 3 {
        let millis = 1_700_000_000_000 + i64::try_from(i).unwrap();
        let m = text(&chat, Sender::Agent, millis, &format!("m{i}"));
        let seq = store.append(&m).await.unwrap().seq();
        stored.push(Message {
            seq: Some(seq),
            ..m
        });
    }
    let counter = store
        .client()
        .get_item()
        .table_name(&store.config().chats_table)
        .key("AgentID", s(chat.agent().as_str()))
        .key("SecondaryID", s(chat.kind().as_str()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let Some(AttributeValue::L(recent)) = counter.item.unwrap().get("Recent").cloned() else {
        panic!("no Recent list on the Chats item");
    };
    assert!(recent.len() < 2 * RECENT_IDS, "{} entries", recent.len());
    let newest = stored.last().unwrap();
    assert_eq!(recent.last(), Some(&s(&newest.id.to_string())));

    for m in &stored[stored.len() - 2..] {
        lag.hide(m.id);
    }
    let tail = stored[stored.len() - 3..].to_vec();
    assert_eq!(store.recent(&chat, 3).await.unwrap(), tail);
    assert_eq!(read_all(&store, &chat, 10).await, stored);
}
