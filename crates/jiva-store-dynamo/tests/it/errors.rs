//! Failures: malformed cursors, bad limits, an unreachable server.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{Credentials, Region};
use jiva_core::{ConnectionType, Cursor, MessageStore, Sender, StoreError};
use jiva_store_dynamo::{Config, DynamoStore};

use crate::support::{chat, dynamo, legacy_config, store, text};

/// An SDK client for `config` with static test credentials (no credential chain is read).
fn client_for(config: &Config) -> aws_sdk_dynamodb::Client {
    let builder = aws_sdk_dynamodb::config::Builder::new()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"));
    aws_sdk_dynamodb::Client::from_conf(config.apply_to(builder).build())
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::InvalidInput(_)) => {}
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[tokio::test]
async fn a_malformed_or_foreign_cursor_is_invalid_input() {
    let store = store().await;
    let chat = chat(ConnectionType::Supervisor);
    for i in 0..3 {
        store
            .append(&text(&chat, Sender::Agent, 1_700_000_000_000 + i, "m"))
            .await
            .unwrap();
    }
    let page = store.history(&chat, None, 1).await.unwrap();
    let good = page.next.unwrap();

    for token in ["", "zz", "not a cursor", "7b7d", "%%%"] {
        assert_invalid(
            store
                .history(&chat, Some(Cursor::from_token(token.into())), 10)
                .await,
        );
    }
    // A cursor of another chat is refused, not passed to DynamoDB.
    let other = crate::support::chat(ConnectionType::Supervisor);
    assert_invalid(store.history(&other, Some(good.clone()), 10).await);
    // A native cursor means nothing to the legacy layout.
    let legacy = dynamo().store_with(legacy_config()).await.unwrap();
    assert_invalid(legacy.history(&chat, Some(good.clone()), 10).await);
    // The genuine one still works.
    assert_eq!(
        store
            .history(&chat, Some(good), 10)
            .await
            .unwrap()
            .messages
            .len(),
        2
    );
    assert_invalid(store.history(&chat, None, 0).await);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_quickly() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = Config {
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        max_attempts: 2,
        initial_backoff: Duration::from_millis(10),
        connect_timeout: Duration::from_secs(1),
        operation_timeout: Duration::from_secs(3),
        ..Config::default()
    };
    let client = client_for(&config);
    let store = DynamoStore::from_client(client, config);
    let chat = chat(ConnectionType::Copilot);

    let started = Instant::now();
    let results = [
        store.check().await.map(|_| ()),
        store.register_chat(&chat).await,
        store
            .append(&text(&chat, Sender::Agent, 1, "m"))
            .await
            .map(|_| ()),
        store.history(&chat, None, 10).await.map(|_| ()),
        store.recent(&chat, 10).await.map(|_| ()),
    ];
    for result in results {
        match result {
            Err(e @ StoreError::Unavailable(_)) => assert!(e.is_transient()),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "five failed calls took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_missing_table_is_unavailable() {
    let dynamo = dynamo();
    let config = dynamo.config();
    let store = DynamoStore::from_client(dynamo.client(&config), config);
    let chat = chat(ConnectionType::Copilot);
    assert!(matches!(
        store.check().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.history(&chat, None, 5).await,
        Err(StoreError::Unavailable(_))
    ));
}

/// A DynamoDB endpoint that accepts connections and never answers; counts the connections.
async fn silent_endpoint() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn past_max_in_flight_an_operation_waits_its_turn_then_is_unavailable_without_a_request() {
    let (url, accepted) = silent_endpoint().await;
    // The client gives up on a request after 3 s; the store waits at most 1 s for a turn.
    let client_config = Config {
        endpoint_url: Some(url),
        max_attempts: 1,
        operation_timeout: Duration::from_secs(3),
        ..Config::default()
    };
    let client = client_for(&client_config);
    let config = Config {
        operation_timeout: Duration::from_secs(1),
        max_in_flight: 1,
        ..client_config
    };
    let store = DynamoStore::from_client(client, config);
    let chat = chat(ConnectionType::Supervisor);

    // The first read takes the one turn and hangs on the silent endpoint; the second waits
    // for the turn while it does, and gives up when the time-out comes, having sent nothing.
    let (first, second) = tokio::join!(store.recent(&chat, 10), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        store.history(&chat, None, 10).await
    });
    match first {
        Err(e @ StoreError::Unavailable(_)) => {
            assert!(!e.to_string().contains("already running"), "{e}");
        }
        other => panic!("expected the first read to time out, got {other:?}"),
    }
    match second {
        Err(StoreError::Unavailable(e)) => assert!(
            e.to_string()
                .contains("1 DynamoDB operations were already running"),
            "the second read failed for another reason: {e}"
        ),
        other => panic!("expected the second read to find no turn, got {other:?}"),
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the read with the turn reached the endpoint"
    );

    // The turn came back when the first read ended: the next one is sent.
    let third = store.recent(&chat, 10).await;
    assert!(
        matches!(third, Err(StoreError::Unavailable(_))),
        "{third:?}"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn any_max_in_flight_makes_a_store() {
    for max_in_flight in [0, 1, 256, usize::MAX] {
        let config = Config {
            max_in_flight,
            ..Config::default()
        };
        let client = client_for(&config);
        let store = DynamoStore::from_client(client, config);
        assert_eq!(store.config().max_in_flight, max_in_flight);
    }
}
