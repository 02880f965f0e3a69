//! The payload of a published message, by hand (no `Serialize` on core types).
//!
//! One JSON object per message:
//! `{"v":1,"origin":"<bus id>","agent":"…","kind":"supervisor","id":"<uuid>","sender":"agent",
//! "ts":1718000000123,"seq":42,"text":"…"}`; a copilot answer has `"answer"` instead of `"text"`.
//! `origin` lets a bus ignore its own messages (Redis delivers them to the publisher too).

use jiva_core::{
    AgentId, Body, ChatId, ConnectionType, Message, MessageId, Sender, Seq, Timestamp,
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
