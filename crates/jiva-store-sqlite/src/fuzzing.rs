//! Entry points for the fuzz targets in the repository's `fuzz/` crate. Not API: hidden from the
//! docs, and free to change with the cursor they expose.

use jiva_core::{Cursor, Message};

/// Decodes a history cursor into the chat sequence number it points after; the error as text.
pub fn decode_cursor(cursor: &Cursor) -> Result<i64, String> {
    crate::decode_cursor(cursor).map_err(|e| e.to_string())
}

/// The cursor that points just past `message`.
pub fn encode_cursor(message: &Message) -> Cursor {
    crate::encode_cursor(message)
}
