//! Sequence numbers: unique and gapless per chat under concurrent appends, also from several
//! stores (servers) at once, and after the messages stored before numbers existed.

use std::collections::HashSet;
use std::sync::Arc;

use jiva_core::{ConnectionType, MessageStore, Sender, Seq};
use jiva_store_dynamo::DynamoStore;

use crate::support::{chat, store, text};

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

/// Three servers (each its own memory of the chat's next number) with 10 senders apiece, all
/// appending to one chat at once: every append gets a number (none gives up under contention),
/// and the numbers are exactly 1..=N. The test server (moto, one Python process) answers a few
/// hundred requests a second, so 30 senders wait on it for seconds per append: the deadline is
/// what a test server this slow needs (`LocalDynamo::config`), not DynamoDB's (the default, 3 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_under_contention_from_three_servers_never_give_up() {
    const SERVERS: usize = 3;
    // 30 senders, not more: moto's server is threaded and its conditional put is not atomic
    // (no lock between the condition and the write), so under heavy concurrency two puts at
    // one number can both succeed there, a duplicate DynamoDB itself never gives. Seen once in
    // four runs of the whole suite with 60 senders on a loaded machine.
    const SENDERS: usize = 10;
    const EACH: usize = 20;
    let first = store().await;
    // The test server's config: its append deadline (60 s) fits moto, not DynamoDB's 3 s.
    let config = first.config().clone();
    assert_eq!(config.append_deadline, std::time::Duration::from_secs(60));
    let chat = chat(ConnectionType::Supervisor);
    let mut tasks = Vec::new();
    for s in 0..SERVERS {
        let store = Arc::new(DynamoStore::from_client(
            first.client().clone(),
            config.clone(),
        ));
        for w in 0..SENDERS {
            let store = Arc::clone(&store);
            let chat = chat.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..EACH {
                    let m = text(
                        &chat,
                        Sender::Agent,
                        1_700_000_000_000,
                        &format!("{s}:{w}:{i}"),
                    );
                    let started = std::time::Instant::now();
                    let result = store.append(&m).await.map(|a| a.seq());
                    got.push((result, m.id, started.elapsed()));
                }
                got
            }));
        }
    }
    let mut numbers = Vec::new();
    let mut refused = 0;
    let mut slowest = std::time::Duration::ZERO;
    for t in tasks {
        for (result, id, took) in t.await.unwrap() {
            slowest = slowest.max(took);
            match result {
                Ok(seq) => numbers.push((seq.get(), id)),
                Err(err) => {
                    eprintln!("append refused: {err}");
                    refused += 1;
                }
            }
        }
    }
    eprintln!("slowest append: {slowest:?}");
    assert_eq!(refused, 0, "appends gave up under contention");
    numbers.sort();
    let total = (SERVERS * SENDERS * EACH) as u64;
    let seqs: Vec<u64> = numbers.iter().map(|(s, _)| *s).collect();
    let twice: Vec<_> = seqs.windows(2).filter(|w| w[0] == w[1]).collect();
    let missing: Vec<_> = (1..=total)
        .filter(|n| seqs.binary_search(n).is_err())
        .collect();
    assert!(
        twice.is_empty() && missing.is_empty(),
        "numbers given twice: {twice:?}; numbers missing: {missing:?}"
    );
    assert_eq!(seqs.len() as u64, total);
    let history = first.history(&chat, None, 1000).await.unwrap();
    assert!(history.next.is_none());
    let read: Vec<_> = history
        .messages
        .iter()
        .map(|m| (m.seq.unwrap().get(), m.id))
        .collect();
    assert_eq!(
        read, numbers,
        "each number is stored once, with its message"
    );
}

#[tokio::test]
async fn messages_stored_before_numbers_come_first_in_time_order() {
    let store = store().await;
    let chat = chat(ConnectionType::Copilot);
    // Items written by the previous release: the time-based sort key, no Seq.
    crate::support::write_unnumbered(&store, &chat, &[300, 100, 200]).await;
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

/// A TCP proxy in front of the test server that, when armed, lets one `PutItem` through but
/// closes the caller's connection instead of passing the answer back: the write lands, and the
/// caller sees a failure (as with a time-out after DynamoDB wrote).
struct LosingProxy {
    addr: std::net::SocketAddr,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl LosingProxy {
    async fn start(upstream: &str) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let armed = Arc::new(AtomicBool::new(false));
        let armed_all = Arc::clone(&armed);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                let armed = Arc::clone(&armed_all);
                let lose = Arc::new(AtomicBool::new(false));
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let lose_up = Arc::clone(&lose);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = client_read.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let chunk = &buf[..n];
                        let put = chunk.windows(7).any(|w| w == b"PutItem");
                        if put && armed.swap(false, Ordering::SeqCst) {
                            lose_up.store(true, Ordering::SeqCst);
                        }
                        if server_write.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = server_read.read(&mut buf).await {
                        if n == 0 || lose.load(Ordering::SeqCst) {
                            // Dropping both halves closes the caller's connection unanswered.
                            return;
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, armed }
    }

    fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_retry_of_an_append_that_failed_after_writing_returns_its_first_number() {
    let direct = store().await;
    let proxy = LosingProxy::start(crate::support::dynamo().endpoint()).await;
    let config = jiva_store_dynamo::Config {
        endpoint_url: Some(format!("http://{}", proxy.addr)),
        max_attempts: 1,
        ..direct.config().clone()
    };
    let store = DynamoStore::from_client(crate::support::dynamo().client(&config), config);
    let chat = chat(ConnectionType::Supervisor);
    let first = text(&chat, Sender::Agent, 1_700_000_000_001, "first");
    let lost = text(
        &chat,
        Sender::Agent,
        1_700_000_000_002,
        "written, answer lost",
    );
    let other = text(&chat, Sender::Agent, 1_700_000_000_003, "other");
    assert_eq!(store.append(&first).await.unwrap().seq(), Seq::new(1));

    proxy.arm();
    assert!(
        store.append(&lost).await.is_err(),
        "the caller saw a failure"
    );
    // Another message first: the chat is in doubt, so its number is read again (2 is taken).
    assert_eq!(store.append(&other).await.unwrap().seq(), Seq::new(3));
    // The retry finds the message where its first attempt wrote it.
    assert_eq!(
        store.append(&lost).await.unwrap(),
        jiva_core::Appended::AlreadyStored(Seq::new(2))
    );
    let history = direct.history(&chat, None, 10).await.unwrap().messages;
    let ids: Vec<_> = history
        .iter()
        .map(|m| (m.seq.unwrap().get(), m.id))
        .collect();
    assert_eq!(ids, vec![(1, first.id), (2, lost.id), (3, other.id)]);
}
