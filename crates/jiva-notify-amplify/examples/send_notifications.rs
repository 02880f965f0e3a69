//! Sends one notification of each kind through the queue, then shuts it down.
//!
//! ```text
//! cargo run -p jiva-notify-amplify --example send_notifications
//! cargo run -p jiva-notify-amplify --example send_notifications -- https://…/graphql da2-…  [SUPER]
//! ```
//!
//! Without arguments it starts a tiny AppSync stand-in on 127.0.0.1 that logs what it receives,
//! so the example runs anywhere. With a URL and key it talks to that endpoint (mind that it
//! creates real notifications there); a third argument `SUPER` selects that spelling.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::routing::post;
use jiva_core::{AgentId, ChatId, ConnectionType, Notification, NotificationKind, Notifier};
use jiva_notify_amplify::{ApiKey, Config, SupervisorSpelling};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,jiva_notify_amplify=debug".into()),
        )
        .init();

    let mut args = std::env::args().skip(1);
    let mut config = match (args.next(), args.next()) {
        (Some(url), Some(key)) => Config::new(url, ApiKey::new(key)),
        _ => Config::new(start_stand_in().await?, ApiKey::new("da2-example")),
    };
    if let Some(spelling) = args.next() {
        config.supervisor_spelling = spelling.parse::<SupervisorSpelling>()?;
    }
    for problem in config.problems() {
        tracing::error!(%problem, "bad configuration");
    }

    let queue = Arc::new(jiva_notify_amplify::start(config)?);
    let notifier: Arc<dyn Notifier> = queue.clone();

    let agent = AgentId::parse("0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21")?;
    let supervisor_chat = ChatId::new(agent.clone(), ConnectionType::Supervisor);
    let copilot_chat = ChatId::new(agent, ConnectionType::Copilot);
    for (chat, kind) in [
        (supervisor_chat.clone(), NotificationKind::Agent),
        (supervisor_chat, NotificationKind::Supervisor),
        (copilot_chat, NotificationKind::Copilot),
    ] {
        notifier.notify(Notification { chat, kind }).await?;
    }

    let report = queue.shutdown(Duration::from_secs(10)).await;
    tracing::info!(?report, stats = ?queue.stats(), "done");
    Ok(())
}

/// Starts a stand-in that logs each mutation's variables and answers like AppSync.
async fn start_stand_in() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/graphql", listener.local_addr()?);
    let app = Router::new().route(
        "/graphql",
        post(|body: Bytes| async move {
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let input = request
                .pointer("/variables/input")
                .cloned()
                .unwrap_or_default();
            tracing::info!(target: "stand_in", %input, "createNotification received");
            let answer = serde_json::json!({"data": {"createNotification": {
                "id": uuid_like(),
                "primaryID": input.get("primaryID"),
                "secondaryID": input.get("secondaryID"),
                "notification_type": input.get("notification_type"),
                "read": null,
                "createdAt": "2026-01-01T00:00:00.000Z",
                "updatedAt": "2026-01-01T00:00:00.000Z",
                "__typename": "Notification"
            }}});
            (
                [(header::CONTENT_TYPE, "application/json")],
                answer.to_string(),
            )
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "stand-in stopped");
        }
    });
    tracing::info!(%url, "started a local AppSync stand-in");
    Ok(url)
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!(
        "00000000-0000-4000-8000-{:012}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
