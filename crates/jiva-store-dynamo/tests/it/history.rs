//! History pages and `recent`: order, cursors, and reading one chat only.

use jiva_core::{ConnectionType, Cursor, Message, MessageStore, Sender};
use jiva_store_dynamo::DynamoStore;

use crate::support::{
    answer, batch_write, chat, dynamo, numbered, raw_text, store, text, with_sort_key,
};

/// Reads the whole history with pages of `size`, returning the messages and the page count.
async fn all_pages(
    store: &DynamoStore,
    chat: &jiva_core::ChatId,
    size: usize,
) -> (Vec<Message>, usize) {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let page = store.history(chat, cursor.take(), size).await.unwrap();
        pages += 1;
        assert!(page.messages.len() <= size);
        out.extend(page.messages);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return (out, pages),
        }
        assert!(pages < 1000, "pagination does not end");
    }
}

#[tokio::test]
async fn pages_are_in_storage_order_across_cursors_whatever_the_timestamps() {
    let store = store().await;
    let chat = chat(ConnectionType::Supervisor);
    let other = chat_of_same_agent(&chat);
    let mut expected = Vec::new();
    // 23 messages over 8 distinct milliseconds (up to 4 in the same one), appended out of order.
    for i in 0..23i64 {
        let millis = 1_718_000_000_000 + (i % 8) * 7;
        let m = if i % 5 == 0 {
            answer(&chat, millis, &format!("answer {i}"))
        } else {
            text(&chat, Sender::Agent, millis, &format!("text {i}"))
        };
        expected.push(m);
    }
    // Appended newest first: the order of storage is the chat's order.
    expected.reverse();
    for (n, m) in expected.iter_mut().enumerate() {
        assert_eq!(store.append(m).await.unwrap().seq().get(), n as u64 + 1);
        *m = numbered(m, n as u64 + 1);
    }
    store
        .append(&text(
            &other,
            Sender::Agent,
            1_718_000_000_001,
            "other chat",
        ))
        .await
        .unwrap();

    let (got, pages) = all_pages(&store, &chat, 5).await;
    assert_eq!(got, expected);
    assert_eq!(
        pages, 5,
        "23 messages in pages of 5, no trailing empty page"
    );

    let (got, pages) = all_pages(&store, &chat, 23).await;
    assert_eq!(got, expected);
    assert_eq!(pages, 1);

    let (got, _) = all_pages(&store, &chat, 1).await;
    assert_eq!(got, expected);

    let recent = store.recent(&chat, 7).await.unwrap();
    assert_eq!(recent, expected[16..].to_vec());
    assert_eq!(store.recent(&chat, 100).await.unwrap(), expected);
    assert!(store.recent(&chat, 0).await.unwrap().is_empty());
}

fn chat_of_same_agent(chat: &jiva_core::ChatId) -> jiva_core::ChatId {
    jiva_core::ChatId::new(chat.agent().clone(), ConnectionType::Copilot)
}

#[tokio::test]
async fn an_empty_chat_has_an_empty_history() {
    let store = store().await;
    let chat = chat(ConnectionType::Copilot);
    let page = store.history(&chat, None, 50).await.unwrap();
    assert!(page.messages.is_empty());
    assert_eq!(page.next, None);
    assert!(store.recent(&chat, 50).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_history_page_does_not_read_other_chats() {
    let dynamo = dynamo();
    let config = dynamo.config();
    let (client, log) = dynamo.client_with_log(&config);
    let store = DynamoStore::from_client(client, config.clone());
    store.create_tables().await.unwrap();

    // 20 chats x 500 messages, interleaved in time.
    let chats: Vec<_> = (0..20).map(|_| chat(ConnectionType::Supervisor)).collect();
    let mut items = Vec::with_capacity(10_000);
    for i in 0..500i64 {
        for c in &chats {
            let id = uuid::Uuid::now_v7().to_string();
            items.push(with_sort_key(raw_text(
                &c.canonical(),
                &id,
                1_700_000_000_000 + i,
                "agent",
                "load",
            )));
        }
    }
    batch_write(store.client(), &config.messages_table, items).await;

    let target = &chats[7];
    log.clear();
    let page = store.history(target, None, 50).await.unwrap();
    assert_eq!(page.messages.len(), 50);
    assert!(page.messages.iter().all(|m| &m.chat == target));
    let times: Vec<i64> = page
        .messages
        .iter()
        .map(|m| m.timestamp.as_millis())
        .collect();
    assert_eq!(
        times,
        (0..50).map(|i| 1_700_000_000_000 + i).collect::<Vec<_>>()
    );

    let requests = log.requests();
    assert_eq!(requests.len(), 1, "one request for one page: {requests:?}");
    let query = &requests[0];
    assert_eq!(query.operation, "Query");
    assert_eq!(query.table.as_deref(), Some(config.messages_table.as_str()));
    assert_eq!(query.index, None);
    assert_eq!(query.limit, Some(51));
    assert_eq!(query.returned, Some(51));
    assert!(
        query.scanned.is_some_and(|s| s <= 51),
        "DynamoDB read only this chat's next items: {query:?}"
    );

    // The next page is one more Query starting at the cursor.
    log.clear();
    let second = store.history(target, page.next, 50).await.unwrap();
    assert_eq!(second.messages.len(), 50);
    assert_eq!(second.messages[0].timestamp.as_millis(), 1_700_000_000_050);
    assert_eq!(log.of("Query").len(), 1);
    assert_eq!(log.requests().len(), 1);

    // recent: one Query, newest first, Limit n.
    log.clear();
    let recent = store.recent(target, 20).await.unwrap();
    assert_eq!(recent.len(), 20);
    assert_eq!(recent[0].timestamp.as_millis(), 1_700_000_000_480);
    assert_eq!(recent[19].timestamp.as_millis(), 1_700_000_000_499);
    let requests = log.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].limit, Some(20));
    assert!(requests[0].scanned.is_some_and(|s| s <= 20), "{requests:?}");
    assert!(log.of("Scan").is_empty());
}
