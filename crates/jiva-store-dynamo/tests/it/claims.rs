//! Idempotency claims (native layout): a message whose id a client named (protocol v1's
//! `client_id`) is stored once, whichever server receives a resend and however many messages
//! came after it; the claim never shows in a read of the chat.

use std::collections::HashMap;

use jiva_core::{Appended, ConnectionType, Message, MessageId, MessageStore, Sender, Seq};
use jiva_store_dynamo::{DynamoStore, RECENT_WINDOW};

use crate::support::{chat, dynamo, get_raw, n, s, store, text};

/// A text message with the id the server derives from a client's `client_id`.
fn client_named(chat: &jiva_core::ChatId, client_id: &str, words: &str) -> Message {
    Message {
        id: MessageId::for_client(chat, "agent", client_id),
        ..text(chat, Sender::Agent, 1_700_000_000_000, words)
    }
}

/// The (number, id) of every message a read returned.
fn numbers(messages: &[Message]) -> Vec<(u64, MessageId)> {
    messages
        .iter()
        .map(|m| (m.seq.expect("numbered").get(), m.id))
        .collect()
}

#[tokio::test]
async fn a_resend_on_another_server_after_more_than_the_window_is_stored_once_with_its_number() {
    let first = store().await;
    let chat = chat(ConnectionType::Supervisor);
    let original = client_named(&chat, "c-1", "once");
    assert_eq!(
        first.append(&original).await.unwrap(),
        Appended::Stored(Seq::new(1))
    );
    let newer = RECENT_WINDOW as u64 + 6;
    for i in 0..newer {
        let m = text(&chat, Sender::Agent, 1_700_000_000_001, &format!("m{i}"));
        first.append(&m).await.unwrap();
    }

    // Another server (same tables, nothing in memory) gets the resend, 70 messages later: far
    // past the chat's newest 64 that its first append reads.
    let other = DynamoStore::from_client(first.client().clone(), first.config().clone());
    assert_eq!(
        other.append(&original).await.unwrap(),
        Appended::AlreadyStored(Seq::new(1))
    );
    // The number the resend took is given back: the next message follows without a gap.
    let next = text(&chat, Sender::Agent, 1_700_000_000_002, "next");
    assert_eq!(
        other.append(&next).await.unwrap(),
        Appended::Stored(Seq::new(newer + 2))
    );
    // And a third server, asked again: the same number.
    let third = DynamoStore::from_client(first.client().clone(), first.config().clone());
    assert_eq!(
        third.append(&original).await.unwrap(),
        Appended::AlreadyStored(Seq::new(1))
    );

    let all = newer as usize + 2;
    let history = first.history(&chat, None, 1000).await.unwrap();
    assert!(history.next.is_none());
    let read = numbers(&history.messages);
    assert_eq!(read.len(), all, "one stored item per message");
    assert_eq!(read.iter().filter(|(_, id)| *id == original.id).count(), 1);
    assert_eq!(read[0], (1, original.id));
    assert_eq!(
        read.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        (1..=all as u64).collect::<Vec<_>>()
    );
    // No read of the chat meets the claim: the newest page, resume and paging see the same.
    assert_eq!(numbers(&first.recent(&chat, 1000).await.unwrap()), read);
    assert_eq!(
        numbers(&first.after(&chat, Seq::new(0), 1000).await.unwrap()),
        read
    );
    let older = first.before(&chat, Seq::new(10_000), 1000).await.unwrap();
    assert!(!older.has_older);
    assert_eq!(numbers(&older.messages), read);
}

#[tokio::test]
async fn the_claim_is_an_item_of_its_own_partition_holding_the_number() {
    let store = store().await;
    let chat = chat(ConnectionType::Copilot);
    let m = client_named(&chat, "c-9", "hello");
    store.append(&m).await.unwrap();
    let key = HashMap::from([
        (
            "ChatID".to_owned(),
            s(&format!("claim#{}", chat.canonical())),
        ),
        ("SortKey".to_owned(), s(&m.id.to_string())),
    ]);
    let claim = get_raw(store.client(), &store.config().messages_table, key.clone())
        .await
        .expect("the claim is stored");
    let mut expected = key;
    expected.insert("Seq".to_owned(), n(1));
    assert_eq!(claim, expected);
}

#[tokio::test]
async fn only_client_named_messages_pay_for_a_transaction() {
    let config = dynamo().store().await.unwrap().config().clone();
    let (client, log) = dynamo().client_with_log(&config);
    let store = DynamoStore::from_client(client, config);
    let chat = chat(ConnectionType::Supervisor);
    store
        .append(&text(
            &chat,
            Sender::Agent,
            1_700_000_000_000,
            "server-made id",
        ))
        .await
        .unwrap();
    assert_eq!(log.of("TransactWriteItems").len(), 0);
    assert_eq!(log.of("PutItem").len(), 1);
    log.clear();
    store
        .append(&client_named(&chat, "c-1", "client-named id"))
        .await
        .unwrap();
    assert_eq!(log.of("TransactWriteItems").len(), 1);
    assert_eq!(log.of("PutItem").len(), 0);
    assert_eq!(log.requests().len(), 1, "{:?}", log.requests());
}
