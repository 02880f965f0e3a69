//! Failures: malformed cursors, bad limits, an unreachable server.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{Credentials, Region};
use jiva_core::{ConnectionType, Cursor, MessageStore, Sender, StoreError};
use jiva_store_dynamo::{Config, DynamoStore};

use crate::support::{chat, dynamo, legacy_config, store, text};

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
    let builder = aws_sdk_dynamodb::config::Builder::new()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"));
    let client = aws_sdk_dynamodb::Client::from_conf(config.apply_to(builder).build());
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
