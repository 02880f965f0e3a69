//! Hooks for the criterion benchmarks in `benches/`: the crate-private fan-out of a stored frame
//! to a chat's subscribers, reachable without making it public API. Hidden from the docs; no
//! stability promise, not for any other use.

use std::sync::Arc;

use jiva_core::{AgentId, ChatId, ConnectionType, Seq};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::rooms::{Rooms, Subscriber};

/// One chat's room with `sockets` subscribers, each a queue as a socket's writer has.
pub struct Fanout {
    rooms: Rooms<Arc<str>>,
    chat: ChatId,
    queues: Vec<mpsc::Receiver<Arc<str>>>,
    frame: Arc<str>,
    next: u64,
}

impl Fanout {
    /// A room of `sockets` subscribers (queues of 64 frames) that has replayed an empty chat,
    /// so the next stored frame (number 1) goes out at once. `None` only if the fixed agent id
    /// were refused.
    pub fn new(sockets: usize) -> Option<Self> {
        let chat = ChatId::new(
            AgentId::parse("0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21").ok()?,
            ConnectionType::Supervisor,
        );
        let rooms = Rooms::default();
        let mut queues = Vec::with_capacity(sockets);
        for conn in 0..sockets {
            let (tx, rx) = mpsc::channel(64);
            let subscriber = Subscriber {
                conn: u64::try_from(conn).unwrap_or(u64::MAX),
                tx,
                slow: CancellationToken::new(),
            };
            rooms.join(&chat, subscriber);
            queues.push(rx);
        }
        rooms.replayed(&chat, 0, Vec::new());
        Some(Self {
            rooms,
            chat,
            queues,
            frame: Arc::from(r#"{"chat_id":"bench","message":"0.12345.987654321012"}"#),
            next: 1,
        })
    }

    /// Shows the chat's next stored frame as an append does ([`Rooms::begin`], then
    /// [`Rooms::show`]: the sequencer, then a copy queued on every subscriber), then empties
    /// every queue as the sockets' writers would. Returns the frames the subscribers received.
    pub fn show_next(&mut self) -> usize {
        let flight = self.rooms.begin(&self.chat);
        let seq = Seq::new(self.next);
        self.next = self.next.saturating_add(1);
        // The fast path: the frame expected next is never held.
        let _held = self
            .rooms
            .show(flight, &self.chat, seq, Arc::clone(&self.frame));
        self.queues
            .iter_mut()
            .map(|queue| {
                let mut received = 0;
                while queue.try_recv().is_ok() {
                    received += 1;
                }
                received
            })
            .sum()
    }
}
