//! PROTOCOL.md §4, the copilot turn, end to end: the real server on port 0, real WebSocket
//! frames, and `jiva_copilot::testing::StandIn` standing in for the copilot over HTTP, writing
//! every chunk boundary itself and recording every request it receives.

use std::time::Duration;

use futures_util::StreamExt;
use jiva_copilot::testing::{
    Recorded, Script, StandIn, Step, chunk, end, fixed, head_chunked, split_body,
};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::support::*;

/// Copilot time limits well beyond [`PATIENCE`], so that a hang fails a test by its bound
/// rather than being turned into a copilot error, except where a test sets a limit on purpose.
const GENEROUS: Duration = Duration::from_secs(60);

/// What the server answers to a frame that is not a chat message, to that socket only; used
/// as a marker: every frame before its answer was queued before it.
const MARKER_REASON: &str = "not a chat message";

fn copilot_config(url: &str) -> jiva_copilot::Config {
    let mut config = jiva_copilot::Config::new(url);
    config.connect_timeout = GENEROUS;
    config.first_byte_timeout = GENEROUS;
    config.idle_timeout = GENEROUS;
    config
}

/// A server on fresh storage of `kind` whose copilot is `stand_in`.
async fn start(kind: StoreKind, stand_in: &StandIn) -> TestServer {
    start_tweaked(kind, stand_in, |_| {}).await
}

async fn start_tweaked(
    kind: StoreKind,
    stand_in: &StandIn,
    tweak: impl FnOnce(&mut jiva_copilot::Config),
) -> TestServer {
    let mut copilot = copilot_config(stand_in.url());
    tweak(&mut copilot);
    TestServer::start_on_with(kind, |config| config.copilot = Some(copilot)).await
}

async fn stand_in() -> StandIn {
    StandIn::start().await.unwrap()
}

/// Sends a question the way the copilot widget does (its `chat_id` is not trusted).
async fn ask(ws: &mut Ws, text: &str) {
    send(
        ws,
        json!({"chat_id": "test-copilot", "sender": "agent", "message": text}),
    )
    .await;
}

/// One answer object as the copilot writes it.
fn obj(action: Option<&str>, output: Option<&str>) -> String {
    json!({"action": action, "output": output}).to_string()
}

/// The frame that forwards one answer object: exactly these two keys, values unchanged.
fn chunk_frame(action: Option<&str>, output: Option<&str>) -> Value {
    json!({"action": action, "output": output})
}

fn end_frame() -> Value {
    json!({"action": "end", "output": ""})
}

fn error_frame(reason: &str) -> Value {
    json!({"error": reason})
}

/// A `200` chunked JSON answer, one HTTP chunk per piece.
fn answer(pieces: &[String]) -> Script {
    let mut script = vec![head_chunked(200, "application/json")];
    script.extend(pieces.iter().map(chunk));
    script.push(end());
    script
}

fn uuid_like(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 36 && s.matches('-').count() == 4)
}

fn assert_timestamp(frame: &Value) {
    assert!(
        frame["timestamp"]["secs_since_epoch"].as_i64().unwrap() > 1_700_000_000,
        "{frame}"
    );
    assert!(
        frame["timestamp"]["nanos_since_epoch"].as_u64().unwrap() < 1_000_000_000,
        "{frame}"
    );
}

/// The echo of a stored question on the copilot chat.
fn assert_echo(frame: &Value, text: &str) {
    assert_eq!(frame["chat_id"], format!("{AGENT}-copilot"), "{frame}");
    assert_eq!(frame["sender"], "agent", "{frame}");
    assert_eq!(frame["message"], text, "{frame}");
    assert!(uuid_like(&frame["message_id"]), "{frame}");
    assert_timestamp(frame);
    // The deployed shape plus the chat's sequence number (docs/PROTOCOL.md).
    assert!(frame["seq"].as_u64().is_some_and(|n| n >= 1), "{frame}");
    assert_eq!(frame.as_object().unwrap().len(), 6, "{frame}");
}

/// The `Combined` frame of a stored answer.
fn assert_combined(frame: &Value, output: &str) {
    assert_eq!(frame["action"], "Combined", "{frame}");
    assert_eq!(frame["output"], output, "{frame}");
    assert_eq!(frame["sender"], "Copilot", "{frame}");
    assert!(uuid_like(&frame["message_id"]), "{frame}");
    assert_timestamp(frame);
    // The deployed shape plus the chat's sequence number (docs/PROTOCOL.md).
    assert!(frame["seq"].as_u64().is_some_and(|n| n >= 1), "{frame}");
    assert_eq!(frame.as_object().unwrap().len(), 6, "{frame}");
}

/// Asks `text` and checks its echo, which comes first.
async fn ask_and_echo(ws: &mut Ws, text: &str) -> Value {
    ask(ws, text).await;
    let echo = next_json(ws).await;
    assert_echo(&echo, text);
    echo
}

/// Reads one forwarded chunk per expected `(action, output)`.
async fn expect_chunks(ws: &mut Ws, expected: &[(Option<&str>, Option<&str>)]) {
    for (action, output) in expected {
        assert_eq!(next_json(ws).await, chunk_frame(*action, *output));
    }
}

/// Reads the `Combined` frame of `output`, then `end`; returns the `Combined` frame.
async fn expect_combined_then_end(ws: &mut Ws, output: &str) -> Value {
    let combined = next_json(ws).await;
    assert_combined(&combined, output);
    assert_eq!(next_json(ws).await, end_frame());
    combined
}

/// What a partial answer is stored and shown with when its turn failed for `reason`.
fn cut_off(partial: &str, reason: &str) -> String {
    format!("{partial}\n\n[Answer cut off: {reason}.]")
}

/// Reads the `Combined` frame that shows a turn failing for `reason` before any answer (the
/// deployed widget renders only frames with a `message_id`), then `end`. It is not stored:
/// it has no `seq`.
pub async fn expect_failure_notice_then_end(ws: &mut Ws, reason: &str) {
    let notice = next_json(ws).await;
    assert_eq!(notice["action"], "Combined", "{notice}");
    assert_eq!(
        notice["output"],
        format!("[No answer: {reason}.]"),
        "{notice}"
    );
    assert_eq!(notice["sender"], "Copilot", "{notice}");
    assert!(uuid_like(&notice["message_id"]), "{notice}");
    assert_timestamp(&notice);
    assert_eq!(notice.as_object().unwrap().len(), 5, "{notice}");
    assert_eq!(next_json(ws).await, end_frame());
}

/// Sends the marker and returns every frame that arrives before its answer.
async fn frames_before_marker(ws: &mut Ws) -> Vec<Value> {
    send(ws, json!({"marker": true})).await;
    let mut frames = Vec::new();
    loop {
        let frame = next_json(ws).await;
        if frame == error_frame(MARKER_REASON) {
            return frames;
        }
        frames.push(frame);
    }
}

/// A new socket of the copilot chat, already in its room (its marker was answered), and the
/// history it was sent.
async fn join(server: &TestServer) -> (Ws, Vec<Value>) {
    let mut ws = server.connect(AGENT, "copilot").await;
    let replayed = frames_before_marker(&mut ws).await;
    (ws, replayed)
}

/// The request the stand-in received next.
async fn next_request(stand_in: &mut StandIn) -> Recorded {
    tokio::time::timeout(PATIENCE, stand_in.request())
        .await
        .expect("the copilot received no request in time")
        .expect("the stand-in stopped")
}

/// The exact body the copilot must receive.
fn request_body(input: &str, history: &[(&str, &str)]) -> String {
    let history: Vec<String> = history
        .iter()
        .map(|(role, content)| {
            format!(
                r#"{{"role":"{role}","content":{}}}"#,
                serde_json::to_string(content).unwrap()
            )
        })
        .collect();
    format!(
        r#"{{"input":{},"chat_history":[{}]}}"#,
        serde_json::to_string(input).unwrap(),
        history.join(",")
    )
}

async fn objects_split_anywhere_are_relayed_one_frame_each_then_combined_then_end(kind: StoreKind) {
    let objects = [
        obj(Some("a}b"), Some("Hello, ")),
        obj(Some("tool"), Some("Processing Results\n")),
        obj(None, Some("😀 \"quoted\" }{ \\ done\n")),
        obj(Some("x"), None),
        r#"{"output":"world","action":null}"#.to_string(),
    ];
    let body = objects.concat();
    let at = |needle: &str, plus: usize| body.find(needle).unwrap() + plus;
    let mut cuts = vec![
        at("a}b", 2),          // right after the `}` inside "a}b"
        at("Hello", 3),        // inside a string
        at(r#"Results\n"#, 8), // inside the escape `\n`
        at("😀", 1),           // inside the 4-byte emoji, three ways
        at("😀", 2),
        at("😀", 3),
        at(r#"\"quoted"#, 1),   // inside the escape `\"`
        at("}{ ", 1),           // between `}` and `{` inside a string
        at(r#"\\ done"#, 1),    // inside the escape `\\`
        at("null}", 2),         // inside a literal
        at(r#"}{"output""#, 1), // exactly between two objects
    ];
    cuts.sort_unstable();
    let stand_in = StandIn::serve(split_body("application/json", body.as_bytes(), &cuts))
        .await
        .unwrap();
    let server = start(kind, &stand_in).await;
    let mut ws = server.connect(AGENT, "copilot").await;
    ask_and_echo(&mut ws, "split me").await;
    expect_chunks(
        &mut ws,
        &[
            (Some("a}b"), Some("Hello, ")),
            (Some("tool"), Some("Processing Results\n")),
            (None, Some("😀 \"quoted\" }{ \\ done\n")),
            (Some("x"), None),
            (None, Some("world")),
        ],
    )
    .await;
    expect_combined_then_end(&mut ws, "Hello, 😀 \"quoted\" }{ \\ done\nworld").await;
    assert!(frames_before_marker(&mut ws).await.is_empty());
    server.stop().await;
}

async fn newline_delimited_json_is_relayed(kind: StoreKind) {
    let body = format!(
        "{}\n{}\r\n{}\n{}\n",
        obj(Some("a"), Some("one ")),
        obj(None, Some("two\n")),
        obj(Some("tool"), Some("Processing Results\n")),
        obj(None, Some("three")),
    );
    let cuts = [body.find("one").unwrap(), body.find("\r\n").unwrap() + 1];
    let stand_in = StandIn::serve(split_body("application/x-ndjson", body.as_bytes(), &cuts))
        .await
        .unwrap();
    let server = start(kind, &stand_in).await;
    let mut ws = server.connect(AGENT, "copilot").await;
    ask_and_echo(&mut ws, "lines please").await;
    expect_chunks(
        &mut ws,
        &[
            (Some("a"), Some("one ")),
            (None, Some("two\n")),
            (Some("tool"), Some("Processing Results\n")),
            (None, Some("three")),
        ],
    )
    .await;
    expect_combined_then_end(&mut ws, "one two\nthree").await;
    server.stop().await;
}

async fn server_sent_events_are_relayed_and_done_ends_the_turn(kind: StoreKind) {
    // After `[DONE]` the stand-in keeps the connection open: the turn must end anyway.
    let mut stand_in = stand_in().await;
    stand_in.push(vec![
        head_chunked(200, "text/event-stream"),
        chunk(": keep-alive\r\nevent: message\r\ndata: {\"action\":\"a\",\"out"),
        chunk("put\":\"x}\"}\r\n\r\ndata: {\"action\":null,\"output\":null}\n\n"),
        chunk("data: {\"action\":null,\"output\":\"y\"}\n\ndata: [DONE]\n\n"),
        Step::Hold,
    ]);
    let server = start(kind, &stand_in).await;
    let mut ws = server.connect(AGENT, "copilot").await;
    ask_and_echo(&mut ws, "events please").await;
    expect_chunks(
        &mut ws,
        &[(Some("a"), Some("x}")), (None, None), (None, Some("y"))],
    )
    .await;
    expect_combined_then_end(&mut ws, "x}y").await;
    next_request(&mut stand_in).await;
    server.stop().await;
}

async fn error_statuses_give_an_error_frame_and_end_and_the_socket_stays_usable(kind: StoreKind) {
    let stand_in = stand_in().await;
    stand_in.push(vec![fixed(422, r#"{"detail":[{"msg":"field required"}]}"#)]);
    stand_in.push(vec![
        head_chunked(500, "text/plain"),
        chunk("Internal Server Error"),
        end(),
    ]);
    stand_in.push(answer(&[obj(None, Some("fine now"))]));
    let server = start(kind, &stand_in).await;
    let mut ws = server.connect(AGENT, "copilot").await;
    let mut live = Vec::new();
    for question in ["first", "second"] {
        live.push(ask_and_echo(&mut ws, question).await);
        assert_eq!(
            next_json(&mut ws).await,
            error_frame("copilot returned an error")
        );
        expect_failure_notice_then_end(&mut ws, "copilot returned an error").await;
    }
    live.push(ask_and_echo(&mut ws, "third").await);
    expect_chunks(&mut ws, &[(None, Some("fine now"))]).await;
    live.push(expect_combined_then_end(&mut ws, "fine now").await);
    assert!(frames_before_marker(&mut ws).await.is_empty());

    // Only the questions and the one answer were stored.
    let (_again, replayed) = join(&server).await;
    assert_eq!(replayed, live);
    server.stop().await;
}

async fn a_body_cut_off_midway_stores_and_shows_the_partial_answer(kind: StoreKind) {
    let stand_in = StandIn::serve(vec![
        head_chunked(200, "application/json"),
        chunk(obj(None, Some("so far ")) + &obj(Some("tool"), Some("Processing Results\n"))),
        chunk(obj(None, Some("and more")) + r#"{"action":null,"outp"#),
        // The script ends here: the connection closes without the body's last chunk.
    ])
    .await
    .unwrap();
    let server = start(kind, &stand_in).await;
    let mut ws = server.connect(AGENT, "copilot").await;
    let echo = ask_and_echo(&mut ws, "will you finish?").await;
    expect_chunks(
        &mut ws,
        &[
            (None, Some("so far ")),
            (Some("tool"), Some("Processing Results\n")),
            (None, Some("and more")),
        ],
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        error_frame("copilot answer was cut off")
    );
    let combined = expect_combined_then_end(
        &mut ws,
        &cut_off("so far and more", "copilot answer was cut off"),
    )
    .await;

    let (_again, replayed) = join(&server).await;
    assert_eq!(replayed, [echo, combined]);
    server.stop().await;
}

async fn a_silent_copilot_times_out_and_the_partial_answer_is_stored(kind: StoreKind) {
    let stand_in = StandIn::serve(vec![
        head_chunked(200, "application/json"),
        chunk(obj(None, Some("thinking")) + r#"{"action":null,"#),
        Step::Hold,
    ])
    .await
    .unwrap();
    let server = start_tweaked(kind, &stand_in, |copilot| {
        copilot.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut ws = server.connect(AGENT, "copilot").await;
    let echo = ask_and_echo(&mut ws, "are you there?").await;
    expect_chunks(&mut ws, &[(None, Some("thinking"))]).await;
    assert_eq!(next_json(&mut ws).await, error_frame("copilot timed out"));
    let combined =
        expect_combined_then_end(&mut ws, &cut_off("thinking", "copilot timed out")).await;

    let (_again, replayed) = join(&server).await;
    assert_eq!(replayed, [echo, combined]);
    server.stop().await;
}

async fn the_copilot_receives_the_input_and_the_earlier_turns_from_the_store(kind: StoreKind) {
    let q1 = "What is \"this\" }?\nSecond line 😀";
    let a1 = "It is a \"thing\" }\n";
    let q2 = "And that?";
    let mut stand_in = stand_in().await;
    stand_in.push(answer(&[
        obj(Some("tool"), Some("Processing Results\n")),
        obj(None, Some("It is ")),
        obj(None, Some("a \"thing\" }\n")),
    ]));
    stand_in.push(answer(&[obj(None, Some("That too."))]));
    let server = start(kind, &stand_in).await;
    let mut ws = server.connect(AGENT, "copilot").await;

    ask_and_echo(&mut ws, q1).await;
    expect_chunks(
        &mut ws,
        &[
            (Some("tool"), Some("Processing Results\n")),
            (None, Some("It is ")),
            (None, Some("a \"thing\" }\n")),
        ],
    )
    .await;
    expect_combined_then_end(&mut ws, a1).await;
    let first = next_request(&mut stand_in).await;
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, jiva_copilot::testing::PATH);
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.body_text().unwrap(), request_body(q1, &[]));

    ask_and_echo(&mut ws, q2).await;
    expect_chunks(&mut ws, &[(None, Some("That too."))]).await;
    expect_combined_then_end(&mut ws, "That too.").await;
    let second = next_request(&mut stand_in).await;
    assert_eq!(
        second.body_text().unwrap(),
        request_body(q2, &[("human", q1), ("ai", a1)])
    );
    server.stop().await;
}

async fn after_reconnect_the_history_comes_from_the_store_with_the_live_ids(kind: StoreKind) {
    let stand_in = stand_in().await;
    stand_in.push(answer(&[obj(None, Some("answer one"))]));
    stand_in.push(answer(&[obj(None, Some("answer two"))]));
    let server = start(kind, &stand_in).await;
    let mut ws = server.connect(AGENT, "copilot").await;
    let mut live = Vec::new();
    for (question, output) in [
        ("question one", "answer one"),
        ("question two", "answer two"),
    ] {
        live.push(ask_and_echo(&mut ws, question).await);
        expect_chunks(&mut ws, &[(None, Some(output))]).await;
        live.push(expect_combined_then_end(&mut ws, output).await);
    }
    ws.close(None).await.unwrap();

    let (_again, replayed) = join(&server).await;
    assert_eq!(
        replayed, live,
        "q1, Combined a1, q2, Combined a2, with the live ids and timestamps"
    );
    server.stop().await;
}

async fn a_keepalive_during_a_stream_gets_no_answer(kind: StoreKind) {
    let (go, wait) = oneshot::channel();
    let stand_in = StandIn::serve(vec![
        head_chunked(200, "application/json"),
        chunk(obj(None, Some("before "))),
        Step::WaitFor(wait),
        chunk(obj(None, Some("after"))),
        end(),
    ])
    .await
    .unwrap();
    stand_in.push(answer(&[obj(None, Some("second answer"))]));
    let server = start(kind, &stand_in).await;
    let mut ws = server.connect(AGENT, "copilot").await;
    ask_and_echo(&mut ws, "first").await;
    expect_chunks(&mut ws, &[(None, Some("before "))]).await;
    send(&mut ws, json!({"action": "ping"})).await;
    go.send(()).unwrap();
    expect_chunks(&mut ws, &[(None, Some("after"))]).await;
    expect_combined_then_end(&mut ws, "before after").await;
    // Frames are handled in order: an answer to the keepalive would come before this echo.
    ask_and_echo(&mut ws, "second").await;
    expect_chunks(&mut ws, &[(None, Some("second answer"))]).await;
    expect_combined_then_end(&mut ws, "second answer").await;
    server.stop().await;
}

async fn an_answer_is_finished_and_stored_when_every_socket_left_mid_turn(kind: StoreKind) {
    let (go, wait) = oneshot::channel();
    let stand_in = StandIn::serve(vec![
        head_chunked(200, "application/json"),
        chunk(obj(None, Some("half "))),
        Step::WaitFor(wait),
        chunk(obj(None, Some("whole"))),
        end(),
    ])
    .await
    .unwrap();
    let (backing, _dir) = Backing::fresh(kind).await;
    let copilot = copilot_config(stand_in.url());
    let server = TestServer::start_in(&backing, |config| config.copilot = Some(copilot)).await;
    // A second server on the same storage is where the test looks, so that no socket ever
    // rejoins the chat on the server running the turn.
    let reader = TestServer::start_in(&backing, |_| {}).await;
    let mut ws = server.connect(AGENT, "copilot").await;
    let echo = ask_and_echo(&mut ws, "leaving now").await;
    expect_chunks(&mut ws, &[(None, Some("half "))]).await;
    ws.close(None).await.unwrap();
    // The server drops the connection only after the socket left its room.
    tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await
    .expect("the server did not close the socket");
    go.send(()).unwrap();

    // Reconnect until the stored history holds the answer.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (mut again, replayed) = join(&reader).await;
        if replayed.len() == 2 {
            assert_eq!(replayed[0], echo);
            assert_combined(&replayed[1], "half whole");
            break;
        }
        assert_eq!(
            replayed,
            std::slice::from_ref(&echo),
            "only the question so far"
        );
        assert!(
            Instant::now() < deadline,
            "the answer was not stored in time"
        );
        let _ = again.close(None).await;
    }
    reader.stop().await;
    server.stop().await;
}

async fn every_socket_of_the_chat_receives_the_turn(kind: StoreKind) {
    let stand_in = StandIn::serve(answer(&[
        obj(Some("tool"), Some("Processing Results\n")),
        obj(None, Some("for both")),
    ]))
    .await
    .unwrap();
    let server = start(kind, &stand_in).await;
    let (mut a, _) = join(&server).await;
    let (mut b, _) = join(&server).await;
    let echo = ask_and_echo(&mut a, "everyone?").await;
    assert_eq!(next_json(&mut b).await, echo);
    let mut seen = Vec::new();
    for ws in [&mut a, &mut b] {
        expect_chunks(
            ws,
            &[
                (Some("tool"), Some("Processing Results\n")),
                (None, Some("for both")),
            ],
        )
        .await;
        seen.push(expect_combined_then_end(ws, "for both").await);
    }
    assert_eq!(seen[0], seen[1], "the same stored answer");
    server.stop().await;
}

async fn a_question_during_a_turn_is_echoed_at_once_and_answered_after_its_end(kind: StoreKind) {
    let (go, wait) = oneshot::channel();
    let mut stand_in = StandIn::serve(vec![
        head_chunked(200, "application/json"),
        chunk(obj(None, Some("one, "))),
        Step::WaitFor(wait),
        chunk(obj(None, Some("done"))),
        end(),
    ])
    .await
    .unwrap();
    stand_in.push(answer(&[obj(None, Some("two"))]));
    let server = start(kind, &stand_in).await;
    let mut ws = server.connect(AGENT, "copilot").await;
    ask_and_echo(&mut ws, "first").await;
    expect_chunks(&mut ws, &[(None, Some("one, "))]).await;
    // The first turn is waiting on the copilot; the second question is stored and shown now.
    ask_and_echo(&mut ws, "second").await;
    go.send(()).unwrap();
    expect_chunks(&mut ws, &[(None, Some("done"))]).await;
    expect_combined_then_end(&mut ws, "one, done").await;
    expect_chunks(&mut ws, &[(None, Some("two"))]).await;
    expect_combined_then_end(&mut ws, "two").await;

    // The second turn asked after the first one ended, with it as history.
    let first = next_request(&mut stand_in).await;
    assert_eq!(first.body_text().unwrap(), request_body("first", &[]));
    let second = next_request(&mut stand_in).await;
    assert_eq!(
        second.body_text().unwrap(),
        request_body("second", &[("human", "first"), ("ai", "one, done")])
    );
    server.stop().await;
}

async fn questions_queued_behind_a_turn_are_not_sent_as_its_history(kind: StoreKind) {
    let (go, wait) = oneshot::channel();
    let mut stand_in = StandIn::serve(vec![
        head_chunked(200, "application/json"),
        chunk(obj(None, Some("a1"))),
        Step::WaitFor(wait),
        end(),
    ])
    .await
    .unwrap();
    stand_in.push(answer(&[obj(None, Some("a2"))]));
    stand_in.push(answer(&[obj(None, Some("a3"))]));
    let server = start(kind, &stand_in).await;
    let mut ws = server.connect(AGENT, "copilot").await;
    ask_and_echo(&mut ws, "q1").await;
    expect_chunks(&mut ws, &[(None, Some("a1"))]).await;
    ask_and_echo(&mut ws, "q2").await;
    ask_and_echo(&mut ws, "q3").await;
    go.send(()).unwrap();
    for answer in ["a1", "a2", "a3"] {
        if answer != "a1" {
            expect_chunks(&mut ws, &[(None, Some(answer))]).await;
        }
        expect_combined_then_end(&mut ws, answer).await;
    }
    let requests = [
        next_request(&mut stand_in).await,
        next_request(&mut stand_in).await,
        next_request(&mut stand_in).await,
    ];
    assert_eq!(requests[0].body_text().unwrap(), request_body("q1", &[]));
    // q3 was stored before q2's turn began, but it is not an earlier turn of q2.
    assert_eq!(
        requests[1].body_text().unwrap(),
        request_body("q2", &[("human", "q1"), ("ai", "a1")])
    );
    // Earlier turns in the order they were stored.
    assert_eq!(
        requests[2].body_text().unwrap(),
        request_body(
            "q3",
            &[("human", "q1"), ("human", "q2"), ("ai", "a1"), ("ai", "a2")]
        )
    );
    server.stop().await;
}

async fn an_answer_arriving_all_at_once_reaches_the_socket_whole(kind: StoreKind) {
    // A buffering proxy may hand over a long answer in one piece: many more objects than a
    // socket's outbound queue holds arrive at the relay at the same moment.
    const OBJECTS: usize = 2000;
    let body: String = (0..OBJECTS)
        .map(|i| obj(None, Some(&format!("{i} "))))
        .collect();
    let stand_in = StandIn::serve(answer(&[body])).await.unwrap();
    let server = start(kind, &stand_in).await;
    let mut ws = server.connect(AGENT, "copilot").await;
    ask_and_echo(&mut ws, "a long one").await;
    let mut whole = String::new();
    for i in 0..OBJECTS {
        let output = format!("{i} ");
        assert_eq!(next_json(&mut ws).await, chunk_frame(None, Some(&output)));
        whole.push_str(&output);
    }
    expect_combined_then_end(&mut ws, &whole).await;
    server.stop().await;
}

async fn a_socket_that_never_reads_does_not_stall_a_copilot_answer(kind: StoreKind) {
    // 12 MB of chunks, far more than the stuck socket's kernel buffers hold; the bulk is in
    // `action`, so the stored answer stays small.
    const OBJECTS: usize = 600;
    let filler = "z".repeat(20 * 1024);
    let mut body: String = (0..OBJECTS).map(|_| obj(Some(&filler), None)).collect();
    body.push_str(&obj(None, Some("done")));
    let stand_in = StandIn::serve(answer(&[body])).await.unwrap();
    let server = start(kind, &stand_in).await;
    // A client with a tiny receive buffer that reads nothing after joining.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let (mut stuck, _) = tokio_tungstenite::client_async(
        server.chat_url(AGENT, "copilot"),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await
    .unwrap();
    assert!(frames_before_marker(&mut stuck).await.is_empty());

    let (mut ws, _) = join(&server).await;
    ask_and_echo(&mut ws, "a long one").await;
    for _ in 0..OBJECTS {
        assert_eq!(next_json(&mut ws).await, chunk_frame(Some(&filler), None));
    }
    expect_chunks(&mut ws, &[(None, Some("done"))]).await;
    expect_combined_then_end(&mut ws, "done").await;

    // The stuck socket was dropped as a slow consumer: reading it now reaches its end.
    tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(frame)) = stuck.next().await {
            if frame.is_close() {
                break;
            }
        }
    })
    .await
    .expect("the server kept the stuck socket open");
    server.stop().await;
}

async fn a_turn_over_its_whole_time_limit_ends_with_the_partial_answer(kind: StoreKind) {
    // The copilot is not silent long enough for its idle limit, but the turn has a limit too.
    let stand_in = StandIn::serve(vec![
        head_chunked(200, "application/json"),
        chunk(obj(None, Some("slowly"))),
        Step::Hold,
    ])
    .await
    .unwrap();
    let copilot = copilot_config(stand_in.url());
    let server = TestServer::start_on_with(kind, |config| {
        config.copilot = Some(copilot);
        config.transport.copilot_turn_timeout = Duration::from_millis(500);
    })
    .await;
    let mut ws = server.connect(AGENT, "copilot").await;
    let echo = ask_and_echo(&mut ws, "take your time").await;
    expect_chunks(&mut ws, &[(None, Some("slowly"))]).await;
    assert_eq!(next_json(&mut ws).await, error_frame("copilot timed out"));
    let combined = expect_combined_then_end(&mut ws, &cut_off("slowly", "copilot timed out")).await;
    let (_again, replayed) = join(&server).await;
    assert_eq!(replayed, [echo, combined]);
    server.stop().await;
}

async fn an_unreachable_copilot_gives_an_error_frame_and_end(kind: StoreKind) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let copilot = copilot_config(&format!("http://127.0.0.1:{port}/ask"));
    let server = TestServer::start_on_with(kind, |config| config.copilot = Some(copilot)).await;
    let mut ws = server.connect(AGENT, "copilot").await;
    for question in ["anyone?", "still nobody?"] {
        ask_and_echo(&mut ws, question).await;
        assert_eq!(
            next_json(&mut ws).await,
            error_frame("copilot is unavailable")
        );
        expect_failure_notice_then_end(&mut ws, "copilot is unavailable").await;
    }
    server.stop().await;
}

async fn an_answer_past_its_size_bound_is_cut_there_stored_with_a_notice_and_ended(
    kind: StoreKind,
) {
    // Ten outputs of 100 bytes fill the bound exactly; the eleventh would pass it.
    let piece = "y".repeat(100);
    let mut script = vec![head_chunked(200, "application/json")];
    script.extend((0..20).map(|_| chunk(obj(None, Some(&piece)))));
    script.push(Step::Hold);
    let stand_in = StandIn::serve(script).await.unwrap();
    let copilot = copilot_config(stand_in.url());
    let server = TestServer::start_on_with(kind, |config| {
        config.copilot = Some(copilot);
        config.transport.copilot_max_answer_bytes = 1000;
    })
    .await;
    let mut ws = server.connect(AGENT, "copilot").await;
    let echo = ask_and_echo(&mut ws, "tell me everything").await;
    expect_chunks(&mut ws, &[(None, Some(piece.as_str())); 10]).await;
    assert_eq!(
        next_json(&mut ws).await,
        error_frame("copilot answer was too long")
    );
    let combined = expect_combined_then_end(
        &mut ws,
        &cut_off(&piece.repeat(10), "copilot answer was too long"),
    )
    .await;
    let (_again, replayed) = join(&server).await;
    assert_eq!(replayed, [echo, combined]);
    server.stop().await;
}

/// A copilot that answers 200 and then streams objects of 8 KiB output for as long as the
/// connection takes them, up to 1 GiB. Resolves to the bytes written once the connection was
/// dropped; fails if the whole gigabyte went through.
async fn endless_copilot() -> (String, tokio::task::JoinHandle<u64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const GIB: u64 = 1 << 30;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ask", listener.local_addr().unwrap());
    let writer = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // The request is small: its head and body arrive before the answer matters.
        let mut request = vec![0; 64 * 1024];
        let _ = socket.read(&mut request).await.unwrap();
        socket
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
            )
            .await
            .unwrap();
        let object = obj(None, Some(&"z".repeat(8 * 1024)));
        let piece = format!("{:x}\r\n{object}\r\n", object.len()).into_bytes();
        let mut written = 0u64;
        while written < GIB {
            if socket.write_all(&piece).await.is_err() {
                return written;
            }
            written += piece.len() as u64;
        }
        panic!("the server read a whole gigabyte of answer");
    });
    (url, writer)
}

async fn a_body_of_gigabytes_is_cut_at_the_default_bound_and_its_request_dropped(kind: StoreKind) {
    let (url, writer) = endless_copilot().await;
    let copilot = copilot_config(&url);
    let server = TestServer::start_on_with(kind, |config| config.copilot = Some(copilot)).await;
    let bound = server_default_max_answer_bytes();
    let mut ws = server.connect(AGENT, "copilot").await;
    let echo = ask_and_echo(&mut ws, "everything, please").await;
    let mut forwarded = 0;
    let reason = loop {
        let frame = next_json(&mut ws).await;
        match frame.get("error") {
            Some(reason) => break reason.clone(),
            None => {
                assert_eq!(frame["output"].as_str().unwrap().len(), 8 * 1024, "a chunk");
                forwarded += 1;
            }
        }
    };
    assert_eq!(reason, "copilot answer was too long");
    assert_eq!(forwarded, bound / (8 * 1024));
    let combined = next_json(&mut ws).await;
    let output = combined["output"].as_str().unwrap();
    assert_eq!(
        output,
        cut_off(
            &"z".repeat(forwarded * 8 * 1024),
            "copilot answer was too long"
        )
    );
    assert_eq!(next_json(&mut ws).await, end_frame());
    // The copilot request was dropped: the endless body stopped being read.
    let written = tokio::time::timeout(PATIENCE, writer)
        .await
        .expect("the server kept reading the endless answer")
        .unwrap();
    assert!(written < 1 << 30);
    // The whole cut answer was stored (it fits the store's item).
    let (_again, replayed) = join(&server).await;
    assert_eq!(replayed, [echo, combined]);
    server.stop().await;
}

/// The server's default bound on an answer.
fn server_default_max_answer_bytes() -> usize {
    jiva_ws::Config::default().copilot_max_answer_bytes
}

async fn a_copilot_slow_to_send_its_headers_times_out_with_a_notice_and_end(kind: StoreKind) {
    // Accepts the request and never answers.
    let stand_in = StandIn::serve(vec![Step::Hold]).await.unwrap();
    let server = start_tweaked(kind, &stand_in, |copilot| {
        copilot.first_byte_timeout = Duration::from_millis(300);
    })
    .await;
    let mut ws = server.connect(AGENT, "copilot").await;
    let echo = ask_and_echo(&mut ws, "hello?").await;
    assert_eq!(next_json(&mut ws).await, error_frame("copilot timed out"));
    expect_failure_notice_then_end(&mut ws, "copilot timed out").await;
    // Only the question was stored; the socket goes on.
    let (_again, replayed) = join(&server).await;
    assert_eq!(replayed, [echo]);
    server.stop().await;
}

crate::on_both_stores!(
    objects_split_anywhere_are_relayed_one_frame_each_then_combined_then_end,
    newline_delimited_json_is_relayed,
    server_sent_events_are_relayed_and_done_ends_the_turn,
    error_statuses_give_an_error_frame_and_end_and_the_socket_stays_usable,
    a_body_cut_off_midway_stores_and_shows_the_partial_answer,
    a_silent_copilot_times_out_and_the_partial_answer_is_stored,
    the_copilot_receives_the_input_and_the_earlier_turns_from_the_store,
    after_reconnect_the_history_comes_from_the_store_with_the_live_ids,
    a_keepalive_during_a_stream_gets_no_answer,
    an_answer_is_finished_and_stored_when_every_socket_left_mid_turn,
    every_socket_of_the_chat_receives_the_turn,
    a_question_during_a_turn_is_echoed_at_once_and_answered_after_its_end,
    questions_queued_behind_a_turn_are_not_sent_as_its_history,
    an_answer_arriving_all_at_once_reaches_the_socket_whole,
    a_socket_that_never_reads_does_not_stall_a_copilot_answer,
    a_turn_over_its_whole_time_limit_ends_with_the_partial_answer,
    an_unreachable_copilot_gives_an_error_frame_and_end,
    an_answer_past_its_size_bound_is_cut_there_stored_with_a_notice_and_ended,
    a_body_of_gigabytes_is_cut_at_the_default_bound_and_its_request_dropped,
    a_copilot_slow_to_send_its_headers_times_out_with_a_notice_and_end,
);
