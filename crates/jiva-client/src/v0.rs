//! The frames of protocol v0 (`shared/PROTOCOL.md`), as the deployed client reads them.

use serde_json::Value;

/// A v0 timestamp (`{"secs_since_epoch":…,"nanos_since_epoch":…}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct V0Timestamp {
    /// Whole seconds since the Unix epoch.
    pub secs: u64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

/// A frame a v0 server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum V0Frame {
    /// A stored user message.
    Message {
        /// The chat's canonical id.
        chat_id: String,
        /// `agent` or `supervisor`.
        sender: String,
        /// The text.
        message: String,
        /// The server's id.
        message_id: String,
        /// When it was accepted.
        timestamp: V0Timestamp,
    },
    /// A stored copilot answer (`"action":"Combined"`), or a failed turn's notice.
    CopilotAnswer {
        /// The answer's id.
        message_id: String,
        /// The whole answer.
        output: String,
        /// When it was accepted.
        timestamp: V0Timestamp,
    },
    /// A piece of a streaming copilot answer (`{"action":…,"output":…}`, no `message_id`).
    Chunk {
        /// The copilot's `action`.
        action: Option<String>,
        /// The copilot's `output`.
        output: Option<String>,
    },
    /// The copilot turn is over (`{"action":"end","output":""}`).
    End,
    /// `{"error":"…"}`.
    Error {
        /// The server's short reason.
        error: String,
    },
    /// A frame this crate does not know, as received.
    Other(String),
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn timestamp(value: &Value) -> V0Timestamp {
    let ts = value.get("timestamp");
    let field = |k: &str| {
        ts.and_then(|t| t.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    V0Timestamp {
        secs: field("secs_since_epoch"),
        nanos: u32::try_from(field("nanos_since_epoch")).unwrap_or(0),
    }
}

impl V0Frame {
    /// Reads a text frame; what is not a known frame is [`V0Frame::Other`].
    pub fn parse(raw: &str) -> Self {
        let Ok(value) = serde_json::from_str::<Value>(raw) else {
            return Self::Other(raw.to_owned());
        };
        if !value.is_object() {
            return Self::Other(raw.to_owned());
        }
        if let Some(error) = text(&value, "error") {
            return Self::Error { error };
        }
        let action = text(&value, "action");
        match (text(&value, "message_id"), action.as_deref()) {
            (Some(message_id), Some("Combined")) => Self::CopilotAnswer {
                message_id,
                output: text(&value, "output").unwrap_or_default(),
                timestamp: timestamp(&value),
            },
            (Some(message_id), _) => match text(&value, "message") {
                Some(message) => Self::Message {
                    chat_id: text(&value, "chat_id").unwrap_or_default(),
                    sender: text(&value, "sender").unwrap_or_default(),
                    message,
                    message_id,
                    timestamp: timestamp(&value),
                },
                None => Self::Other(raw.to_owned()),
            },
            (None, Some("end")) => Self::End,
            (None, _) if value.get("action").is_some() || value.get("output").is_some() => {
                Self::Chunk {
                    action,
                    output: text(&value, "output"),
                }
            }
            (None, _) => Self::Other(raw.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_v0_frame_is_read() {
        let msg = r#"{"chat_id":"a-supervisor","message":"hi","message_id":"m1","sender":"agent","timestamp":{"secs_since_epoch":1718000000,"nanos_since_epoch":5}}"#;
        assert_eq!(
            V0Frame::parse(msg),
            V0Frame::Message {
                chat_id: "a-supervisor".into(),
                sender: "agent".into(),
                message: "hi".into(),
                message_id: "m1".into(),
                timestamp: V0Timestamp {
                    secs: 1718000000,
                    nanos: 5
                },
            }
        );
        let answer = r#"{"action":"Combined","message_id":"m2","output":"done","sender":"Copilot","timestamp":{"secs_since_epoch":1,"nanos_since_epoch":0}}"#;
        assert!(
            matches!(V0Frame::parse(answer), V0Frame::CopilotAnswer { output, .. } if output == "done")
        );
        assert_eq!(
            V0Frame::parse(r#"{"action":null,"output":"Processing Results\n"}"#),
            V0Frame::Chunk {
                action: None,
                output: Some("Processing Results\n".into())
            }
        );
        assert_eq!(
            V0Frame::parse(r#"{"action":"end","output":""}"#),
            V0Frame::End
        );
        assert_eq!(
            V0Frame::parse(r#"{"error":"invalid message"}"#),
            V0Frame::Error {
                error: "invalid message".into()
            }
        );
    }

    #[test]
    fn unknown_frames_are_kept_as_received() {
        for raw in ["not json", "[1]", r#"{"x":1}"#, r#"{"message_id":"m"}"#] {
            assert_eq!(V0Frame::parse(raw), V0Frame::Other(raw.into()), "{raw}");
        }
    }
}
