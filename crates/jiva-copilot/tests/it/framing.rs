//! The three framings of the answer, over a real chunked HTTP body.

use jiva_copilot::HttpCopilot;
use jiva_core::Copilot;
use tokio::sync::oneshot;

use crate::server::{
    Step, all_ok, chunk, chunk_of, collect, config, end, head_chunked, question, serve, within,
};

#[tokio::test]
async fn objects_back_to_back_split_inside_strings_and_characters_decode_exactly() {
    let body = r#"{"action":"a}b","output":"x"}{"action":null,"output":"😀 \"}{\""}{"action":"tool","output":"Processing Results\n"}"#;
    let bytes = body.as_bytes();
    // Cut right after the `}` inside "a}b", inside the 4-byte emoji, and inside an escape.
    let after_brace = body.find("a}").unwrap() + 2;
    let emoji = body.find('😀').unwrap();
    let escape = body.find(r#"\""#).unwrap() + 1;
    let cuts = [after_brace, emoji + 1, emoji + 3, escape, bytes.len()];
    let mut steps = vec![head_chunked(200, "application/json")];
    let mut start = 0;
    for cut in cuts {
        steps.push(chunk(&bytes[start..cut]));
        start = cut;
    }
    steps.push(end());
    let server = serve(steps).await;
    let copilot = HttpCopilot::new(config(server.url())).unwrap();
    let stream = within(copilot.ask(question())).await.unwrap();
    assert_eq!(
        all_ok(collect(stream).await),
        [
            chunk_of(Some("a}b"), Some("x")),
            chunk_of(None, Some("😀 \"}{\"")),
            chunk_of(Some("tool"), Some("Processing Results\n")),
        ]
    );
}

#[tokio::test]
async fn newline_delimited_json_is_accepted() {
    let server = serve(vec![
        head_chunked(200, "application/x-ndjson"),
        chunk("{\"action\":\"a\",\"output\":\"one\"}\n{\"action\":null,"),
        chunk("\"output\":\"two\\n\"}\r\n"),
        end(),
    ])
    .await;
    let copilot = HttpCopilot::new(config(server.url())).unwrap();
    let stream = within(copilot.ask(question())).await.unwrap();
    assert_eq!(
        all_ok(collect(stream).await),
        [
            chunk_of(Some("a"), Some("one")),
            chunk_of(None, Some("two\n"))
        ]
    );
}

#[tokio::test]
async fn server_sent_events_are_accepted_and_done_ends_the_answer_without_waiting() {
    // The stand-in keeps the connection open after `[DONE]`: the answer must end anyway, not
    // time out.
    let server = serve(vec![
        head_chunked(200, "text/event-stream"),
        chunk(": hello\r\nevent: data\r\nid: 1\r\ndata: {\"action\":\"a\",\"out"),
        chunk("put\":\"x}\"}\r\n\r\ndata: {\"action\":null,\"output\":null}\r\n\r\n"),
        chunk("data: [DONE]\r\n\r\n"),
        Step::Hold,
    ])
    .await;
    let mut config = config(server.url());
    config.idle_timeout = std::time::Duration::from_millis(300);
    let copilot = HttpCopilot::new(config).unwrap();
    let stream = within(copilot.ask(question())).await.unwrap();
    assert_eq!(
        all_ok(collect(stream).await),
        [chunk_of(Some("a"), Some("x}")), chunk_of(None, None)]
    );
}

#[tokio::test]
async fn chunks_are_delivered_as_they_arrive_not_at_the_end_of_the_body() {
    // The stand-in sends the second object only after the test has received the first, so a
    // client that waited for the whole body would never get there.
    let (go_tx, go_rx) = oneshot::channel();
    let server = serve(vec![
        head_chunked(200, "application/json"),
        chunk(r#"{"action":null,"output":"first"}"#),
        Step::WaitFor(go_rx),
        chunk(r#"{"action":null,"output":"second"}"#),
        end(),
    ])
    .await;
    let copilot = HttpCopilot::new(config(server.url())).unwrap();
    let mut stream = within(copilot.ask(question())).await.unwrap();
    let first = within(futures_util::StreamExt::next(&mut stream)).await;
    assert_eq!(first.unwrap().unwrap(), chunk_of(None, Some("first")));
    go_tx.send(()).unwrap();
    assert_eq!(
        all_ok(collect(stream).await),
        [chunk_of(None, Some("second"))]
    );
}

#[tokio::test]
async fn an_empty_answer_is_an_empty_stream() {
    let server = serve(vec![head_chunked(200, "application/json"), end()]).await;
    let copilot = HttpCopilot::new(config(server.url())).unwrap();
    let stream = within(copilot.ask(question())).await.unwrap();
    assert!(collect(stream).await.is_empty());
}
