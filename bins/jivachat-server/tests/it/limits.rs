//! Limits: sockets in total and per IP, handshake rate, message rate, copilot questions per
//! minute, idle sockets, and per-chat state dropped when a chat's last socket goes.
//!
//! Each test runs the real binary in a process of its own (configured through the
//! environment), so that the counters it reads are its own.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::metrics::{ServerProcess, get, sample};
use crate::support::*;

const CHAT: &str = "/?agentID=0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21&secondaryID=supervisor";

/// The value of `series` in the server's `/metrics`.
async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (_, _, text) = get(addr, "/metrics").await;
    sample(&text, series).unwrap_or_else(|| panic!("{series} missing in:\n{text}"))
}

/// Handshakes refused for `reason`.
async fn refused(addr: SocketAddr, reason: &str) -> f64 {
    metric(
        addr,
        &format!(r#"jiva_handshakes_refused_total{{reason="{reason}"}}"#),
    )
    .await
}

/// Polls `/metrics` until `series` has `value` (for state the server updates after a socket
/// closes, which no client event marks).
async fn await_metric(addr: SocketAddr, series: &str, value: f64) {
    let wait = async {
        loop {
            if metric(addr, series).await == value {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(PATIENCE, wait).await.is_err() {
        panic!(
            "{series} stayed at {} instead of {value}",
            metric(addr, series).await
        );
    }
}

/// An upgrade request with an `X-Forwarded-For` header.
fn upgrade_from(forwarded_for: &str) -> String {
    upgrade_request(CHAT).replace(
        "\r\n\r\n",
        &format!("\r\nX-Forwarded-For: {forwarded_for}\r\n\r\n"),
    )
}

/// A WebSocket client whose request carries `X-Forwarded-For`.
async fn connect_from(addr: SocketAddr, forwarded_for: &str) -> Ws {
    let mut request = format!("ws://{addr}{CHAT}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", forwarded_for.parse().unwrap());
    let (ws, response) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
        .await
        .expect("connect timed out")
        .unwrap();
    assert_eq!(response.status(), 101);
    ws
}

#[tokio::test]
async fn sockets_over_the_total_limit_get_503() {
    let server = ServerProcess::start_with(&[("JIVA_MAX_SOCKETS", "2")]);
    let url = server.chat_url("supervisor");
    let _a = connect(&url).await;
    let _b = connect(&url).await;
    let (status, body) = raw_http(server.addr, &upgrade_request(CHAT)).await;
    assert_eq!(status, 503);
    assert_eq!(body, "too many connections\n");
    assert_eq!(refused(server.addr, "sockets_total").await, 1.0);
    // Plain HTTP is not a socket and still answers.
    let (status, _, _) = get(server.addr, "/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn sockets_over_the_per_ip_limit_get_429_and_forwarded_for_is_ignored_by_default() {
    let server = ServerProcess::start_with(&[("JIVA_MAX_SOCKETS_PER_IP", "1")]);
    let _a = connect_from(server.addr, "192.0.2.1").await;
    // Another claimed address, the same peer: refused.
    let (status, body) = raw_http(server.addr, &upgrade_from("192.0.2.2")).await;
    assert_eq!(status, 429);
    assert_eq!(body, "too many connections from this address\n");
    assert_eq!(refused(server.addr, "sockets_per_ip").await, 1.0);
}

#[tokio::test]
async fn trusted_forwarded_for_limits_each_client_by_its_right_most_entry() {
    let server = ServerProcess::start_with(&[
        ("JIVA_MAX_SOCKETS_PER_IP", "1"),
        ("JIVA_TRUST_FORWARDED_FOR", "true"),
    ]);
    let _a = connect_from(server.addr, "192.0.2.1").await;
    let _b = connect_from(server.addr, "192.0.2.2").await;
    // The proxy appended 192.0.2.1; whatever the client claimed before it does not count.
    let (status, _) = raw_http(server.addr, &upgrade_from("198.51.100.7, 192.0.2.1")).await;
    assert_eq!(status, 429);
    assert_eq!(refused(server.addr, "sockets_per_ip").await, 1.0);
}

#[tokio::test]
async fn handshakes_over_the_per_ip_rate_get_429() {
    let server = ServerProcess::start_with(&[("JIVA_HANDSHAKES_PER_IP_PER_SEC", "2")]);
    let mut refusals = 0;
    // Two per second are allowed: well before fifty quick attempts, one is refused.
    for _ in 0..50 {
        let (status, _) = raw_http(server.addr, &upgrade_request(CHAT)).await;
        match status {
            101 => {}
            429 => {
                refusals += 1;
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(refusals, 1);
    assert_eq!(refused(server.addr, "handshake_rate").await, 1.0);
}

#[tokio::test]
async fn messages_over_the_rate_get_an_error_then_close_1008() {
    let server =
        ServerProcess::start_with(&[("JIVA_MESSAGES_PER_SEC", "1"), ("JIVA_MESSAGE_BURST", "2")]);
    let mut ws = connect(&server.chat_url("supervisor")).await;
    // The burst, then far more than the limit tolerates in a row.
    for i in 0..2 + 2 * jiva_ws::EXCESS_FRAMES_BEFORE_CLOSE {
        let frame = json!({"sender": "agent", "message": format!("m{i}")});
        // The server may close while these are still being sent.
        let _ = ws.feed(Message::text(frame.to_string())).await;
    }
    let _ = ws.flush().await;
    let mut stored = Vec::new();
    let mut errors = Vec::new();
    let close = loop {
        match next_frame(&mut ws).await {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                match frame.get("error") {
                    Some(error) => errors.push(error.clone()),
                    None => stored.push(frame["message"].clone()),
                }
            }
            Message::Close(close) => break close,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(close.unwrap().code, CloseCode::Policy);
    assert_eq!(stored.first(), Some(&json!("m0")));
    assert_eq!(stored.get(1), Some(&json!("m1")));
    assert!(!errors.is_empty());
    assert!(
        errors
            .iter()
            .all(|e| e == "rate limit exceeded; message not stored"),
        "{errors:?}"
    );
    assert_eq!(
        metric(server.addr, "jiva_rate_limit_closes_total").await,
        1.0
    );
    assert!(
        metric(
            server.addr,
            r#"jiva_messages_refused_total{reason="message_rate"}"#
        )
        .await
            >= f64::from(jiva_ws::EXCESS_FRAMES_BEFORE_CLOSE)
    );
    // What was refused was not stored: a new socket replays only what was echoed.
    let mut again = connect(&server.chat_url("supervisor")).await;
    assert_eq!(replayed_messages(&mut again).await, stored);
}

#[tokio::test]
async fn copilot_questions_over_the_per_minute_limit_get_an_error_and_end_and_are_not_stored() {
    let server = ServerProcess::start_with(&[("JIVA_COPILOT_QUESTIONS_PER_MIN", "1")]);
    let mut ws = connect(&server.chat_url("copilot")).await;
    say(&mut ws, "agent", "first question").await;
    // Stored and echoed, then (no copilot is configured) an error and `end`.
    loop {
        if next_json(&mut ws).await["action"] == "end" {
            break;
        }
    }
    say(&mut ws, "agent", "second question").await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"error": "copilot question limit reached; message not stored"})
    );
    assert_eq!(
        next_json(&mut ws).await,
        json!({"action": "end", "output": ""})
    );
    assert_eq!(
        metric(
            server.addr,
            r#"jiva_messages_refused_total{reason="copilot_rate"}"#
        )
        .await,
        1.0
    );
    assert_eq!(metric(server.addr, "jiva_copilot_turns_total").await, 1.0);

    let mut again = connect(&server.chat_url("copilot")).await;
    assert_eq!(
        replayed_messages(&mut again).await,
        vec![json!("first question")]
    );
}

#[tokio::test]
async fn a_socket_that_answers_no_ping_is_closed_after_the_idle_timeout() {
    let server = ServerProcess::start_with(&[("JIVA_IDLE_TIMEOUT_SECS", "1")]);
    // A live client: tungstenite answers pings while the stream is read.
    let (mut live_sink, mut live_stream) = connect(&server.chat_url("supervisor")).await.split();
    let (frames_tx, mut frames_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = live_stream.next().await {
            if frames_tx.send(frame).is_err() {
                break;
            }
        }
    });

    // A client that completes the upgrade and then never reads or answers anything.
    let mut dead = TcpStream::connect(server.addr).await.unwrap();
    dead.write_all(upgrade_request(CHAT).as_bytes())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, dead.read_to_end(&mut seen)).await;
    assert!(closed.is_ok(), "the silent socket was not closed");
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 101"));
    assert_eq!(metric(server.addr, "jiva_idle_closes_total").await, 1.0);

    // The live client joined first, so it has been connected longer than the timeout too:
    // it is still there because it answered the pings.
    let frame = json!({"sender": "agent", "message": "still here"});
    live_sink
        .send(Message::text(frame.to_string()))
        .await
        .unwrap();
    let echo = loop {
        let frame = tokio::time::timeout(PATIENCE, frames_rx.recv())
            .await
            .expect("no echo")
            .expect("the live socket ended");
        match frame {
            Message::Text(text) => break serde_json::from_str::<Value>(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("the live socket got {other:?}"),
        }
    };
    assert_eq!(echo["message"], "still here");
    assert_eq!(metric(server.addr, "jiva_idle_closes_total").await, 1.0);
}

#[tokio::test]
async fn a_connection_that_sends_no_request_is_closed_after_the_header_timeout() {
    let server = ServerProcess::start_with(&[("JIVA_REQUEST_HEADER_TIMEOUT_SECS", "1")]);
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, silent.read_to_end(&mut seen)).await;
    assert!(closed.is_ok(), "the silent connection was not closed");
    assert_eq!(
        metric(server.addr, "jiva_request_header_timeouts_total").await,
        1.0
    );
}

#[tokio::test]
async fn per_chat_state_is_dropped_when_the_last_socket_of_a_chat_leaves() {
    const CHATS: usize = 20;
    let server = ServerProcess::start_with(&[]);
    let mut sockets = Vec::new();
    for i in 0..CHATS {
        let url = format!(
            "ws://{}/?agentID=agent-{i}&secondaryID={}",
            server.addr,
            if i % 2 == 0 { "supervisor" } else { "copilot" }
        );
        let mut ws = connect(&url).await;
        say(&mut ws, "agent", "hello").await;
        assert_eq!(next_json(&mut ws).await["message"], "hello");
        sockets.push(ws);
    }
    // The copilot chats' turns end (with an error: no copilot is configured).
    for ws in sockets.iter_mut().skip(1).step_by(2) {
        loop {
            if next_json(ws).await["action"] == "end" {
                break;
            }
        }
    }
    assert_eq!(metric(server.addr, "jiva_chats_open").await, CHATS as f64);
    assert_eq!(
        metric(server.addr, "jiva_chats_registered").await,
        CHATS as f64
    );
    for mut ws in sockets {
        ws.close(None).await.unwrap();
    }
    await_metric(server.addr, "jiva_sockets_open", 0.0).await;
    assert_eq!(metric(server.addr, "jiva_chats_open").await, 0.0);
    assert_eq!(metric(server.addr, "jiva_chats_registered").await, 0.0);

    // Coming back registers the chat again and finds its history.
    let mut ws = connect(&format!(
        "ws://{}/?agentID=agent-0&secondaryID=supervisor",
        server.addr
    ))
    .await;
    assert_eq!(next_json(&mut ws).await["message"], "hello");
    assert_eq!(metric(server.addr, "jiva_chats_registered").await, 1.0);
}
