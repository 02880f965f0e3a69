use super::*;
use serde_json::{Value, json};

/// One example of every client frame, as `docs/PROTOCOL-v1.md` shows them.
pub(crate) fn client_examples() -> Vec<Value> {
    vec![
        json!({"type":"send","ref":"r1","client_id":"c-0190c5a5","sender":"agent","text":"Can you check order 4411?"}),
        json!({"type":"send","client_id":"c-2","sender":"supervisor","text":"ok"}),
        json!({"type":"page","ref":"p1","before":120,"limit":100}),
        json!({"type":"page","before":3}),
        json!({"type":"cancel","ref":"x1","question_id":"0190c5a5-9f1c-7a3e-8b4d-6f7e8a9b0c1d"}),
        json!({"type":"typing","active":true}),
        json!({"type":"typing","active":false}),
        json!({"type":"ping","ref":"k1"}),
    ]
}

fn message(seq: Option<u64>) -> Value {
    json!({"seq":seq,"message_id":"0190c5a5-9f1c-7a3e-8b4d-6f7e8a9b0c1d","sender":"agent","kind":"text","text":"hello","ts":1718000000250_i64})
}

/// One example of every server frame, as `docs/PROTOCOL-v1.md` shows them.
pub(crate) fn server_examples() -> Vec<Value> {
    let agent = json!({"id":"0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21","role":"agent"});
    let q = "0190c5a5-9f1c-7a3e-8b4d-6f7e8a9b0c1d";
    let a = "0190c5a6-0a2b-7c4d-9e5f-a1b2c3d4e5f6";
    vec![
        json!({"type":"welcome","protocol":"jivachat.v1","chat_id":"0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21-copilot","you":agent,
               "limits":{"latest":50,"page_max":100,"resume_max":1000,"typing_interval_ms":1000,"max_frame_bytes":65536}}),
        json!({"type":"latest","messages":[message(Some(41)), message(Some(42))],"has_older":true}),
        json!({"type":"latest","messages":[message(None)],"has_older":false}),
        {
            let mut m = message(Some(43));
            m["type"] = json!("message");
            m
        },
        json!({"type":"message","seq":44,"message_id":a,"sender":"copilot","kind":"copilot_answer","text":"Order 4411 shipped.","ts":1718000001000_i64}),
        json!({"type":"live","seq":44}),
        json!({"type":"live","seq":null}),
        json!({"type":"reload","code":"too_far_behind","reason":"more than 1000 messages came after 12","since":12}),
        json!({"type":"reload","code":"unknown_point","reason":"this chat has no message 99 yet","since":99}),
        json!({"type":"ack","ref":"r1","client_id":"c-0190c5a5","message_id":q,"seq":43}),
        json!({"type":"ack","ref":null,"client_id":"c-2","message_id":q,"seq":7}),
        json!({"type":"page","ref":"p1","before":120,"messages":[message(Some(20)), message(Some(21))],"has_older":true}),
        json!({"type":"chunk","question_id":q,"action":null,"output":"Order 4411 "}),
        json!({"type":"chunk","question_id":q,"action":"tool","output":"Processing Results\n"}),
        json!({"type":"turn_end","question_id":q,"outcome":"answered","answer_id":a}),
        json!({"type":"turn_end","question_id":q,"outcome":"cancelled","answer_id":a}),
        json!({"type":"turn_end","question_id":q,"outcome":"failed","answer_id":null}),
        json!({"type":"presence","members":[agent, {"id":"5d1e","role":"supervisor"}]}),
        json!({"type":"presence_join","member":{"id":"5d1e","role":"supervisor"}}),
        json!({"type":"presence_leave","member":{"id":"anon-17","role":"anonymous"}}),
        json!({"type":"typing","member":{"id":"5d1e","role":"supervisor"},"active":true}),
        json!({"type":"error","code":"not_stored","reason":"message not stored","ref":"r1"}),
        json!({"type":"error","code":"invalid_json","reason":"invalid JSON","ref":null}),
        json!({"type":"error","code":"copilot_timeout","reason":"copilot timed out","ref":null,"question_id":q}),
        json!({"type":"pong","ref":"k1"}),
    ]
}

#[test]
fn every_client_example_round_trips_unchanged() {
    for example in client_examples() {
        let frame = ClientFrame::from_json(&example.to_string()).unwrap();
        let back: Value = serde_json::from_str(&frame.to_json()).unwrap();
        assert_eq!(back, example);
    }
}

#[test]
fn every_server_example_round_trips_unchanged() {
    for example in server_examples() {
        let frame = ServerFrame::from_json(&example.to_string()).unwrap();
        let back: Value = serde_json::from_str(&frame.to_json()).unwrap();
        assert_eq!(back, example);
    }
}

#[test]
fn every_frame_has_its_type_first_and_server_errors_carry_their_ref() {
    let error = ServerFrame::Error(ErrorFrame::new(
        ErrorCode::NotStored,
        "message not stored",
        Some("r1".into()),
    ));
    assert_eq!(
        error.to_json(),
        r#"{"type":"error","code":"not_stored","reason":"message not stored","ref":"r1"}"#
    );
    let none = ServerFrame::Error(ErrorFrame::new(
        ErrorCode::InvalidJson,
        "invalid JSON",
        None,
    ));
    assert!(none.to_json().contains(r#""ref":null"#));
}

#[test]
fn unknown_fields_are_ignored_and_unknown_types_refused() {
    let f = ClientFrame::from_json(r#"{"type":"ping","later":1}"#).unwrap();
    assert_eq!(f, ClientFrame::Ping(Ping { r#ref: None }));
    let typing = ClientFrame::from_json(r#"{"type":"typing"}"#).unwrap();
    assert_eq!(
        typing,
        ClientFrame::Typing(TypingRequest {
            r#ref: None,
            active: true
        })
    );
    for bad in [
        r#"{"type":"shout"}"#,
        r#"{"client_id":"c","sender":"agent","text":"x"}"#,
        r#"{"type":"send","client_id":"c","sender":"Copilot","text":"x"}"#,
        r#"{"type":"page","before":-1}"#,
        r#"[]"#,
    ] {
        let e = ClientFrame::from_json(bad).unwrap_err();
        assert!(!e.is_syntax(), "{bad}");
    }
    assert!(ClientFrame::from_json("{nope").unwrap_err().is_syntax());
}

#[test]
fn unknown_error_codes_read_as_unknown() {
    let f = ServerFrame::from_json(
        r#"{"type":"error","code":"from_the_future","reason":"x","ref":null}"#,
    )
    .unwrap();
    assert!(matches!(f, ServerFrame::Error(e) if e.code == ErrorCode::Unknown));
}

#[test]
fn error_codes_are_stable() {
    for code in ErrorCode::ALL {
        let json = serde_json::to_value(code).unwrap();
        assert_eq!(json, Value::String(code.as_str().to_owned()));
        assert_ne!(code, ErrorCode::Unknown);
    }
    assert_eq!(ErrorCode::CopilotCutOff.as_str(), "copilot_cut_off");
}

#[test]
fn ids_are_short_and_plain() {
    assert!(valid_id("c-0190c5a5:1.2_x"));
    assert!(!valid_id(""));
    assert!(!valid_id("a b"));
    assert!(!valid_id(&"x".repeat(65)));
    assert!(valid_id(&"x".repeat(64)));
}

mod schema {
    use super::*;

    fn validator(defs: &str) -> jsonschema::Validator {
        let mut schema: Value = serde_json::from_str(crate::SCHEMA).unwrap();
        schema["oneOf"] = json!([{"$ref": format!("#/$defs/{defs}")}]);
        jsonschema::validator_for(&schema).unwrap()
    }

    #[test]
    fn every_client_example_is_valid_and_only_as_a_client_frame() {
        let client = validator("client_frame");
        let server = validator("server_frame");
        for example in client_examples() {
            if let Err(e) = client.validate(&example) {
                panic!("{example}: {e}");
            }
            // `page` is both a request and an answer, with different fields.
            assert!(!server.is_valid(&example), "{example}");
        }
    }

    #[test]
    fn every_server_example_is_valid() {
        let server = validator("server_frame");
        for example in server_examples() {
            if let Err(e) = server.validate(&example) {
                panic!("{example}: {e}");
            }
        }
    }

    #[test]
    fn what_the_types_write_is_what_the_schema_allows() {
        // Frames built by the types (not from examples) validate too.
        let server = validator("server_frame");
        let frames = [
            ServerFrame::Error(ErrorFrame::new(ErrorCode::WrongSender, "no", None)),
            ServerFrame::Live(Live { seq: None }),
            ServerFrame::Pong(Pong { r#ref: None }),
        ];
        for frame in frames {
            let v: Value = serde_json::from_str(&frame.to_json()).unwrap();
            assert!(server.is_valid(&v), "{v}");
        }
        let all_codes: Vec<Value> = ErrorCode::ALL
            .iter()
            .map(|c| json!({"type":"error","code":c.as_str(),"reason":"r","ref":null}))
            .collect();
        for v in all_codes {
            assert!(server.is_valid(&v), "{v}");
        }
    }

    #[test]
    fn the_schema_refuses_what_the_protocol_forbids() {
        let server = validator("server_frame");
        let client = validator("client_frame");
        for bad in [
            json!({"type":"ack","client_id":"c","message_id":"m","seq":1}),
            json!({"type":"error","code":"nope","reason":"r","ref":null}),
            json!({"type":"error","code":"not_stored","ref":null}),
            json!({"type":"message","seq":1}),
            json!({"type":"typing","member":{"id":"x","role":"robot"},"active":true}),
        ] {
            assert!(!server.is_valid(&bad), "{bad}");
        }
        for bad in [
            json!({"type":"send","client_id":"","sender":"agent","text":"x"}),
            json!({"type":"send","client_id":"c","sender":"agent","text":""}),
            json!({"type":"page","before":0}),
            json!({"type":"page","before":5,"limit":0}),
            json!({"type":"shout"}),
        ] {
            assert!(!client.is_valid(&bad), "{bad}");
        }
    }
}
