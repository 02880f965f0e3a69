//! One order per chat: what every socket sees live is what a replay returns, under concurrent
//! senders, and the stored frames carry the chat's sequence numbers 1..=N without a gap.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

const SENDERS: usize = 20;
const EACH: usize = 50;
const TOTAL: usize = SENDERS * EACH;
/// Sockets connected before the first message and reading until the end.
const WATCHERS: usize = 3;
/// Sockets that connect once this many messages have been seen by the first watcher.
const JOIN_AFTER: [usize; 3] = [100, 400, 800];

/// The stored frames a socket receives (history, then live) until it has seen `TOTAL`:
/// (message id, seq) in the order they arrived.
async fn read_stored(ws: Ws) -> Vec<(String, Value)> {
    let (_sink, mut stream) = ws.split();
    let mut seen = Vec::with_capacity(TOTAL);
    while seen.len() < TOTAL {
        let frame = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no frame arrived in time after {} frames, the last {:?}",
                    seen.len(),
                    seen.last()
                )
            })
            .expect("socket ended")
            .expect("socket failed");
        if let Message::Text(text) = frame {
            let v: Value = serde_json::from_str(&text).unwrap();
            let id = v["message_id"]
                .as_str()
                .unwrap_or_else(|| panic!("not a stored frame: {v}"));
            seen.push((id.to_owned(), v["seq"].clone()));
        }
    }
    seen
}

async fn every_socket_sees_the_replay_order_under_concurrent_senders(kind: StoreKind) {
    let server = TestServer::start_on_with(kind, |c| c.transport.outbound_queue = 2048).await;
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        watchers.push(server.connect(AGENT, "supervisor").await);
    }
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        senders.push(server.connect(AGENT, "supervisor").await);
    }

    // The first watcher reports its progress so that late sockets join mid-way.
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let mut readers = Vec::new();
    let mut first = Some(progress_tx);
    for ws in watchers {
        let progress_tx = first.take();
        readers.push(tokio::spawn(async move {
            let (_sink, mut stream) = ws.split();
            let mut seen = Vec::with_capacity(TOTAL);
            while seen.len() < TOTAL {
                let frame = tokio::time::timeout(PATIENCE, stream.next())
                    .await
                    .expect("no frame arrived in time")
                    .expect("socket ended")
                    .expect("socket failed");
                if let Message::Text(text) = frame {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    seen.push((
                        v["message_id"].as_str().unwrap().to_owned(),
                        v["seq"].clone(),
                    ));
                    if let Some(tx) = &progress_tx {
                        tx.send_replace(seen.len());
                    }
                }
            }
            seen
        }));
    }
    let mut sending = Vec::new();
    for (s, ws) in senders.into_iter().enumerate() {
        sending.push(tokio::spawn(async move {
            let (mut sink, stream) = ws.split();
            for i in 0..EACH {
                let frame = json!({"sender": "agent", "message": format!("{s}:{i}")});
                sink.send(Message::text(frame.to_string())).await.unwrap();
            }
            // The sender's own socket keeps reading so that it is never a slow consumer.
            read_stored(stream.reunite(sink).unwrap()).await
        }));
    }
    for threshold in JOIN_AFTER {
        tokio::time::timeout(PATIENCE, progress.wait_for(|n| *n >= threshold))
            .await
            .expect("the chat stalled")
            .unwrap();
        let ws = server.connect(AGENT, "supervisor").await;
        readers.push(tokio::spawn(read_stored(ws)));
    }

    let mut orders = Vec::new();
    for task in readers.into_iter().chain(sending) {
        orders.push(task.await.unwrap());
    }
    let replay = read_stored(server.connect(AGENT, "supervisor").await).await;
    let replay_ids: Vec<&String> = replay.iter().map(|(id, _)| id).collect();
    for (n, order) in orders.iter().enumerate() {
        let ids: Vec<&String> = order.iter().map(|(id, _)| id).collect();
        let differ = ids.iter().zip(&replay_ids).filter(|(a, b)| a != b).count();
        assert_eq!(
            differ, 0,
            "socket {n} saw another order than the replay at {differ} of {TOTAL} positions"
        );
        assert_eq!(order, &replay, "socket {n}: ids and seq fields as replayed");
    }
    let seqs: Vec<Value> = replay.iter().map(|(_, seq)| seq.clone()).collect();
    let expected: Vec<Value> = (1..=TOTAL as u64).map(Value::from).collect();
    assert_eq!(seqs, expected, "the replay's seq fields are 1..=N");
    server.stop().await;
}

crate::on_both_stores!(every_socket_sees_the_replay_order_under_concurrent_senders);
