//! Negotiation and the start of a session.

use serde_json::json;

use super::{V1, of_type};
use crate::support::{AGENT, TestServer, next_json, say};

#[tokio::test]
async fn offering_jivachat_v1_selects_v1_and_the_server_answers_the_subprotocol() {
    let server = TestServer::start().await;
    let (v1, before, live) = V1::open(&server.chat_url(AGENT, "supervisor")).await;
    assert_eq!(v1.protocol.as_deref(), Some("jivachat.v1"));
    assert_eq!(before[0]["type"], "welcome");
    assert_eq!(before[0]["protocol"], "jivachat.v1");
    assert_eq!(before[0]["chat_id"], format!("{AGENT}-supervisor"));
    assert_eq!(before[0]["you"]["role"], "anonymous");
    assert_eq!(before[1]["type"], "presence");
    assert_eq!(
        before[2],
        json!({"type":"latest","messages":[],"has_older":false})
    );
    assert_eq!(before.len(), 3);
    assert_eq!(live, None);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_offers_no_subprotocol_gets_v0_and_no_subprotocol_answer() {
    let server = TestServer::start().await;
    let (mut ws, response) = tokio_tungstenite::connect_async(server.chat_url(AGENT, "supervisor"))
        .await
        .unwrap();
    assert!(response.headers().get("sec-websocket-protocol").is_none());
    say(&mut ws, "agent", "plain v0").await;
    let frame = next_json(&mut ws).await;
    assert_eq!(frame["message"], "plain v0");
    assert!(frame.get("type").is_none(), "{frame}");
    server.stop().await;
}

#[tokio::test]
async fn v0_and_v1_sockets_of_one_chat_see_the_same_messages_each_in_its_protocol() {
    let server = TestServer::start().await;
    let mut v0 = server.connect(AGENT, "supervisor").await;
    let (mut v1, _, _) = V1::open(&server.chat_url(AGENT, "supervisor")).await;
    say(&mut v0, "agent", "from v0").await;
    let m = v1.expect("message").await;
    assert_eq!(
        (m["text"].as_str(), m["sender"].as_str(), m["kind"].as_str()),
        (Some("from v0"), Some("agent"), Some("text"))
    );
    v1.say("c-1", "supervisor", "from v1").await;
    let frames = v1.drain().await;
    let v0_frames = [next_json(&mut v0).await, next_json(&mut v0).await];
    assert_eq!(v0_frames[1]["message"], "from v1");
    assert_eq!(v0_frames[1]["sender"], "supervisor");
    let message = of_type(&frames, "message");
    assert_eq!(message.len(), 1);
    assert_eq!(message[0]["message_id"], v0_frames[1]["message_id"]);
    assert_eq!(message[0]["seq"], v0_frames[1]["seq"]);
    server.stop().await;
}

#[tokio::test]
async fn an_invalid_since_is_answered_400_before_the_upgrade() {
    let server = TestServer::start().await;
    let request = format!(
        "GET /?agentID={AGENT}&secondaryID=copilot&since=x HTTP/1.1\r\nHost: localhost\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: jivachat.v1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let (status, body) = crate::support::raw_http(server.addr, &request).await;
    assert_eq!(status, 400);
    assert_eq!(body, "since must be a non-negative integer\n");
    server.stop().await;
}

#[tokio::test]
async fn frames_that_are_not_v1_get_errors_with_stable_codes_and_their_ref() {
    let server = TestServer::start().await;
    let (mut v1, _, _) = V1::open(&server.chat_url(AGENT, "supervisor")).await;
    v1.ws
        .send(tokio_tungstenite::tungstenite::Message::text("{nope"))
        .await
        .unwrap();
    let e = v1.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), &e["ref"]),
        (Some("invalid_json"), &json!(null))
    );
    v1.send(json!({"type":"shout","ref":"s1"})).await;
    let e = v1.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("invalid_frame"), Some("s1"))
    );
    v1.send(json!({"type":"send","ref":"r2","client_id":"bad id","sender":"agent","text":"x"}))
        .await;
    let e = v1.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("invalid_id"), Some("r2"))
    );
    v1.send(json!({"type":"send","ref":"r3","client_id":"c","sender":"agent","text":""}))
        .await;
    let e = v1.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("empty_text"), Some("r3"))
    );
    v1.send(json!({"type":"ping","ref":"k1"})).await;
    assert_eq!(v1.expect("pong").await, json!({"type":"pong","ref":"k1"}));
    // Nothing was stored or shown.
    assert!(of_type(&v1.drain().await, "message").is_empty());
    server.stop().await;
}

use futures_util::SinkExt;

#[tokio::test]
async fn a_binary_frame_and_a_frame_over_the_rate_get_their_v1_error_codes() {
    let server = TestServer::start_with(|config| {
        config.transport.limits.messages_per_sec = 1;
        config.transport.limits.message_burst = 2;
    })
    .await;
    let (mut v1, _, _) = V1::open(&server.chat_url(AGENT, "supervisor")).await;
    // The binary frame takes the first token of the burst, the first send the second.
    v1.ws
        .send(tokio_tungstenite::tungstenite::Message::binary(vec![
            1, 2, 3,
        ]))
        .await
        .unwrap();
    let e = v1.expect("error").await;
    assert_eq!(e["code"], "binary_not_supported");
    v1.say("c-1", "agent", "within the burst").await;
    v1.until("ack").await;
    v1.say("c-2", "agent", "over the rate").await;
    let e = v1.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["reason"].as_str()),
        (
            Some("rate_limited"),
            Some("rate limit exceeded; message not stored")
        )
    );
    server.stop().await;
}
