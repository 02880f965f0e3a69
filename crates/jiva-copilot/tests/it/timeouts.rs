//! Time limits: a silent copilot ends the answer instead of hanging the turn.

use std::time::{Duration, Instant};

use jiva_copilot::HttpCopilot;
use jiva_core::{Copilot, CopilotError, TimeoutKind};

use crate::server::{
    Step, chunk, chunk_of, collect, config, head_chunked, question, serve, within,
};

const LIMIT: Duration = Duration::from_millis(200);

#[tokio::test]
async fn slow_headers_are_a_first_byte_timeout() {
    let server = serve(vec![Step::Hold]).await;
    let mut config = config(server.url());
    config.first_byte_timeout = LIMIT;
    let copilot = HttpCopilot::new(config).unwrap();
    let started = Instant::now();
    let result = within(copilot.ask(question())).await;
    assert!(
        matches!(result, Err(CopilotError::Timeout(TimeoutKind::FirstByte))),
        "{:?}",
        result.err()
    );
    assert!(started.elapsed() >= LIMIT);
}

#[tokio::test]
async fn headers_without_a_body_are_a_first_byte_timeout() {
    let server = serve(vec![head_chunked(200, "application/json"), Step::Hold]).await;
    let mut config = config(server.url());
    config.first_byte_timeout = LIMIT;
    let copilot = HttpCopilot::new(config).unwrap();
    let result = within(copilot.ask(question())).await;
    assert!(
        matches!(result, Err(CopilotError::Timeout(TimeoutKind::FirstByte))),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn a_copilot_that_goes_silent_ends_the_stream_with_an_idle_timeout() {
    let server = serve(vec![
        head_chunked(200, "application/json"),
        chunk(r#"{"action":null,"output":"thinking"}{"action":null,"#),
        Step::Hold,
    ])
    .await;
    let mut config = config(server.url());
    config.idle_timeout = LIMIT;
    let copilot = HttpCopilot::new(config).unwrap();
    let stream = within(copilot.ask(question())).await.unwrap();
    let started = Instant::now();
    let items = collect(stream).await;
    assert!(started.elapsed() >= LIMIT);
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(
        items[0].as_ref().unwrap(),
        &chunk_of(None, Some("thinking"))
    );
    assert!(
        matches!(items[1], Err(CopilotError::Timeout(TimeoutKind::Idle))),
        "{items:?}"
    );
}

#[tokio::test]
async fn a_connection_that_cannot_be_opened_in_time_is_a_connect_timeout() {
    // A listener that never accepts, with its accept queue full: the kernel drops further SYNs,
    // so a new connection attempt hangs until the client gives up.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    let mut full = false;
    for _ in 0..64 {
        match tokio::time::timeout(LIMIT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(e)) => panic!("filling the accept queue failed: {e}"),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "the accept queue never filled up");
    let mut config = config(&format!("http://{addr}/ask"));
    config.connect_timeout = LIMIT;
    let copilot = HttpCopilot::new(config).unwrap();
    let result = within(copilot.ask(question())).await;
    assert!(
        matches!(result, Err(CopilotError::Timeout(TimeoutKind::Connect))),
        "{:?}",
        result.err()
    );
    drop(fillers);
}
