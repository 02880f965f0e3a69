//! Failures of the copilot, each translated into its `CopilotError`.

use jiva_copilot::HttpCopilot;
use jiva_core::{Copilot, CopilotError};

use crate::server::{
    chunk, chunk_of, collect, config, end, fixed, head_chunked, head_close_delimited, question,
    raw, serve, within,
};

#[tokio::test]
async fn a_422_answer_is_a_status_error() {
    let server = serve(vec![fixed(422, r#"{"detail":[{"msg":"field required"}]}"#)]).await;
    let copilot = HttpCopilot::new(config(server.url())).unwrap();
    let result = within(copilot.ask(question())).await;
    assert!(
        matches!(result, Err(CopilotError::Status(422))),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn a_500_answer_is_a_status_error_even_with_a_streamed_body() {
    let server = serve(vec![
        head_chunked(500, "text/plain"),
        chunk("Internal Server Error"),
        end(),
    ])
    .await;
    let copilot = HttpCopilot::new(config(server.url())).unwrap();
    let result = within(copilot.ask(question())).await;
    assert!(
        matches!(result, Err(CopilotError::Status(500))),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn a_connection_closed_mid_object_is_truncated_after_the_chunks_so_far() {
    // Chunked body that stops, without its last chunk, in the middle of the second object.
    let server = serve(vec![
        head_chunked(200, "application/json"),
        chunk(r#"{"action":null,"output":"so far"}{"action":null,"outp"#),
    ])
    .await;
    let copilot = HttpCopilot::new(config(server.url())).unwrap();
    let stream = within(copilot.ask(question())).await.unwrap();
    let items = collect(stream).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap(), &chunk_of(None, Some("so far")));
    assert!(
        matches!(items[1], Err(CopilotError::Truncated)),
        "{items:?}"
    );
}

#[tokio::test]
async fn a_close_delimited_body_ending_mid_object_is_truncated() {
    let server = serve(vec![
        head_close_delimited("application/json"),
        raw(r#"{"action":null,"output":"so far"}{"action":"a","output":"cut "#),
    ])
    .await;
    let copilot = HttpCopilot::new(config(server.url())).unwrap();
    let stream = within(copilot.ask(question())).await.unwrap();
    let items = collect(stream).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap(), &chunk_of(None, Some("so far")));
    assert!(
        matches!(items[1], Err(CopilotError::Truncated)),
        "{items:?}"
    );
}

#[tokio::test]
async fn a_body_cut_off_before_any_object_is_an_error_from_ask() {
    let server = serve(vec![
        head_chunked(200, "application/json"),
        chunk(r#"{"action":null,"out"#),
    ])
    .await;
    let copilot = HttpCopilot::new(config(server.url())).unwrap();
    let result = within(copilot.ask(question())).await;
    assert!(
        matches!(result, Err(CopilotError::Truncated)),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn undecodable_bytes_end_the_stream_with_a_decode_error() {
    let server = serve(vec![
        head_chunked(200, "application/json"),
        chunk(r#"{"action":null,"output":"fine"}"#),
        chunk("<html>oops</html>"),
        chunk(r#"{"action":null,"output":"never"}"#),
        end(),
    ])
    .await;
    let copilot = HttpCopilot::new(config(server.url())).unwrap();
    let stream = within(copilot.ask(question())).await.unwrap();
    let items = collect(stream).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap(), &chunk_of(None, Some("fine")));
    assert!(
        matches!(items[1], Err(CopilotError::Decode(_))),
        "{items:?}"
    );
}

#[tokio::test]
async fn an_object_over_the_limit_is_too_large() {
    let big = format!(r#"{{"action":null,"output":"{}"}}"#, "x".repeat(200));
    let server = serve(vec![
        head_chunked(200, "application/json"),
        chunk(big),
        end(),
    ])
    .await;
    let mut config = config(server.url());
    config.max_object_bytes = 64;
    let copilot = HttpCopilot::new(config).unwrap();
    let result = within(copilot.ask(question())).await;
    assert!(
        matches!(result, Err(CopilotError::TooLarge(64))),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let copilot =
        HttpCopilot::new(config(&format!("http://127.0.0.1:{port}/ask?key=s3cret"))).unwrap();
    let result = within(copilot.ask(question())).await;
    let Err(err @ CopilotError::Unavailable(_)) = result else {
        panic!("expected Unavailable, got {:?}", result.err());
    };
    // The error (and its causes, which a caller may log) does not show the endpoint's key.
    let mut chain = format!("{err} / {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push_str(&format!(" / {cause}"));
        source = cause.source();
    }
    assert!(!chain.contains("s3cret"), "{chain}");
}

#[tokio::test]
async fn a_connection_closed_before_any_answer_is_unavailable() {
    let server = serve(vec![]).await;
    let copilot = HttpCopilot::new(config(server.url())).unwrap();
    let result = within(copilot.ask(question())).await;
    assert!(
        matches!(result, Err(CopilotError::Unavailable(_))),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn an_invalid_config_is_refused_with_every_problem() {
    let mut config = config("ftp://example.invalid/");
    config.idle_timeout = std::time::Duration::ZERO;
    let err = HttpCopilot::new(config).unwrap_err();
    match err {
        jiva_copilot::ConfigError::Invalid(problems) => assert_eq!(problems.len(), 2),
        other => panic!("unexpected {other:?}"),
    }
}
