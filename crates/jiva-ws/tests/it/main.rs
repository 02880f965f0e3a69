//! The transport's logic over real sockets, with mockall mocks of the ports: what it does when
//! the store fails, which notifications it raises, and how a copilot turn ends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jiva_core::{
    Appended, ChatId, CopilotChunk, CopilotError, HistoryPage, MockCopilot, MockMessageStore,
    MockNotifier, NotificationKind, Seq, StoreError,
};
use jiva_ws::{Config, Services, Transport};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const PATIENCE: Duration = Duration::from_secs(20);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Running {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(services: Services) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let transport = Transport::new(Config::default(), services);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(jiva_ws::serve(listener, transport, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn connect(&self, kind: &str) -> Ws {
        let url = format!("ws://{}/?agentID=agent-1&secondaryID={kind}", self.addr);
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WsMessage::Text(text) => return serde_json::from_str(&text).unwrap(),
            WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

async fn say(ws: &mut Ws, text: &str) {
    let frame = json!({"chat_id": "x", "sender": "agent", "message": text});
    ws.send(WsMessage::text(frame.to_string())).await.unwrap();
}

/// A store that accepts everything and has no history.
fn accepting_store() -> MockMessageStore {
    let mut store = MockMessageStore::new();
    store.expect_kind().return_const("mock");
    store.expect_seeks_by_number().return_const(false);
    store.expect_register_chat().returning(|_| Ok(()));
    store
        .expect_history()
        .returning(|_, _, _| Ok(HistoryPage::default()));
    store.expect_recent().returning(|_, _| Ok(Vec::new()));
    store
}

#[tokio::test]
async fn a_store_failure_gives_the_sender_an_error_and_shows_nothing() {
    let mut store = accepting_store();
    let mut calls = 0;
    store.expect_append().returning(move |_| {
        calls += 1;
        if calls == 1 {
            Err(StoreError::Unavailable("disk on fire".into()))
        } else {
            // The failed append took no number.
            Ok(Appended::Stored(Seq::new(calls - 1)))
        }
    });
    let server = Running::start(Services::new(Arc::new(store))).await;
    let mut sender = server.connect("supervisor").await;
    let mut watcher = server.connect("supervisor").await;
    say(&mut sender, "lost").await;
    assert_eq!(
        next_json(&mut sender).await,
        json!({"error": "message not stored"})
    );
    say(&mut sender, "kept").await;
    assert_eq!(next_json(&mut sender).await["message"], "kept");
    // The watcher never saw the message that was not stored.
    assert_eq!(next_json(&mut watcher).await["message"], "kept");
    server.stop().await;
}

#[tokio::test]
async fn stored_messages_raise_the_mapped_notifications() {
    let mut store = accepting_store();
    let mut calls = 0;
    store.expect_append().returning(move |_| {
        calls += 1;
        Ok(Appended::Stored(Seq::new(calls)))
    });
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut notifier = MockNotifier::new();
    notifier.expect_notify().returning(move |n| {
        seen_tx.send((n.chat.canonical(), n.kind)).unwrap();
        Ok(())
    });
    let services = Services::new(Arc::new(store)).with_notifier(Arc::new(notifier));
    let server = Running::start(services).await;
    let mut agent = server.connect("supervisor").await;
    say(&mut agent, "from the agent").await;
    next_json(&mut agent).await;
    let supervisor_frame = json!({"sender": "supervisor", "message": "from a supervisor"});
    agent
        .send(WsMessage::text(supervisor_frame.to_string()))
        .await
        .unwrap();
    next_json(&mut agent).await;
    for kind in [NotificationKind::Agent, NotificationKind::Supervisor] {
        let next = tokio::time::timeout(PATIENCE, seen.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next, ("agent-1-supervisor".to_owned(), kind));
    }
    server.stop().await;
    // The agent's questions to the copilot raise none; only the two above were seen.
    assert!(seen.try_recv().is_err());
}

#[tokio::test]
async fn a_failing_copilot_stream_stores_the_partial_answer_then_ends() {
    let mut store = accepting_store();
    let (stored_tx, mut stored) = mpsc::unbounded_channel();
    let mut calls = 0;
    store.expect_append().returning(move |m| {
        stored_tx.send(m.clone()).unwrap();
        calls += 1;
        Ok(Appended::Stored(Seq::new(calls)))
    });
    let mut copilot = MockCopilot::new();
    copilot.expect_ask().returning(|request| {
        assert_eq!(request.input, "question");
        assert!(request.history.is_empty());
        let items = vec![
            Ok(CopilotChunk {
                action: Some("tool".into()),
                output: Some("Processing Results\n".into()),
            }),
            Ok(CopilotChunk {
                action: None,
                output: Some("partial }".into()),
            }),
            Err(CopilotError::Truncated),
        ];
        Ok(Box::pin(futures_util::stream::iter(items)))
    });
    let services = Services::new(Arc::new(store)).with_copilot(Arc::new(copilot));
    let server = Running::start(services).await;
    let mut ws = server.connect("copilot").await;
    say(&mut ws, "question").await;
    assert_eq!(next_json(&mut ws).await["message"], "question");
    assert_eq!(
        next_json(&mut ws).await,
        json!({"action": "tool", "output": "Processing Results\n"})
    );
    assert_eq!(
        next_json(&mut ws).await,
        json!({"action": null, "output": "partial }"})
    );
    assert_eq!(
        next_json(&mut ws).await,
        json!({"error": "copilot answer was cut off"})
    );
    let combined = next_json(&mut ws).await;
    assert_eq!(combined["action"], "Combined");
    // Stored and shown with the cut-off notice (docs/PROTOCOL.md).
    assert_eq!(
        combined["output"],
        "partial }\n\n[Answer cut off: copilot answer was cut off.]"
    );
    assert_eq!(combined["sender"], "Copilot");
    assert_eq!(
        next_json(&mut ws).await,
        json!({"action": "end", "output": ""})
    );

    let question = stored.recv().await.unwrap();
    assert_eq!(question.text(), "question");
    let answer = stored.recv().await.unwrap();
    assert!(answer.is_copilot_answer());
    assert_eq!(answer.text(), combined["output"]);
    assert_eq!(combined["message_id"], answer.id.to_string());
    let chat: &ChatId = &answer.chat;
    assert_eq!(chat.canonical(), "agent-1-copilot");
    server.stop().await;
}

#[tokio::test]
async fn a_sequence_number_that_never_arrives_does_not_stall_the_chat() {
    // The store takes number 1 for nothing (an append that failed after taking it, as seen by
    // this server): the first message shown is number 2.
    let mut store = accepting_store();
    let mut calls = 0;
    store.expect_append().returning(move |_| {
        calls += 1;
        Ok(Appended::Stored(Seq::new(calls + 1)))
    });
    let server = Running::start(Services::new(Arc::new(store))).await;
    let mut sender = server.connect("supervisor").await;
    let mut watcher = server.connect("supervisor").await;
    say(&mut sender, "after the gap").await;
    say(&mut sender, "next").await;
    for ws in [&mut sender, &mut watcher] {
        let first = next_json(ws).await;
        assert_eq!(first["message"], "after the gap");
        assert_eq!(first["seq"], 2);
        let second = next_json(ws).await;
        assert_eq!(second["message"], "next");
        assert_eq!(second["seq"], 3);
    }
    server.stop().await;
}

/// A store of `count` numbered messages of one chat whose reads count the rows they return;
/// `seeks` says whether `after` seeks (as SQLite's and DynamoDB's native layout do).
fn history_store(
    count: u64,
    seeks: bool,
    rows: Arc<std::sync::atomic::AtomicUsize>,
) -> MockMessageStore {
    use std::sync::atomic::Ordering;
    let chat = ChatId::new(
        jiva_core::AgentId::parse("agent-1").unwrap(),
        jiva_core::ConnectionType::Supervisor,
    );
    let messages: Arc<Vec<jiva_core::Message>> = Arc::new(
        (1..=count)
            .map(|n| {
                let mut message = jiva_core::Message::user(
                    chat.clone(),
                    jiva_core::Sender::Agent,
                    format!("message {n}"),
                );
                message.seq = Some(Seq::new(n));
                message
            })
            .collect(),
    );
    let mut store = MockMessageStore::new();
    store.expect_kind().return_const("mock");
    store.expect_seeks_by_number().return_const(seeks);
    store.expect_register_chat().returning(|_| Ok(()));
    store.expect_recent().returning(|_, _| Ok(Vec::new()));
    let (all, counted) = (Arc::clone(&messages), Arc::clone(&rows));
    // The cursor is the index of the page's first message; the last page has no `next`.
    store.expect_history().returning(move |_, cursor, limit| {
        let from: usize = cursor.map_or(0, |c| c.token().parse().unwrap());
        let page: Vec<_> = all.iter().skip(from).take(limit).cloned().collect();
        counted.fetch_add(page.len(), Ordering::SeqCst);
        let end = from + page.len();
        Ok(HistoryPage {
            messages: page,
            next: (end < all.len()).then(|| jiva_core::Cursor::from_token(end.to_string())),
        })
    });
    store.expect_after().returning(move |_, after, limit| {
        let page: Vec<_> = messages
            .iter()
            .filter(|m| m.seq.is_some_and(|seq| seq > after))
            .take(limit)
            .cloned()
            .collect();
        rows.fetch_add(page.len(), Ordering::SeqCst);
        Ok(page)
    });
    store
}

#[tokio::test]
async fn a_replay_reads_each_stored_row_once_from_a_store_that_seeks() {
    for seeks in [true, false] {
        let rows = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let store = history_store(1_000, seeks, Arc::clone(&rows));
        let server = Running::start(Services::new(Arc::new(store))).await;
        let mut ws = server.connect("supervisor").await;
        for n in 1..=1_000u64 {
            let frame = next_json(&mut ws).await;
            assert_eq!(frame["seq"], n, "seeks: {seeks}");
            assert_eq!(frame["message"], format!("message {n}"));
        }
        // Stopping the server waits for the socket's task, so every pass has read by then.
        let transport_rows = || rows.load(std::sync::atomic::Ordering::SeqCst);
        ws.close(None).await.unwrap();
        server.stop().await;
        if seeks {
            // Every row once: no catch-up pass re-reads the page that held the last message.
            assert_eq!(transport_rows(), 1_000);
        } else {
            // Without seeking, each later pass re-reads at most the last page (200 rows).
            assert!(transport_rows() <= 1_400, "{}", transport_rows());
        }
    }
}

/// The first socket of a chat (its room does not know where the chat is yet) replays a
/// history whose number 2 is missing while 3, stored a moment ago, is there: 2 may be an
/// append still in flight, and here it is. Every socket shows 2 before 3 (the replay once
/// showed 3 at once, and 2 after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_still_on_its_way_when_a_room_starts_is_shown_before_the_messages_after_it() {
    use std::sync::Mutex;
    use std::sync::mpsc as blocking;
    let chat = ChatId::new(
        jiva_core::AgentId::parse("agent-1").unwrap(),
        jiva_core::ConnectionType::Supervisor,
    );
    let stored = |n: u64, text: &str| {
        let mut message =
            jiva_core::Message::user(chat.clone(), jiva_core::Sender::Agent, text.to_owned());
        message.seq = Some(Seq::new(n));
        message
    };
    let messages = Arc::new(Mutex::new(vec![stored(1, "one"), stored(3, "three")]));
    let mut store = MockMessageStore::new();
    store.expect_kind().return_const("mock");
    store.expect_seeks_by_number().return_const(true);
    store.expect_register_chat().returning(|_| Ok(()));
    let all = Arc::clone(&messages);
    store.expect_history().returning(move |_, _, _| {
        Ok(HistoryPage {
            messages: all.lock().unwrap().clone(),
            next: None,
        })
    });
    let all = Arc::clone(&messages);
    store.expect_after().returning(move |_, after, limit| {
        let all = all.lock().unwrap();
        Ok(all
            .iter()
            .filter(|m| m.seq.is_some_and(|seq| seq > after))
            .take(limit)
            .cloned()
            .collect())
    });
    let all = Arc::clone(&messages);
    store
        .expect_recent()
        .returning(move |_, _| Ok(all.lock().unwrap().clone()));
    // The append of number 2 starts, then waits for the test to let it finish.
    let (started_tx, started) = blocking::channel();
    let (release, released) = blocking::channel::<()>();
    let released = Mutex::new(released);
    let all = Arc::clone(&messages);
    store.expect_append().returning(move |message| {
        started_tx.send(()).unwrap();
        released.lock().unwrap().recv_timeout(PATIENCE).unwrap();
        let mut message = message.clone();
        message.seq = Some(Seq::new(2));
        let mut all = all.lock().unwrap();
        all.push(message);
        all.sort_by_key(|m| m.seq);
        Ok(Appended::Stored(Seq::new(2)))
    });
    let server = Running::start(Services::new(Arc::new(store))).await;

    let mut sender = server.connect("supervisor").await;
    assert_eq!(next_json(&mut sender).await["message"], "one");
    say(&mut sender, "two").await;
    tokio::task::spawn_blocking(move || started.recv_timeout(PATIENCE).unwrap())
        .await
        .unwrap();
    let mut watcher = server.connect("supervisor").await;
    assert_eq!(next_json(&mut watcher).await["message"], "one");
    release.send(()).unwrap();
    for ws in [&mut sender, &mut watcher] {
        for (seq, text) in [(2, "two"), (3, "three")] {
            let frame = next_json(ws).await;
            assert_eq!(
                (frame["seq"].as_u64(), frame["message"].as_str()),
                (Some(seq), Some(text))
            );
        }
    }
    server.stop().await;
}

/// An embedder serving `Transport::router()` without connect info: the per-IP limits have no
/// address to count (so they stay out of the way) and the total limit still holds.
#[tokio::test]
async fn the_router_without_connect_info_keeps_the_total_limit_and_skips_per_ip_ones() {
    let mut config = Config::default();
    config.limits.max_sockets = 2;
    config.limits.max_sockets_per_ip = 1;
    config.limits.handshakes_per_ip_per_sec = 1;
    let transport = Transport::new(config, Services::new(Arc::new(accepting_store())));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, transport.router()).await });
    let url = format!("ws://{addr}/?agentID=agent-1&secondaryID=supervisor");
    let _a = tokio_tungstenite::connect_async(&url).await.unwrap();
    let _b = tokio_tungstenite::connect_async(&url).await.unwrap();
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected 503, got {other:?}"),
    }
}
