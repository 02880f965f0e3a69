//! Feeds arbitrary query strings to the WebSocket handshake's reader and checks that it never
//! panics, that its 400 reasons are short (they never echo the input), and that an accepted chat,
//! written back as a query, reads the same.
#![no_main]

use jiva_ws::fuzzing::chat_from_query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    match chat_from_query(Some(query)) {
        Ok(chat) => {
            assert!(chat.agent().as_str().len() <= query.len());
            let again = format!(
                "agentID={}&secondaryID={}",
                chat.agent().as_str(),
                chat.kind().as_str()
            );
            assert_eq!(chat_from_query(Some(&again)), Ok(chat), "{again}");
        }
        Err(reason) => assert!(!reason.is_empty() && reason.len() <= 128, "{reason}"),
    }
});
