//! A socket that joins a busy chat with a long history: its replay must not count against its
//! live queue (issue 12: healthy readers were closed with 4008 part-way through their replay).

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use jiva_core::{AgentId, ChatId, ConnectionType, Message, Sender};
use jivachat_server::Config;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

const HISTORY: usize = 5_000;
const SENDERS: usize = 8;
const LIVE_PER_SENDER: usize = 375;
/// Messages a sender may have sent and not yet seen echoed: eight senders keep at most 48
/// frames in flight on any socket, below its queue of 64.
const WINDOW: usize = 6;

fn tweak(config: &mut Config) {
    // A small live queue, so a replay that let live frames pile up would overflow it.
    config.transport.outbound_queue = 64;
    config.transport.limits.messages_per_sec = 100_000;
    config.transport.limits.message_burst = 100_000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_joining_a_busy_chat_with_a_long_history_is_not_closed_and_sees_every_message_once_in_order()
 {
    let (backing, dir) = Backing::fresh(StoreKind::Sqlite).await;
    {
        let mut config = Config::with_data_dir(dir.path());
        tweak(&mut config);
        let store = backing.store(&config).await;
        let chat = ChatId::new(AgentId::parse(AGENT).unwrap(), ConnectionType::Supervisor);
        store.register_chat(&chat).await.unwrap();
        // Concurrent appends: the embedded store commits them in groups.
        futures_util::stream::iter(0..HISTORY)
            .map(|i| {
                let store = Arc::clone(&store);
                let message = Message::user(chat.clone(), Sender::Agent, format!("old-{i}"));
                async move { store.append(&message).await.unwrap() }
            })
            .buffer_unordered(256)
            .collect::<Vec<_>>()
            .await;
    }
    let server = TestServer::start_in(&backing, tweak).await;

    // Senders stream live messages while the new socket joins; each keeps at most WINDOW
    // messages unechoed, so the senders' own queues stay short whatever the machine's load.
    let started = Arc::new(Notify::new());
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (mut sink, mut stream) = server.connect(AGENT, "supervisor").await.split();
        let started = Arc::clone(&started);
        senders.push(tokio::spawn(async move {
            let (echoed_tx, mut echoed) = tokio::sync::mpsc::unbounded_channel();
            let own = format!("\"live-{s}-");
            let reader = tokio::spawn(async move {
                let mut seen = 0;
                while seen < SENDERS * LIVE_PER_SENDER {
                    match stream.next().await {
                        Some(Ok(WsMessage::Text(text))) if text.contains("\"live-") => {
                            seen += 1;
                            started.notify_one();
                            if text.contains(&own) {
                                let _ = echoed_tx.send(());
                            }
                        }
                        Some(Ok(_)) => {}
                        other => panic!("a sender's socket ended: {other:?}"),
                    }
                }
            });
            for i in 0..LIVE_PER_SENDER {
                let frame = serde_json::json!({"chat_id": "x", "sender": "agent", "message": format!("live-{s}-{i}")});
                sink.send(WsMessage::text(frame.to_string())).await.unwrap();
                if i >= WINDOW {
                    echoed.recv().await.unwrap();
                }
            }
            reader.await.unwrap();
        }));
    }
    started.notified().await;

    let mut ws = server.connect(AGENT, "supervisor").await;
    let total = HISTORY + SENDERS * LIVE_PER_SENDER;
    let mut ids = HashSet::new();
    let mut seqs = Vec::with_capacity(total);
    while seqs.len() < total {
        match next_frame(&mut ws).await {
            WsMessage::Text(text) => {
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert!(frame.get("error").is_none(), "{frame}");
                assert!(
                    ids.insert(frame["message_id"].as_str().unwrap().to_owned()),
                    "a message came twice: {frame}"
                );
                seqs.push(frame["seq"].as_u64().unwrap());
            }
            other => panic!(
                "the joining socket was closed after {} of {total} messages: {other:?}",
                seqs.len()
            ),
        }
    }
    let expected: Vec<u64> = (1..=total as u64).collect();
    assert!(seqs == expected, "not every number once, in order");
    for sender in senders {
        sender.await.unwrap();
    }
    server.stop().await;
}
