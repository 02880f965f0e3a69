//! Feeds arbitrary DynamoDB items (a JSON object: strings become `S`, numbers `N`, booleans
//! `BOOL`, null `NULL`, arrays of strings `SS`, other values `M` of their text) to the item →
//! message conversion, and checks that it never panics, keeps the queried chat, and that a message
//! it reads, written back as an item and read again, is the same message.
#![no_main]

use std::collections::HashMap;

use jiva_core::{AgentId, ChatId, ConnectionType, Message, Seq};
use jiva_store_dynamo::fuzzing::{AttributeValue, message_from_item, message_item};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn attribute(value: Value) -> AttributeValue {
    match value {
        Value::String(s) => AttributeValue::S(s),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::Bool(b) => AttributeValue::Bool(b),
        Value::Null => AttributeValue::Null(true),
        Value::Array(items) if items.iter().all(Value::is_string) => AttributeValue::Ss(
            items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        other => AttributeValue::M(HashMap::from([(
            "text".to_owned(),
            AttributeValue::S(other.to_string()),
        )])),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let item: HashMap<String, AttributeValue> =
        object.into_iter().map(|(k, v)| (k, attribute(v))).collect();
    let Ok(agent) = AgentId::parse("0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21") else {
        return;
    };
    let chat = ChatId::new(agent, ConnectionType::Copilot);
    let Ok(message) = message_from_item(&item, &chat) else {
        return;
    };
    assert_eq!(message.chat, chat, "the message left its chat");
    let with_sort_key = message.timestamp.as_millis() >= 0;
    // An item stored before sequence numbers has none; written back, it gets one.
    let seq = message.seq.unwrap_or(Seq::FIRST);
    let written = message_item(&message, seq, with_sort_key);
    assert_eq!(
        message_from_item(&written, &chat),
        Ok(Message {
            seq: Some(seq),
            ..message
        }),
        "the message does not survive being written back"
    );
});
