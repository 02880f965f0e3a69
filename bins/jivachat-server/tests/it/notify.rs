//! PROTOCOL.md §4 and §6: stored messages raise Amplify notifications, off the chat path.

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

use crate::support::*;

/// What the AppSync stand-in received.
pub(crate) struct Received {
    api_key: Option<String>,
    body: Value,
}

/// An AppSync stand-in on loopback. With `hang`, it records each request and never answers.
pub(crate) async fn appsync(hang: bool) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let never = Arc::new(Notify::new());
    let app = Router::new().route(
        "/graphql",
        post(move |headers: HeaderMap, body: String| {
            let tx = tx.clone();
            let never = Arc::clone(&never);
            async move {
                let body: Value = serde_json::from_str(&body).unwrap();
                let api_key = headers
                    .get("x-api-key")
                    .map(|v| v.to_str().unwrap().to_owned());
                let input = body["variables"]["input"].clone();
                tx.send(Received { api_key, body }).unwrap();
                if hang {
                    never.notified().await;
                }
                let mut created = input;
                created["id"] = json!("n-1");
                created["read"] = json!(false);
                created["createdAt"] = json!("2026-11-26T00:00:00.000Z");
                created["updatedAt"] = json!("2026-11-26T00:00:00.000Z");
                created["__typename"] = json!("Notification");
                let answer = json!({"data": {"createNotification": created}}).to_string();
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    answer,
                )
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

fn with_notifications(config: &mut jivachat_server::Config, url: &str) {
    config.notify = Some(jiva_notify_amplify::Config::new(
        url,
        jiva_notify_amplify::ApiKey::new("da2-e2e"),
    ));
}

pub(crate) async fn next_received(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("no notification arrived")
        .unwrap()
}

#[tokio::test]
async fn supervisor_chat_messages_notify_agent_and_supervisor() {
    let (url, mut received) = appsync(false).await;
    let server = TestServer::start_with(|c| with_notifications(c, &url)).await;
    let mut ws = server.connect(AGENT, "supervisor").await;
    say(&mut ws, "agent", "from the agent").await;
    next_json(&mut ws).await;
    say(&mut ws, "supervisor", "from a supervisor").await;
    next_json(&mut ws).await;

    for kind in ["AGENT", "SUPERVISOR"] {
        let r = next_received(&mut received).await;
        assert_eq!(r.api_key.as_deref(), Some("da2-e2e"));
        assert_eq!(
            r.body["variables"]["input"],
            json!({"primaryID": "0b5c7e2a", "secondaryID": "supervisor", "notification_type": kind})
        );
        let query = r.body["query"].as_str().unwrap();
        for field in [
            "id",
            "primaryID",
            "secondaryID",
            "notification_type",
            "read",
            "createdAt",
            "updatedAt",
            "__typename",
        ] {
            assert!(query.contains(field), "selection lacks {field}");
        }
    }
    server.stop().await;
    assert!(
        received.try_recv().is_err(),
        "keepalives or echoes must not notify"
    );
}

#[tokio::test]
async fn a_hanging_notification_endpoint_does_not_delay_the_chat() {
    let (url, mut received) = appsync(true).await;
    let server = TestServer::start_with(|c| {
        with_notifications(c, &url);
        // Shutdown abandons the stuck notification after this grace.
        c.transport.shutdown_grace = std::time::Duration::from_millis(300);
    })
    .await;
    let mut a = server.connect(AGENT, "supervisor").await;
    let mut b = server.connect(AGENT, "supervisor").await;
    // The first notification is stuck at the stand-in; every later message still flows.
    say(&mut a, "agent", "first").await;
    assert_eq!(next_json(&mut a).await["message"], "first");
    next_received(&mut received).await;
    for i in 0..50 {
        say(&mut a, "agent", &format!("m{i}")).await;
        assert_eq!(next_json(&mut a).await["message"], format!("m{i}"));
    }
    assert_eq!(next_json(&mut b).await["message"], "first");
    for i in 0..50 {
        assert_eq!(next_json(&mut b).await["message"], format!("m{i}"));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_copilot_answer_notifies_copilot_and_the_question_does_not() {
    let (url, mut received) = appsync(false).await;
    let copilot = jiva_copilot::testing::StandIn::start().await.unwrap();
    let body = br#"{"action":null,"output":"Yes, "}{"action":null,"output":"gladly."}"#;
    copilot.push(jiva_copilot::testing::split_body(
        "application/json",
        body,
        &[],
    ));
    let server = TestServer::start_with(|c| {
        with_notifications(c, &url);
        c.copilot = Some(jiva_copilot::Config::new(copilot.url()));
    })
    .await;
    let mut ws = server.connect(AGENT, "copilot").await;
    send(
        &mut ws,
        json!({"chat_id": "test-copilot", "sender": "agent", "message": "Can you help?"}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["message"], "Can you help?");
    next_json(&mut ws).await;
    next_json(&mut ws).await;
    assert_eq!(next_json(&mut ws).await["output"], "Yes, gladly.");
    assert_eq!(
        next_json(&mut ws).await,
        json!({"action": "end", "output": ""})
    );

    let r = next_received(&mut received).await;
    assert_eq!(
        r.body["variables"]["input"],
        json!({"primaryID": "0b5c7e2a", "secondaryID": "copilot", "notification_type": "COPILOT"})
    );
    server.stop().await;
    assert!(
        received.try_recv().is_err(),
        "the agent's question must not notify"
    );
}
