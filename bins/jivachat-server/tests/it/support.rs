//! Starting servers and speaking to them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiva_core::MessageStore;
use jiva_store_dynamo::DynamoStore;
use jiva_store_dynamo::testing::LocalDynamo;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jivachat_server::Config;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected event may take before a test fails (a bound, not a sleep).
pub const PATIENCE: Duration = Duration::from_secs(20);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Held by the tests that load the shared moto server hardest (the three-node order test, the
/// thousand-client failover, and the killed node's 300 sends), so that they take turns: run at
/// once, they slowed moto past the nodes' DynamoDB time-outs, and appends failed with "the
/// store is unavailable".
pub static HEAVY_ON_MOTO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const AGENT: &str = "0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21";

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// Which store a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Dynamo,
}

/// Where a test server keeps its data, so a second server can be started on the same data.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a handful per test: size does not matter
pub enum Backing {
    Sqlite(PathBuf),
    Dynamo(jiva_store_dynamo::Config),
}

impl Backing {
    /// Fresh, empty storage of `kind` (the returned directory must outlive the servers).
    pub async fn fresh(kind: StoreKind) -> (Self, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let backing = match kind {
            StoreKind::Sqlite => Self::Sqlite(dir.path().to_path_buf()),
            StoreKind::Dynamo => {
                let dynamo =
                    LocalDynamo::shared().expect("a DynamoDB-compatible server for the tests");
                let store = dynamo.store().await.expect("creating DynamoDB test tables");
                Self::Dynamo(store.config().clone())
            }
        };
        (backing, dir)
    }

    pub async fn store(&self, config: &Config) -> Arc<dyn MessageStore> {
        match self {
            Self::Sqlite(_) => jivachat_server::open_store(config).await.unwrap(),
            Self::Dynamo(dynamo) => {
                let local = LocalDynamo::shared().unwrap();
                Arc::new(DynamoStore::from_client(
                    local.client(dynamo),
                    dynamo.clone(),
                ))
            }
        }
    }
}

/// Runs an async test function once on each store, as `<name>::sqlite` and `<name>::dynamodb`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::StoreKind::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dynamodb() {
                super::$name($crate::support::StoreKind::Dynamo).await;
            }
        }
    )*};
}

impl TestServer {
    /// A server with default settings on a fresh embedded store.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_on_with(StoreKind::Sqlite, tweak).await
    }

    /// A server with default settings on fresh storage of `kind`.
    pub async fn start_on(kind: StoreKind) -> Self {
        Self::start_on_with(kind, |_| {}).await
    }

    pub async fn start_on_with(kind: StoreKind, tweak: impl FnOnce(&mut Config)) -> Self {
        let (backing, dir) = Backing::fresh(kind).await;
        let mut server = Self::start_in(&backing, tweak).await;
        server._dir = Some(dir);
        server
    }

    /// A server on existing storage (the caller keeps it alive).
    pub async fn start_in(backing: &Backing, tweak: impl FnOnce(&mut Config)) -> Self {
        let data_dir: &Path = match backing {
            Backing::Sqlite(dir) => dir,
            Backing::Dynamo(_) => Path::new("/nonexistent/dynamo-backed"),
        };
        let mut config = Config::with_data_dir(data_dir);
        tweak(&mut config);
        let store = backing.store(&config).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(jivachat_server::run_with_store(
            config,
            store,
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            stop: Some(stop),
            task,
            _dir: None,
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    pub fn chat_url(&self, agent: &str, kind: &str) -> String {
        self.url(&format!("/?agentID={agent}&secondaryID={kind}"))
    }

    pub async fn connect(&self, agent: &str, kind: &str) -> Ws {
        connect(&self.chat_url(agent, kind)).await
    }

    /// Stops the server as SIGTERM would and waits for `run` to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

pub async fn connect(url: &str) -> Ws {
    let (ws, response) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timed out")
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    assert_eq!(response.status(), 101);
    ws
}

pub async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

pub async fn say(ws: &mut Ws, sender: &str, text: &str) {
    send(
        ws,
        serde_json::json!({"chat_id": "whatever", "sender": sender, "message": text}),
    )
    .await;
}

/// The next data or close frame (pings and pongs skipped).
pub async fn next_frame(ws: &mut Ws) -> Message {
    next_frame_within(ws, PATIENCE).await
}

/// [`next_frame`], waiting at most `within` for each frame.
pub async fn next_frame_within(ws: &mut Ws, within: Duration) -> Message {
    loop {
        let frame = tokio::time::timeout(within, ws.next())
            .await
            .expect("no frame arrived in time")
            .expect("socket ended")
            .expect("socket failed");
        if !matches!(frame, Message::Ping(_) | Message::Pong(_)) {
            return frame;
        }
    }
}

/// Asserts that the next data or close frame closes the socket with `code`.
pub async fn expect_close(ws: &mut Ws, code: CloseCode) {
    match next_frame(ws).await {
        Message::Close(Some(close)) => assert_eq!(close.code, code),
        other => panic!("expected close {code}, got {other:?}"),
    }
}

/// The history a fresh socket replays: sends an invalid frame, whose error answer comes after
/// the replay, and returns the `message` of every frame before it.
pub async fn replayed_messages(ws: &mut Ws) -> Vec<Value> {
    send(ws, serde_json::json!({"not": "a chat message"})).await;
    let mut replayed = Vec::new();
    loop {
        let frame = next_json(ws).await;
        if frame.get("error").is_some() {
            return replayed;
        }
        replayed.push(frame["message"].clone());
    }
}

/// The next text frame, parsed.
pub async fn next_json(ws: &mut Ws) -> Value {
    next_json_within(ws, PATIENCE).await
}

/// [`next_json`], waiting at most `within` for each frame.
pub async fn next_json_within(ws: &mut Ws, within: Duration) -> Value {
    match next_frame_within(ws, within).await {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Reads `n` frames.
pub async fn take_json(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next_json(ws).await);
    }
    out
}

/// A raw HTTP exchange: sends `request` and returns the status code and the body (read by
/// `content-length`; none for 101).
pub async fn raw_http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0 || !buf.is_empty(),
                "connection closed without an answer"
            );
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let code: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if code == 101 || body.len() >= length || n == 0 {
                    return (code, body.to_owned());
                }
            }
            assert!(n > 0, "connection closed mid-answer");
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("no HTTP answer")
}

/// An upgrade request for `path_and_query`, closing the connection afterwards.
pub fn upgrade_request(path_and_query: &str) -> String {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}
