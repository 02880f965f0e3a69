//! The payload of a published message, by hand (no `Serialize` on core types).
//!
//! One JSON object per message:
//! `{"v":1,"origin":"<bus id>","agent":"…","kind":"supervisor","id":"<uuid>","sender":"agent",
//! "ts":1718000000123,"seq":42,"text":"…"}`; a copilot answer has `"answer"` instead of `"text"`.
//! `origin` lets a bus ignore its own messages (Redis delivers them to the publisher too).

use jiva_core::{
    AgentId, Body, ChatEvent, ChatId, ConnectionType, EventKind, MemberRole, Message, MessageId,
    PresenceMember, ReceivedEvent, Sender, Seq, Timestamp,
};
use serde_json::{Map, Value, json};

/// The payload version this crate writes and reads.
const VERSION: u64 = 1;

/// Why a payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Undecodable(pub &'static str);

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "undecodable bus payload: {}", self.0)
    }
}

impl std::error::Error for Undecodable {}

/// Encodes a stored message published by bus `origin`.
pub(crate) fn encode(origin: &str, message: &Message) -> String {
    let mut object = json!({
        "v": VERSION,
        "origin": origin,
        "agent": message.chat.agent().as_str(),
        "kind": message.chat.kind().as_str(),
        "id": message.id.to_string(),
        "sender": message.sender.as_str(),
        "ts": message.timestamp.as_millis(),
    });
    if let Value::Object(map) = &mut object {
        if let Some(seq) = message.seq {
            map.insert("seq".into(), Value::from(seq.get()));
        }
        let (key, text) = match &message.body {
            Body::Text(t) => ("text", t),
            Body::CopilotAnswer(t) => ("answer", t),
        };
        map.insert(key.into(), Value::from(text.as_str()));
    }
    object.to_string()
}

/// Decodes a payload: the publishing bus's id and the message.
pub(crate) fn decode(payload: &[u8]) -> Result<(String, Message), Undecodable> {
    let value: Value = serde_json::from_slice(payload).map_err(|_| Undecodable("not JSON"))?;
    let Value::Object(map) = value else {
        return Err(Undecodable("not an object"));
    };
    if map.get("v").and_then(Value::as_u64) != Some(VERSION) {
        return Err(Undecodable("unknown version"));
    }
    let origin = string(&map, "origin")?.to_owned();
    let agent = AgentId::parse(string(&map, "agent")?).map_err(|_| Undecodable("agent"))?;
    let kind = ConnectionType::parse(string(&map, "kind")?).map_err(|_| Undecodable("kind"))?;
    let id = MessageId::parse(string(&map, "id")?).map_err(|_| Undecodable("id"))?;
    let sender = Sender::parse(string(&map, "sender")?).map_err(|_| Undecodable("sender"))?;
    let ts = map
        .get("ts")
        .and_then(Value::as_i64)
        .ok_or(Undecodable("ts"))?;
    let seq = match map.get("seq") {
        None => None,
        Some(v) => Some(Seq::new(v.as_u64().ok_or(Undecodable("seq"))?)),
    };
    let body = match (map.get("text"), map.get("answer")) {
        (Some(Value::String(t)), None) => Body::Text(t.clone()),
        (None, Some(Value::String(t))) => Body::CopilotAnswer(t.clone()),
        _ => return Err(Undecodable("text or answer")),
    };
    Ok((
        origin,
        Message {
            id,
            chat: ChatId::new(agent, kind),
            sender,
            timestamp: Timestamp::from_millis(ts),
            body,
            seq,
        },
    ))
}

/// Encodes an ephemeral event published by bus `origin`:
/// `{"v":1,"origin":…,"agent":…,"kind":…,"event":"present"|"absent"|"typing"|"query",
/// "member":"<id>","role":"agent"|"supervisor"|"anonymous","active":true}` (`member` and `role`
/// but for `query`, `active` for `typing` only); the cancel relay's events:
/// `"event":"cancel","question":"<id>","request":"…"`, `"event":"cancel_taken","request":"…"`,
/// `"event":"turn_cancelled","question":"<id>","answer":"<id>"` (`answer` when one is stored).
pub(crate) fn encode_event(origin: &str, event: &ChatEvent) -> String {
    let mut object = json!({
        "v": VERSION,
        "origin": origin,
        "agent": event.chat.agent().as_str(),
        "kind": event.chat.kind().as_str(),
    });
    if let Value::Object(map) = &mut object {
        let (name, member) = match &event.kind {
            EventKind::Present(m) => ("present", Some(m)),
            EventKind::Absent(m) => ("absent", Some(m)),
            EventKind::Typing { member, active } => {
                map.insert("active".into(), Value::from(*active));
                ("typing", Some(member))
            }
            EventKind::Query => ("query", None),
            EventKind::CancelAsk { question, request } => {
                map.insert("question".into(), Value::from(question.to_string()));
                map.insert("request".into(), Value::from(request.as_str()));
                ("cancel", None)
            }
            EventKind::CancelTaken { request } => {
                map.insert("request".into(), Value::from(request.as_str()));
                ("cancel_taken", None)
            }
            EventKind::TurnCancelled { question, answer } => {
                map.insert("question".into(), Value::from(question.to_string()));
                if let Some(answer) = answer {
                    map.insert("answer".into(), Value::from(answer.to_string()));
                }
                ("turn_cancelled", None)
            }
        };
        map.insert("event".into(), Value::from(name));
        if let Some(member) = member {
            map.insert("member".into(), Value::from(member.id.as_str()));
            map.insert("role".into(), Value::from(member.role.as_str()));
        }
    }
    object.to_string()
}

/// A decoded payload.
pub(crate) enum Decoded {
    /// A stored message and its publisher's id.
    Message(String, Message),
    /// An ephemeral event.
    Event(ReceivedEvent),
}

/// Decodes a payload of either kind.
pub(crate) fn decode_any(payload: &[u8]) -> Result<Decoded, Undecodable> {
    let value: Value = serde_json::from_slice(payload).map_err(|_| Undecodable("not JSON"))?;
    let Some(name) = value.get("event").and_then(Value::as_str) else {
        return decode(payload).map(|(origin, m)| Decoded::Message(origin, m));
    };
    let Value::Object(map) = &value else {
        return Err(Undecodable("not an object"));
    };
    if map.get("v").and_then(Value::as_u64) != Some(VERSION) {
        return Err(Undecodable("unknown version"));
    }
    let origin = string(map, "origin")?.to_owned();
    let agent = AgentId::parse(string(map, "agent")?).map_err(|_| Undecodable("agent"))?;
    let kind = ConnectionType::parse(string(map, "kind")?).map_err(|_| Undecodable("kind"))?;
    let member = || -> Result<PresenceMember, Undecodable> {
        Ok(PresenceMember {
            id: string(map, "member")?.to_owned(),
            role: MemberRole::parse(string(map, "role")?).ok_or(Undecodable("role"))?,
        })
    };
    let kind_of_event = match name {
        "present" => EventKind::Present(member()?),
        "absent" => EventKind::Absent(member()?),
        "typing" => EventKind::Typing {
            member: member()?,
            active: map
                .get("active")
                .and_then(Value::as_bool)
                .ok_or(Undecodable("active"))?,
        },
        "query" => EventKind::Query,
        "cancel" => EventKind::CancelAsk {
            question: id(map, "question")?,
            request: string(map, "request")?.to_owned(),
        },
        "cancel_taken" => EventKind::CancelTaken {
            request: string(map, "request")?.to_owned(),
        },
        "turn_cancelled" => EventKind::TurnCancelled {
            question: id(map, "question")?,
            answer: match map.get("answer") {
                None => None,
                Some(_) => Some(id(map, "answer")?),
            },
        },
        _ => return Err(Undecodable("event")),
    };
    Ok(Decoded::Event(ReceivedEvent {
        from: origin,
        event: ChatEvent {
            chat: ChatId::new(agent, kind),
            kind: kind_of_event,
        },
    }))
}

fn id(map: &Map<String, Value>, key: &'static str) -> Result<MessageId, Undecodable> {
    MessageId::parse(string(map, key)?).map_err(|_| Undecodable(key))
}

fn string<'a>(map: &'a Map<String, Value>, key: &'static str) -> Result<&'a str, Undecodable> {
    map.get(key).and_then(Value::as_str).ok_or(Undecodable(key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn chat() -> ChatId {
        ChatId::new(
            AgentId::parse("0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21").unwrap(),
            ConnectionType::Copilot,
        )
    }

    #[test]
    fn both_kinds_round_trip_with_their_number() {
        for mut m in [
            Message::user(chat(), Sender::Agent, "hi } \"x\" 🙂".into()),
            Message::copilot_answer(chat(), "line\nanswer".into()),
        ] {
            m.seq = Some(Seq::new(42));
            let (origin, back) = decode(encode("node-a", &m).as_bytes()).unwrap();
            assert_eq!(origin, "node-a");
            assert_eq!(back, m);
        }
    }

    #[test]
    fn events_round_trip_and_messages_still_decode() {
        let member = PresenceMember {
            id: "5d1e".into(),
            role: MemberRole::Supervisor,
        };
        for kind in [
            EventKind::Present(member.clone()),
            EventKind::Absent(member.clone()),
            EventKind::Typing {
                member,
                active: false,
            },
            EventKind::Query,
            EventKind::CancelAsk {
                question: MessageId::new_v7(),
                request: "r-1".into(),
            },
            EventKind::CancelTaken {
                request: "r-1".into(),
            },
            EventKind::TurnCancelled {
                question: MessageId::new_v7(),
                answer: Some(MessageId::new_v7()),
            },
            EventKind::TurnCancelled {
                question: MessageId::new_v7(),
                answer: None,
            },
        ] {
            let event = ChatEvent { chat: chat(), kind };
            match decode_any(encode_event("node-b", &event).as_bytes()).unwrap() {
                Decoded::Event(back) => {
                    assert_eq!(back.from, "node-b");
                    assert_eq!(back.event, event);
                }
                Decoded::Message(..) => panic!("an event decoded as a message"),
            }
        }
        let m = Message::user(chat(), Sender::Agent, "x".into());
        assert!(matches!(
            decode_any(encode("a", &m).as_bytes()),
            Ok(Decoded::Message(..))
        ));
    }

    #[test]
    fn foreign_or_broken_payloads_are_refused() {
        let good = encode("a", &Message::user(chat(), Sender::Agent, "x".into()));
        assert!(decode(good.as_bytes()).is_ok());
        for bad in [
            "not json".to_owned(),
            "[1]".to_owned(),
            good.replace("\"v\":1", "\"v\":2"),
            good.replace("\"kind\":\"copilot\"", "\"kind\":\"other\""),
            good.replace("\"text\"", "\"nothing\""),
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
