//! The domain without any I/O: a chat, its messages, the notification each raises, and how a
//! streamed copilot answer becomes the stored one.
//!
//! `cargo run -p jiva-core --example domain`

#![allow(clippy::print_stdout)]

use jiva_core::{
    AgentId, AnswerAssembler, ChatId, ConnectionType, CopilotChunk, HistoryLimits, Message,
    Notification, Sender, history_turns,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // What a socket's `?agentID=…&secondaryID=…` names. The agent id is kept whole.
    let agent = AgentId::parse("0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21")?;
    let supervisor_chat = ChatId::new(agent.clone(), ConnectionType::parse("supervisor")?);
    println!(
        "chat {} (agent {}, kind {})",
        supervisor_chat,
        supervisor_chat.agent(),
        supervisor_chat.kind()
    );

    // Messages get a time-ordered id and a millisecond timestamp; each raises its notification.
    let hello = Message::user(
        supervisor_chat,
        Sender::Agent,
        "Can you join my call?".into(),
    );
    println!(
        "message {} at {} ms -> {:?}",
        hello.id,
        hello.timestamp.as_millis(),
        Notification::for_message(&hello)
    );

    // A copilot turn: earlier turns for the request, then the answer assembled from chunks.
    let copilot_chat = ChatId::new(agent, ConnectionType::Copilot);
    let earlier = vec![
        Message::user(
            copilot_chat.clone(),
            Sender::Agent,
            "What is our refund window?".into(),
        ),
        Message::copilot_answer(copilot_chat.clone(), "30 days from delivery.".into()),
    ];
    let question = Message::user(
        copilot_chat.clone(),
        Sender::Agent,
        "And for opened items?".into(),
    );
    for turn in history_turns(&earlier, question.id, HistoryLimits::default()) {
        println!("history {}: {}", turn.role.as_str(), turn.content);
    }
    let mut answer = AnswerAssembler::new();
    for (action, output) in [
        (Some("tool"), Some("Processing Results\n")),
        (None, Some("14 days ")),
        (None, Some("{opened}.")),
    ] {
        answer.push(&CopilotChunk {
            action: action.map(Into::into),
            output: output.map(Into::into),
        });
    }
    let stored = Message::copilot_answer(copilot_chat, answer.finish());
    println!(
        "answer {:?} -> {:?}",
        stored.text(),
        Notification::for_message(&stored).map(|n| n.kind)
    );
    Ok(())
}
