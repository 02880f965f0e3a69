//! The client speaking v0, the protocol every current server speaks.

use jiva_client::{Client, ClientError, Event, Protocol, V0Frame};

use super::{Restartable, next_matching};
use crate::support::AGENT;

fn defaults(_: &mut jivachat_server::Config) {}

async fn next_message(events: &mut jiva_client::Events) -> String {
    next_matching(events, |e| match e {
        Event::V0(V0Frame::Message { message, .. }) => Some(message),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v0_client_sends_and_receives_the_echo() {
    let server = Restartable::start(defaults).await;
    let (client, mut events) = server.connect(AGENT, Protocol::V0).await;
    let (other, mut other_events) = server.connect(AGENT, Protocol::V0).await;
    client.say("hello over v0").await.unwrap();
    assert_eq!(next_message(&mut events).await, "hello over v0");
    assert_eq!(next_message(&mut other_events).await, "hello over v0");
    assert!(matches!(client.send("x").await, Err(ClientError::NotV1)));
    client.close().await;
    other.close().await;
    let error = next_matching(&mut events, |e| match e {
        Event::Closed { error } => Some(error),
        _ => None,
    })
    .await;
    assert!(error.is_none(), "a clean close has no error: {error:?}");
    assert!(events.next().await.is_none(), "the events end after Closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v0_client_reconnects_after_a_server_restart() {
    let mut server = Restartable::start(defaults).await;
    let (client, mut events) = server.connect(AGENT, Protocol::V0).await;
    client.say("before").await.unwrap();
    assert_eq!(next_message(&mut events).await, "before");

    server.restart().await;
    let reason = next_matching(&mut events, |e| match e {
        Event::Disconnected { reason } => Some(reason),
        _ => None,
    })
    .await;
    assert!(
        reason.contains("1001"),
        "shutdown closes with 1001: {reason}"
    );
    next_matching(&mut events, |e| {
        matches!(e, Event::Connected { .. }).then_some(())
    })
    .await;
    // v0 replays the stored history on every connection.
    assert_eq!(next_message(&mut events).await, "before");
    client.say("after").await.unwrap();
    assert_eq!(next_message(&mut events).await, "after");
    assert_eq!(client.stats().connections, 2);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_is_an_error_not_a_retry_loop() {
    let server = Restartable::start(defaults).await;
    let too_long = "a".repeat(1000);
    let config = server.config(&too_long, Protocol::V0);
    match Client::connect(config).await {
        Err(ClientError::Refused { status: 400 }) => {}
        other => panic!("expected a 400 refusal, got {:?}", other.map(|_| ())),
    }
}
