//! What is sent to the copilot.

use jiva_copilot::HttpCopilot;
use jiva_core::Copilot;

use crate::server::{
    all_ok, chunk, chunk_of, collect, config, end, head_chunked, question, request, serve, within,
};

#[tokio::test]
async fn the_request_is_a_json_post_of_input_and_history_exactly() {
    let mut server = serve(vec![
        head_chunked(200, "application/json"),
        chunk(r#"{"action":null,"output":"ok"}"#),
        end(),
    ])
    .await;
    let copilot = HttpCopilot::new(config(server.url())).unwrap();
    let stream = within(copilot.ask(question())).await.unwrap();
    assert_eq!(all_ok(collect(stream).await), [chunk_of(None, Some("ok"))]);

    let request = request(&mut server).await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/copilot/ask");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        String::from_utf8(request.body).unwrap(),
        r#"{"input":"And the \"refund\" policy? }","chat_history":[{"role":"human","content":"Hi 😀"},{"role":"ai","content":"Hello!\nHow can I help?"}]}"#
    );
}

#[tokio::test]
async fn one_client_asks_several_times_and_each_request_gets_its_own_script_in_order() {
    let mut server = serve(vec![
        head_chunked(200, "application/json"),
        chunk(r#"{"action":null,"output":"first"}"#),
        end(),
    ])
    .await;
    server.push(vec![
        head_chunked(200, "application/json"),
        chunk(r#"{"action":null,"output":"second"}"#),
        end(),
    ]);
    let copilot = HttpCopilot::new(config(server.url())).unwrap();
    for expected in ["first", "second"] {
        let stream = within(copilot.ask(question())).await.unwrap();
        assert_eq!(
            all_ok(collect(stream).await),
            [chunk_of(None, Some(expected))]
        );
        let request = request(&mut server).await;
        assert_eq!(request.method, "POST");
        assert!(request.body_text().unwrap().contains("refund"));
    }
    assert_eq!(server.scripts_left(), 0);
    // A request beyond the scripts is refused, and still recorded.
    let refused = within(copilot.ask(question())).await;
    assert!(
        matches!(refused, Err(jiva_core::CopilotError::Status(503))),
        "{:?}",
        refused.err()
    );
    assert_eq!(request(&mut server).await.path, "/copilot/ask");
    assert!(server.try_request().is_none());
}
