//! Embeds the JivaChat transport in another program, with a store of its own.
//!
//! `cargo run -p jiva-ws --example embed` then connect a WebSocket to
//! `ws://127.0.0.1:3040/?agentID=demo&secondaryID=supervisor`. Ctrl-C stops it.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiva_core::{Appended, ChatId, Cursor, HistoryPage, Message, MessageStore, Seq, StoreError};
use jiva_ws::{Config, Services, Transport};

/// The smallest possible store: everything in memory, lost on exit.
#[derive(Default)]
struct MemoryStore {
    messages: Mutex<Vec<Message>>,
}

#[async_trait]
impl MessageStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn register_chat(&self, _chat: &ChatId) -> Result<(), StoreError> {
        Ok(())
    }

    async fn append(&self, message: &Message) -> Result<Appended, StoreError> {
        let mut messages = self
            .messages
            .lock()
            .map_err(|_| StoreError::Corrupt("poisoned".into()))?;
        if let Some(stored) = messages.iter().find(|m| m.id == message.id) {
            return Ok(Appended::AlreadyStored(stored.seq.unwrap_or(Seq::FIRST)));
        }
        // The chat's next number: one more than its last.
        let last = messages
            .iter()
            .filter(|m| m.chat == message.chat)
            .filter_map(|m| m.seq)
            .max();
        let seq = last.map_or(Seq::FIRST, Seq::next);
        messages.push(Message {
            seq: Some(seq),
            ..message.clone()
        });
        Ok(Appended::Stored(seq))
    }

    async fn history(
        &self,
        chat: &ChatId,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let skip: usize = cursor
            .map_or(Ok(0), |c| c.token().parse())
            .map_err(|_| StoreError::InvalidInput("cursor".into()))?;
        let messages = self
            .messages
            .lock()
            .map_err(|_| StoreError::Corrupt("poisoned".into()))?;
        let mine: Vec<Message> = messages
            .iter()
            .filter(|m| &m.chat == chat)
            .skip(skip)
            .take(limit)
            .cloned()
            .collect();
        let next = (mine.len() == limit).then(|| Cursor::from_token((skip + limit).to_string()));
        Ok(HistoryPage {
            messages: mine,
            next,
        })
    }

    async fn recent(&self, chat: &ChatId, limit: usize) -> Result<Vec<Message>, StoreError> {
        let messages = self
            .messages
            .lock()
            .map_err(|_| StoreError::Corrupt("poisoned".into()))?;
        let mine: Vec<Message> = messages
            .iter()
            .filter(|m| &m.chat == chat)
            .cloned()
            .collect();
        Ok(mine
            .iter()
            .skip(mine.len().saturating_sub(limit))
            .cloned()
            .collect())
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3040").await?;
    let transport = Transport::new(
        Config::default(),
        Services::new(Arc::new(MemoryStore::default())),
    );
    jiva_ws::serve(listener, transport, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
