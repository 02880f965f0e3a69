//! Issue 10, who may join which chat: tokens (`jwt` and `cognito` against a JWKS stand-in),
//! the authorization matrix, sender checks, expiry while open, and the Origin allow-list, all
//! over real sockets against the real server.

use futures_util::SinkExt;
use jiva_auth::testing::{JwksStandIn, RsaKey, cognito_claims, hs256};
use jiva_auth::{ClaimNames, CognitoConfig, JwtConfig, JwtSecret};
use jiva_core::{Timestamp, UserRole};
use jivachat_server::{AuthChoice, Config};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

const SECRET: &str = "the shared secret of the auth tests";
const OTHER: &str = "7d1f3c1e-9b2a-4e4f-8a6b-1c2d3e4f5a6b";

/// Runs an async test function once per mode, as `<name>::jwt` and `<name>::cognito`.
#[macro_export]
macro_rules! on_both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn jwt() {
                super::$name(super::Auth::Jwt).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cognito() {
                super::$name(super::Auth::cognito().await).await;
            }
        }
    )*};
}

/// A server with authentication on, and a way to make its tokens.
enum Auth {
    Jwt,
    Cognito {
        key: RsaKey,
        config: Box<CognitoConfig>,
        _stand_in: JwksStandIn,
    },
}

impl Auth {
    async fn cognito() -> Self {
        let key = RsaKey::generate("test-key").unwrap();
        let stand_in = JwksStandIn::start(&[&key]).await.unwrap();
        let mut config = CognitoConfig::new("eu-west-1", "eu-west-1_JivaTest", "jiva-client");
        config.jwks_url = Some(stand_in.url().to_owned());
        Self::Cognito {
            key,
            config: Box::new(config),
            _stand_in: stand_in,
        }
    }

    fn choice(&self) -> AuthChoice {
        match self {
            // No clock skew allowed, so that a short-lived token expires when its `exp` says.
            Self::Jwt => {
                let mut jwt = JwtConfig::new(JwtSecret::new(SECRET));
                jwt.leeway = std::time::Duration::ZERO;
                AuthChoice::Jwt(jwt)
            }
            Self::Cognito { config, .. } => {
                let mut config = config.clone();
                config.leeway = std::time::Duration::ZERO;
                AuthChoice::Cognito(config)
            }
        }
    }

    /// A token for `agent`, valid for `ttl_secs` from now.
    fn token(&self, agent: &str, role: UserRole, ttl_secs: i64) -> String {
        match self {
            // Made by hand rather than with `issue_hs256`, which cannot make an expired token.
            Self::Jwt => {
                let names = ClaimNames::default();
                let groups: Vec<&str> = match role {
                    UserRole::Supervisor => vec![&names.supervisor_group],
                    UserRole::Agent => vec![],
                };
                let mut claims = serde_json::Map::new();
                claims.insert("sub".into(), agent.into());
                claims.insert("exp".into(), (Timestamp::now().secs() + ttl_secs).into());
                claims.insert(names.agent_id.clone(), agent.into());
                claims.insert(names.groups.clone(), groups.into());
                hs256(
                    SECRET.as_bytes(),
                    &serde_json::json!({"alg": "HS256", "typ": "JWT"}),
                    &Value::Object(claims),
                )
            }
            Self::Cognito { key, config, .. } => key
                .sign(&cognito_claims(
                    config,
                    agent,
                    role == UserRole::Supervisor,
                    ttl_secs,
                ))
                .unwrap(),
        }
    }

    async fn server(&self) -> TestServer {
        self.server_with(|_| {}).await
    }

    async fn server_with(&self, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let choice = self.choice();
        TestServer::start_with(move |c| {
            c.auth = choice;
            tweak(c);
        })
        .await
    }
}

fn chat_path(agent: &str, kind: &str, token: &str) -> String {
    format!("/?agentID={agent}&secondaryID={kind}&token={token}")
}

/// Who may open which chat, in both modes: every combination of role, own or other agent's
/// chat, and chat kind, with the status and reason of each refusal.
async fn authorization_matrix(auth: Auth) {
    let server = auth.server().await;
    let cases = [
        // (role, chat of, kind, expected status, reason)
        (UserRole::Agent, AGENT, "supervisor", 101, ""),
        (UserRole::Agent, AGENT, "copilot", 101, ""),
        (
            UserRole::Agent,
            OTHER,
            "supervisor",
            403,
            "an agent may only open its own chats\n",
        ),
        (
            UserRole::Agent,
            OTHER,
            "copilot",
            403,
            "an agent may only open its own chats\n",
        ),
        (UserRole::Supervisor, AGENT, "supervisor", 101, ""),
        (UserRole::Supervisor, AGENT, "copilot", 101, ""),
        (UserRole::Supervisor, OTHER, "supervisor", 101, ""),
        (
            UserRole::Supervisor,
            OTHER,
            "copilot",
            403,
            "a supervisor may only open its own copilot chat\n",
        ),
    ];
    for (role, chat_of, kind, status, reason) in cases {
        let token = auth.token(AGENT, role, 3600);
        let path = chat_path(chat_of, kind, &token);
        if status == 101 {
            // A real socket that works: it gets its own message back.
            let mut ws = connect(&server.url(&path)).await;
            say(&mut ws, role.as_str(), "hello").await;
            let frame = next_json(&mut ws).await;
            assert_eq!(frame["message"], "hello", "{role:?} {chat_of} {kind}");
        } else {
            let (code, body) = raw_http(server.addr, &upgrade_request(&path)).await;
            assert_eq!(
                (code, body.as_str()),
                (status, reason),
                "{role:?} {chat_of} {kind}"
            );
        }
    }
    server.stop().await;
}

/// 401 for a missing or bad token, with a one-line reason; 403 is only for good tokens.
async fn bad_tokens_get_401_with_a_reason(auth: Auth) {
    let server = auth.server().await;
    let good = auth.token(AGENT, UserRole::Agent, 3600);
    let expired = auth.token(AGENT, UserRole::Agent, -3600);
    // One signature character changed (not the last, whose low bits may be padding).
    let at = good.len() - 10;
    let mut tampered = good.clone();
    let swap = if good[at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(at..=at, swap);
    let cases = [
        (
            format!("/?agentID={AGENT}&secondaryID=supervisor"),
            "a token is required\n",
        ),
        (chat_path(AGENT, "supervisor", ""), "a token is required\n"),
        (
            chat_path(AGENT, "supervisor", "junk"),
            "the token is malformed\n",
        ),
        (
            chat_path(AGENT, "supervisor", &expired),
            "the token has expired\n",
        ),
        (
            chat_path(AGENT, "supervisor", &tampered),
            "the token's signature is invalid\n",
        ),
    ];
    for (path, reason) in &cases {
        let (code, body) = raw_http(server.addr, &upgrade_request(path)).await;
        assert_eq!((code, body.as_str()), (401, *reason), "{reason}");
        // The plain GET a browser page can read says the same.
        let (code, body) = raw_http(server.addr, &get(path)).await;
        assert_eq!((code, body.as_str()), (401, *reason), "GET {reason}");
    }
    // A good token on a plain GET: what the upgrade would do, 426.
    let (code, _) = raw_http(server.addr, &get(&chat_path(AGENT, "copilot", &good))).await;
    assert_eq!(code, 426);
    // The upgrade answer names the scheme.
    let raw = raw_head(server.addr, &upgrade_request(&cases[0].0)).await;
    assert!(
        raw.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{raw}"
    );
    server.stop().await;
}

/// On the supervisor chat the stored sender is the caller's role: a frame claiming the other
/// role gets an error frame, to its sender only, and is neither stored nor shown.
async fn a_claimed_sender_must_match_the_role(auth: Auth) {
    let server = auth.server().await;
    let agent_token = auth.token(AGENT, UserRole::Agent, 3600);
    let supervisor_token = auth.token(OTHER, UserRole::Supervisor, 3600);
    let mut agent = connect(&server.url(&chat_path(AGENT, "supervisor", &agent_token))).await;
    let mut supervisor =
        connect(&server.url(&chat_path(AGENT, "supervisor", &supervisor_token))).await;

    say(&mut agent, "supervisor", "I am the boss now").await;
    assert_eq!(
        next_json(&mut agent).await,
        serde_json::json!({"error": "sender does not match your role"})
    );
    say(&mut supervisor, "agent", "I am the agent now").await;
    assert_eq!(
        next_json(&mut supervisor).await,
        serde_json::json!({"error": "sender does not match your role"})
    );
    // Both see the valid messages and nothing else (each error went to its sender only).
    say(&mut agent, "agent", "from the agent").await;
    for ws in [&mut agent, &mut supervisor] {
        let frame = next_json(ws).await;
        assert_eq!(
            (frame["sender"].as_str(), frame["message"].as_str()),
            (Some("agent"), Some("from the agent"))
        );
    }
    say(&mut supervisor, "supervisor", "from a supervisor").await;
    for ws in [&mut agent, &mut supervisor] {
        let frame = next_json(ws).await;
        assert_eq!(
            (frame["sender"].as_str(), frame["message"].as_str()),
            (Some("supervisor"), Some("from a supervisor"))
        );
    }

    // A fresh socket's replay holds only the two valid messages: the live echo of a new
    // message comes right after them.
    let mut fresh = connect(&server.url(&chat_path(AGENT, "supervisor", &agent_token))).await;
    let replay = take_json(&mut fresh, 2).await;
    assert_eq!(replay[0]["message"], "from the agent");
    assert_eq!(replay[1]["message"], "from a supervisor");
    say(&mut fresh, "agent", "sentinel").await;
    assert_eq!(next_json(&mut fresh).await["message"], "sentinel");

    // On the copilot chat the widget always says "agent", whoever holds it: accepted.
    let own_copilot = auth.token(OTHER, UserRole::Supervisor, 3600);
    let mut copilot = connect(&server.url(&chat_path(OTHER, "copilot", &own_copilot))).await;
    say(&mut copilot, "agent", "question").await;
    let echo = next_json(&mut copilot).await;
    assert_eq!(
        (echo["sender"].as_str(), echo["message"].as_str()),
        (Some("agent"), Some("question"))
    );
    server.stop().await;
}

/// A socket whose token expires while it is open is closed at expiry with 4001.
async fn an_expiring_token_closes_its_socket_with_4001(auth: Auth) {
    let server = auth.server().await;
    let short = auth.token(AGENT, UserRole::Agent, 2);
    let long = auth.token(AGENT, UserRole::Agent, 3600);
    let mut expiring = connect(&server.url(&chat_path(AGENT, "supervisor", &short))).await;
    let mut lasting = connect(&server.url(&chat_path(AGENT, "supervisor", &long))).await;
    // Awaited, not slept: the close frame arrives when the token expires.
    match next_frame(&mut expiring).await {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::from(jiva_ws::CLOSE_TOKEN_EXPIRED));
            assert_eq!(frame.reason.as_str(), "token expired");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    // The other socket of the chat goes on.
    say(&mut lasting, "agent", "still here").await;
    assert_eq!(next_json(&mut lasting).await["message"], "still here");
    // Reconnecting with the expired token is refused, not opened and closed again.
    let (code, body) = raw_http(
        server.addr,
        &upgrade_request(&chat_path(AGENT, "supervisor", &short)),
    )
    .await;
    assert_eq!((code, body.as_str()), (401, "the token has expired\n"));
    server.stop().await;
}

crate::on_both_modes!(
    authorization_matrix,
    bad_tokens_get_401_with_a_reason,
    a_claimed_sender_must_match_the_role,
    an_expiring_token_closes_its_socket_with_4001,
);

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

/// The raw response head to `request`.
async fn raw_head(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the head ended");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn the_token_may_be_url_encoded_or_a_bearer_header() {
    let auth = Auth::Jwt;
    let server = auth.server().await;
    let token = auth.token(AGENT, UserRole::Agent, 3600);
    // Every byte percent-encoded, as an over-eager client might.
    let encoded: String = token.bytes().map(|b| format!("%{b:02X}")).collect();
    let mut ws = connect(&server.url(&chat_path(AGENT, "supervisor", &encoded))).await;
    say(&mut ws, "agent", "encoded").await;
    assert_eq!(next_json(&mut ws).await["message"], "encoded");

    let request = format!(
        "GET /?agentID={AGENT}&secondaryID=supervisor HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    let (code, _) = raw_http(server.addr, &request).await;
    assert_eq!(code, 101);
    server.stop().await;
}

#[tokio::test]
async fn with_auth_on_health_tells_no_version_and_the_page_learns_the_mode() {
    let server = Auth::Jwt.server().await;
    let (code, body) = raw_http(server.addr, &get("/healthz")).await;
    assert_eq!((code, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (code, body) = raw_http(server.addr, &get("/auth-mode")).await;
    assert_eq!((code, body.as_str()), (200, r#"{"token":"required"}"#));
    // Refusals are counted by reason.
    raw_http(
        server.addr,
        &upgrade_request(&format!("/?agentID={AGENT}&secondaryID=copilot")),
    )
    .await;
    let (_, metrics) = raw_http(server.addr, &get("/metrics")).await;
    assert!(
        metrics.contains(r#"jiva_auth_refusals_total{reason="missing"}"#),
        "{metrics}"
    );
    server.stop().await;

    let open = TestServer::start().await;
    let (_, body) = raw_http(open.addr, &get("/auth-mode")).await;
    assert_eq!(body, r#"{"token":"none"}"#);
    let (_, body) = raw_http(open.addr, &get("/healthz")).await;
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    open.stop().await;
}

#[tokio::test]
async fn without_auth_anyone_opens_any_chat_and_tokens_are_ignored() {
    let server = TestServer::start().await;
    for path in [
        format!("/?agentID={OTHER}&secondaryID=supervisor"),
        chat_path(OTHER, "copilot", "junk"),
    ] {
        let mut ws = connect(&server.url(&path)).await;
        say(&mut ws, "supervisor", "anyone").await;
        assert_eq!(next_json(&mut ws).await["sender"], "supervisor");
    }
    server.stop().await;
}

fn upgrade_from(origin: Option<&str>) -> String {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    format!(
        "GET /?agentID={AGENT}&secondaryID=supervisor HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{origin}\r\n"
    )
}

#[tokio::test]
async fn only_allowed_origins_may_open_sockets_from_a_browser() {
    let server = TestServer::start_with(|c| {
        c.transport.allowed_origins = vec!["https://chat.example.com".into()];
    })
    .await;
    let (code, _) = raw_http(server.addr, &upgrade_from(Some("https://chat.example.com"))).await;
    assert_eq!(code, 101, "allowed origin");
    let (code, body) = raw_http(server.addr, &upgrade_from(Some("https://evil.example"))).await;
    assert_eq!(
        (code, body.as_str()),
        (403, "origin not allowed\n"),
        "other origin"
    );
    let (code, _) = raw_http(server.addr, &upgrade_from(None)).await;
    assert_eq!(code, 101, "no Origin: not a browser");
    server.stop().await;

    // Without a list, any origin, as before.
    let open = TestServer::start().await;
    let (code, _) = raw_http(open.addr, &upgrade_from(Some("https://evil.example"))).await;
    assert_eq!(code, 101);
    open.stop().await;
}

#[tokio::test]
async fn the_token_command_prints_a_token_the_server_accepts() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_jivachat-server"))
        .args([
            "token",
            "--agent",
            AGENT,
            "--role",
            "supervisor",
            "--ttl",
            "1h",
        ])
        .env("JIVA_JWT_SECRET", SECRET)
        .env_remove("JIVA_AUTH")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).unwrap();
    let token = token.trim_end();
    assert_eq!(token.split('.').count(), 3);

    let server = Auth::Jwt.server().await;
    // A supervisor's token opens another agent's supervisor chat.
    let mut ws = connect(&server.url(&chat_path(OTHER, "supervisor", token))).await;
    ws.send(Message::text(
        serde_json::json!({"chat_id": "x", "sender": "supervisor", "message": "hi"}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["sender"], "supervisor");
    server.stop().await;

    // Without a secret it says why, on stderr, and exits 2.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_jivachat-server"))
        .args(["token", "--agent", AGENT])
        .env_remove("JIVA_JWT_SECRET")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("JIVA_JWT_SECRET"));
}

/// Tokens and the secret never reach the log, even at `trace` level, whether the token is good,
/// bad, in the query or in a header. The server runs in this test's single-threaded runtime, so
/// a subscriber set for this thread sees everything it logs.
#[tokio::test(flavor = "current_thread")]
async fn tokens_and_the_secret_are_never_logged() {
    let (capture, _guard) = Capture::this_thread();

    let auth = Auth::Jwt;
    let server = auth.server().await;
    let good = auth.token(AGENT, UserRole::Agent, 3600);
    let other = auth.token(OTHER, UserRole::Agent, 3600);
    let bad = format!("{}x", &good[..good.len() - 5]);
    let mut ws = connect(&server.url(&chat_path(AGENT, "supervisor", &good))).await;
    say(&mut ws, "agent", "logged?").await;
    assert_eq!(next_json(&mut ws).await["message"], "logged?");
    for path in [
        chat_path(AGENT, "supervisor", &bad),
        chat_path(AGENT, "copilot", &other),
    ] {
        let (code, _) = raw_http(server.addr, &upgrade_request(&path)).await;
        assert!(code == 401 || code == 403, "{code}");
        let (code, _) = raw_http(server.addr, &get(&path)).await;
        assert!(code == 401 || code == 403, "{code}");
    }
    let bearer = format!(
        "GET /?agentID={AGENT}&secondaryID=copilot HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {other}\r\n\r\n"
    );
    assert_eq!(raw_http(server.addr, &bearer).await.0, 403);
    drop(ws);
    server.stop().await;

    let log = capture.text();
    assert!(log.contains("request refused"), "refusals are logged");
    assert!(
        log.contains("JivaChat listening"),
        "the server's log was captured"
    );
    // The signature part of each token is what would make a leaked token usable.
    for secret in [
        SECRET,
        good.rsplit('.').next().unwrap(),
        other.rsplit('.').next().unwrap(),
        &bad,
    ] {
        if let Some(line) = log.lines().find(|l| l.contains(secret)) {
            panic!("a secret reached the log: {line}");
        }
    }
}

/// Everything logged on this thread, at every level, from [`Capture::this_thread`] until its
/// guard is dropped. A server started in a `current_thread` test runtime logs on this thread.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Capture {
    fn this_thread() -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Self::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `--auth none` on an address other than loopback says, once, at start-up, that anyone who
/// reaches it may open any chat; on loopback, or with auth on, it says nothing.
#[tokio::test(flavor = "current_thread")]
async fn auth_none_on_a_public_address_warns_once() {
    async fn log_of(address: &str, auth: AuthChoice) -> String {
        let (capture, _guard) = Capture::this_thread();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::with_data_dir(dir.path());
        config.auth = auth;
        // Bound on every interface, but only ever spoken to over loopback.
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(jivachat_server::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let (code, _) = raw_http(([127, 0, 0, 1], port).into(), &get("/healthz")).await;
        assert_eq!(code, 200);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        capture.text()
    }
    let warning = "authentication is off (--auth none) on a non-loopback address";
    let public = log_of("0.0.0.0:0", AuthChoice::None).await;
    assert_eq!(public.matches(warning).count(), 1, "{public}");
    assert!(public.contains("WARN"), "{public}");
    let local = log_of("127.0.0.1:0", AuthChoice::None).await;
    assert!(!local.contains(warning), "{local}");
    let secured = log_of("0.0.0.0:0", Auth::Jwt.choice()).await;
    assert!(!secured.contains(warning), "{secured}");
}

/// With auth on, the main listener's `/healthz` tells anonymous callers nothing about the
/// build; the admin listener's still gives the version and store.
#[tokio::test]
async fn the_admin_listener_still_tells_the_version_with_auth_on() {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(data.path());
    config.auth = Auth::Jwt.choice();
    let store = jivachat_server::open_store(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_addr, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(jivachat_server::run_with_listeners(
        config,
        store,
        listener,
        Some(admin),
        async move {
            let _ = stopped.await;
        },
    ));
    let (code, body) = raw_http(main_addr, &get("/healthz")).await;
    assert_eq!((code, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (code, body) = raw_http(admin_addr, &get("/healthz")).await;
    assert_eq!(code, 200);
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    stop.send(()).unwrap();
    tokio::time::timeout(PATIENCE, serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
