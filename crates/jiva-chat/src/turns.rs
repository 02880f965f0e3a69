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
    AnswerAssembler, ChatId, CopilotError, CopilotRequest, LeaseToken, Message, Notification,
    TurnLock, history_turns,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

use crate::chats::Core;
use crate::ports::Encoder;

/// Frames a turn keeps room for on each socket of its chat before sending: a chunk, or the
/// last frames of a turn (an error, the answer, an error, `end`).
const ROOM: usize = 4;

/// How long a turn waits for a socket to make that room before closing it as a slow consumer.
const ROOM_PATIENCE: Duration = Duration::from_secs(2);

/// The first and the longest wait between two tries at a chat's turn lease held elsewhere.
const LEASE_BACKOFF_MIN: Duration = Duration::from_millis(20);
const LEASE_BACKOFF_MAX: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Entry {
    pending: usize,
    tx: Option<mpsc::UnboundedSender<Message>>,
}

type Entries = Arc<Mutex<HashMap<ChatId, Entry>>>;

/// The copilot turn queues of all chats.
pub(crate) struct Turns<E: Encoder> {
    core: Arc<Core<E>>,
    entries: Entries,
}

/// Admission of one question into its chat's turn queue.
pub(crate) struct Ticket<E: Encoder> {
    core: Arc<Core<E>>,
    entries: Entries,
    chat: ChatId,
    used: bool,
}

impl<E: Encoder> Turns<E> {
    pub fn new(core: Arc<Core<E>>) -> Self {
        Self {
            core,
            entries: Entries::default(),
        }
    }

    /// Admits one more turn for `chat`, or `None` when its queue is full.
    pub fn admit(&self, chat: &ChatId) -> Option<Ticket<E>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(chat.clone()).or_default();
        if entry.pending > self.core.config.copilot_queue {
            return None;
        }
        entry.pending += 1;
        Some(Ticket {
            core: Arc::clone(&self.core),
            entries: Arc::clone(&self.entries),
            chat: chat.clone(),
            used: false,
        })
    }
}

impl<E: Encoder> Ticket<E> {
    /// Queues the stored question; the chat's worker answers it after the turns before it.
    pub fn submit(mut self, question: Message) {
        self.used = true;
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
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
        let worker = worker(
            Arc::clone(&self.core),
            Arc::clone(&self.entries),
            self.chat.clone(),
            rx,
        );
        self.core.tracker.spawn(worker);
    }
}

impl<E: Encoder> Drop for Ticket<E> {
    fn drop(&mut self) {
        if self.used {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(&self.chat) {
            entry.pending = entry.pending.saturating_sub(1);
            if entry.pending == 0 {
                entries.remove(&self.chat);
            }
        }
    }
}

async fn worker<E: Encoder>(
    core: Arc<Core<E>>,
    entries: Entries,
    chat: ChatId,
    mut rx: mpsc::UnboundedReceiver<Message>,
) {
    while let Some(question) = rx.recv().await {
        run_turn(&core, &chat, question).await;
        let mut entries = entries.lock().unwrap_or_else(PoisonError::into_inner);
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

/// The text of the answer shown (not stored) when a turn failed before the copilot said
/// anything: the deployed widget renders only frames with a `message_id` as messages.
pub(crate) fn failed_notice(reason: &str) -> String {
    format!("[No answer: {reason}.]")
}

/// What is appended to a partial answer when its turn failed midway (stored with it).
pub(crate) fn cut_off_notice(reason: &str) -> String {
    format!("\n\n[Answer cut off: {reason}.]")
}

/// One turn, as PROTOCOL.md §4 lists it (the question is already stored and echoed): ask with
/// the earlier turns, forward each chunk, store and show the answer, then always `end`.
async fn run_turn<E: Encoder>(core: &Core<E>, chat: &ChatId, question: Message) {
    let started = std::time::Instant::now();
    metrics::counter!("jiva_copilot_turns_total").increment(1);
    let deadline = Instant::now() + core.config.copilot_turn_timeout;
    let mut answer = AnswerAssembler::new();
    let lease = Lease::take(core, chat, deadline).await;
    let asked = match &lease {
        Err(reason) => Err(*reason),
        Ok(lease) => {
            lease
                .hold(ask(core, chat, &question, deadline, &mut answer))
                .await
        }
    };
    core.rooms.wait_for_room(chat, ROOM, ROOM_PATIENCE).await;
    let failed = asked.err();
    if let Some(reason) = failed {
        metrics::counter!("jiva_copilot_failures_total").increment(1);
        tracing::warn!(chat = %chat, reason, "copilot turn failed");
        core.broadcast(chat, &core.encoder.error(reason));
    }
    let mut text = answer.finish();
    match failed {
        // Nothing came: the failure is shown as an answer the widget renders, not stored.
        Some(reason) if text.is_empty() => {
            let notice = Message::copilot_answer(chat.clone(), failed_notice(reason));
            core.broadcast(chat, &core.encoder.stored(&notice));
        }
        // Part of an answer came: it is stored and shown with the cut-off notice appended.
        Some(reason) => text.push_str(&cut_off_notice(reason)),
        None => {}
    }
    if !text.is_empty() {
        let mut stored = Message::copilot_answer(chat.clone(), text);
        match core.store_and_show(&mut stored).await {
            Ok(_) => {
                if let Some(n) = Notification::for_message(&stored) {
                    core.notify(n).await;
                }
            }
            Err(_) => {
                core.broadcast(chat, &core.encoder.error("copilot answer was not stored"));
            }
        }
    }
    core.broadcast(chat, &core.encoder.end());
    if let Ok(lease) = lease {
        lease.release().await;
    }
    tracing::debug!(chat = %chat, elapsed_ms = started.elapsed().as_millis() as u64, "copilot turn finished");
}

/// A chat's copilot turn lease, held (and renewed) while its turn runs on this server.
struct Lease<'a> {
    lock: &'a dyn TurnLock,
    chat: &'a ChatId,
    token: LeaseToken,
    ttl: Duration,
}

impl<'a> Lease<'a> {
    /// Takes `chat`'s lease, waiting (polling with backoff) while a turn of the chat runs on
    /// another server, at most until `deadline`. A lock that cannot be reached does not stop
    /// the chat: the turn runs unleased (this server still runs one at a time).
    async fn take<E: Encoder>(
        core: &'a Core<E>,
        chat: &'a ChatId,
        deadline: Instant,
    ) -> Result<Lease<'a>, &'static str> {
        let lease = Lease {
            lock: core.ports.turn_lock.as_ref(),
            chat,
            token: LeaseToken::new(),
            ttl: core.config.turn_lease,
        };
        let mut backoff = LEASE_BACKOFF_MIN;
        let mut waited = false;
        loop {
            match lease.lock.try_acquire(chat, &lease.token, lease.ttl).await {
                Ok(true) => return Ok(lease),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(chat = %chat, error = %e, "turn lock unavailable; running the turn unleased");
                    return Ok(lease);
                }
            }
            if !waited {
                waited = true;
                metrics::counter!("jiva_copilot_turn_lease_waits_total").increment(1);
                tracing::debug!(chat = %chat, "a turn of this chat runs on another server; waiting");
            }
            if Instant::now() + backoff >= deadline {
                return Err("copilot timed out");
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = core.shutdown.cancelled() => return Err("server is shutting down"),
            }
            backoff = (backoff * 2).min(LEASE_BACKOFF_MAX);
        }
    }

    /// Runs `turn`, renewing the lease every third of its time.
    async fn hold<T>(&self, turn: impl std::future::Future<Output = T>) -> T {
        let mut turn = std::pin::pin!(turn);
        let period = (self.ttl / 3).max(Duration::from_millis(10));
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            tokio::select! {
                done = &mut turn => return done,
                _ = ticks.tick() => {
                    match self.lock.renew(self.chat, &self.token, self.ttl).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(chat = %self.chat, "the turn lease expired while the turn ran"),
                        Err(e) => tracing::debug!(chat = %self.chat, error = %e, "renewing the turn lease failed"),
                    }
                }
            }
        }
    }

    async fn release(self) {
        if let Err(e) = self.lock.release(self.chat, &self.token).await {
            tracing::debug!(chat = %self.chat, error = %e, "releasing the turn lease failed; it expires");
        }
    }
}

async fn ask<E: Encoder>(
    core: &Core<E>,
    chat: &ChatId,
    question: &Message,
    deadline: Instant,
    answer: &mut AnswerAssembler,
) -> Result<(), &'static str> {
    let limits = core.config.copilot_history;
    // Room for the question itself, the questions queued behind it and the answers to the
    // turns ahead of it, all of which may be stored after it.
    let fetch = limits
        .max_turns
        .saturating_add(1)
        .saturating_add(core.config.copilot_queue.saturating_mul(2));
    let earlier = match timeout_at(deadline, core.ports.store.recent(chat, fetch)).await {
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
    let shutdown = core.shutdown.clone();
    let mut stream = tokio::select! {
        asked = timeout_at(deadline, core.ports.copilot.ask(request)) => match asked {
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
                let adds = chunk.output.as_deref().map_or(0, str::len);
                if answer.text().len().saturating_add(adds) > core.config.copilot_max_answer_bytes {
                    // Dropping the stream drops the copilot request.
                    metrics::counter!("jiva_copilot_answers_too_long_total").increment(1);
                    return Err("copilot answer was too long");
                }
                answer.push(&chunk);
                core.rooms.wait_for_room(chat, ROOM, ROOM_PATIENCE).await;
                core.broadcast(chat, &core.encoder.chunk(&chunk));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{Config, Ports};
    use crate::testing::TextEncoder;
    use jiva_core::{AgentId, ConnectionType, MockMessageStore, Sender};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    #[tokio::test]
    async fn a_chat_entry_is_removed_when_its_turns_are_done_or_refused() {
        let mut store = MockMessageStore::new();
        store.expect_recent().returning(|_, _| Ok(Vec::new()));
        let tracker = TaskTracker::new();
        let core = Arc::new(Core {
            config: Config::default(),
            ports: Ports::new(Arc::new(store)),
            encoder: TextEncoder,
            rooms: Default::default(),
            tracker: tracker.clone(),
            shutdown: CancellationToken::new(),
        });
        let turns = Turns::new(core);
        let entries = || turns.entries.lock().unwrap().len();
        let chat = ChatId::new(AgentId::parse("a").unwrap(), ConnectionType::Copilot);
        // An admission given back unused leaves nothing behind.
        drop(turns.admit(&chat).unwrap());
        assert_eq!(entries(), 0);
        // Nor does a turn once it ended (no copilot is configured: an error, then `end`).
        let question = Message::user(chat.clone(), Sender::Agent, "question".into());
        turns.admit(&chat).unwrap().submit(question);
        assert_eq!(entries(), 1);
        tracker.close();
        tracker.wait().await;
        assert_eq!(entries(), 0);
    }
}
