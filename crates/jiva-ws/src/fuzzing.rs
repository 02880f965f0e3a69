//! Entry points for the fuzz targets in the repository's `fuzz/` crate. Not API: hidden from the
//! docs, and free to change with the parsers they expose.

use jiva_core::{ChatId, Sender};

/// How the transport reads a client's text frame: `Ok(Some((sender, text)))` for a chat
/// message, `Ok(None)` for a keepalive, `Err(reason)` for a frame answered with an error.
pub fn parse_inbound(text: &str) -> Result<Option<(Sender, String)>, &'static str> {
    match crate::frames::parse_inbound(text)? {
        crate::frames::Inbound::Chat { sender, text } => Ok(Some((sender, text))),
        crate::frames::Inbound::Keepalive => Ok(None),
    }
}

/// How the transport reads the upgrade request's query string.
pub fn chat_from_query(query: Option<&str>) -> Result<ChatId, String> {
    crate::handshake::chat_from_query(query)
}
