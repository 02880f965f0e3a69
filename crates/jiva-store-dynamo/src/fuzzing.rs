//! Entry points for the fuzz targets in the repository's `fuzz/` crate. Not API: hidden from the
//! docs, and free to change with the conversions they expose.

use std::collections::HashMap;

pub use aws_sdk_dynamodb::types::AttributeValue;
use jiva_core::{ChatId, Cursor, Message, Seq};

/// The key attributes of a native `Messages` table, as a cursor holds them.
pub const NATIVE_KEY: &[&str] = &[crate::item::CHAT_ID, crate::item::SORT_KEY];

/// The key attributes of a legacy `Messages` table queried through its index.
pub const LEGACY_KEY: &[&str] = &[
    crate::item::MESSAGE_ID,
    crate::item::CHAT_ID,
    crate::item::TIMESTAMP,
];

/// The key attributes of the sequence index of a legacy `Messages` table (`legacy_seq_index`).
pub const LEGACY_SEQ_KEY: &[&str] = &[
    crate::item::MESSAGE_ID,
    crate::item::CHAT_ID,
    crate::item::SEQ,
];

/// The cursor layouts of the legacy layout with a sequence index, in the order
/// [`decode_phase_cursor`] numbers them: the time phase, the sequence phase, the start of the
/// sequence phase (`ChatID` alone).
pub const PHASE_LAYOUTS: &[&[&str]] = crate::by_seq::CURSOR_LAYOUTS;

/// Decodes a history cursor of the legacy layout with a sequence index: which of
/// [`PHASE_LAYOUTS`] it holds, and the key.
pub fn decode_phase_cursor(
    cursor: &Cursor,
    chat: &str,
) -> Result<(usize, HashMap<String, AttributeValue>), String> {
    crate::cursor::decode_one_of(cursor, PHASE_LAYOUTS, chat).map_err(|e| e.to_string())
}

/// Reads a `Messages` item of `chat`; the error as text.
pub fn message_from_item(
    item: &HashMap<String, AttributeValue>,
    chat: &ChatId,
) -> Result<Message, String> {
    crate::item::message_from_item(item, chat).map_err(|e| e.to_string())
}

/// The `Messages` item of message number `seq`, with the native sort key when `with_sort_key`.
pub fn message_item(
    message: &Message,
    seq: Seq,
    with_sort_key: bool,
) -> HashMap<String, AttributeValue> {
    crate::item::message_item(message, seq, with_sort_key)
}

/// Encodes the key attributes `names` of `item` as a history cursor.
pub fn encode_cursor(item: &HashMap<String, AttributeValue>, names: &[&str]) -> Option<Cursor> {
    crate::cursor::encode(item, names)
}

/// Decodes a history cursor of the chat whose canonical id is `chat`.
pub fn decode_cursor(
    cursor: &Cursor,
    names: &[&str],
    chat: &str,
) -> Result<HashMap<String, AttributeValue>, String> {
    crate::cursor::decode(cursor, names, chat).map_err(|e| e.to_string())
}
