//! Feeds arbitrary text to the reader of a client's WebSocket text frame and checks that it never
//! panics, that a chat message it accepts is non-empty and no longer than the frame, that its
//! reasons are short, and that the accepted message, written back as a frame, reads the same.
#![no_main]

use jiva_ws::fuzzing::parse_inbound;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_inbound(text) {
        Ok(Some((sender, message))) => {
            assert!(!message.is_empty(), "an empty message was accepted");
            assert!(message.len() <= text.len(), "the message outgrew its frame");
            let again = serde_json::json!({"message": message, "sender": sender.as_str()});
            assert_eq!(
                parse_inbound(&again.to_string()),
                Ok(Some((sender, message))),
                "the accepted message does not read back the same"
            );
        }
        Ok(None) => assert!(text.contains("ping"), "a keepalive without ping"),
        Err(reason) => assert!(!reason.is_empty() && reason.len() <= 64, "{reason}"),
    }
});
