//! `send` → `ack`, and idempotency by `client_id`.

use jiva_core::{AgentId, ChatId, ConnectionType, Message, Sender};
use serde_json::{Value, json};

use super::{V1, of_type};
use crate::on_both_stores;
use crate::support::{AGENT, Backing, StoreKind, TestServer};

/// An `ack` without its `ref`.
fn ack_of(frame: &Value) -> (Value, Value, Value) {
    assert_eq!(frame["type"], "ack", "{frame}");
    (
        frame["client_id"].clone(),
        frame["message_id"].clone(),
        frame["seq"].clone(),
    )
}

/// The texts a fresh v1 connection's `latest` page holds.
async fn stored_texts(url: &str) -> Vec<String> {
    let (_v1, before, _) = V1::open(url).await;
    let latest = before.iter().find(|f| f["type"] == "latest").unwrap();
    latest["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_send_is_acked_with_its_message_id_and_seq_after_its_message() {
    let server = TestServer::start().await;
    let (mut v1, _, _) = V1::open(&server.chat_url(AGENT, "supervisor")).await;
    v1.send(json!({"type":"send","ref":"r1","client_id":"c-1","sender":"agent","text":"hi"}))
        .await;
    let (before, ack) = v1.until("ack").await;
    let messages = of_type(&before, "message");
    assert_eq!(messages.len(), 1);
    assert_eq!(ack["ref"], "r1");
    assert_eq!(ack["client_id"], "c-1");
    assert_eq!(ack["message_id"], messages[0]["message_id"]);
    assert_eq!(ack["seq"], 1);
    assert_eq!(messages[0]["seq"], 1);
    server.stop().await;
}

#[tokio::test]
async fn the_same_client_id_twice_on_one_socket_is_stored_once_with_the_same_ack() {
    let server = TestServer::start().await;
    let url = server.chat_url(AGENT, "supervisor");
    let (mut v1, _, _) = V1::open(&url).await;
    v1.say("c-1", "agent", "hello").await;
    let (_, first) = v1.until("ack").await;
    v1.say("c-1", "agent", "hello (resent)").await;
    let (between, second) = v1.until("ack").await;
    assert_eq!(ack_of(&first), ack_of(&second));
    assert!(of_type(&between, "message").is_empty(), "{between:?}");
    assert!(of_type(&v1.drain().await, "message").is_empty());
    assert_eq!(stored_texts(&url).await, ["hello"]);
    server.stop().await;
}

#[tokio::test]
async fn the_same_client_id_on_two_sockets_at_once_is_stored_and_shown_once_with_one_ack() {
    let server = TestServer::start().await;
    let url = server.chat_url(AGENT, "supervisor");
    let (mut a, _, _) = V1::open(&url).await;
    let (mut b, _, _) = V1::open(&url).await;
    a.say("c-7", "agent", "once").await;
    b.say("c-7", "agent", "once").await;
    let (a_before, a_ack) = a.until("ack").await;
    let (b_before, b_ack) = b.until("ack").await;
    assert_eq!(ack_of(&a_ack), ack_of(&b_ack));
    let mut a_seen = a_before;
    a_seen.extend(a.drain().await);
    let mut b_seen = b_before;
    b_seen.extend(b.drain().await);
    assert_eq!(of_type(&a_seen, "message").len(), 1, "{a_seen:?}");
    assert_eq!(of_type(&b_seen, "message").len(), 1, "{b_seen:?}");
    assert_eq!(stored_texts(&url).await, ["once"]);
    server.stop().await;
}

#[tokio::test]
async fn client_ids_are_scoped_to_their_chat() {
    let server = TestServer::start().await;
    let (mut one, _, _) = V1::open(&server.chat_url(AGENT, "supervisor")).await;
    let (mut two, _, _) = V1::open(&server.chat_url("another-agent", "supervisor")).await;
    one.say("c-1", "agent", "in one").await;
    two.say("c-1", "agent", "in two").await;
    let (_, a) = one.until("ack").await;
    let (_, b) = two.until("ack").await;
    assert_ne!(a["message_id"], b["message_id"]);
    server.stop().await;
}

/// A resend after reconnecting (with `since`) to a restarted server on the same storage.
async fn resent_after_a_restart_is_stored_once_with_the_same_ack(kind: StoreKind) {
    let (backing, _dir) = Backing::fresh(kind).await;
    let server = TestServer::start_in(&backing, |_| {}).await;
    let url = server.chat_url(AGENT, "supervisor");
    let (mut v1, _, _) = V1::open(&url).await;
    v1.say("c-1", "agent", "before").await;
    v1.say("c-2", "agent", "survives").await;
    let (_, _) = v1.until("ack").await;
    let (_, first) = v1.until("ack").await;
    server.stop().await;

    let server = TestServer::start_in(&backing, |_| {}).await;
    let url = server.chat_url(AGENT, "supervisor");
    let since = first["seq"].as_u64().unwrap();
    let (mut v1, before, live) = V1::open(&format!("{url}&since={since}")).await;
    assert!(of_type(&before, "message").is_empty(), "{before:?}");
    assert_eq!(live, Some(since));
    v1.say("c-2", "agent", "survives").await;
    let (between, second) = v1.until("ack").await;
    assert_eq!(ack_of(&first), ack_of(&second));
    assert!(of_type(&between, "message").is_empty(), "{between:?}");
    assert_eq!(stored_texts(&url).await, ["before", "survives"]);
    server.stop().await;
}

on_both_stores!(resent_after_a_restart_is_stored_once_with_the_same_ack);

/// A resend reaching a server that did not store the original (a fresh process: nothing in
/// memory), with more messages after the original than DynamoDB's store reads back when it
/// first appends to a chat (`RECENT_WINDOW`, 64): still one stored message and the same `ack`.
async fn resent_to_another_server_past_many_newer_messages_is_stored_once_with_the_same_ack(
    kind: StoreKind,
) {
    let (backing, dir) = Backing::fresh(kind).await;
    let server = TestServer::start_in(&backing, |_| {}).await;
    let url = server.chat_url(AGENT, "supervisor");
    let (mut v1, _, _) = V1::open(&url).await;
    v1.say("c-0", "agent", "original").await;
    let (_, first) = v1.until("ack").await;
    server.stop().await;

    // More than the window after it, written by another store (another server's memory).
    let newer = jiva_store_dynamo::RECENT_WINDOW + 6;
    {
        let store = backing
            .store(&jivachat_server::Config::with_data_dir(dir.path()))
            .await;
        let chat = ChatId::new(AgentId::parse(AGENT).unwrap(), ConnectionType::Supervisor);
        for i in 0..newer {
            let message = Message::user(chat.clone(), Sender::Agent, format!("m-{i}"));
            store.append(&message).await.unwrap();
        }
    }

    let server = TestServer::start_in(&backing, |_| {}).await;
    let url = server.chat_url(AGENT, "supervisor");
    let (mut v1, _, live) = V1::open(&url).await;
    assert_eq!(live, Some(newer as u64 + 1));
    v1.say("c-0", "agent", "original").await;
    let (between, again) = v1.until("ack").await;
    assert_eq!(ack_of(&first), ack_of(&again));
    assert!(of_type(&between, "message").is_empty(), "{between:?}");
    assert!(of_type(&v1.drain().await, "message").is_empty());
    v1.send(json!({"type":"page","ref":"all","before":1000,"limit":100}))
        .await;
    let page = v1.expect("page").await;
    let stored: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(stored.len(), newer + 1, "{stored:?}");
    assert_eq!(stored.iter().filter(|t| **t == "original").count(), 1);
    assert_eq!(page["has_older"], false);
    server.stop().await;
}

on_both_stores!(resent_to_another_server_past_many_newer_messages_is_stored_once_with_the_same_ack);
