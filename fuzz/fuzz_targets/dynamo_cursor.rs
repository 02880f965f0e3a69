//! Feeds arbitrary tokens to the DynamoDB history cursor's decoder (every key layout, and the
//! phase cursor of the legacy layout with a sequence index) and checks that it never panics,
//! that a key it accepts has exactly the layout's attributes and the chat being read, and that
//! the key, encoded again, decodes to the same key (and phase).
#![no_main]

use jiva_core::Cursor;
use jiva_store_dynamo::fuzzing::{
    LEGACY_KEY, LEGACY_SEQ_KEY, NATIVE_KEY, PHASE_LAYOUTS, decode_cursor, decode_phase_cursor,
    encode_cursor,
};
use libfuzzer_sys::fuzz_target;

const CHAT: &str = "0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21-supervisor";

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let cursor = Cursor::from_token(token.to_owned());
    for names in [NATIVE_KEY, LEGACY_KEY, LEGACY_SEQ_KEY] {
        let Ok(key) = decode_cursor(&cursor, names, CHAT) else {
            continue;
        };
        assert_eq!(key.len(), names.len());
        assert!(names.iter().all(|n| key.contains_key(*n)));
        let Some(again) = encode_cursor(&key, names) else {
            panic!("a decoded key cannot be encoded");
        };
        assert!(again.token().len() <= 2 * token.len() + 2 * 64);
        assert_eq!(decode_cursor(&again, names, CHAT), Ok(key));
    }
    if let Ok((phase, key)) = decode_phase_cursor(&cursor, CHAT) {
        let Some(names) = PHASE_LAYOUTS.get(phase) else {
            panic!("a phase beyond the layouts");
        };
        assert_eq!(key.len(), names.len());
        assert!(names.iter().all(|n| key.contains_key(*n)));
        let Some(again) = encode_cursor(&key, names) else {
            panic!("a decoded phase key cannot be encoded");
        };
        assert_eq!(decode_phase_cursor(&again, CHAT), Ok((phase, key)));
    }
});
