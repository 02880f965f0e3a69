//! Appending and reading back: exact item attributes, idempotency, chat registration.

use std::collections::HashMap;

use jiva_core::{Appended, ConnectionType, MessageStore, Sender};

use crate::support::{answer, chat, dynamo, get_raw, legacy_config, n, s, store, text};

#[tokio::test]
async fn both_message_kinds_round_trip_with_the_protocol_attributes() {
    let store = store().await;
    let chat = chat(ConnectionType::Copilot);
    let asked = text(&chat, Sender::Agent, 1_718_000_000_123, "what is } up?");
    let answered = answer(&chat, 1_718_000_000_456, "Processing done\nanswer");
    assert_eq!(store.append(&asked).await.unwrap(), Appended::Stored);
    assert_eq!(store.append(&answered).await.unwrap(), Appended::Stored);

    let table = &store.config().messages_table;
    let key = |m: &jiva_core::Message| {
        HashMap::from([
            ("ChatID".to_owned(), s(&chat.canonical())),
            (
                "SortKey".to_owned(),
                s(&format!("{:020}#{}", m.timestamp.as_millis(), m.id)),
            ),
        ])
    };
    let raw = get_raw(store.client(), table, key(&asked)).await.unwrap();
    let expected = HashMap::from([
        ("MessageID".to_owned(), s(&asked.id.to_string())),
        ("ChatID".to_owned(), s(&format!("{}-copilot", chat.agent()))),
        ("Sender".to_owned(), s("agent")),
        ("Timestamp".to_owned(), n(1_718_000_000_123)),
        ("Message".to_owned(), s("what is } up?")),
        (
            "SortKey".to_owned(),
            s(&format!("00000001718000000123#{}", asked.id)),
        ),
    ]);
    assert_eq!(raw, expected);

    let raw = get_raw(store.client(), table, key(&answered))
        .await
        .unwrap();
    let expected = HashMap::from([
        ("MessageID".to_owned(), s(&answered.id.to_string())),
        ("ChatID".to_owned(), s(&chat.canonical())),
        ("Sender".to_owned(), s("Copilot")),
        ("Timestamp".to_owned(), n(1_718_000_000_456)),
        ("Action".to_owned(), s("Combined")),
        ("Output".to_owned(), s("Processing done\nanswer")),
        (
            "SortKey".to_owned(),
            s(&format!("00000001718000000456#{}", answered.id)),
        ),
    ]);
    assert_eq!(raw, expected);

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
    assert_eq!(store.append(&m).await.unwrap(), Appended::Stored);
    assert_eq!(store.append(&m).await.unwrap(), Appended::AlreadyStored);
    assert_eq!(store.append(&m).await.unwrap(), Appended::AlreadyStored);
    let page = store.history(&chat, None, 10).await.unwrap();
    assert_eq!(page.messages, vec![m]);
}

#[tokio::test]
async fn a_retried_append_never_duplicates_in_the_legacy_layout() {
    let store = dynamo().store_with(legacy_config()).await.unwrap();
    let chat = chat(ConnectionType::Copilot);
    let m = answer(&chat, 1_718_000_000_000, "answer");
    assert_eq!(store.append(&m).await.unwrap(), Appended::Stored);
    assert_eq!(store.append(&m).await.unwrap(), Appended::AlreadyStored);
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
    assert_eq!(
        store.history(&chat, None, 10).await.unwrap().messages,
        vec![m]
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
