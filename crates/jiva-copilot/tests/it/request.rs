//! What is sent to the copilot.

use jiva_copilot::HttpCopilot;
use jiva_core::Copilot;

use crate::server::{
    all_ok, chunk, chunk_of, collect, config, end, head_chunked, question, serve, within,
};

#[tokio::test]
async fn the_request_is_a_json_post_of_input_and_history_exactly() {
    let mut server = serve(vec![
        head_chunked(200, "application/json"),
        chunk(r#"{"action":null,"output":"ok"}"#),
        end(),
    ])
    .await;
    let copilot = HttpCopilot::new(config(&server.url)).unwrap();
    let stream = within(copilot.ask(question())).await.unwrap();
    assert_eq!(all_ok(collect(stream).await), [chunk_of(None, Some("ok"))]);

    let request = server.request().await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/copilot/ask");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        String::from_utf8(request.body).unwrap(),
        r#"{"input":"And the \"refund\" policy? }","chat_history":[{"role":"human","content":"Hi 😀"},{"role":"ai","content":"Hello!\nHow can I help?"}]}"#
    );
}
