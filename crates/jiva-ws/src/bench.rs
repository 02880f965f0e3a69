//! Hooks for the criterion benchmarks in `benches/`: the crate-private hot functions of the
//! wire path, reachable without making them public API. Hidden from the docs; no stability
//! promise, not for any other use.

use jiva_core::Message;

/// Reads a client's text frame as a socket's reader does; `true` for a chat message.
pub fn parse_inbound(text: &str) -> bool {
    matches!(
        crate::frames::parse_inbound(text),
        Ok(crate::frames::Inbound::Chat { .. })
    )
}

/// Encodes the frame that shows a stored message (with its `seq`, if it has one), once, as
/// fan-out does; its length in bytes.
pub fn encode_stored(message: &Message) -> usize {
    crate::frames::stored(message, message.seq).text.len()
}
