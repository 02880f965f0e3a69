//! The wire frames of the deployed client (PROTOCOL.md §2–§3), converted by hand from and to
//! core types. Nothing here derives `Serialize` on a core type.

use axum::extract::ws::Utf8Bytes;
use jiva_chat::{TurnEnding, TurnError};
use jiva_core::{Body, CopilotChunk, Message, MessageId, Sender, Seq, Timestamp};
use serde::Serialize;
use serde_json::Value;

/// The transport's encoder: `jiva-chat` hands every socket of a chat the frame it made once.
pub(crate) struct Wire;

impl jiva_chat::Encoder for Wire {
    type Frame = Frame;

    fn stored(&self, message: &Message) -> Frame {
        stored(message, message.seq)
    }

    fn chunk(&self, c: &CopilotChunk) -> Frame {
        chunk(c)
    }

    fn error(&self, reason: &str) -> Frame {
        error(reason)
    }

    fn end(&self) -> Frame {
        end()
    }

    // The v1 side of a copilot turn's frames: the v0 text is unchanged, and what v1 adds (the
    // question, how the turn ended) goes beside it for v1 sockets.

    fn turn_chunk(&self, question: MessageId, c: &CopilotChunk) -> Frame {
        crate::v1::with_meta(chunk(c), crate::v1::Meta::Chunk { question })
    }

    fn turn_error(&self, question: MessageId, failure: TurnError, reason: &str) -> Frame {
        let code = crate::v1::turn_error_code(failure);
        crate::v1::with_meta(error(reason), crate::v1::Meta::TurnError { question, code })
    }

    fn turn_notice(&self, _question: MessageId, notice: &Message) -> Frame {
        crate::v1::with_meta(stored(notice, notice.seq), crate::v1::Meta::Skip)
    }

    fn turn_end(
        &self,
        question: MessageId,
        ending: TurnEnding,
        answer: Option<MessageId>,
    ) -> Frame {
        let outcome = crate::v1::turn_outcome(ending);
        crate::v1::with_meta(
            end(),
            crate::v1::Meta::TurnEnd {
                question,
                outcome,
                answer,
            },
        )
    }
}

/// A frame ready to be written, encoded once and shared between sockets.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// The chat sequence number of the stored message this frame shows, if any (used to order
    /// a chat's frames and to drop replay duplicates).
    pub seq: Option<Seq>,
    pub text: Utf8Bytes,
    /// What a v1 socket needs beyond `text` (`None` for a stored message and v0's own frames).
    pub v1: Option<std::sync::Arc<crate::v1::Meta>>,
}

#[derive(Serialize)]
struct WireTimestamp {
    secs_since_epoch: i64,
    nanos_since_epoch: u32,
}

impl From<Timestamp> for WireTimestamp {
    fn from(t: Timestamp) -> Self {
        Self {
            secs_since_epoch: t.secs(),
            nanos_since_epoch: t.subsec_nanos(),
        }
    }
}

#[derive(Serialize)]
struct UserFrame<'a> {
    chat_id: &'a str,
    message: &'a str,
    message_id: String,
    sender: &'a str,
    timestamp: WireTimestamp,
    /// An addition to the deployed shape, which the deployed client ignores.
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

#[derive(Serialize)]
struct CombinedFrame<'a> {
    action: &'static str,
    message_id: String,
    output: &'a str,
    sender: &'static str,
    timestamp: WireTimestamp,
    /// As in [`UserFrame`].
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

#[derive(Serialize)]
struct ChunkFrame<'a> {
    action: Option<&'a str>,
    output: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    error: &'a str,
}

fn to_text<T: Serialize>(value: &T) -> Utf8Bytes {
    // Serializing these plain structs of strings and integers cannot fail; an empty object is
    // a harmless fallback rather than a panic.
    Utf8Bytes::from(serde_json::to_string(value).unwrap_or_else(|_| String::from("{}")))
}

/// The frame that shows a stored message (a user message or a `Combined` copilot answer) with
/// its chat sequence number `seq` (`None` for a message stored before numbers: no `seq` field).
pub(crate) fn stored(message: &Message, seq: Option<Seq>) -> Frame {
    let wire_seq = seq.map(Seq::get);
    let text = match &message.body {
        Body::Text(text) => to_text(&UserFrame {
            chat_id: &message.chat.canonical(),
            message: text,
            message_id: message.id.to_string(),
            sender: message.sender.as_str(),
            timestamp: message.timestamp.into(),
            seq: wire_seq,
        }),
        Body::CopilotAnswer(output) => to_text(&CombinedFrame {
            action: "Combined",
            message_id: message.id.to_string(),
            output,
            sender: Sender::Copilot.as_str(),
            timestamp: message.timestamp.into(),
            seq: wire_seq,
        }),
    };
    Frame {
        seq,
        text,
        v1: None,
    }
}

/// A streamed copilot chunk, values unchanged.
pub(crate) fn chunk(chunk: &CopilotChunk) -> Frame {
    Frame {
        seq: None,
        text: to_text(&ChunkFrame {
            action: chunk.action.as_deref(),
            output: chunk.output.as_deref(),
        }),
        v1: None,
    }
}

/// `{"action":"end","output":""}`: closes the client's typing bubble.
pub(crate) fn end() -> Frame {
    Frame {
        seq: None,
        text: Utf8Bytes::from_static(r#"{"action":"end","output":""}"#),
        v1: None,
    }
}

/// `{"error":"reason"}`.
pub(crate) fn error(reason: &str) -> Frame {
    Frame {
        seq: None,
        text: to_text(&ErrorFrame { error: reason }),
        v1: None,
    }
}

/// What a client's text frame is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// A chat message.
    Chat { sender: Sender, text: String },
    /// `{"ping":"pong"}` or `{"action":"ping"}`: ignored completely.
    Keepalive,
}

/// Why a client's frame is not something we act on; the text goes to the client as is.
pub(crate) type Rejection = &'static str;

/// Reads a client's text frame.
pub(crate) fn parse_inbound(text: &str) -> Result<Inbound, Rejection> {
    let value: Value = serde_json::from_str(text).map_err(|_| "invalid JSON")?;
    let Value::Object(mut object) = value else {
        return Err("expected a JSON object");
    };
    match object.remove("message") {
        None => {
            let ping = object.get("ping").and_then(Value::as_str) == Some("pong");
            let action_ping = object.get("action").and_then(Value::as_str) == Some("ping");
            if ping || action_ping {
                Ok(Inbound::Keepalive)
            } else {
                Err("not a chat message")
            }
        }
        Some(Value::String(message)) => {
            let sender = match object.get("sender") {
                None => return Err("sender is missing"),
                Some(Value::String(s)) => Sender::parse_user(s)
                    .map_err(|_| "sender must be \"agent\" or \"supervisor\"")?,
                Some(_) => return Err("sender must be a string"),
            };
            if message.is_empty() {
                return Err("message is empty");
            }
            Ok(Inbound::Chat {
                sender,
                text: message,
            })
        }
        Some(_) => Err("message must be a string"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiva_core::{AgentId, ChatId, ConnectionType};

    fn chat() -> ChatId {
        ChatId::new(
            AgentId::parse("0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21").unwrap(),
            ConnectionType::Supervisor,
        )
    }

    #[test]
    fn user_frame_has_the_deployed_shape() {
        let mut m = Message::user(chat(), Sender::Agent, "hi } \"there\"".into());
        m.timestamp = Timestamp::from_millis(1_718_000_000_250);
        let v: Value = serde_json::from_str(&stored(&m, Some(Seq::new(42))).text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "chat_id": "0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21-supervisor",
                "message": "hi } \"there\"",
                "message_id": m.id.to_string(),
                "sender": "agent",
                "timestamp": {"secs_since_epoch": 1_718_000_000, "nanos_since_epoch": 250_000_000},
                "seq": 42
            })
        );
        // A message stored before numbers has no `seq` field at all: the deployed shape.
        let v: Value = serde_json::from_str(&stored(&m, None).text).unwrap();
        assert!(v.get("seq").is_none(), "{v}");
    }

    #[test]
    fn combined_frame_has_the_deployed_shape() {
        let mut m = Message::copilot_answer(chat(), "answer\n".into());
        m.timestamp = Timestamp::from_millis(1_718_000_000_000);
        let v: Value = serde_json::from_str(&stored(&m, Some(Seq::new(7))).text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "action": "Combined",
                "message_id": m.id.to_string(),
                "output": "answer\n",
                "sender": "Copilot",
                "timestamp": {"secs_since_epoch": 1_718_000_000, "nanos_since_epoch": 0},
                "seq": 7
            })
        );
    }

    #[test]
    fn chunk_frames_keep_nulls_and_newlines() {
        let f = chunk(&CopilotChunk {
            action: None,
            output: Some("Processing Results\n".into()),
        });
        assert_eq!(
            &*f.text,
            r#"{"action":null,"output":"Processing Results\n"}"#
        );
        assert_eq!(&*end().text, r#"{"action":"end","output":""}"#);
        assert_eq!(&*error("bad \"x\"").text, r#"{"error":"bad \"x\""}"#);
    }

    #[test]
    fn inbound_frames() {
        assert_eq!(parse_inbound(r#"{"ping":"pong"}"#), Ok(Inbound::Keepalive));
        assert_eq!(
            parse_inbound(r#"{"action":"ping"}"#),
            Ok(Inbound::Keepalive)
        );
        assert_eq!(
            parse_inbound(r#"{"chat_id":"test-copilot","sender":"agent","message":"q","extra":1}"#),
            Ok(Inbound::Chat {
                sender: Sender::Agent,
                text: "q".into()
            })
        );
        assert_eq!(
            parse_inbound(r#"{"sender":"supervisor","message":"ok"}"#),
            Ok(Inbound::Chat {
                sender: Sender::Supervisor,
                text: "ok".into()
            })
        );
        for bad in [
            "not json",
            "[1,2]",
            "\"x\"",
            "{}",
            r#"{"ping":"ping"}"#,
            r#"{"sender":"Copilot","message":"x"}"#,
            r#"{"sender":"agent","message":5}"#,
            r#"{"message":"x"}"#,
            r#"{"sender":"agent","message":""}"#,
        ] {
            assert!(parse_inbound(bad).is_err(), "{bad}");
        }
    }
}
