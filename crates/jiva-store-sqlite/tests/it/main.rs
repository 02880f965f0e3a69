//! Integration tests of the SQLite store on real files in a temporary directory.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use jiva_core::{AgentId, Appended, Body, ChatId, ConnectionType, Message, MessageStore, Sender};
use jiva_store_sqlite::{Config, SqliteStore};

fn chat(agent: &str, kind: ConnectionType) -> ChatId {
    ChatId::new(AgentId::parse(agent).unwrap(), kind)
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(Config::in_dir(dir.path())).unwrap()
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
    assert_eq!(store.append(&q).await.unwrap(), Appended::Stored);
    assert_eq!(store.append(&a).await.unwrap(), Appended::Stored);
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
    assert_eq!(store.append(&m).await.unwrap(), Appended::Stored);
    assert_eq!(store.append(&m).await.unwrap(), Appended::AlreadyStored);
    assert_eq!(store.history(&c, None, 10).await.unwrap().messages.len(), 1);
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
        store.append(&m).await.unwrap();
        sent.push(m);
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
async fn same_millisecond_messages_keep_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let c = chat("a-1", ConnectionType::Supervisor);
    let mut sent = Vec::new();
    for i in 0..5 {
        let mut m = Message::user(c.clone(), Sender::Agent, format!("m{i}"));
        m.timestamp = jiva_core::Timestamp::from_millis(1_718_000_000_000);
        sent.push(m);
    }
    for m in sent.iter().rev() {
        store.append(m).await.unwrap();
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
        "12:not-a-uuid",
        "x:0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21",
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
    assert_eq!(page.messages, vec![m]);
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
                assert_eq!(store.append(&m).await.unwrap(), Appended::Stored);
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
