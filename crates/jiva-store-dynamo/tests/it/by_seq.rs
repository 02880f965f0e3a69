//! The legacy-index layout with its sequence index (`legacy_seq_index`): replay in the chat's
//! one order, the earlier server's unnumbered items first in time order, then the numbered
//! messages by number whatever their timestamps.

use jiva_core::{
    ChatId, ConnectionType, Cursor, Message, MessageId, MessageStore, Sender, StoreError, Timestamp,
};
use jiva_store_dynamo::DynamoStore;

use crate::support::{
    LEGACY_SEQ_INDEX, batch_write, chat, dynamo, legacy_seq_config, raw_text, text,
};

/// Every page of `chat`'s history, `size` at a time.
async fn read_all(store: &DynamoStore, chat: &ChatId, size: usize) -> Vec<Message> {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for _ in 0..200 {
        let page = store.history(chat, cursor.take(), size).await.unwrap();
        assert!(
            !page.messages.is_empty() || page.next.is_none(),
            "an empty page with a cursor"
        );
        out.extend(page.messages);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
    panic!("pagination does not end");
}

/// Appends messages whose timestamps run backwards (as concurrent appends may take numbers in
/// another order than their clocks); returns them as read back, in number order.
async fn append_backwards(
    store: &DynamoStore,
    chat: &ChatId,
    count: i64,
    newest: i64,
) -> Vec<Message> {
    let mut stored = Vec::new();
    for i in 0..count {
        let m = text(chat, Sender::Agent, newest - i, &format!("new {i}"));
        let seq = store.append(&m).await.unwrap().seq();
        stored.push(Message {
            seq: Some(seq),
            ..m
        });
    }
    stored
}

/// Items of the earlier server (no `Seq`, v4 ids), written out of time order; returned as
/// read back, in time order.
async fn earlier_items(store: &DynamoStore, chat: &ChatId, times: &[i64]) -> Vec<Message> {
    let mut items = Vec::new();
    let mut expected = Vec::new();
    for (i, millis) in times.iter().enumerate() {
        let id = uuid::Uuid::new_v4();
        items.push(raw_text(
            &chat.canonical(),
            &id.to_string(),
            *millis,
            "supervisor",
            &format!("old {i}"),
        ));
        expected.push(Message {
            id: MessageId::from_uuid(id),
            chat: chat.clone(),
            sender: Sender::Supervisor,
            timestamp: Timestamp::from_millis(*millis),
            body: jiva_core::Body::Text(format!("old {i}")),
            seq: None,
        });
    }
    batch_write(store.client(), &store.config().messages_table, items).await;
    expected.sort_by_key(|m| (m.timestamp, m.id));
    expected
}

#[tokio::test]
async fn numbered_messages_whose_timestamps_are_out_of_order_are_replayed_in_sequence_order() {
    let store = dynamo().store_with(legacy_seq_config()).await.unwrap();
    store.check().await.unwrap();
    let chat = chat(ConnectionType::Supervisor);
    let stored = append_backwards(&store, &chat, 7, 1_700_000_000_100).await;
    let numbers: Vec<u64> = stored.iter().map(|m| m.seq.unwrap().get()).collect();
    assert_eq!(numbers, (1..=7).collect::<Vec<_>>());
    for size in [1, 2, 3, 7, 100] {
        assert_eq!(
            read_all(&store, &chat, size).await,
            stored,
            "pages of {size}"
        );
    }
    assert_eq!(store.recent(&chat, 3).await.unwrap(), stored[4..].to_vec());
    assert_eq!(store.recent(&chat, 50).await.unwrap(), stored);

    // The control: without the sequence index the same table replays in timestamp order.
    let by_time = DynamoStore::from_client(
        dynamo().client(&legacy_seq_config()),
        jiva_store_dynamo::Config {
            legacy_seq_index: None,
            ..store.config().clone()
        },
    );
    let mut reversed = stored.clone();
    reversed.reverse();
    assert_eq!(read_all(&by_time, &chat, 100).await, reversed);
}

#[tokio::test]
async fn the_earlier_servers_items_come_first_in_time_order_and_pages_cross_the_phases() {
    let store = dynamo().store_with(legacy_seq_config()).await.unwrap();
    let chat = chat(ConnectionType::Copilot);
    let neighbour = ChatId::new(chat.agent().clone(), ConnectionType::Supervisor);
    let base = 1_700_000_000_000;
    // Numbered messages with timestamps from base + 1000 downwards; earlier items before them,
    // and one the earlier server wrote while both ran (younger than the first numbered one,
    // within the overlap): it still comes first, as it has no number.
    let numbered = append_backwards(&store, &chat, 5, base + 1_000).await;
    let mut expected = earlier_items(
        &store,
        &chat,
        &[base - 500, base - 900, base - 700, base + 2_000],
    )
    .await;
    earlier_items(&store, &neighbour, &[base - 800, base + 10]).await;
    append_backwards(&store, &neighbour, 2, base + 5).await;
    expected.extend(numbered.iter().cloned());
    for size in 1..=10 {
        assert_eq!(
            read_all(&store, &chat, size).await,
            expected,
            "pages of {size}"
        );
    }
    // `recent` across the phases: the newest earlier items, then every numbered message.
    assert_eq!(
        store.recent(&chat, 7).await.unwrap(),
        expected[2..].to_vec()
    );
    assert_eq!(store.recent(&chat, 100).await.unwrap(), expected);
    assert_eq!(
        store.recent(&chat, 2).await.unwrap(),
        expected[7..].to_vec()
    );

    // An item of the earlier server written long after the chat's numbering began is outside
    // the overlap window: not replayed in this mode (documented).
    let overlap = i64::try_from(jiva_store_dynamo::EARLIER_SERVER_OVERLAP.as_millis()).unwrap();
    earlier_items(&store, &chat, &[base + 1_000 + overlap]).await;
    assert_eq!(read_all(&store, &chat, 3).await, expected);
}

#[tokio::test]
async fn a_chat_of_only_earlier_items_and_an_empty_chat_read_back() {
    let store = dynamo().store_with(legacy_seq_config()).await.unwrap();
    let chat = chat(ConnectionType::Supervisor);
    assert!(read_all(&store, &chat, 5).await.is_empty());
    assert!(store.recent(&chat, 5).await.unwrap().is_empty());
    let expected = earlier_items(&store, &chat, &[30, 10, 20]).await;
    for size in [1, 2, 3, 4] {
        assert_eq!(
            read_all(&store, &chat, size).await,
            expected,
            "pages of {size}"
        );
    }
    assert_eq!(
        store.recent(&chat, 2).await.unwrap(),
        expected[1..].to_vec()
    );
}

#[tokio::test]
async fn numbered_messages_the_sequence_index_has_not_caught_up_with_are_merged_by_number() {
    let config = legacy_seq_config();
    dynamo().store_with(config.clone()).await.unwrap();
    let (client, lag) = dynamo().client_with_lag(&config);
    let store = DynamoStore::from_client(client, config);
    let chat = chat(ConnectionType::Supervisor);
    let mut expected = earlier_items(&store, &chat, &[1_600_000_000_000]).await;
    let numbered = append_backwards(&store, &chat, 6, 1_700_000_000_100).await;
    // The newest two are stored but in no index yet.
    for m in &numbered[4..] {
        lag.hide(m.id);
    }
    expected.extend(numbered);
    for size in [1, 2, 4, 100] {
        assert_eq!(
            read_all(&store, &chat, size).await,
            expected,
            "pages of {size}"
        );
    }
    assert_eq!(
        store.recent(&chat, 3).await.unwrap(),
        expected[4..].to_vec()
    );
    assert_eq!(store.recent(&chat, 10).await.unwrap(), expected);
}

#[tokio::test]
async fn forged_or_foreign_cursors_of_the_sequence_phase_are_refused() {
    let store = dynamo().store_with(legacy_seq_config()).await.unwrap();
    let chat = chat(ConnectionType::Supervisor);
    append_backwards(&store, &chat, 3, 1_700_000_000_000).await;
    let page = store.history(&chat, None, 1).await.unwrap();
    let cursor = page.next.unwrap();
    let other = ChatId::new(chat.agent().clone(), ConnectionType::Copilot);
    assert!(matches!(
        store.history(&other, Some(cursor), 1).await,
        Err(StoreError::InvalidInput(_))
    ));
    let hex = |json: &str| json.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let canonical = chat.canonical();
    for forged in [
        format!(r#"{{"ChatID":{{"S":"{canonical}"}},"MessageID":{{"S":"x"}},"Seq":{{"N":"-1"}}}}"#),
        format!(r#"{{"ChatID":{{"S":"{canonical}"}},"MessageID":{{"S":"x"}},"Seq":{{"S":"1"}}}}"#),
        format!(r#"{{"ChatID":{{"S":"{canonical}"}},"Seq":{{"N":"1"}}}}"#),
        r#"{"ChatID":{"N":"1"}}"#.to_owned(),
    ] {
        let result = store
            .history(&chat, Some(Cursor::from_token(hex(&forged))), 1)
            .await;
        assert!(
            matches!(result, Err(StoreError::InvalidInput(_))),
            "{forged}: {result:?}"
        );
    }
}

#[tokio::test]
async fn an_existing_legacy_table_without_the_sequence_index_is_reported_and_works_once_added() {
    // A legacy table made by a store without the sequence index.
    let config = legacy_seq_config();
    dynamo()
        .store_with(jiva_store_dynamo::Config {
            legacy_seq_index: None,
            ..config.clone()
        })
        .await
        .unwrap();
    let store = DynamoStore::from_client(dynamo().client(&config), config.clone());
    match store.create_tables().await {
        Err(StoreError::InvalidInput(why)) => {
            assert!(
                why.contains("update-table") && why.contains(LEGACY_SEQ_INDEX),
                "{why}"
            )
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert!(
        store.check().await.is_err(),
        "check reports the missing index"
    );

    // What `aws dynamodb update-table` in docs/dynamodb.md does.
    crate::support::add_chat_index(
        store.client(),
        &config.messages_table,
        LEGACY_SEQ_INDEX,
        "Seq",
        aws_sdk_dynamodb::types::ScalarAttributeType::N,
    )
    .await;
    store.create_tables().await.unwrap();
    store.check().await.unwrap();
    let chat = chat(ConnectionType::Copilot);
    let stored = append_backwards(&store, &chat, 3, 1_700_000_000_000).await;
    assert_eq!(read_all(&store, &chat, 2).await, stored);
}

#[tokio::test]
async fn a_time_phase_cursor_past_the_bound_that_appeared_since_goes_on_to_the_numbers() {
    let store = dynamo().store_with(legacy_seq_config()).await.unwrap();
    let chat = chat(ConnectionType::Supervisor);
    let hour = 3_600_000;
    let base = 1_700_000_000_000;
    let earlier = earlier_items(&store, &chat, &[base + hour, base + 2 * hour]).await;
    // No numbered message yet: the time phase is unbounded, and its cursor is an hour in.
    let first = store.history(&chat, None, 1).await.unwrap();
    assert_eq!(first.messages, earlier[..1].to_vec());
    // A numbered message whose clock is earlier: the bound is now before the cursor.
    let numbered = append_backwards(&store, &chat, 1, base).await;
    let second = store.history(&chat, first.next, 1).await.unwrap();
    assert_eq!(second.messages, numbered);
    assert!(second.next.is_none());
}

/// Concurrent appends to one chat race for its `Chats` item: before, the `Recent` list's trim
/// lost every race, the list grew past 100 ids, and every last page failed (a BatchGetItem
/// takes at most 100 keys: "history unavailable").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_keep_every_page_readable_and_the_list_of_newest_ids_bounded() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use jiva_store_dynamo::RECENT_IDS;
    const SENDERS: u64 = 20;
    const EACH: u64 = 25;
    let store = dynamo().store_with(legacy_seq_config()).await.unwrap();
    let chat = chat(ConnectionType::Supervisor);
    let mut senders = tokio::task::JoinSet::new();
    for s in 0..SENDERS {
        let (store, chat) = (store.clone(), chat.clone());
        senders.spawn(async move {
            for i in 0..EACH {
                let millis = 1_700_000_000_000 + i64::try_from(i).unwrap();
                let m = text(&chat, Sender::Agent, millis, &format!("{s}:{i}"));
                store.append(&m).await.unwrap();
            }
        });
    }
    let reader = {
        let (store, chat) = (store.clone(), chat.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            while reads < 10 {
                read_all(&store, &chat, 50).await;
                store.recent(&chat, 20).await.unwrap();
                reads += 1;
            }
        })
    };
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    reader.await.unwrap();
    let all = read_all(&store, &chat, 50).await;
    let total = usize::try_from(SENDERS * EACH).unwrap();
    assert_eq!(all.len(), total);
    let ids: std::collections::HashSet<_> = all.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), total, "every message once");
    // In number order. (Not asserted: exactly 1..=N. Moto's `ADD` under concurrent updates of
    // one item is not atomic, and has been seen to give a number twice; DynamoDB's is.)
    let numbers: Vec<u64> = all.iter().map(|m| m.seq.unwrap().get()).collect();
    assert!(numbers.is_sorted(), "{numbers:?}");
    let counter = store
        .client()
        .get_item()
        .table_name(&store.config().chats_table)
        .key(
            "AgentID",
            AttributeValue::S(chat.agent().as_str().to_owned()),
        )
        .key(
            "SecondaryID",
            AttributeValue::S(chat.kind().as_str().to_owned()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let Some(AttributeValue::L(recent)) = counter.item.unwrap().get("Recent").cloned() else {
        panic!("no Recent list on the Chats item");
    };
    let bound = 2 * RECENT_IDS + usize::try_from(SENDERS).unwrap();
    assert!(recent.len() <= bound, "{} entries", recent.len());
}
