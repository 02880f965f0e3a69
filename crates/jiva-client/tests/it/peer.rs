//! A scripted WebSocket server on loopback.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jiva_client::protocol::{
    ChatMessage, Latest, Limits, Live, Member, MessageKind, MessageSender, Presence, Role,
    ServerFrame, Welcome,
};
use jiva_client::{ChatKind, Config, Event, Events};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

pub const PATIENCE: Duration = Duration::from_secs(10);
pub const AGENT: &str = "0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21";

pub type Ws = WebSocketStream<TcpStream>;

/// What the client asked for when it connected.
#[derive(Debug, Default, Clone)]
pub struct Upgrade {
    pub uri: String,
    pub authorization: Option<String>,
}

pub struct Peer {
    pub listener: TcpListener,
    pub addr: SocketAddr,
    /// Whether to answer the `jivachat.v1` subprotocol when offered.
    pub speaks_v1: bool,
}

impl Peer {
    pub async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        Self {
            listener,
            addr,
            speaks_v1: true,
        }
    }

    /// A v1 client configuration for this peer, reconnecting quickly.
    pub fn config(&self) -> Config {
        let mut config = Config::new(format!("ws://{}/", self.addr), AGENT, ChatKind::Supervisor);
        config.reconnect.initial = Duration::from_millis(10);
        config.reconnect.max = Duration::from_millis(50);
        config
    }

    /// Accepts the next connection.
    pub async fn accept(&self) -> (Ws, Upgrade) {
        let (stream, _) = tokio::time::timeout(PATIENCE, self.listener.accept())
            .await
            .expect("no connection came")
            .unwrap();
        let seen = Arc::new(Mutex::new(Upgrade::default()));
        let record = Arc::clone(&seen);
        let speaks_v1 = self.speaks_v1;
        // The callback's error type is tungstenite's (a whole HTTP response); it never fails.
        #[allow(clippy::result_large_err)]
        let callback = move |request: &Request, mut response: Response| {
            let mut upgrade = record.lock().unwrap();
            upgrade.uri = request.uri().to_string();
            upgrade.authorization = request
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            let offered = request
                .headers()
                .get("sec-websocket-protocol")
                .is_some_and(|p| p.to_str().unwrap().contains("jivachat.v1"));
            if offered && speaks_v1 {
                response.headers_mut().insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_static("jivachat.v1"),
                );
            }
            Ok(response)
        };
        let ws = tokio_tungstenite::accept_hdr_async(stream, callback)
            .await
            .unwrap();
        let upgrade = seen.lock().unwrap().clone();
        (ws, upgrade)
    }
}

/// The frames a server opens a connection with: welcome, presence, `latest`, live.
pub async fn open_fresh(ws: &mut Ws, latest: Vec<ChatMessage>) {
    let newest = latest.iter().filter_map(|m| m.seq).max();
    write(ws, welcome()).await;
    write(
        ws,
        ServerFrame::Presence(Presence {
            members: vec![Member {
                id: AGENT.into(),
                role: Role::Agent,
            }],
        }),
    )
    .await;
    write(
        ws,
        ServerFrame::Latest(Latest {
            messages: latest,
            has_older: false,
        }),
    )
    .await;
    write(ws, ServerFrame::Live(Live { seq: newest })).await;
}

pub fn welcome() -> ServerFrame {
    ServerFrame::Welcome(Welcome {
        protocol: "jivachat.v1".into(),
        chat_id: format!("{AGENT}-supervisor"),
        you: Member {
            id: AGENT.into(),
            role: Role::Agent,
        },
        limits: Limits {
            latest: 50,
            page_max: 100,
            resume_max: 1000,
            typing_interval_ms: 1000,
            max_frame_bytes: 65536,
        },
    })
}

pub fn message(seq: u64) -> ChatMessage {
    ChatMessage {
        seq: Some(seq),
        message_id: format!("m-{seq}"),
        sender: MessageSender::Agent,
        kind: MessageKind::Text,
        text: format!("text {seq}"),
        ts: 1_718_000_000_000,
    }
}

pub async fn write(ws: &mut Ws, frame: ServerFrame) {
    ws.send(Message::text(frame.to_json())).await.unwrap();
}

/// The next text frame the client sent, as JSON.
pub async fn read(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("the client sent nothing")
            .expect("socket ended")
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// The next event that `pick` keeps (others skipped).
pub async fn next_matching<T>(events: &mut Events, pick: impl FnMut(Event) -> Option<T>) -> T {
    tokio::time::timeout(PATIENCE, events.next_matching(pick))
        .await
        .expect("no such event in time")
        .expect("the client ended")
}

/// The `seq` of the next delivered `message` frame.
pub async fn next_message_seq(events: &mut Events) -> u64 {
    next_matching(events, |e| match e {
        Event::V1(ServerFrame::Message(m)) => m.seq,
        _ => None,
    })
    .await
}
