//! PROTOCOL.md §1: opening a socket.

use crate::support::*;

#[tokio::test]
async fn upgrades_on_any_path() {
    let server = TestServer::start().await;
    for (i, path) in ["/", "/chat", "/a/b/c", "/ws/"].into_iter().enumerate() {
        let agent = format!("agent-{i}");
        let mut ws =
            connect(&server.url(&format!("{path}?agentID={agent}&secondaryID=supervisor"))).await;
        say(&mut ws, "agent", path).await;
        assert_eq!(next_json(&mut ws).await["message"], path);
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_or_missing_parameters_get_400_with_a_reason() {
    let server = TestServer::start().await;
    let cases = [
        ("/", "agentID is missing or empty"),
        ("/?secondaryID=supervisor", "agentID is missing or empty"),
        (
            "/?agentID=&secondaryID=supervisor",
            "agentID is missing or empty",
        ),
        (
            "/?agentid=a&secondaryid=supervisor",
            "agentID is missing or empty",
        ),
        ("/?agentID=a", "secondaryID is missing"),
        (
            "/?agentID=a&secondaryID=human",
            "secondaryID must be \"supervisor\" or \"copilot\"",
        ),
        (
            "/?agentID=a&secondaryID=SUPERVISOR",
            "secondaryID must be \"supervisor\" or \"copilot\"",
        ),
    ];
    for (path, reason) in cases {
        let (code, body) = raw_http(server.addr, &upgrade_request(path)).await;
        assert_eq!(code, 400, "{path}");
        assert_eq!(body, format!("{reason}\n"), "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn plain_http_requests_get_an_answer() {
    let server = TestServer::start().await;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");

    let (code, body) = raw_http(server.addr, &get("/healthz")).await;
    assert_eq!(code, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["store"], "sqlite");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));

    let (code, _) = raw_http(server.addr, &get("/readyz")).await;
    assert_eq!(code, 200);

    let (code, body) = raw_http(
        server.addr,
        &get(&format!("/?agentID={AGENT}&secondaryID=copilot")),
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (426, "this is a WebSocket endpoint\n")
    );

    let (code, body) = raw_http(server.addr, &get("/?agentID=a&secondaryID=nope")).await;
    assert_eq!(
        (code, body.as_str()),
        (400, "secondaryID must be \"supervisor\" or \"copilot\"\n")
    );

    let (code, _) = raw_http(server.addr, &get("/")).await;
    assert_eq!(code, 200);
    let (code, _) = raw_http(server.addr, &get("/no/such/page")).await;
    assert_eq!(code, 404);
    server.stop().await;
}

#[tokio::test]
async fn the_same_agent_may_hold_many_sockets_on_one_chat() {
    let server = TestServer::start().await;
    let mut sockets = Vec::new();
    for _ in 0..20 {
        sockets.push(server.connect(AGENT, "supervisor").await);
    }
    say(&mut sockets[0], "agent", "to all twenty").await;
    for ws in &mut sockets {
        assert_eq!(next_json(ws).await["message"], "to all twenty");
    }
    server.stop().await;
}
