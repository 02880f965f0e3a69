//! Store and read back a few messages with the embedded store.
//!
//! `cargo run -p jiva-store-sqlite --example embedded -- /tmp/jiva-example`

use jiva_core::{AgentId, ChatId, ConnectionType, Message, MessageStore, Sender};
use jiva_store_sqlite::{Config, SqliteStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./data-example".into());
    let store = SqliteStore::open(Config::in_dir(&dir))?;
    let chat = ChatId::new(
        AgentId::parse("0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21")?,
        ConnectionType::Supervisor,
    );
    store.register_chat(&chat).await?;
    store
        .append(&Message::user(
            chat.clone(),
            Sender::Agent,
            "Can you join my call?".into(),
        ))
        .await?;
    store
        .append(&Message::user(
            chat.clone(),
            Sender::Supervisor,
            "On my way.".into(),
        ))
        .await?;
    let page = store.history(&chat, None, 50).await?;
    for m in page.messages {
        eprintln!(
            "{} {} {}: {}",
            m.timestamp.as_millis(),
            m.id,
            m.sender.as_str(),
            m.text()
        );
    }
    Ok(())
}
