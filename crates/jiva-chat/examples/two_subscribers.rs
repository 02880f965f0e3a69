//! A chat service with two subscribers and an encoder of its own: every stored message is
//! encoded once and reaches both, in the chat's order.
//!
//! `cargo run -p jiva-chat --example two_subscribers`

use std::sync::Arc;

use jiva_chat::{Chats, Config, Encoder, Ports, Subscriber};
use jiva_core::{AgentId, ChatId, ConnectionType, CopilotChunk, Message, Sender};
use jiva_store_sqlite::SqliteStore;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Frames as shared strings: cloning one for another subscriber copies no text.
struct Lines;

impl Encoder for Lines {
    type Frame = Arc<str>;

    fn stored(&self, message: &Message) -> Arc<str> {
        let seq = message.seq.map_or(0, jiva_core::Seq::get);
        format!("#{seq} {}: {}", message.sender.as_str(), message.text()).into()
    }

    fn chunk(&self, chunk: &CopilotChunk) -> Arc<str> {
        chunk.output.as_deref().unwrap_or_default().into()
    }

    fn error(&self, reason: &str) -> Arc<str> {
        format!("error: {reason}").into()
    }

    fn end(&self) -> Arc<str> {
        "end".into()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(jiva_store_sqlite::Config::in_dir(dir.path()))?;
    let chats = Chats::new(
        Config::default(),
        Ports::new(Arc::new(store)),
        Lines,
        TaskTracker::new(),
        CancellationToken::new(),
    );
    let chat = ChatId::new(AgentId::parse("demo")?, ConnectionType::Supervisor);
    chats.register(&chat).await?;
    let mut outputs = Vec::new();
    for conn in 1..=2 {
        let (tx, rx) = mpsc::channel(16);
        let slow = CancellationToken::new();
        chats.join(&chat, Subscriber { conn, tx, slow }).await;
        outputs.push(rx);
    }
    // Nothing to replay in a new chat: the chat starts after number 0.
    chats.replayed(&chat, 0, &[]);
    for (sender, text) in [
        (Sender::Agent, "Can you join my call?"),
        (Sender::Supervisor, "On my way."),
    ] {
        chats
            .accept(Message::user(chat.clone(), sender, text.into()))
            .await?;
    }
    for (i, rx) in outputs.iter_mut().enumerate() {
        while let Ok(frame) = rx.try_recv() {
            eprintln!("subscriber {}: {frame}", i + 1);
        }
    }
    Ok(())
}
