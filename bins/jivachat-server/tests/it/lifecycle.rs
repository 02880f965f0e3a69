//! Restart and shutdown.

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
        expect_close(ws, CloseCode::Away).await;
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

/// The real binary: SIGTERM closes open sockets with 1001 and the process exits 0.
#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_exits_zero() {
    use std::process::Stdio;
    use tokio::io::AsyncBufReadExt;

    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jivachat-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
            "--log",
            "info",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("COPILOT_ENDPOINT")
        .env_remove("GRAPHQL_API_URL")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(PATIENCE, async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the server exited before listening");
            if line.contains("JivaChat listening") {
                let addr = line
                    .split("addr=")
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap();
                return addr.to_owned();
            }
        }
    })
    .await
    .expect("the server did not start listening");
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let mut ws = connect(&format!(
        "ws://{addr}/?agentID={AGENT}&secondaryID=supervisor"
    ))
    .await;
    say(&mut ws, "agent", "before SIGTERM").await;
    assert_eq!(next_json(&mut ws).await["message"], "before SIGTERM");

    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    expect_close(&mut ws, CloseCode::Away).await;
    let exit = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the server did not exit")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}

/// RFC 6455 §5.5.1: a client that closes its socket gets the server's close frame back, echoing
/// its code, rather than an abrupt end of the connection (which a browser reports as 1006).
#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame_echoing_its_code() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    let server = TestServer::start().await;
    let mut ws = server.connect(AGENT, "supervisor").await;
    say(&mut ws, "agent", "hello").await;
    assert_eq!(next_json(&mut ws).await["message"], "hello");
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    // Read until the end: the server's close frame must come before it.
    let mut answered = None;
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("the server neither answered nor ended the connection")
        {
            Some(Ok(Message::Close(frame))) => answered = Some(frame),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("the connection ended abruptly: {e}"),
            None => break,
        }
    }
    let frame = answered.expect("no close frame from the server");
    assert_eq!(frame.map(|f| f.code), Some(CloseCode::Normal));
    server.stop().await;
}

/// The binary embeds jemalloc's configuration (`.cargo/config.toml`): one background thread
/// returns pages freed for a second to the system, so an idle server holds what it uses.
#[cfg(feature = "jemalloc")]
#[test]
fn jemalloc_purges_freed_pages_from_one_background_thread() {
    let server = crate::metrics::ServerProcess::start_with(&[]);
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .unwrap()
        .map(|task| {
            let comm = task.unwrap().path().join("comm");
            std::fs::read_to_string(comm).unwrap().trim().to_owned()
        })
        .collect();
    let purgers = threads.iter().filter(|t| *t == "jemalloc_bg_thd").count();
    assert_eq!(purgers, 1, "{threads:?}");
}
