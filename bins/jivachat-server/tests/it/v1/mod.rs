//! Protocol v1 (`docs/PROTOCOL-v1.md`) over real sockets. Every frame a test receives from the
//! server is validated against `docs/protocol-v1.schema.json` ([`V1::recv`]).

mod copilot;
mod history;
mod presence;
mod send;
mod session;

use std::sync::LazyLock;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::support::{PATIENCE, Ws};

/// The schema of the frames a server sends.
static SERVER_FRAME: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let mut schema: Value = serde_json::from_str(jiva_protocol::SCHEMA).unwrap();
    schema["oneOf"] = json!([{"$ref": "#/$defs/server_frame"}]);
    jsonschema::validator_for(&schema).unwrap()
});

/// Panics unless `frame` is a valid server frame of v1.
pub fn assert_valid(frame: &Value) {
    if let Err(e) = SERVER_FRAME.validate(frame) {
        panic!("the server sent a frame outside the v1 schema: {frame}: {e}");
    }
}

/// A v1 socket of a test.
pub struct V1 {
    pub ws: Ws,
    /// The `Sec-WebSocket-Protocol` the server answered.
    pub protocol: Option<String>,
}

impl V1 {
    /// Opens `url` offering `jivachat.v1`.
    pub async fn connect(url: &str) -> Self {
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(jiva_protocol::SUBPROTOCOL),
        );
        let (ws, response) =
            tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
                .await
                .expect("connect timed out")
                .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        assert_eq!(response.status(), 101);
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        Self { ws, protocol }
    }

    /// Opens `url` and reads up to `live`: returns the frames before it (welcome, presence,
    /// the catch-up) and `live`'s `seq`.
    pub async fn open(url: &str) -> (Self, Vec<Value>, Option<u64>) {
        let mut v1 = Self::connect(url).await;
        let mut before = Vec::new();
        loop {
            let frame = v1.recv().await;
            if frame["type"] == "live" {
                return (v1, before, frame["seq"].as_u64());
            }
            before.push(frame);
        }
    }

    /// Sends a frame.
    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    /// The next text frame (pings and pongs skipped), validated against the schema.
    pub async fn recv(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("no frame arrived in time")
                .expect("socket ended")
                .expect("socket failed");
            match frame {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    assert_valid(&value);
                    return value;
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame of type `kind`, skipping presence and typing frames (which may come at
    /// any time); any other frame first fails the test.
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            let t = frame["type"].as_str().unwrap().to_owned();
            if t == kind {
                return frame;
            }
            assert!(
                matches!(
                    t.as_str(),
                    "presence" | "presence_join" | "presence_leave" | "typing"
                ),
                "expected {kind}, got {frame}"
            );
        }
    }

    /// Reads up to the first frame of type `kind`: returns the frames before it and it.
    pub async fn until(&mut self, kind: &str) -> (Vec<Value>, Value) {
        let mut before = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return (before, frame);
            }
            before.push(frame);
        }
    }

    /// Sends a text message with `client_id` as `sender`.
    pub async fn say(&mut self, client_id: &str, sender: &str, text: &str) {
        self.send(json!({"type":"send","client_id":client_id,"sender":sender,"text":text}))
            .await;
    }

    /// Sends a `ping` and returns every frame before its `pong` (so a test knows that nothing
    /// else was queued for it).
    pub async fn drain(&mut self) -> Vec<Value> {
        self.send(json!({"type":"ping","ref":"drain"})).await;
        let mut before = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == "pong" && frame["ref"] == "drain" {
                return before;
            }
            before.push(frame);
        }
    }
}

/// Only the frames of `kind`.
pub fn of_type<'a>(frames: &'a [Value], kind: &str) -> Vec<&'a Value> {
    frames.iter().filter(|f| f["type"] == kind).collect()
}
