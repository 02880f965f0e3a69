//! Copilot turns: one at a time per chat, each in its own task, off the socket's read loop.
//!
//! A question is admitted only while fewer than `copilot_queue + 1` turns of its chat are
//! running or waiting; the admission ([`Ticket`]) is taken before the question is stored, so a
//! refused question is neither stored nor shown. A chat's worker task exits as soon as nothing
//! of that chat is running or waiting, so no task outlives its turns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use jiva_core::{
    AnswerAssembler, ChatId, CopilotError, CopilotRequest, Message, Notification, history_turns,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

use crate::frames;
use crate::state::State;

/// Frames a turn keeps room for on each socket of its chat before sending: a chunk, or the
/// last frames of a turn (an error, the answer, an error, `end`).
const ROOM: usize = 4;

/// How long a turn waits for a socket to make that room before closing it as a slow consumer.
const ROOM_PATIENCE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Entry {
    pending: usize,
    tx: Option<mpsc::UnboundedSender<Message>>,
}

/// The copilot turn queues of all chats.
#[derive(Default)]
pub(crate) struct Turns {
    entries: Mutex<HashMap<ChatId, Entry>>,
}

/// Admission of one question into its chat's turn queue.
pub(crate) struct Ticket {
    state: Arc<State>,
    chat: ChatId,
    used: bool,
}

impl Turns {
    /// Admits one more turn for `chat`, or `None` when its queue is full.
    pub fn admit(state: &Arc<State>, chat: &ChatId) -> Option<Ticket> {
        let mut entries = state
            .turns
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(chat.clone()).or_default();
        if entry.pending > state.config.copilot_queue {
            return None;
        }
        entry.pending += 1;
        Some(Ticket {
            state: Arc::clone(state),
            chat: chat.clone(),
            used: false,
        })
    }
}

impl Ticket {
    /// Queues the stored question; the chat's worker answers it after the turns before it.
    pub fn submit(mut self, question: Message) {
        self.used = true;
        let state = Arc::clone(&self.state);
        let mut entries = state
            .turns
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(self.chat.clone()).or_default();
        let question = match &entry.tx {
            Some(tx) => match tx.send(question) {
                Ok(()) => return,
                Err(mpsc::error::SendError(q)) => q,
            },
            None => question,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        // The receiver is alive: it was created on the line above.
        let _ = tx.send(question);
        entry.tx = Some(tx);
        let worker = worker(Arc::clone(&state), self.chat.clone(), rx);
        state.tracker.spawn(worker);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.used {
            return;
        }
        let mut entries = self
            .state
            .turns
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(&self.chat) {
            entry.pending = entry.pending.saturating_sub(1);
            if entry.pending == 0 {
                entries.remove(&self.chat);
            }
        }
    }
}

async fn worker(state: Arc<State>, chat: ChatId, mut rx: mpsc::UnboundedReceiver<Message>) {
    while let Some(question) = rx.recv().await {
        run_turn(&state, &chat, question).await;
        let mut entries = state
            .turns
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let done = match entries.get_mut(&chat) {
            Some(entry) => {
                entry.pending = entry.pending.saturating_sub(1);
                entry.pending == 0
            }
            None => true,
        };
        if done {
            entries.remove(&chat);
            return;
        }
    }
}

/// A stable, short reason for the client; never internal text.
fn reason(error: &CopilotError) -> &'static str {
    match error {
        CopilotError::NotConfigured => "copilot is not configured",
        CopilotError::Unavailable(_) => "copilot is unavailable",
        CopilotError::Status(_) => "copilot returned an error",
        CopilotError::Timeout(_) => "copilot timed out",
        CopilotError::Truncated => "copilot answer was cut off",
        _ => "copilot answer could not be read",
    }
}

/// One turn, as PROTOCOL.md §4 lists it (the question is already stored and echoed): ask with
/// the earlier turns, forward each chunk, store and show the answer, then always `end`.
async fn run_turn(state: &Arc<State>, chat: &ChatId, question: Message) {
    let started = std::time::Instant::now();
    metrics::counter!("jiva_copilot_turns_total").increment(1);
    let deadline = Instant::now() + state.config.copilot_turn_timeout;
    let mut answer = AnswerAssembler::new();
    let asked = ask(state, chat, &question, deadline, &mut answer).await;
    state.rooms.wait_for_room(chat, ROOM, ROOM_PATIENCE).await;
    if let Err(reason) = asked {
        metrics::counter!("jiva_copilot_failures_total").increment(1);
        tracing::warn!(chat = %chat, reason, "copilot turn failed");
        state.rooms.broadcast(chat, &frames::error(reason));
    }
    let text = answer.finish();
    if !text.is_empty() {
        let stored = Message::copilot_answer(chat.clone(), text);
        match state.store_and_show(&stored).await {
            Ok(()) => {
                if let Some(n) = Notification::for_message(&stored) {
                    state.notify(n).await;
                }
            }
            Err(_) => {
                state
                    .rooms
                    .broadcast(chat, &frames::error("copilot answer was not stored"));
            }
        }
    }
    state.rooms.broadcast(chat, &frames::end());
    tracing::debug!(chat = %chat, elapsed_ms = started.elapsed().as_millis() as u64, "copilot turn finished");
}

async fn ask(
    state: &Arc<State>,
    chat: &ChatId,
    question: &Message,
    deadline: Instant,
    answer: &mut AnswerAssembler,
) -> Result<(), &'static str> {
    let limits = state.config.copilot_history;
    // Room for the question itself, the questions queued behind it and the answers to the
    // turns ahead of it, all of which may be stored after it.
    let fetch = limits
        .max_turns
        .saturating_add(1)
        .saturating_add(state.config.copilot_queue.saturating_mul(2));
    let earlier = match timeout_at(deadline, state.services.store.recent(chat, fetch)).await {
        Ok(Ok(messages)) => messages,
        Ok(Err(e)) => {
            tracing::warn!(chat = %chat, error = %e, "reading copilot history failed");
            return Err("chat history unavailable");
        }
        Err(_) => return Err("copilot timed out"),
    };
    let request = CopilotRequest {
        chat: chat.clone(),
        input: question.text().to_owned(),
        history: history_turns(&earlier, question.id, limits),
    };
    let shutdown = state.shutdown.clone();
    let mut stream = tokio::select! {
        asked = timeout_at(deadline, state.services.copilot.ask(request)) => match asked {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(reason(&e)),
            Err(_) => return Err("copilot timed out"),
        },
        () = shutdown.cancelled() => return Err("server is shutting down"),
    };
    loop {
        let next = tokio::select! {
            next = timeout_at(deadline, stream.next()) => next,
            () = shutdown.cancelled() => return Err("server is shutting down"),
        };
        match next {
            Err(_) => return Err("copilot timed out"),
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(reason(&e)),
            Ok(Some(Ok(chunk))) => {
                answer.push(&chunk);
                state.rooms.wait_for_room(chat, ROOM, ROOM_PATIENCE).await;
                state.rooms.broadcast(chat, &frames::chunk(&chunk));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::state::Services;
    use jiva_core::{AgentId, ConnectionType, MockMessageStore, Sender};

    fn entries(state: &State) -> usize {
        state.turns.entries.lock().unwrap().len()
    }

    #[tokio::test]
    async fn a_chat_entry_is_removed_when_its_turns_are_done_or_refused() {
        let mut store = MockMessageStore::new();
        store.expect_recent().returning(|_, _| Ok(Vec::new()));
        let state = Arc::new(State::new(
            Config::default(),
            Services::new(Arc::new(store)),
        ));
        let chat = ChatId::new(AgentId::parse("a").unwrap(), ConnectionType::Copilot);
        // An admission given back unused leaves nothing behind.
        drop(Turns::admit(&state, &chat).unwrap());
        assert_eq!(entries(&state), 0);
        // Nor does a turn once it ended (no copilot is configured: an error, then `end`).
        let question = Message::user(chat.clone(), Sender::Agent, "question".into());
        Turns::admit(&state, &chat).unwrap().submit(question);
        assert_eq!(entries(&state), 1);
        state.tracker.close();
        state.tracker.wait().await;
        assert_eq!(entries(&state), 0);
    }
}
