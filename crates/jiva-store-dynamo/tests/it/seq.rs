//! Sequence numbers: unique and gapless per chat under concurrent appends, also from several
//! stores (servers) at once, and after the messages stored before numbers existed.

use std::collections::HashSet;
use std::sync::Arc;

use jiva_core::{ConnectionType, MessageStore, Sender, Seq};
use jiva_store_dynamo::DynamoStore;

use crate::support::{batch_write, chat, raw_text, store, text, with_sort_key};

/// `stores` append `each` messages apiece to one chat, all at once; returns (seq, id) sorted.
async fn append_concurrently(
    stores: Vec<DynamoStore>,
    chat: &jiva_core::ChatId,
    each: usize,
) -> Vec<(Seq, jiva_core::MessageId)> {
    let mut tasks = Vec::new();
    for (s, store) in stores.into_iter().enumerate() {
        let store = Arc::new(store);
        for w in 0..4 {
            let store = Arc::clone(&store);
            let chat = chat.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..each / 4 {
                    let m = text(
                        &chat,
                        Sender::Agent,
                        1_700_000_000_000,
                        &format!("{s}:{w}:{i}"),
                    );
                    got.push((store.append(&m).await.unwrap().seq(), m.id));
                }
                got
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_appending_to_one_chat_at_once_take_numbers_one_to_n() {
    let first = store().await;
    // A second server: same tables, its own memory of the chat's next number.
    let second = DynamoStore::from_client(first.client().clone(), first.config().clone());
    let chat = chat(ConnectionType::Supervisor);
    let all = append_concurrently(vec![first.clone(), second], &chat, 24).await;
    let seqs: Vec<u64> = all.iter().map(|(s, _)| s.get()).collect();
    assert_eq!(seqs, (1..=48).collect::<Vec<u64>>());
    let ids: HashSet<_> = all.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), 48);
    let history = first.history(&chat, None, 100).await.unwrap().messages;
    let read: Vec<_> = history.iter().map(|m| (m.seq.unwrap(), m.id)).collect();
    assert_eq!(read, all, "history is in number order");
}

#[tokio::test]
async fn messages_stored_before_numbers_come_first_in_time_order() {
    let store = store().await;
    let chat = chat(ConnectionType::Copilot);
    let canonical = chat.canonical();
    // Items written by the previous release: the time-based sort key, no Seq.
    let old: Vec<_> = [300i64, 100, 200]
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
    batch_write(store.client(), &store.config().messages_table, old).await;
    // A new message with an *older* timestamp still comes after them: it is numbered.
    let new = text(&chat, Sender::Agent, 1_500_000_000_000, "new");
    assert_eq!(store.append(&new).await.unwrap().seq(), Seq::new(1));
    let history = store.history(&chat, None, 2).await.unwrap();
    let rest = store.history(&chat, history.next, 10).await.unwrap();
    let all: Vec<_> = history.messages.into_iter().chain(rest.messages).collect();
    let times: Vec<i64> = all.iter().map(|m| m.timestamp.as_millis()).collect();
    assert_eq!(
        times,
        vec![
            1_600_000_000_100,
            1_600_000_000_200,
            1_600_000_000_300,
            1_500_000_000_000
        ]
    );
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![None, None, None, Some(Seq::new(1))]
    );
    let recent = store.recent(&chat, 2).await.unwrap();
    assert_eq!(
        recent.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![None, Some(Seq::new(1))]
    );
    assert_eq!(recent[0].timestamp.as_millis(), 1_600_000_000_300);
}
