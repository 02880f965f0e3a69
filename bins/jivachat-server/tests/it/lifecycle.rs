//! Restart and shutdown.

use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

async fn data_survives_a_restart_on_the_same_data_directory(kind: StoreKind) {
    let (backing, _dir) = Backing::fresh(kind).await;
    let server = TestServer::start_in(&backing, |_| {}).await;
    let mut ws = server.connect(AGENT, "supervisor").await;
    say(&mut ws, "agent", "before restart").await;
    let before = next_json(&mut ws).await;
    server.stop().await;

    let server = TestServer::start_in(&backing, |_| {}).await;
    let mut ws = server.connect(AGENT, "supervisor").await;
    assert_eq!(next_json(&mut ws).await, before);
    server.stop().await;
}

async fn shutdown_closes_sockets_with_1001_and_keeps_what_was_acknowledged(kind: StoreKind) {
    let (backing, _dir) = Backing::fresh(kind).await;
    let server = TestServer::start_in(&backing, |_| {}).await;
    let mut a = server.connect(AGENT, "supervisor").await;
    let mut b = server.connect(AGENT, "copilot").await;
    say(&mut a, "agent", "acknowledged").await;
    let acknowledged = next_json(&mut a).await;
    let stopping = tokio::spawn(server.stop());
    for ws in [&mut a, &mut b] {
        match next_frame(ws).await {
            Message::Close(Some(close)) => assert_eq!(close.code, CloseCode::Away),
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    stopping.await.unwrap();

    let server = TestServer::start_in(&backing, |_| {}).await;
    let mut again = server.connect(AGENT, "supervisor").await;
    assert_eq!(next_json(&mut again).await, acknowledged);
    server.stop().await;
}

crate::on_both_stores!(
    data_survives_a_restart_on_the_same_data_directory,
    shutdown_closes_sockets_with_1001_and_keeps_what_was_acknowledged,
);
