//! PROTOCOL.md §2–§4: frames and fan-out on the supervisor chat.

use std::collections::HashMap;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

fn assert_user_frame(frame: &Value, sender: &str, text: &str) {
    assert_eq!(frame["chat_id"], format!("{AGENT}-supervisor"));
    assert_eq!(frame["sender"], sender);
    assert_eq!(frame["message"], text);
    assert!(uuid_like(&frame["message_id"]), "{frame}");
    assert!(frame["timestamp"]["secs_since_epoch"].as_i64().unwrap() > 1_700_000_000);
    assert!(frame["timestamp"]["nanos_since_epoch"].as_u64().unwrap() < 1_000_000_000);
    assert!(frame.get("error").is_none());
}

fn uuid_like(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 36 && s.matches('-').count() == 4)
}

async fn history_is_replayed_oldest_first_with_the_live_ids(kind: StoreKind) {
    let server = TestServer::start_on(kind).await;
    let mut ws = server.connect(AGENT, "supervisor").await;
    let mut live = Vec::new();
    for i in 0..7 {
        let sender = if i % 2 == 0 { "agent" } else { "supervisor" };
        say(&mut ws, sender, &format!("message {i} with }} and 🙂")).await;
        let frame = next_json(&mut ws).await;
        assert_user_frame(&frame, sender, &format!("message {i} with }} and 🙂"));
        live.push(frame);
    }
    ws.close(None).await.unwrap();

    let mut again = server.connect(AGENT, "supervisor").await;
    let replayed = take_json(&mut again, 7).await;
    assert_eq!(
        replayed, live,
        "replay must equal the live frames, ids and timestamps included"
    );
    // Nothing else is replayed: the next frame is a new message.
    say(&mut again, "agent", "after replay").await;
    assert_eq!(next_json(&mut again).await["message"], "after replay");
    server.stop().await;
}

async fn broadcast_includes_the_sender_and_stays_inside_its_chat(kind: StoreKind) {
    let server = TestServer::start_on(kind).await;
    let mut a1 = server.connect(AGENT, "supervisor").await;
    let mut a2 = server.connect(AGENT, "supervisor").await;
    let mut same_agent_copilot = server.connect(AGENT, "copilot").await;
    let other_agent = "7d1c0b9e-2222-4c39-9a57-3c3f0e6a9d21";
    let mut other = server.connect(other_agent, "supervisor").await;

    say(&mut a1, "agent", "hello supervisors").await;
    let echo = next_json(&mut a1).await;
    assert_user_frame(&echo, "agent", "hello supervisors");
    assert_eq!(next_json(&mut a2).await, echo);

    // The other chats saw nothing: their next frame is their own message.
    say(&mut other, "agent", "mine").await;
    let mine = next_json(&mut other).await;
    assert_eq!(mine["message"], "mine");
    assert_eq!(mine["chat_id"], format!("{other_agent}-supervisor"));
    send(&mut same_agent_copilot, json!({"action": "ping"})).await;
    say(&mut same_agent_copilot, "agent", "copilot question").await;
    assert_eq!(
        next_json(&mut same_agent_copilot).await["message"],
        "copilot question"
    );
    server.stop().await;
}

async fn keepalives_are_silent_and_not_stored(kind: StoreKind) {
    let server = TestServer::start_on(kind).await;
    let mut a = server.connect(AGENT, "supervisor").await;
    let mut b = server.connect(AGENT, "supervisor").await;
    send(&mut a, json!({"ping": "pong"})).await;
    send(&mut a, json!({"action": "ping"})).await;
    send(&mut b, json!({"ping": "pong"})).await;
    say(&mut a, "agent", "real").await;
    // Frames are handled in order, so an answer to a keepalive would arrive before this echo.
    assert_eq!(next_json(&mut a).await["message"], "real");
    assert_eq!(next_json(&mut b).await["message"], "real");
    say(&mut b, "supervisor", "second").await;
    assert_eq!(next_json(&mut b).await["message"], "second");
    assert_eq!(next_json(&mut a).await["message"], "second");

    let mut c = server.connect(AGENT, "supervisor").await;
    let history = take_json(&mut c, 2).await;
    assert_eq!(history[0]["message"], "real");
    assert_eq!(history[1]["message"], "second");
    say(&mut c, "agent", "third").await;
    assert_eq!(
        next_json(&mut c).await["message"],
        "third",
        "keepalives must not be stored"
    );
    server.stop().await;
}

async fn invalid_frames_reach_the_sender_only(kind: StoreKind) {
    let server = TestServer::start_on(kind).await;
    let mut a = server.connect(AGENT, "supervisor").await;
    let mut b = server.connect(AGENT, "supervisor").await;
    a.send(Message::text("this is not json")).await.unwrap();
    assert_eq!(next_json(&mut a).await, json!({"error": "invalid JSON"}));
    send(&mut a, json!({"sender": "agent"})).await;
    assert_eq!(
        next_json(&mut a).await,
        json!({"error": "not a chat message"})
    );
    send(
        &mut a,
        json!({"sender": "Copilot", "message": "impersonation"}),
    )
    .await;
    assert!(next_json(&mut a).await["error"].is_string());
    a.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        next_json(&mut a).await,
        json!({"error": "binary frames are not supported"})
    );

    say(&mut a, "agent", "valid").await;
    assert_eq!(next_json(&mut a).await["message"], "valid");
    // b saw none of the errors: its first frame is the valid message.
    assert_eq!(next_json(&mut b).await["message"], "valid");
    server.stop().await;
}

async fn an_oversized_frame_closes_that_socket_with_1009_only(kind: StoreKind) {
    let server = TestServer::start_on_with(kind, |c| c.transport.max_frame_bytes = 1024).await;
    let mut big = server.connect(AGENT, "supervisor").await;
    let mut other = server.connect(AGENT, "supervisor").await;
    say(&mut big, "agent", &"x".repeat(4000)).await;
    match next_frame(&mut big).await {
        Message::Close(Some(close)) => assert_eq!(close.code, CloseCode::Size),
        other => panic!("expected close 1009, got {other:?}"),
    }
    say(&mut other, "agent", "still here").await;
    assert_eq!(next_json(&mut other).await["message"], "still here");
    // The oversized message was not stored.
    let mut fresh = server.connect(AGENT, "supervisor").await;
    assert_eq!(next_json(&mut fresh).await["message"], "still here");
    server.stop().await;
}

async fn a_socket_that_never_reads_does_not_stall_the_others(kind: StoreKind) {
    const QUEUE: usize = 64;
    // The reading sockets stay at most this many frames behind, however loaded the machine, so
    // only the stuck socket can overflow its queue.
    const WINDOW: usize = 8;
    let server = TestServer::start_on_with(kind, |c| c.transport.outbound_queue = QUEUE).await;
    // A client that completes the handshake with a tiny receive buffer and never reads again.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(server.addr).await.unwrap();
    let request = upgrade_request(&format!("/?agentID={AGENT}&secondaryID=supervisor"));
    tokio::io::AsyncWriteExt::write_all(&mut stuck, request.as_bytes())
        .await
        .unwrap();

    let mut reader = server.connect(AGENT, "supervisor").await;
    let (mut writer, mut echoes) =
        futures_util::StreamExt::split(server.connect(AGENT, "supervisor").await);
    let text = "y".repeat(40 * 1024);
    let n = 300; // 12 MB in all: far more than the stuck socket's queue and kernel buffers hold.
    let read_credit = tokio::sync::Semaphore::new(WINDOW);
    let echo_credit = tokio::sync::Semaphore::new(WINDOW);
    let send_all = async {
        for i in 0..n {
            read_credit.acquire().await.unwrap().forget();
            echo_credit.acquire().await.unwrap().forget();
            let frame = json!({"sender": "agent", "message": format!("{i} {text}")});
            writer.send(Message::text(frame.to_string())).await.unwrap();
        }
    };
    let drain_echoes = async {
        let mut seen = 0;
        while seen < n {
            let frame = tokio::time::timeout(PATIENCE, futures_util::StreamExt::next(&mut echoes))
                .await
                .unwrap();
            match frame {
                Some(Ok(Message::Text(_))) => {
                    seen += 1;
                    echo_credit.add_permits(1);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("the sender's socket ended or failed: {other:?}"),
            }
        }
    };
    let read_all = async {
        for i in 0..n {
            let frame = next_json(&mut reader).await;
            let message = frame["message"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("{i} ")),
                "frame {i} out of order"
            );
            read_credit.add_permits(1);
        }
    };
    tokio::join!(send_all, read_all, drain_echoes);

    // The stuck socket was closed by the server: reading it now reaches the end.
    let mut sink = Vec::new();
    let drained = tokio::time::timeout(PATIENCE, stuck.read_to_end(&mut sink)).await;
    assert!(drained.is_ok(), "the server kept the stuck socket open");
    server.stop().await;
}

async fn concurrent_senders_reach_every_socket_once_in_order(kind: StoreKind) {
    const SENDERS: usize = 10;
    const EACH: usize = 50;
    let server = TestServer::start_on_with(kind, |c| c.transport.outbound_queue = 1024).await;
    let mut sockets = Vec::new();
    for _ in 0..SENDERS + 2 {
        sockets.push(server.connect(AGENT, "supervisor").await);
    }
    let mut tasks = Vec::new();
    for (s, ws) in sockets.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            use futures_util::StreamExt;
            let (mut sink, mut stream) = ws.split();
            let send = async {
                if s < SENDERS {
                    for i in 0..EACH {
                        let frame = json!({"sender": "agent", "message": format!("{s}:{i}")});
                        sink.send(Message::text(frame.to_string())).await.unwrap();
                    }
                }
            };
            let receive = async {
                let mut received = Vec::with_capacity(SENDERS * EACH);
                while received.len() < SENDERS * EACH {
                    let frame = tokio::time::timeout(PATIENCE, stream.next())
                        .await
                        .unwrap()
                        .unwrap()
                        .unwrap();
                    if let Message::Text(text) = frame {
                        let v: Value = serde_json::from_str(&text).unwrap();
                        received.push(v["message"].as_str().unwrap().to_owned());
                    }
                }
                received
            };
            let ((), received) = tokio::join!(send, receive);
            received
        }));
    }
    let mut orders = Vec::new();
    for task in tasks {
        let received = task.await.unwrap();
        let mut next_expected: HashMap<usize, usize> = HashMap::new();
        for m in &received {
            let (s, i) = m.split_once(':').unwrap();
            let (s, i): (usize, usize) = (s.parse().unwrap(), i.parse().unwrap());
            let expected = next_expected.entry(s).or_insert(0);
            assert_eq!(i, *expected, "sender {s} out of order or duplicated");
            *expected += 1;
        }
        assert_eq!(next_expected.len(), SENDERS);
        assert!(next_expected.values().all(|&n| n == EACH));
        orders.push(received);
    }
    // Every socket of the chat saw the same order.
    assert!(orders.windows(2).all(|w| w[0] == w[1]));
    server.stop().await;
}

crate::on_both_stores!(
    history_is_replayed_oldest_first_with_the_live_ids,
    broadcast_includes_the_sender_and_stays_inside_its_chat,
    keepalives_are_silent_and_not_stored,
    invalid_frames_reach_the_sender_only,
    an_oversized_frame_closes_that_socket_with_1009_only,
    a_socket_that_never_reads_does_not_stall_the_others,
    concurrent_senders_reach_every_socket_once_in_order,
);
