//! The copilot chat without a configured copilot.

use serde_json::json;

use crate::support::*;

async fn an_unconfigured_copilot_answers_with_an_error_then_end(kind: StoreKind) {
    let server = TestServer::start_on(kind).await;
    let mut ws = server.connect(AGENT, "copilot").await;
    send(
        &mut ws,
        json!({"chat_id": "test-copilot", "sender": "agent", "message": "help?"}),
    )
    .await;
    let echo = next_json(&mut ws).await;
    assert_eq!(
        echo["chat_id"],
        format!("{AGENT}-copilot"),
        "chat_id from the client is not trusted"
    );
    assert_eq!(echo["message"], "help?");
    assert_eq!(
        next_json(&mut ws).await,
        json!({"error": "copilot is not configured"})
    );
    crate::copilot_relay::expect_failure_notice_then_end(&mut ws, "copilot is not configured")
        .await;
    // The socket stays usable, and keepalives stay silent.
    send(&mut ws, json!({"action": "ping"})).await;
    send(
        &mut ws,
        json!({"chat_id": "test-copilot", "sender": "agent", "message": "again"}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["message"], "again");
    assert_eq!(
        next_json(&mut ws).await,
        json!({"error": "copilot is not configured"})
    );
    crate::copilot_relay::expect_failure_notice_then_end(&mut ws, "copilot is not configured")
        .await;
    server.stop().await;
}

crate::on_both_stores!(an_unconfigured_copilot_answers_with_an_error_then_end,);
