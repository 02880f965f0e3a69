//! Creates the tables, registers a chat, appends two messages and reads the history back.
//!
//! Against a local DynamoDB-compatible server (moto: `python3 -m moto.server -p 5000`):
//!
//! ```sh
//! AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
//! AWS_ENDPOINT_URL=http://127.0.0.1:5000 \
//!     cargo run -p jiva-store-dynamo --example local
//! ```
//!
//! Everything comes from the AWS SDK's default chain; the example itself reads no variable.
//! Against real AWS it creates (or reuses) tables named `Chats` and `Messages`.

#![allow(clippy::print_stdout)] // An example prints what it did.

use jiva_core::{AgentId, ChatId, ConnectionType, Message, MessageStore, Sender};
use jiva_store_dynamo::{Config, DynamoStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = DynamoStore::connect(Config {
        max_attempts: 2,
        ..Config::default()
    })
    .await;
    let setup = store.create_tables().await?;
    println!(
        "created {:?}, already there {:?}",
        setup.created, setup.existing
    );
    store.check().await?;

    let agent = AgentId::parse("0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21")?;
    let chat = ChatId::new(agent, ConnectionType::Copilot);
    store.register_chat(&chat).await?;

    let question = Message::user(chat.clone(), Sender::Agent, "How do I reset a PIN?".into());
    let answer = Message::copilot_answer(chat.clone(), "Open Settings, then Security.".into());
    for message in [&question, &answer] {
        println!(
            "append {} -> {:?}",
            message.id,
            store.append(message).await?
        );
    }
    // Appending the same message again is a no-op.
    println!(
        "retry {} -> {:?}",
        question.id,
        store.append(&question).await?
    );

    let page = store.history(&chat, None, 50).await?;
    for m in &page.messages {
        println!(
            "{} {:>13} {:<8} {}",
            m.id,
            m.timestamp.as_millis(),
            m.sender.as_str(),
            m.text()
        );
    }
    println!("more pages: {}", page.next.is_some());
    Ok(())
}
