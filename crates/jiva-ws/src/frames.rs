//! The wire frames of the deployed client (PROTOCOL.md §2–§3), converted by hand from and to
//! core types. Nothing here derives `Serialize` on a core type.

use axum::extract::ws::Utf8Bytes;
use jiva_chat::{TurnEnding, TurnError};
use jiva_core::{Body, CopilotChunk, Message, MessageId, Sender, Seq, Timestamp};
use std::borrow::Cow;

use serde::Serialize;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

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

/// A frame ready to be written, encoded once and shared between sockets: what a socket's
/// outbound queue holds. A pointer, so that the queue's slots are small (tokio's `mpsc`
/// allocates its first block of 32 slots with the channel, for every socket).
pub(crate) type Frame = std::sync::Arc<Encoded>;

/// A frame's contents (see [`Frame`]).
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
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

/// The user-message frame's shape, as serde writes it: [`user_frame`] writes these bytes by
/// hand, and the tests hold the two equal.
#[cfg(test)]
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
    Frame::new(Encoded {
        seq,
        text: stored_text(message, seq),
        v1: None,
    })
}

/// The text of [`stored`]'s frame (a replay writes it as it is).
pub(crate) fn stored_text(message: &Message, seq: Option<Seq>) -> Utf8Bytes {
    let wire_seq = seq.map(Seq::get);
    match &message.body {
        Body::Text(text) => user_frame(message, text, wire_seq),
        Body::CopilotAnswer(output) => to_text(&CombinedFrame {
            action: "Combined",
            message_id: message.id.to_string(),
            output,
            sender: Sender::Copilot.as_str(),
            timestamp: message.timestamp.into(),
            seq: wire_seq,
        }),
    }
}

/// The frame of a user message, byte for byte what serde writes for [`UserFrame`] (the field
/// order, no spaces, the same string escaping), without serde's per-field work: the canonical
/// chat id is the one made with the chat, and only the message text needs escaping (agent ids
/// are `[A-Za-z0-9._:@-]`, message ids hyphenated UUIDs, senders and numbers plain ASCII).
fn user_frame(message: &Message, text: &str, seq: Option<u64>) -> Utf8Bytes {
    let chat = message.chat.as_canonical();
    let mut out = Vec::with_capacity(text.len() + chat.len() + 192);
    out.extend_from_slice(b"{\"chat_id\":\"");
    out.extend_from_slice(chat.as_bytes());
    out.extend_from_slice(b"\",\"message\":");
    // Writing to a Vec cannot fail; an empty object is a harmless fallback rather than a panic.
    if serde_json::to_writer(&mut out, text).is_err() {
        return Utf8Bytes::from_static("{}");
    }
    // The id and the numbers without `core::fmt` (about two thirds of this function's
    // instructions when they went through `write!`).
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(b",\"message_id\":\"");
    out.extend_from_slice(
        message
            .id
            .as_uuid()
            .hyphenated()
            .encode_lower(&mut id)
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"sender\":\"");
    out.extend_from_slice(message.sender.as_str().as_bytes());
    out.extend_from_slice(b"\",\"timestamp\":{\"secs_since_epoch\":");
    out.extend_from_slice(number.format(message.timestamp.secs()).as_bytes());
    out.extend_from_slice(b",\"nanos_since_epoch\":");
    out.extend_from_slice(number.format(message.timestamp.subsec_nanos()).as_bytes());
    out.push(b'}');
    if let Some(seq) = seq {
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(number.format(seq).as_bytes());
    }
    out.push(b'}');
    // What is written is UTF-8 (the parts are `str`s).
    match String::from_utf8(out) {
        Ok(text) => Utf8Bytes::from(text),
        Err(_) => Utf8Bytes::from_static("{}"),
    }
}

/// A streamed copilot chunk, values unchanged.
pub(crate) fn chunk(chunk: &CopilotChunk) -> Frame {
    Frame::new(Encoded {
        seq: None,
        text: to_text(&ChunkFrame {
            action: chunk.action.as_deref(),
            output: chunk.output.as_deref(),
        }),
        v1: None,
    })
}

/// `{"action":"end","output":""}`: closes the client's typing bubble.
pub(crate) fn end() -> Frame {
    Frame::new(Encoded {
        seq: None,
        text: Utf8Bytes::from_static(r#"{"action":"end","output":""}"#),
        v1: None,
    })
}

/// `{"error":"reason"}`.
pub(crate) fn error(reason: &str) -> Frame {
    Frame::new(Encoded {
        seq: None,
        text: to_text(&ErrorFrame { error: reason }),
        v1: None,
    })
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
///
/// Only the four keys that matter are kept, borrowed from `text` where they hold no escape;
/// the rest of the object is checked as JSON and skipped, with no tree built. As in a
/// `serde_json::Value`, the last occurrence of a repeated key wins.
pub(crate) fn parse_inbound(text: &str) -> Result<Inbound, Rejection> {
    let InboundObject(object) = serde_json::from_str(text).map_err(|_| "invalid JSON")?;
    let Some(object) = object else {
        return Err("expected a JSON object");
    };
    match object.message {
        None => {
            let ping = matches!(&object.ping, Some(Field::Str(s)) if s == "pong");
            let action_ping = matches!(&object.action, Some(Field::Str(s)) if s == "ping");
            if ping || action_ping {
                Ok(Inbound::Keepalive)
            } else {
                Err("not a chat message")
            }
        }
        Some(Field::Str(message)) => {
            let sender = match &object.sender {
                None => return Err("sender is missing"),
                Some(Field::Str(s)) => Sender::parse_user(s)
                    .map_err(|_| "sender must be \"agent\" or \"supervisor\"")?,
                Some(Field::Other) => return Err("sender must be a string"),
            };
            if message.is_empty() {
                return Err("message is empty");
            }
            Ok(Inbound::Chat {
                sender,
                text: message.into_owned(),
            })
        }
        Some(Field::Other) => Err("message must be a string"),
    }
}

/// The keys of a client's frame that [`parse_inbound`] reads.
#[derive(Default)]
struct Keys<'a> {
    message: Option<Field<'a>>,
    sender: Option<Field<'a>>,
    ping: Option<Field<'a>>,
    action: Option<Field<'a>>,
}

/// A client's frame: its keys when it is an object, `None` for any other JSON value.
struct InboundObject<'a>(Option<Keys<'a>>);

/// A JSON value read for [`parse_inbound`]: a string (borrowed unless it held an escape), or
/// anything else, checked and skipped.
enum Field<'a> {
    Str(Cow<'a, str>),
    Other,
}

impl<'de> Deserialize<'de> for InboundObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(FieldVisitor { keys: true })? {
            Read::Keys(keys) => Ok(Self(Some(keys))),
            Read::Field(_) => Ok(Self(None)),
        }
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(FieldVisitor { keys: false })? {
            Read::Field(field) => Ok(field),
            Read::Keys(_) => Ok(Field::Other),
        }
    }
}

/// What [`FieldVisitor`] read.
enum Read<'a> {
    Keys(Keys<'a>),
    Field(Field<'a>),
}

/// Reads any JSON value; with `keys`, an object's [`Keys`] (nested values are read as
/// [`Field`]s, so every number and string in the frame is checked as a `Value` would).
struct FieldVisitor {
    keys: bool,
}

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Read<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Read::Field(Field::Str(Cow::Borrowed(v))))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Read::Field(Field::Str(Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Read::Field(Field::Str(Cow::Owned(v))))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Read::Field(Field::Other))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Read::Field(Field::Other))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Read::Field(Field::Other))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Read::Field(Field::Other))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Read::Field(Field::Other))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Field<'de>>()?.is_some() {}
        Ok(Read::Field(Field::Other))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys = Keys::default();
        while let Some(key) = map.next_key::<Field<'de>>()? {
            let value = map.next_value::<Field<'de>>()?;
            let slot = match &key {
                Field::Str(k) if self.keys => match k.as_ref() {
                    "message" => &mut keys.message,
                    "sender" => &mut keys.sender,
                    "ping" => &mut keys.ping,
                    "action" => &mut keys.action,
                    _ => continue,
                },
                _ => continue,
            };
            *slot = Some(value);
        }
        Ok(if self.keys {
            Read::Keys(keys)
        } else {
            Read::Field(Field::Other)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiva_core::{AgentId, ChatId, ConnectionType};
    use serde_json::Value;

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
    fn user_frames_are_written_byte_for_byte_as_serde_writes_them() {
        let agents = ["0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21", "a.b_c:d@e-f"];
        let texts = [
            "hi",
            "0.12345.987654321012",
            "quote \" backslash \\ slash / tab \t newline \n nul \u{0} del \u{7f}",
            "é ü 漢字 😀 \u{2028}\u{2029}",
            "</script><script>",
        ];
        for agent in agents {
            let chat = ChatId::new(AgentId::parse(agent).unwrap(), ConnectionType::Copilot);
            for (text, sender) in texts
                .iter()
                .zip([Sender::Agent, Sender::Supervisor].iter().cycle())
            {
                let mut m = Message::user(chat.clone(), *sender, (*text).into());
                m.timestamp = Timestamp::from_millis(-1_718_000_000_250);
                for seq in [None, Some(0), Some(u64::MAX)] {
                    let by_serde = to_text(&UserFrame {
                        chat_id: &chat.canonical(),
                        message: text,
                        message_id: m.id.to_string(),
                        sender: sender.as_str(),
                        timestamp: m.timestamp.into(),
                        seq,
                    });
                    assert_eq!(
                        &*stored(&m, seq.map(Seq::new)).text,
                        &*by_serde,
                        "{text:?} {seq:?}"
                    );
                }
            }
        }
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

    /// The reader before typed parsing: a whole `serde_json::Value` tree per frame.
    fn parse_inbound_as_tree(text: &str) -> Result<Inbound, Rejection> {
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

    #[test]
    fn inbound_frames_read_as_a_json_tree_read_them() {
        for text in [
            r#"{"sender":"agent","message":"a \"quoted\" \u00e9 \ud83d\ude00 text"}"#,
            r#"{"sender":"agent","message":"first","message":"last"}"#,
            r#"{"sender":"agent","message":5,"message":"last wins"}"#,
            r#"{"sender":"agent","message":"x","message":null}"#,
            r#"{"mess\u0061ge":"escaped key","s\u0065nder":"supervisor"}"#,
            r#"{"sender":"agent","message":"x","extra":{"a":[1,2.5,-3,true,null,{"b":"c"}]}}"#,
            r#"{"sender":"agent","message":"x","extra":1e400}"#,
            r#"{"sender":"agent","message":"x","extra":"\ud800"}"#,
            r#"{"sender":"agent","message":"\ud800"}"#,
            r#"{"sender":"agent","message":"x"} trailing"#,
            r#"{"sender":"agent","message":"x",}"#,
            r#"{"sender":["agent"],"message":"x"}"#,
            r#"{"ping":"pong","message":"x","sender":"agent"}"#,
            r#"{"ping":"pong","action":"ping"}"#,
            r#"{"ping":1,"action":"ping"}"#,
            r#"{"action":"pong"}"#,
            r#"{"sender":"agent","message":""}"#,
            r#"  {"sender" : "agent" , "message" : "spaced"}  "#,
            "null",
            "[]",
            "1",
            "",
            "{",
            &format!("{}{}", "[".repeat(200), "]".repeat(200)),
            &format!(
                r#"{{"sender":"agent","message":"x","deep":{}1{}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            ),
        ] {
            assert_eq!(parse_inbound(text), parse_inbound_as_tree(text), "{text}");
        }
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
