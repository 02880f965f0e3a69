//! A v1 conversation in frames, without any socket: what a client writes and how it reads what
//! the server writes back.
//!
//! `cargo run -p jiva-protocol --example conversation`

#![allow(clippy::print_stdout)]

use jiva_protocol::{
    ClientFrame, PageRequest, SUBPROTOCOL, Send, ServerFrame, TurnOutcome, UserSender, valid_id,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("offer the subprotocol {SUBPROTOCOL} on ws://HOST/?agentID=…&secondaryID=copilot");

    // A send carries the client's own id: resending it (after a reconnect) is safe.
    let client_id = "c-0001";
    assert!(valid_id(client_id));
    let send = ClientFrame::Send(Send {
        r#ref: Some("r1".into()),
        client_id: client_id.into(),
        sender: UserSender::Agent,
        text: "Can you check order 4411?".into(),
    });
    println!("client → {}", send.to_json());

    // What the server answers, as a client reads it.
    let answers = [
        r#"{"type":"message","seq":43,"message_id":"0190c5a5-9f1c-7a3e-8b4d-6f7e8a9b0c1d","sender":"agent","kind":"text","text":"Can you check order 4411?","ts":1718000000250}"#,
        r#"{"type":"ack","ref":"r1","client_id":"c-0001","message_id":"0190c5a5-9f1c-7a3e-8b4d-6f7e8a9b0c1d","seq":43}"#,
        r#"{"type":"chunk","question_id":"0190c5a5-9f1c-7a3e-8b4d-6f7e8a9b0c1d","action":null,"output":"Order 4411 "}"#,
        r#"{"type":"turn_end","question_id":"0190c5a5-9f1c-7a3e-8b4d-6f7e8a9b0c1d","outcome":"answered","answer_id":"0190c5a6-0a2b-7c4d-9e5f-a1b2c3d4e5f6"}"#,
    ];
    let mut last_seq = None;
    for text in answers {
        match ServerFrame::from_json(text)? {
            ServerFrame::Message(m) => {
                last_seq = m.seq.or(last_seq);
                println!("server ← message {:?} by {:?}", m.seq, m.sender);
            }
            ServerFrame::Ack(a) => println!("server ← ack {} = message {}", a.client_id, a.seq),
            ServerFrame::Chunk(c) => println!("server ← chunk {:?}", c.output),
            ServerFrame::TurnEnd(e) if e.outcome == TurnOutcome::Answered => {
                println!("server ← the answer is stored as {:?}", e.answer_id)
            }
            other => println!("server ← {other:?}"),
        }
    }

    // Reconnect with `&since=<last seq seen>`, and page older history before the first seq.
    println!("reconnect with &since={}", last_seq.unwrap_or(0));
    let page = ClientFrame::Page(PageRequest {
        r#ref: Some("p1".into()),
        before: 43,
        limit: Some(100),
    });
    println!("client → {}", page.to_json());
    Ok(())
}
