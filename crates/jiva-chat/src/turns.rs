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
    AnswerAssembler, ChatId, CopilotError, CopilotRequest, LeaseToken, Message, MessageId,
    Notification, TurnLock, history_turns,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::chats::Core;
use crate::ports::{Encoder, TurnEnding, TurnError};

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

use crate::relay::{Cancels, cancel_in};

/// The copilot turn queues of all chats.
pub(crate) struct Turns<E: Encoder> {
    core: Arc<Core<E>>,
    entries: Entries,
    cancels: Cancels,
}

/// Admission of one question into its chat's turn queue.
pub(crate) struct Ticket<E: Encoder> {
    core: Arc<Core<E>>,
    entries: Entries,
    cancels: Cancels,
    chat: ChatId,
    used: bool,
}

impl<E: Encoder> Turns<E> {
    pub fn new(core: Arc<Core<E>>) -> Self {
        Self {
            cancels: core.relay.cancels(),
            core,
            entries: Entries::default(),
        }
    }

    /// Cancels the turn answering `question` in `chat`, waiting or running on this server;
    /// false when there is none.
    pub fn cancel(&self, chat: &ChatId, question: MessageId) -> bool {
        cancel_in(&self.cancels, chat, question)
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
            cancels: Arc::clone(&self.cancels),
            chat: chat.clone(),
            used: false,
        })
    }
}

impl<E: Encoder> Ticket<E> {
    /// Queues the stored question; the chat's worker answers it after the turns before it.
    pub fn submit(mut self, question: Message) {
        self.used = true;
        self.cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(question.id, (self.chat.clone(), CancellationToken::new()));
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
            (Arc::clone(&self.entries), Arc::clone(&self.cancels)),
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
    (entries, cancels): (Entries, Cancels),
    chat: ChatId,
    mut rx: mpsc::UnboundedReceiver<Message>,
) {
    while let Some(question) = rx.recv().await {
        let id = question.id;
        let cancel = cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .map(|(_, token)| token.clone())
            .unwrap_or_default();
        run_turn(&core, &chat, question, &cancel).await;
        cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
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

/// Why the copilot failed, for the client; never internal text.
fn reason(error: &CopilotError) -> TurnError {
    match error {
        CopilotError::NotConfigured => TurnError::NotConfigured,
        CopilotError::Unavailable(_) => TurnError::Unavailable,
        CopilotError::Status(_) => TurnError::Status,
        CopilotError::Timeout(_) => TurnError::Timeout,
        CopilotError::Truncated => TurnError::CutOff,
        _ => TurnError::Unreadable,
    }
}

/// What is appended to a partial answer when a client cancelled its turn (stored with it).
pub(crate) const STOPPED_NOTICE: &str = "\n\n[Answer stopped.]";

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
async fn run_turn<E: Encoder>(
    core: &Core<E>,
    chat: &ChatId,
    question: Message,
    cancel: &CancellationToken,
) {
    let started = std::time::Instant::now();
    metrics::counter!("jiva_copilot_turns_total").increment(1);
    let deadline = Instant::now() + core.config.copilot_turn_timeout;
    let mut answer = AnswerAssembler::new();
    // A question cancelled while it waited is not asked.
    let lease = match cancel.is_cancelled() {
        true => Err(TurnError::Cancelled),
        false => Lease::take(core, chat, deadline).await,
    };
    let asked = match &lease {
        Err(reason) => Err(*reason),
        Ok(lease) => {
            lease
                .hold(ask(core, chat, &question, deadline, &mut answer, cancel))
                .await
        }
    };
    core.rooms.wait_for_room(chat, ROOM, ROOM_PATIENCE).await;
    let failed = asked.err();
    let mut ending = TurnEnding::Answered;
    match failed {
        Some(TurnError::Cancelled) => {
            metrics::counter!("jiva_copilot_cancels_total").increment(1);
            tracing::debug!(chat = %chat, "copilot turn cancelled");
            ending = TurnEnding::Cancelled;
        }
        Some(reason) => {
            metrics::counter!("jiva_copilot_failures_total").increment(1);
            tracing::warn!(chat = %chat, reason = reason.reason(), "copilot turn failed");
            let frame = core
                .encoder
                .turn_error(question.id, reason, reason.reason());
            core.broadcast(chat, &frame);
            ending = TurnEnding::Failed;
        }
        None => {}
    }
    let mut text = answer.finish();
    match failed {
        // Cancelled: what came is stored, marked; nothing came, nothing is shown.
        Some(TurnError::Cancelled) if !text.is_empty() => text.push_str(STOPPED_NOTICE),
        Some(TurnError::Cancelled) => {}
        // Nothing came: the failure is shown as an answer the widget renders, not stored.
        Some(reason) if text.is_empty() => {
            let notice = Message::copilot_answer(chat.clone(), failed_notice(reason.reason()));
            core.broadcast(chat, &core.encoder.turn_notice(question.id, &notice));
        }
        // Part of an answer came: it is stored and shown with the cut-off notice appended.
        Some(reason) => text.push_str(&cut_off_notice(reason.reason())),
        None => {}
    }
    let mut answer_id = None;
    if !text.is_empty() {
        let mut stored = Message::copilot_answer(chat.clone(), text);
        match core.store_and_show(&mut stored).await {
            Ok(_) => {
                answer_id = Some(stored.id);
                if let Some(n) = Notification::for_message(&stored) {
                    core.notify(n).await;
                }
            }
            Err(_) => {
                let failure = TurnError::AnswerNotStored;
                let frame = core
                    .encoder
                    .turn_error(question.id, failure, failure.reason());
                core.broadcast(chat, &frame);
                if ending == TurnEnding::Answered {
                    ending = TurnEnding::Failed;
                }
            }
        }
    }
    core.broadcast(chat, &core.encoder.turn_end(question.id, ending, answer_id));
    if ending == TurnEnding::Cancelled {
        core.relay.turn_ended(chat, question.id, answer_id);
    }
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
    ) -> Result<Lease<'a>, TurnError> {
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
                return Err(TurnError::Timeout);
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = core.shutdown.cancelled() => return Err(TurnError::ShuttingDown),
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
    cancel: &CancellationToken,
) -> Result<(), TurnError> {
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
            return Err(TurnError::HistoryUnavailable);
        }
        Err(_) => return Err(TurnError::Timeout),
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
            Err(_) => return Err(TurnError::Timeout),
        },
        () = shutdown.cancelled() => return Err(TurnError::ShuttingDown),
        // Dropping the request's future drops the copilot request.
        () = cancel.cancelled() => return Err(TurnError::Cancelled),
    };
    loop {
        let next = tokio::select! {
            next = timeout_at(deadline, stream.next()) => next,
            () = shutdown.cancelled() => return Err(TurnError::ShuttingDown),
            // Dropping the stream drops the copilot request.
            () = cancel.cancelled() => return Err(TurnError::Cancelled),
        };
        match next {
            Err(_) => return Err(TurnError::Timeout),
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(reason(&e)),
            Ok(Some(Ok(chunk))) => {
                let adds = chunk.output.as_deref().map_or(0, str::len);
                if answer.text().len().saturating_add(adds) > core.config.copilot_max_answer_bytes {
                    // Dropping the stream drops the copilot request.
                    metrics::counter!("jiva_copilot_answers_too_long_total").increment(1);
                    return Err(TurnError::TooLong);
                }
                answer.push(&chunk);
                core.rooms.wait_for_room(chat, ROOM, ROOM_PATIENCE).await;
                core.broadcast(chat, &core.encoder.turn_chunk(question.id, &chunk));
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
        let ports = Ports::new(Arc::new(store));
        let relay = Arc::new(crate::relay::CancelRelay::new(Arc::clone(&ports.bus)));
        let core = Arc::new(Core {
            config: Config::default(),
            ports,
            encoder: TextEncoder,
            rooms: Default::default(),
            tracker: tracker.clone(),
            shutdown: CancellationToken::new(),
            meters: Default::default(),
            relay,
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
