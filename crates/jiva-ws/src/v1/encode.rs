//! Core types and room frames to v1 frames, converted by hand.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use jiva_core::{Body, Message, Sender, Seq};
use jiva_protocol::{
    ChatMessage, Chunk, ErrorCode, ErrorFrame, MessageKind, MessageSender, ServerFrame, TurnEnd,
};
use serde::Deserialize;

use super::Meta;
use crate::frames::{Encoded, Frame};

/// The text of a v1 frame.
pub(super) fn text(frame: &ServerFrame) -> Utf8Bytes {
    Utf8Bytes::from(frame.to_json())
}

/// A frame this socket's reader answers with (written as it is).
pub(super) fn own(frame: &ServerFrame) -> Frame {
    Frame::new(Encoded {
        seq: None,
        text: text(frame),
        v1: Some(Arc::new(Meta::Own)),
    })
}

/// An `error` answering the frame whose `ref` was `reference`.
pub(super) fn error(code: ErrorCode, reason: &str, reference: Option<&str>) -> Frame {
    own(&ServerFrame::Error(ErrorFrame::new(
        code,
        reason,
        reference.map(str::to_owned),
    )))
}

/// A stored message as v1 shows it.
pub(super) fn message(m: &Message) -> ChatMessage {
    let (kind, text) = match &m.body {
        Body::Text(t) => (MessageKind::Text, t.clone()),
        Body::CopilotAnswer(t) => (MessageKind::CopilotAnswer, t.clone()),
    };
    ChatMessage {
        seq: m.seq.map(Seq::get),
        message_id: m.id.to_string(),
        sender: sender(m.sender),
        kind,
        text,
        ts: m.timestamp.as_millis(),
    }
}

fn sender(s: Sender) -> MessageSender {
    match s {
        Sender::Agent => MessageSender::Agent,
        Sender::Supervisor => MessageSender::Supervisor,
        Sender::Copilot => MessageSender::Copilot,
    }
}

/// The v0 frame of a stored message (`frames::stored`), as far as v1 needs it.
#[derive(Deserialize)]
struct V0Stored {
    message_id: String,
    sender: String,
    timestamp: V0Timestamp,
    /// A user message's text.
    message: Option<String>,
    /// A copilot answer's text.
    output: Option<String>,
    seq: Option<u64>,
}

#[derive(Deserialize)]
struct V0Timestamp {
    secs_since_epoch: i64,
    nanos_since_epoch: u32,
}

/// The v1 text of a frame a room shared, or `None` when v1 sockets do not show it.
pub(super) fn from_room(frame: &Frame) -> Option<Utf8Bytes> {
    match frame.v1.as_deref() {
        Some(Meta::Own) => Some(frame.text.clone()),
        Some(Meta::Skip) => None,
        Some(Meta::Chunk { question }) => {
            let chunk: V0Chunk = serde_json::from_str(&frame.text).ok()?;
            Some(text(&ServerFrame::Chunk(Chunk {
                question_id: question.to_string(),
                action: chunk.action,
                output: chunk.output,
            })))
        }
        Some(Meta::TurnError { question, code }) => {
            let v0: V0Error = serde_json::from_str(&frame.text).ok()?;
            Some(text(&ServerFrame::Error(ErrorFrame {
                code: *code,
                reason: v0.error,
                r#ref: None,
                question_id: Some(question.to_string()),
            })))
        }
        Some(Meta::TurnEnd {
            question,
            outcome,
            answer,
        }) => Some(text(&ServerFrame::TurnEnd(TurnEnd {
            question_id: question.to_string(),
            outcome: *outcome,
            answer_id: answer.map(|a| a.to_string()),
        }))),
        // A stored message (the only v0 frame with a number); other v0 frames are v0's own.
        None => {
            frame.seq?;
            let v0: V0Stored = serde_json::from_str(&frame.text).ok()?;
            let (kind, text_) = match (v0.message, v0.output) {
                (Some(t), _) => (MessageKind::Text, t),
                (None, Some(t)) => (MessageKind::CopilotAnswer, t),
                (None, None) => return None,
            };
            let millis = v0
                .timestamp
                .secs_since_epoch
                .saturating_mul(1000)
                .saturating_add(i64::from(v0.timestamp.nanos_since_epoch / 1_000_000));
            Some(text(&ServerFrame::Message(ChatMessage {
                seq: v0.seq,
                message_id: v0.message_id,
                sender: sender(Sender::parse(&v0.sender).ok()?),
                kind,
                text: text_,
                ts: millis,
            })))
        }
    }
}

#[derive(Deserialize)]
struct V0Chunk {
    action: Option<String>,
    output: Option<String>,
}

#[derive(Deserialize)]
struct V0Error {
    error: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiva_core::{AgentId, ChatId, ConnectionType, Timestamp};

    #[test]
    fn a_room_frame_of_a_stored_message_reads_as_the_same_v1_message() {
        let chat = ChatId::new(AgentId::parse("a-1").unwrap(), ConnectionType::Copilot);
        for mut m in [
            Message::user(chat.clone(), Sender::Agent, "hi } \"x\"".into()),
            Message::copilot_answer(chat.clone(), "answer\n".into()),
        ] {
            m.timestamp = Timestamp::from_millis(1_718_000_000_250);
            m.seq = Some(Seq::new(9));
            let room = crate::frames::stored(&m, m.seq);
            let v1 = from_room(&room).unwrap();
            assert_eq!(
                ServerFrame::from_json(&v1).unwrap(),
                ServerFrame::Message(message(&m))
            );
        }
    }
}
