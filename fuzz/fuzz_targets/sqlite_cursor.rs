//! Feeds arbitrary tokens to the SQLite history cursor's decoder and checks that it never
//! panics, and that a position it accepts, encoded as the cursor of a message there, decodes to
//! the same position.
#![no_main]

use jiva_core::{AgentId, ChatId, ConnectionType, Cursor, Message, Sender, Seq};
use jiva_store_sqlite::fuzzing::{decode_cursor, encode_cursor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(seq) = decode_cursor(&Cursor::from_token(token.to_owned())) else {
        return;
    };
    let Ok(number) = u64::try_from(seq) else {
        panic!("the decoder accepted a negative position {seq}");
    };
    let Ok(agent) = AgentId::parse("a") else {
        return;
    };
    let mut message = Message::user(
        ChatId::new(agent, ConnectionType::Supervisor),
        Sender::Agent,
        "x".to_owned(),
    );
    message.seq = Some(Seq::new(number));
    assert_eq!(decode_cursor(&encode_cursor(&message)), Ok(seq));
});
