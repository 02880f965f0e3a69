//! The opaque history cursor: a DynamoDB key, as lower-case hex of a small JSON object.
//!
//! `{"ChatID":{"S":"..."},"SortKey":{"S":"..."}}` becomes `7b22...`. Only `S` and `N` values
//! occur in our keys. A cursor is checked on the way in: it must hold exactly the key attributes
//! of the table layout in use, and its `ChatID` must be the chat being read, so a cursor of
//! another chat (or a forged one) is [`jiva_core::StoreError::InvalidInput`], never a request
//! DynamoDB would reject with an opaque validation error.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use jiva_core::Cursor;
use serde_json::{Map, Value};

use crate::item::{CHAT_ID, Item};

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed history cursor: {0}")]
pub(crate) struct BadCursor(&'static str);

/// Encodes the key attributes `names` of `item` as a cursor. `None` if one is missing or is
/// neither `S` nor `N` (which a key attribute cannot be).
pub(crate) fn encode(item: &Item, names: &[&str]) -> Option<Cursor> {
    let mut object = Map::new();
    for name in names {
        let value = match item.get(*name)? {
            AttributeValue::S(s) => Value::Object(Map::from_iter([("S".into(), s.clone().into())])),
            AttributeValue::N(n) => Value::Object(Map::from_iter([("N".into(), n.clone().into())])),
            _ => return None,
        };
        object.insert((*name).to_owned(), value);
    }
    let json = Value::Object(object).to_string();
    Some(Cursor::from_token(hex_encode(json.as_bytes())))
}

/// Decodes a cursor into an `ExclusiveStartKey` with exactly the attributes `names`, whose
/// `ChatID` is `chat` (canonical form).
pub(crate) fn decode(cursor: &Cursor, names: &[&str], chat: &str) -> Result<Item, BadCursor> {
    decode_one_of(cursor, &[names], chat).map(|(_, key)| key)
}

/// Decodes a cursor that may hold one of several key layouts (`layouts`, each a list of
/// attribute names): returns which one (its index in `layouts`) and the key, whose `ChatID` is
/// `chat`. The cursor's attribute names must be exactly one layout's.
pub(crate) fn decode_one_of(
    cursor: &Cursor,
    layouts: &[&[&str]],
    chat: &str,
) -> Result<(usize, Item), BadCursor> {
    let bytes = hex_decode(cursor.token()).ok_or(BadCursor("not hex"))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| BadCursor("not JSON"))?;
    let Value::Object(object) = value else {
        return Err(BadCursor("not an object"));
    };
    let (which, names) = layouts
        .iter()
        .enumerate()
        .find(|(_, names)| {
            names.len() == object.len() && names.iter().all(|n| object.contains_key(*n))
        })
        .ok_or(BadCursor("wrong key attributes"))?;
    let mut key = HashMap::with_capacity(names.len());
    for name in *names {
        let Some(Value::Object(typed)) = object.get(*name) else {
            return Err(BadCursor("wrong key attributes"));
        };
        let value = match (typed.len(), typed.get("S"), typed.get("N")) {
            (1, Some(Value::String(s)), None) => AttributeValue::S(s.clone()),
            (1, None, Some(Value::String(n))) if n.parse::<f64>().is_ok() => {
                AttributeValue::N(n.clone())
            }
            _ => return Err(BadCursor("bad attribute value")),
        };
        key.insert((*name).to_owned(), value);
    }
    match key.get(CHAT_ID) {
        Some(AttributeValue::S(c)) if c == chat => Ok((which, key)),
        _ => Err(BadCursor("cursor of another chat")),
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let raw = text.as_bytes();
    if raw.is_empty() || raw.len() % 2 != 0 {
        return None;
    }
    raw.chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some(nibble(*hi)? << 4 | nibble(*lo)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::{MESSAGE_ID, SORT_KEY, TIMESTAMP};

    const NATIVE: &[&str] = &[CHAT_ID, SORT_KEY];
    const LEGACY: &[&str] = &[MESSAGE_ID, CHAT_ID, TIMESTAMP];

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    #[test]
    fn native_and_legacy_keys_round_trip() {
        let native: Item = HashMap::from([
            (CHAT_ID.into(), s("a-b-copilot")),
            (SORT_KEY.into(), s("00000000000000000005#x")),
            ("Message".into(), s("not part of the key")),
        ]);
        let cursor = encode(&native, NATIVE).unwrap();
        assert!(cursor.token().bytes().all(|b| b.is_ascii_hexdigit()));
        let key = decode(&cursor, NATIVE, "a-b-copilot").unwrap();
        assert_eq!(key.len(), 2);
        assert_eq!(key.get(SORT_KEY), native.get(SORT_KEY));

        let legacy: Item = HashMap::from([
            (CHAT_ID.into(), s("a-b-copilot")),
            (MESSAGE_ID.into(), s("id")),
            (TIMESTAMP.into(), AttributeValue::N("1718000000123".into())),
        ]);
        let cursor = encode(&legacy, LEGACY).unwrap();
        assert_eq!(decode(&cursor, LEGACY, "a-b-copilot").unwrap(), legacy);
    }

    #[test]
    fn encode_needs_every_key_attribute() {
        let item: Item = HashMap::from([(CHAT_ID.into(), s("c"))]);
        assert!(encode(&item, NATIVE).is_none());
    }

    #[test]
    fn malformed_cursors_are_refused() {
        let chat = "a-b-copilot";
        let bad = |token: &str| decode(&Cursor::from_token(token.into()), NATIVE, chat);
        assert!(bad("").is_err());
        assert!(bad("zz").is_err());
        assert!(bad("7").is_err());
        assert!(bad("7B7D").is_err(), "upper-case hex is not what we issue");
        assert!(bad(&hex_encode(b"{}")).is_err());
        assert!(bad(&hex_encode(b"[1]")).is_err());
        assert!(bad(&hex_encode(b"not json")).is_err());
        let other = r#"{"ChatID":{"S":"other-copilot"},"SortKey":{"S":"k"}}"#;
        assert_eq!(
            bad(&hex_encode(other.as_bytes())),
            Err(BadCursor("cursor of another chat"))
        );
        let extra = r#"{"ChatID":{"S":"a-b-copilot"},"SortKey":{"S":"k"},"X":{"S":"y"}}"#;
        assert!(bad(&hex_encode(extra.as_bytes())).is_err());
        let wrong_type = r#"{"ChatID":{"S":"a-b-copilot"},"SortKey":{"B":"k"}}"#;
        assert!(bad(&hex_encode(wrong_type.as_bytes())).is_err());
        let bad_number = r#"{"ChatID":{"S":"a-b-copilot"},"SortKey":{"N":"abc"}}"#;
        assert!(bad(&hex_encode(bad_number.as_bytes())).is_err());
        let ok = r#"{"ChatID":{"S":"a-b-copilot"},"SortKey":{"S":"k"}}"#;
        assert!(bad(&hex_encode(ok.as_bytes())).is_ok());
    }

    #[test]
    fn a_cursor_of_several_layouts_says_which_it_holds() {
        const TIME: &[&str] = &[MESSAGE_ID, CHAT_ID, TIMESTAMP];
        const SEQ: &[&str] = &[MESSAGE_ID, CHAT_ID, crate::item::SEQ];
        const START: &[&str] = &[CHAT_ID];
        let layouts = [TIME, SEQ, START];
        let chat = "a-b-copilot";
        let item: Item = HashMap::from([
            (CHAT_ID.into(), s(chat)),
            (MESSAGE_ID.into(), s("id")),
            (TIMESTAMP.into(), AttributeValue::N("17".into())),
            (crate::item::SEQ.into(), AttributeValue::N("4".into())),
        ]);
        for (which, names) in layouts.iter().enumerate() {
            let cursor = encode(&item, names).unwrap();
            let (found, key) = decode_one_of(&cursor, &layouts, chat).unwrap();
            assert_eq!(found, which);
            assert_eq!(key.len(), names.len());
        }
        let both = encode(&item, &[MESSAGE_ID, CHAT_ID, TIMESTAMP, crate::item::SEQ]).unwrap();
        assert_eq!(
            decode_one_of(&both, &layouts, chat),
            Err(BadCursor("wrong key attributes"))
        );
        let start = encode(&item, START).unwrap();
        assert!(decode_one_of(&start, &layouts, "other-copilot").is_err());
    }
}
