//! PROTOCOL.md §4 and §6: stored messages raise Amplify notifications, off the chat path.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

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
                let answer = created(input);
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

/// AppSync's answer to a `createNotification` of `input`.
fn created(input: Value) -> String {
    let mut created = input;
    created["id"] = json!("n-1");
    created["read"] = json!(false);
    created["createdAt"] = json!("2026-11-26T00:00:00.000Z");
    created["updatedAt"] = json!("2026-11-26T00:00:00.000Z");
    created["__typename"] = json!("Notification");
    json!({"data": {"createNotification": created}}).to_string()
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

/// What the outage stand-in saw.
#[derive(Default)]
struct Outage {
    /// Requests answered 500.
    refused: usize,
    /// Notifications answered 200 (created), per `primaryID`.
    created: HashMap<String, u32>,
}

/// An AppSync stand-in that answers 500 while `down` is `true` and creates every notification
/// otherwise; what it did is published on the returned watch channel.
async fn appsync_with_outage(down: watch::Receiver<bool>) -> (String, watch::Receiver<Outage>) {
    let (seen, seen_rx) = watch::channel(Outage::default());
    let seen = Arc::new(seen);
    let app = Router::new().route(
        "/graphql",
        post(move |body: String| {
            let (down, seen) = (down.clone(), Arc::clone(&seen));
            async move {
                if *down.borrow() {
                    seen.send_modify(|s| s.refused += 1);
                    return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
                }
                let body: Value = serde_json::from_str(&body).unwrap();
                let input = body["variables"]["input"].clone();
                let primary = input["primaryID"].as_str().unwrap().to_owned();
                seen.send_modify(|s| *s.created.entry(primary).or_default() += 1);
                let answer = created(input);
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    answer,
                )
                    .into_response()
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen_rx)
}

/// Agents whose ids differ in their first segment too.
fn outage_agent(n: usize) -> String {
    format!("{n:08x}-4f1d-4c39-9a57-3c3f0e6a9d21")
}

/// Issue 12: 200 agents each send a message while AppSync answers 500; after it recovers,
/// every notification (well within the queue's 1,024) arrives, and each exactly once (counted
/// per agent: a notification carries the agent's id, not the message's). Over the real binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appsync_outage_through_the_server_loses_no_notification_and_repeats_none() {
    const AGENTS: usize = 200;
    /// How long AppSync stays down once the breaker has opened: the fault's length, not a
    /// synchronisation.
    const OUTAGE: std::time::Duration = std::time::Duration::from_secs(2);
    let (down, down_rx) = watch::channel(true);
    let (url, mut seen) = appsync_with_outage(down_rx).await;
    let mut server = crate::metrics::ServerProcess::start_with(&[
        ("GRAPHQL_API_URL", url.as_str()),
        ("GRAPHQL_API_KEY", "da2-outage"),
        ("JIVA_NOTIFY_PRIMARY_ID", "full"),
        ("JIVA_NOTIFY_BREAKER_OPEN_MS", "300"),
        ("JIVA_MAX_SOCKETS_PER_IP", "0"),
        ("JIVA_HANDSHAKES_PER_IP_PER_SEC", "0"),
    ]);

    let mut senders = tokio::task::JoinSet::new();
    for n in 0..AGENTS {
        let url = format!(
            "ws://{}/?agentID={}&secondaryID=supervisor",
            server.addr,
            outage_agent(n)
        );
        senders.spawn(async move {
            let mut ws = connect(&url).await;
            say(&mut ws, "agent", &format!("during the outage {n}")).await;
            assert_eq!(
                next_json(&mut ws).await["message"],
                format!("during the outage {n}")
            );
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent.unwrap();
    }
    // Every message is stored; AppSync has refused enough requests to open the breaker
    // (`--notify-breaker-failures`, 5).
    tokio::time::timeout(PATIENCE, seen.wait_for(|s| s.refused >= 5))
        .await
        .expect("AppSync was never asked")
        .unwrap();
    assert!(seen.borrow().created.is_empty());
    tokio::time::sleep(OUTAGE).await;
    down.send_replace(false);

    let arrived = tokio::time::timeout(PATIENCE * 3, seen.wait_for(|s| s.created.len() == AGENTS))
        .await
        .is_ok();
    assert!(
        arrived,
        "only {} of {AGENTS} notifications arrived after the outage",
        seen.borrow().created.len()
    );
    let (_, _, metrics) = crate::metrics::get(server.addr, "/metrics").await;
    for (series, value) in [("jiva_notify_dropped", 0.0), ("jiva_notify_failed", 0.0)] {
        assert_eq!(
            crate::metrics::sample(&metrics, series),
            Some(value),
            "{series}"
        );
    }
    // Stopping the server ends its queue: nothing can arrive after this.
    let (status, _) = server.terminate_and_wait().await;
    assert!(status.success(), "exit status {status:?}");

    let seen = seen.borrow();
    let expected: HashMap<String, u32> = (0..AGENTS).map(|n| (outage_agent(n), 1)).collect();
    let repeated: Vec<_> = seen.created.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "delivered more than once: {repeated:?}"
    );
    assert_eq!(seen.created, expected);
    assert!(seen.refused >= 5);
}
