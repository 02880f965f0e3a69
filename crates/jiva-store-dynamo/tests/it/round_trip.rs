//! Appending and reading back: exact item attributes, idempotency, chat registration.

use std::collections::HashMap;

use jiva_core::{Appended, ConnectionType, MessageStore, Sender, Seq};

use crate::support::{answer, chat, dynamo, get_raw, legacy_config, n, numbered, s, store, text};

#[tokio::test]
async fn both_message_kinds_round_trip_with_the_protocol_attributes() {
    let store = store().await;
    let chat = chat(ConnectionType::Copilot);
    let asked = text(&chat, Sender::Agent, 1_718_000_000_123, "what is } up?");
    let answered = answer(&chat, 1_718_000_000_456, "Processing done\nanswer");
    assert_eq!(
        store.append(&asked).await.unwrap(),
        Appended::Stored(Seq::new(1))
    );
    assert_eq!(
        store.append(&answered).await.unwrap(),
        Appended::Stored(Seq::new(2))
    );

    let table = &store.config().messages_table;
    let key = |n: u64| {
        HashMap::from([
            ("ChatID".to_owned(), s(&chat.canonical())),
            ("SortKey".to_owned(), s(&format!("seq#{n:020}"))),
        ])
    };
    let raw = get_raw(store.client(), table, key(1)).await.unwrap();
    let expected = HashMap::from([
        ("MessageID".to_owned(), s(&asked.id.to_string())),
        ("ChatID".to_owned(), s(&format!("{}-copilot", chat.agent()))),
        ("Sender".to_owned(), s("agent")),
        ("Timestamp".to_owned(), n(1_718_000_000_123)),
        ("Message".to_owned(), s("what is } up?")),
        ("Seq".to_owned(), n(1)),
        ("SortKey".to_owned(), s("seq#00000000000000000001")),
    ]);
    assert_eq!(raw, expected);

    let raw = get_raw(store.client(), table, key(2)).await.unwrap();
    let expected = HashMap::from([
        ("MessageID".to_owned(), s(&answered.id.to_string())),
        ("ChatID".to_owned(), s(&chat.canonical())),
        ("Sender".to_owned(), s("Copilot")),
        ("Timestamp".to_owned(), n(1_718_000_000_456)),
        ("Action".to_owned(), s("Combined")),
        ("Output".to_owned(), s("Processing done\nanswer")),
        ("Seq".to_owned(), n(2)),
        ("SortKey".to_owned(), s("seq#00000000000000000002")),
    ]);
    assert_eq!(raw, expected);

    let (asked, answered) = (numbered(&asked, 1), numbered(&answered, 2));
    let page = store.history(&chat, None, 10).await.unwrap();
    assert_eq!(page.messages, vec![asked.clone(), answered.clone()]);
    assert_eq!(page.next, None);
    assert_eq!(
        store.recent(&chat, 10).await.unwrap(),
        vec![asked, answered]
    );
}

#[tokio::test]
async fn a_retried_append_never_duplicates() {
    let store = store().await;
    let chat = chat(ConnectionType::Supervisor);
    let m = text(&chat, Sender::Supervisor, 1_718_000_000_000, "hello");
    let other = text(&chat, Sender::Agent, 1_718_000_000_001, "other");
    assert_eq!(
        store.append(&m).await.unwrap(),
        Appended::Stored(Seq::new(1))
    );
    assert_eq!(
        store.append(&other).await.unwrap(),
        Appended::Stored(Seq::new(2))
    );
    // Retries return the first number, from this store and from another one (another server,
    // or this one restarted: it has no memory of the chat).
    assert_eq!(
        store.append(&m).await.unwrap(),
        Appended::AlreadyStored(Seq::new(1))
    );
    let restarted =
        jiva_store_dynamo::DynamoStore::from_client(store.client().clone(), store.config().clone());
    assert_eq!(
        restarted.append(&m).await.unwrap(),
        Appended::AlreadyStored(Seq::new(1))
    );
    let page = store.history(&chat, None, 10).await.unwrap();
    assert_eq!(page.messages, vec![numbered(&m, 1), numbered(&other, 2)]);
}

#[tokio::test]
async fn a_retried_append_never_duplicates_in_the_legacy_layout() {
    let store = dynamo().store_with(legacy_config()).await.unwrap();
    let chat = chat(ConnectionType::Copilot);
    let m = answer(&chat, 1_718_000_000_000, "answer");
    assert_eq!(
        store.append(&m).await.unwrap(),
        Appended::Stored(Seq::new(1))
    );
    assert_eq!(
        store.append(&m).await.unwrap(),
        Appended::AlreadyStored(Seq::new(1))
    );
    // Legacy items are keyed by MessageID alone and carry no SortKey.
    let raw = get_raw(
        store.client(),
        &store.config().messages_table,
        HashMap::from([("MessageID".to_owned(), s(&m.id.to_string()))]),
    )
    .await
    .unwrap();
    assert!(!raw.contains_key("SortKey"));
    assert_eq!(raw.get("Action"), Some(&s("Combined")));
    assert_eq!(raw.get("Seq"), Some(&n(1)));
    assert_eq!(
        store.history(&chat, None, 10).await.unwrap().messages,
        vec![numbered(&m, 1)]
    );
}

#[tokio::test]
async fn registering_a_chat_twice_is_ok_and_keeps_the_whole_agent_id() {
    let store = store().await;
    let supervisor = chat(ConnectionType::Supervisor);
    let copilot = jiva_core::ChatId::new(supervisor.agent().clone(), ConnectionType::Copilot);
    store.register_chat(&supervisor).await.unwrap();
    store.register_chat(&supervisor).await.unwrap();
    store.register_chat(&copilot).await.unwrap();

    let items = store
        .client()
        .query()
        .table_name(&store.config().chats_table)
        .key_condition_expression("AgentID = :a")
        .expression_attribute_values(":a", s(supervisor.agent().as_str()))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let mut kinds: Vec<_> = items
        .iter()
        .map(|item| {
            assert_eq!(item.len(), 2, "{item:?}");
            assert_eq!(item.get("AgentID"), Some(&s(supervisor.agent().as_str())));
            item.get("SecondaryID").cloned().unwrap()
        })
        .collect();
    kinds.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(kinds, vec![s("copilot"), s("supervisor")]);
}

#[tokio::test]
async fn create_tables_is_idempotent_and_check_passes() {
    let dynamo = dynamo();
    let config = dynamo.config();
    let store = jiva_store_dynamo::DynamoStore::from_client(dynamo.client(&config), config.clone());
    assert!(store.check().await.is_err(), "no tables yet");
    let first = store.create_tables().await.unwrap();
    assert_eq!(
        first.created,
        vec![config.chats_table.clone(), config.messages_table.clone()]
    );
    let second = store.create_tables().await.unwrap();
    assert!(second.created.is_empty());
    assert_eq!(second.existing, first.created);
    store.check().await.unwrap();
    assert_eq!(store.kind(), "dynamodb");
}
