//! Copilot turns over v1: chunks tied to their question, `turn_end`, and `cancel`.

use std::time::Duration;

use jiva_copilot::testing::{StandIn, Step, chunk, end, head_chunked};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{V1, of_type};
use crate::support::{AGENT, TestServer, Ws, next_json, send};

/// A server whose copilot is `stand_in`, with time limits far beyond the tests' patience.
async fn start(stand_in: &StandIn) -> TestServer {
    let mut copilot = jiva_copilot::Config::new(stand_in.url());
    copilot.connect_timeout = Duration::from_secs(60);
    copilot.first_byte_timeout = Duration::from_secs(60);
    copilot.idle_timeout = Duration::from_secs(60);
    TestServer::start_with(|config| config.copilot = Some(copilot)).await
}

fn piece(output: &str) -> Step {
    chunk(json!({"action": null, "output": output}).to_string())
}

/// A v0 socket of the copilot chat that has joined the chat's room. The answer to an invalid
/// frame comes only once the socket has replayed the (empty) history and joined, so a turn's
/// unstored frames (chunks, notices) sent after it reach this socket; without it a slow
/// machine could join the socket after the first chunk had gone by (seen once in CI).
async fn joined_v0(server: &TestServer) -> Ws {
    let mut v0 = server.connect(AGENT, "copilot").await;
    send(&mut v0, json!({"not": "a chat message"})).await;
    let answer = next_json(&mut v0).await;
    assert!(answer.get("error").is_some(), "{answer}");
    v0
}

/// Asks `text` and returns the question's id (from its `ack`).
async fn ask(v1: &mut V1, client_id: &str, text: &str) -> Value {
    v1.say(client_id, "agent", text).await;
    let (before, ack) = v1.until("ack").await;
    let question = ack["message_id"].clone();
    assert_eq!(of_type(&before, "message")[0]["message_id"], question);
    question
}

#[tokio::test]
async fn chunks_name_their_question_and_the_turn_ends_with_the_stored_answer() {
    let stand_in = StandIn::serve(vec![
        head_chunked(200, "application/json"),
        piece("Hello, "),
        piece("world"),
        end(),
    ])
    .await
    .unwrap();
    let server = start(&stand_in).await;
    let (mut v1, _, _) = V1::open(&server.chat_url(AGENT, "copilot")).await;
    let question = ask(&mut v1, "q-1", "hi?").await;
    let (before, turn_end) = v1.until("turn_end").await;
    let chunks = of_type(&before, "chunk");
    assert_eq!(
        chunks,
        [
            &json!({"type":"chunk","question_id":question,"action":null,"output":"Hello, "}),
            &json!({"type":"chunk","question_id":question,"action":null,"output":"world"}),
        ]
    );
    let answer = of_type(&before, "message")[0];
    assert_eq!(answer["kind"], "copilot_answer");
    assert_eq!(answer["sender"], "copilot");
    assert_eq!(answer["text"], "Hello, world");
    assert_eq!(turn_end["question_id"], question);
    assert_eq!(turn_end["outcome"], "answered");
    assert_eq!(turn_end["answer_id"], answer["message_id"]);
    server.stop().await;
}

#[tokio::test]
async fn cancel_mid_stream_stores_the_partial_answer_marked_ends_the_turn_and_the_next_works() {
    let (_hold, held) = oneshot::channel::<()>();
    let stand_in = StandIn::serve(vec![
        head_chunked(200, "application/json"),
        piece("partial "),
        Step::WaitFor(held),
        piece("never sent"),
        end(),
    ])
    .await
    .unwrap();
    stand_in.push(vec![
        head_chunked(200, "application/json"),
        piece("second answer"),
        end(),
    ]);
    let server = start(&stand_in).await;
    let mut v0 = joined_v0(&server).await;
    let (mut v1, _, _) = V1::open(&server.chat_url(AGENT, "copilot")).await;
    let question = ask(&mut v1, "q-1", "long question").await;
    let first = v1.expect("chunk").await;
    assert_eq!(first["output"], "partial ");
    v1.send(json!({"type":"cancel","ref":"x1","question_id":question}))
        .await;
    let (before, turn_end) = v1.until("turn_end").await;
    assert!(of_type(&before, "error").is_empty(), "{before:?}");
    let answer = of_type(&before, "message")[0];
    assert_eq!(answer["text"], "partial \n\n[Answer stopped.]");
    assert_eq!(turn_end["outcome"], "cancelled");
    assert_eq!(turn_end["question_id"], question);
    assert_eq!(turn_end["answer_id"], answer["message_id"]);

    // v0 sockets see the turn as every turn: the chunk, the stored answer, `end`.
    assert_eq!(next_json(&mut v0).await["message"], "long question");
    assert_eq!(
        next_json(&mut v0).await,
        json!({"action": null, "output": "partial "})
    );
    let combined = next_json(&mut v0).await;
    assert_eq!(combined["action"], "Combined");
    assert_eq!(combined["output"], "partial \n\n[Answer stopped.]");
    assert_eq!(combined["message_id"], answer["message_id"]);
    assert_eq!(
        next_json(&mut v0).await,
        json!({"action": "end", "output": ""})
    );

    // The stored answer is there for a fresh connection, and the next question works.
    let (_fresh, frames, _) = V1::open(&server.chat_url(AGENT, "copilot")).await;
    let latest = of_type(&frames, "latest")[0]["messages"].clone();
    assert_eq!(latest[1]["text"], "partial \n\n[Answer stopped.]");
    let next = ask(&mut v1, "q-2", "again").await;
    let (before, turn_end) = v1.until("turn_end").await;
    assert_eq!(turn_end["question_id"], next);
    assert_eq!(turn_end["outcome"], "answered");
    assert_eq!(of_type(&before, "message")[0]["text"], "second answer");
    // A turn that is over cannot be cancelled.
    v1.send(json!({"type":"cancel","ref":"x2","question_id":question}))
        .await;
    let e = v1.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("no_such_turn"), Some("x2"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_failed_turn_tells_v1_its_code_and_question_and_ends_failed() {
    // No copilot is configured.
    let server = TestServer::start().await;
    let mut v0 = joined_v0(&server).await;
    let (mut v1, _, _) = V1::open(&server.chat_url(AGENT, "copilot")).await;
    let question = ask(&mut v1, "q-1", "anyone?").await;
    let (before, turn_end) = v1.until("turn_end").await;
    let errors = of_type(&before, "error");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["code"], "copilot_not_configured");
    assert_eq!(errors[0]["question_id"], question);
    assert_eq!(errors[0]["ref"], Value::Null);
    // The notice v0's widget needs is not shown to v1.
    assert!(of_type(&before, "message").is_empty(), "{before:?}");
    assert_eq!(turn_end["outcome"], "failed");
    assert_eq!(turn_end["answer_id"], Value::Null);
    // v0 is unchanged: echo, error, the notice, end.
    assert_eq!(next_json(&mut v0).await["message"], "anyone?");
    assert_eq!(
        next_json(&mut v0).await,
        json!({"error": "copilot is not configured"})
    );
    crate::copilot_relay::expect_failure_notice_then_end(&mut v0, "copilot is not configured")
        .await;
    server.stop().await;
}

#[tokio::test]
async fn cancel_is_refused_on_a_supervisor_chat_and_for_an_unknown_question() {
    let server = TestServer::start().await;
    let (mut sup, _, _) = V1::open(&server.chat_url(AGENT, "supervisor")).await;
    sup.send(
        json!({"type":"cancel","ref":"c1","question_id":"0190c5a5-9f1c-7a3e-8b4d-6f7e8a9b0c1d"}),
    )
    .await;
    let e = sup.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("not_a_copilot_chat"), Some("c1"))
    );
    let (mut cop, _, _) = V1::open(&server.chat_url(AGENT, "copilot")).await;
    cop.send(json!({"type":"cancel","question_id":"0190c5a5-9f1c-7a3e-8b4d-6f7e8a9b0c1d"}))
        .await;
    let e = cop.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), &e["ref"]),
        (Some("no_such_turn"), &Value::Null)
    );
    server.stop().await;
}
