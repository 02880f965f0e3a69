//! Feeds arbitrary tokens to the SQLite history cursor's decoder and checks that it never
//! panics, and that a position it accepts, encoded as the cursor of a message there, decodes to
//! the same position.
#![no_main]

use jiva_core::{AgentId, ChatId, ConnectionType, Cursor, Message, MessageId, Sender, Timestamp};
use jiva_store_sqlite::fuzzing::{decode_cursor, encode_cursor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((millis, id)) = decode_cursor(&Cursor::from_token(token.to_owned())) else {
        return;
    };
    let Ok(agent) = AgentId::parse("a") else {
        return;
    };
    let Ok(parsed_id) = MessageId::parse(&id) else {
        panic!("the decoded id {id:?} is not a message id");
    };
    let mut message = Message::user(
        ChatId::new(agent, ConnectionType::Supervisor),
        Sender::Agent,
        "x".to_owned(),
    );
    message.id = parsed_id;
    message.timestamp = Timestamp::from_millis(millis);
    assert_eq!(decode_cursor(&encode_cursor(&message)), Ok((millis, id)));
});
