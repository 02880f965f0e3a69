//! Integration tests of the SQLite store on real files in a temporary directory.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use jiva_core::{
    AgentId, Appended, Body, ChatId, ConnectionType, Message, MessageStore, Sender, Seq,
};
use jiva_store_sqlite::{Config, SqliteStore};

fn chat(agent: &str, kind: ConnectionType) -> ChatId {
    ChatId::new(AgentId::parse(agent).unwrap(), kind)
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(Config::in_dir(dir.path())).unwrap()
}

/// `m` as read back with number `n`.
fn numbered(m: &Message, n: u64) -> Message {
    Message {
        seq: Some(Seq::new(n)),
        ..m.clone()
    }
}

/// Appends `m`, expecting number `n`, and returns it as read back.
async fn append(store: &SqliteStore, m: &Message, n: u64) -> Message {
    assert_eq!(
        store.append(m).await.unwrap(),
        Appended::Stored(Seq::new(n))
    );
    numbered(m, n)
}

#[tokio::test]
async fn both_kinds_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let c = chat(
        "0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21",
        ConnectionType::Copilot,
    );
    store.register_chat(&c).await.unwrap();
    store.register_chat(&c).await.unwrap();
    let q = Message::user(c.clone(), Sender::Agent, "what is } this? 🙂".into());
    let a = Message::copilot_answer(c.clone(), "line1\nline2".into());
    let q = append(&store, &q, 1).await;
    let a = append(&store, &a, 2).await;
    let page = store.history(&c, None, 10).await.unwrap();
    assert_eq!(page.messages, vec![q, a]);
    assert_eq!(page.next, None);
    assert_eq!(store.kind(), "sqlite");
    store.check().await.unwrap();
}

#[tokio::test]
async fn append_is_idempotent_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let c = chat("a-1", ConnectionType::Supervisor);
    let m = Message::user(c.clone(), Sender::Supervisor, "once".into());
    let other = Message::user(c.clone(), Sender::Agent, "other".into());
    append(&store, &m, 1).await;
    append(&store, &other, 2).await;
    // A retry returns the number it was stored with and takes none.
    assert_eq!(
        store.append(&m).await.unwrap(),
        Appended::AlreadyStored(Seq::new(1))
    );
    let next = Message::user(c.clone(), Sender::Agent, "next".into());
    append(&store, &next, 3).await;
    assert_eq!(store.history(&c, None, 10).await.unwrap().messages.len(), 3);
}

#[tokio::test]
async fn history_pages_oldest_first_within_one_chat() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mine = chat("a-1", ConnectionType::Supervisor);
    let other_kind = chat("a-1", ConnectionType::Copilot);
    let other_agent = chat("a-2", ConnectionType::Supervisor);
    let mut sent = Vec::new();
    for i in 0..25 {
        let m = Message::user(mine.clone(), Sender::Agent, format!("m{i}"));
        sent.push(append(&store, &m, i + 1).await);
        store
            .append(&Message::user(
                other_kind.clone(),
                Sender::Agent,
                "x".into(),
            ))
            .await
            .unwrap();
        store
            .append(&Message::user(
                other_agent.clone(),
                Sender::Agent,
                "y".into(),
            ))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store.history(&mine, cursor, 10).await.unwrap();
        pages += 1;
        got.extend(page.messages);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(got, sent);
    let recent = store.recent(&mine, 3).await.unwrap();
    assert_eq!(recent, sent[22..].to_vec());
}

#[tokio::test]
async fn history_is_in_storage_order_whatever_the_timestamps_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let c = chat("a-1", ConnectionType::Supervisor);
    let mut made = Vec::new();
    for i in 0..5 {
        let mut m = Message::user(c.clone(), Sender::Agent, format!("m{i}"));
        m.timestamp = jiva_core::Timestamp::from_millis(1_718_000_000_000 - i);
        made.push(m);
    }
    // Stored newest id and oldest timestamp first: the order of storage is the chat's order.
    let mut sent = Vec::new();
    for (n, m) in made.iter().rev().enumerate() {
        sent.push(append(&store, m, n as u64 + 1).await);
    }
    let first = store.history(&c, None, 2).await.unwrap();
    let rest = store.history(&c, first.next, 10).await.unwrap();
    let got: Vec<_> = first.messages.into_iter().chain(rest.messages).collect();
    assert_eq!(got, sent);
}

#[tokio::test]
async fn malformed_cursor_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let c = chat("a-1", ConnectionType::Supervisor);
    for token in [
        "",
        "nope",
        "s",
        "s-1",
        "sx",
        "12:0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21",
    ] {
        let err = store
            .history(&c, Some(jiva_core::Cursor::from_token(token.into())), 5)
            .await;
        assert!(
            matches!(err, Err(jiva_core::StoreError::InvalidInput(_))),
            "{token}"
        );
    }
}

#[tokio::test]
async fn messages_survive_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let c = chat("a-1", ConnectionType::Copilot);
    let m = Message::copilot_answer(c.clone(), "kept".into());
    {
        let store = open(&dir);
        store.append(&m).await.unwrap();
    }
    let store = open(&dir);
    let page = store.history(&c, None, 10).await.unwrap();
    assert_eq!(page.messages, vec![numbered(&m, 1)]);
    // The counter goes on from the stored number after reopening.
    let after = Message::user(c.clone(), Sender::Agent, "after".into());
    append(&store, &after, 2).await;
    assert!(matches!(page.messages[0].body, Body::CopilotAnswer(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_all_land_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let mut tasks = Vec::new();
    for s in 0..20 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let c = chat(&format!("agent-{s}"), ConnectionType::Supervisor);
            for i in 0..50 {
                let m = Message::user(c.clone(), Sender::Agent, format!("{i}"));
                assert_eq!(
                    store.append(&m).await.unwrap(),
                    Appended::Stored(Seq::new(i + 1))
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for s in 0..20 {
        let c = chat(&format!("agent-{s}"), ConnectionType::Supervisor);
        let page = store.history(&c, None, 100).await.unwrap();
        let texts: Vec<String> = page.messages.iter().map(|m| m.text().to_owned()).collect();
        let want: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        assert_eq!(texts, want);
    }
}

#[test]
fn an_unusable_path_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    assert!(SqliteStore::open(Config::new(file.join("db.sqlite"))).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_to_one_chat_take_numbers_one_to_n_in_history_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let c = chat("a-1", ConnectionType::Supervisor);
    let mut tasks = Vec::new();
    for s in 0..20 {
        let store = Arc::clone(&store);
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..50 {
                let m = Message::user(c.clone(), Sender::Agent, format!("{s}:{i}"));
                got.push((store.append(&m).await.unwrap().seq(), m.id));
            }
            got
        }));
    }
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.extend(t.await.unwrap());
    }
    numbers.sort();
    let seqs: Vec<u64> = numbers.iter().map(|(s, _)| s.get()).collect();
    assert_eq!(seqs, (1..=1000).collect::<Vec<u64>>());
    let history = store.history(&c, None, 2000).await.unwrap().messages;
    let read: Vec<_> = history.iter().map(|m| (m.seq.unwrap(), m.id)).collect();
    assert_eq!(read, numbers, "history is in number order");
}

/// The schema before sequence numbers (the previous release's `SCHEMA`).
const SCHEMA_V0: &str = "
CREATE TABLE chats (agent_id TEXT NOT NULL, secondary_id TEXT NOT NULL,
    PRIMARY KEY (agent_id, secondary_id)) WITHOUT ROWID;
CREATE TABLE messages (seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL UNIQUE,
    agent_id TEXT NOT NULL, secondary_id TEXT NOT NULL, sender TEXT NOT NULL,
    ts INTEGER NOT NULL, kind INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX messages_by_chat ON messages (agent_id, secondary_id, ts, message_id);
";

#[tokio::test]
async fn a_database_from_before_sequence_numbers_is_numbered_in_time_order_per_chat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jivachat.db");
    let mine = chat("a-1", ConnectionType::Supervisor);
    let other = chat("a-1", ConnectionType::Copilot);
    // Rows inserted out of time order, two in the same millisecond, interleaved with another chat.
    let rows = [
        (&mine, 30, "c"),
        (&other, 5, "x"),
        (&mine, 10, "a"),
        (&mine, 20, "b2"),
        (&mine, 20, "b1"),
        (&other, 1, "w"),
    ];
    let mut expected_mine = Vec::new();
    let mut expected_other = Vec::new();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_V0).unwrap();
        for (c, ts, text) in rows {
            let mut m = Message::user(c.clone(), Sender::Agent, text.into());
            m.timestamp = jiva_core::Timestamp::from_millis(ts);
            conn.execute(
                "INSERT INTO messages (message_id, agent_id, secondary_id, sender, ts, kind, body)
                 VALUES (?1, ?2, ?3, 'agent', ?4, 0, ?5)",
                rusqlite::params![
                    m.id.to_string(),
                    c.agent().as_str(),
                    c.kind().as_str(),
                    ts,
                    text
                ],
            )
            .unwrap();
            if c == &mine {
                expected_mine.push(m);
            } else {
                expected_other.push(m);
            }
        }
    }
    for expected in [&mut expected_mine, &mut expected_other] {
        expected.sort_by_key(|m| (m.timestamp, m.id));
        for (n, m) in expected.iter_mut().enumerate() {
            m.seq = Some(Seq::new(n as u64 + 1));
        }
    }
    let store = SqliteStore::open(Config::new(&path)).unwrap();
    assert_eq!(
        store.history(&mine, None, 10).await.unwrap().messages,
        expected_mine
    );
    assert_eq!(
        store.history(&other, None, 10).await.unwrap().messages,
        expected_other
    );
    // New messages go on after the migrated ones.
    let new = Message::user(mine.clone(), Sender::Agent, "new".into());
    append(&store, &new, 5).await;
    drop(store);
    // Opening again migrates nothing twice.
    let store = SqliteStore::open(Config::new(&path)).unwrap();
    let page = store.history(&mine, None, 10).await.unwrap().messages;
    assert_eq!(page.len(), 5);
    assert_eq!(page[4].seq, Some(Seq::new(5)));
}

/// Installs, through a connection of its own, a trigger that makes SQLite refuse any message
/// whose body is `poison`: one specific row that fails.
fn refuse_poison(dir: &tempfile::TempDir) {
    let conn = rusqlite::Connection::open(dir.path().join("jivachat.db")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON messages WHEN NEW.body = 'poison'
         BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_row_fails_only_its_own_append_and_numbers_stay_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    refuse_poison(&dir);
    let c = chat("a-1", ConnectionType::Supervisor);
    let other = chat("a-2", ConnectionType::Copilot);
    // Every append is queued at once, so the poisoned ones share group commits with valid ones.
    let mut tasks = Vec::new();
    for i in 0..300 {
        let store = Arc::clone(&store);
        let chat = if i % 3 == 0 { other.clone() } else { c.clone() };
        let text = if i % 50 == 25 {
            "poison".to_owned()
        } else {
            format!("{i}")
        };
        tasks.push(tokio::spawn(async move {
            let m = Message::user(chat, Sender::Agent, text);
            (m.clone(), store.append(&m).await)
        }));
    }
    let mut stored = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (m, outcome) = t.await.unwrap();
        if m.text() == "poison" {
            assert!(outcome.is_err(), "the poisoned row was refused");
            refused += 1;
        } else {
            let seq = match outcome {
                Ok(Appended::Stored(seq)) => seq,
                other => panic!("a valid append beside a failing row failed: {other:?}"),
            };
            stored.push((m.chat.clone(), seq, m.id));
        }
    }
    assert_eq!(refused, 6);
    for chat in [&c, &other] {
        let mut mine: Vec<_> = stored
            .iter()
            .filter(|(ch, _, _)| ch == chat)
            .map(|(_, s, id)| (*s, *id))
            .collect();
        mine.sort();
        let seqs: Vec<u64> = mine.iter().map(|(s, _)| s.get()).collect();
        let n = u64::try_from(mine.len()).unwrap();
        assert_eq!(seqs, (1..=n).collect::<Vec<u64>>(), "gap-free numbers");
        let history = store.history(chat, None, 1000).await.unwrap().messages;
        let read: Vec<_> = history.iter().map(|m| (m.seq.unwrap(), m.id)).collect();
        assert_eq!(read, mine, "history holds exactly the stored messages");
    }
    // The chats go on numbering after the refused rows.
    let next = Message::user(c.clone(), Sender::Agent, "after".into());
    let n = u64::try_from(stored.iter().filter(|(ch, _, _)| ch == &c).count()).unwrap();
    append(&store, &next, n + 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_history_reads_never_open_more_reader_connections_than_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        readers: 2,
        ..Config::in_dir(dir.path())
    };
    let store = Arc::new(SqliteStore::open(config).unwrap());
    let c = chat("a-1", ConnectionType::Supervisor);
    for i in 0..20 {
        let m = Message::user(c.clone(), Sender::Agent, format!("{i}"));
        store.append(&m).await.unwrap();
    }
    let mut reads = Vec::new();
    for _ in 0..64 {
        let store = Arc::clone(&store);
        let c = c.clone();
        reads.push(tokio::spawn(async move {
            store.history(&c, None, 100).await.unwrap().messages.len()
        }));
    }
    for read in reads {
        assert_eq!(read.await.unwrap(), 20);
    }
    let stats = store.reader_stats();
    assert!(stats.most_open <= 2, "{stats:?}");
    assert!(stats.open <= 2, "{stats:?}");
}

/// The schema of version 1 (per-chat numbers in a rowid table, the id as text, two indexes).
const SCHEMA_V1: &str = "
CREATE TABLE chats (agent_id TEXT NOT NULL, secondary_id TEXT NOT NULL,
    PRIMARY KEY (agent_id, secondary_id)) WITHOUT ROWID;
CREATE TABLE probes (id INTEGER PRIMARY KEY, at INTEGER NOT NULL);
CREATE TABLE messages (seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL UNIQUE,
    agent_id TEXT NOT NULL, secondary_id TEXT NOT NULL, sender TEXT NOT NULL,
    ts INTEGER NOT NULL, kind INTEGER NOT NULL, body TEXT NOT NULL, chat_seq INTEGER);
CREATE UNIQUE INDEX messages_by_chat_seq ON messages (agent_id, secondary_id, chat_seq);
PRAGMA user_version = 1;
";

#[tokio::test]
async fn a_version_1_database_keeps_its_messages_numbers_and_ids_after_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jivachat.db");
    let mine = chat("a-1", ConnectionType::Supervisor);
    let other = chat("a-1", ConnectionType::Copilot);
    let mut expected_mine = Vec::new();
    let mut expected_other = Vec::new();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        // Interleaved chats, rows inserted out of number order, both kinds of body.
        let rows = [
            (
                &mine,
                2,
                Message::user(mine.clone(), Sender::Agent, "b".into()),
            ),
            (
                &other,
                1,
                Message::user(other.clone(), Sender::Agent, "q".into()),
            ),
            (
                &mine,
                1,
                Message::user(mine.clone(), Sender::Supervisor, "a".into()),
            ),
            (
                &other,
                2,
                Message::copilot_answer(other.clone(), "answer".into()),
            ),
            (
                &mine,
                3,
                Message::user(mine.clone(), Sender::Agent, "c 🙂".into()),
            ),
        ];
        for (c, n, m) in rows {
            let (kind, body) = match &m.body {
                Body::Text(t) => (0, t.clone()),
                Body::CopilotAnswer(t) => (1, t.clone()),
            };
            conn.execute(
                "INSERT INTO messages (message_id, agent_id, secondary_id, sender, ts, kind, body, chat_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                rusqlite::params![
                    m.id.to_string(),
                    c.agent().as_str(),
                    c.kind().as_str(),
                    m.sender.as_str(),
                    m.timestamp.as_millis(),
                    kind,
                    body,
                    n
                ],
            )
            .unwrap();
            let m = numbered(&m, n);
            if c == &mine {
                expected_mine.push(m);
            } else {
                expected_other.push(m);
            }
        }
    }
    expected_mine.sort_by_key(|m| m.seq);
    expected_other.sort_by_key(|m| m.seq);
    let store = SqliteStore::open(Config::new(&path)).unwrap();
    assert_eq!(
        store.history(&mine, None, 10).await.unwrap().messages,
        expected_mine
    );
    assert_eq!(
        store.history(&other, None, 10).await.unwrap().messages,
        expected_other
    );
    // A migrated message's id is still known: its resend takes no number.
    assert_eq!(
        store.append(&expected_mine[1]).await.unwrap(),
        Appended::AlreadyStored(Seq::new(2))
    );
    let new = Message::user(mine.clone(), Sender::Agent, "new".into());
    let new = append(&store, &new, 4).await;
    drop(store);
    // Opening again migrates nothing twice.
    let store = SqliteStore::open(Config::new(&path)).unwrap();
    let page = store.history(&mine, None, 10).await.unwrap().messages;
    assert_eq!(page.len(), 4);
    assert_eq!(page[3], new);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
}
