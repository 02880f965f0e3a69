//! Cancelling a copilot turn that runs on another server: [`CancelRelay`].
//!
//! A turn runs on the server whose socket received its question. A `cancel` arriving on another
//! server of the cluster finds no turn there; when the chat's turn lease is held (a turn runs
//! somewhere), that server publishes [`EventKind::CancelAsk`] on the bus and waits (at most
//! [`REMOTE_CANCEL_WAIT`]) for [`EventKind::CancelTaken`]. The server where the question's turn
//! runs or waits cancels it, answers at once, and, when the turn has ended (its partial answer
//! stored and shown through the bus), publishes [`EventKind::TurnCancelled`], on which the other
//! servers end the turn on their own sockets. With the in-process bus nothing is published and
//! no lease is ever held: a single server answers as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiva_core::{Bus, ChatEvent, ChatId, EventKind, MessageId, ReceivedEvent};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// How long a server waits for the server running a turn to confirm a forwarded cancel (a bus
/// round trip; past it the cancel is answered `no_such_turn`).
pub const REMOTE_CANCEL_WAIT: Duration = Duration::from_secs(2);

/// The stored questions whose turn is waiting or running here, and how to cancel each.
pub(crate) type Cancels = Arc<Mutex<HashMap<MessageId, (ChatId, CancellationToken)>>>;

/// Cancels `question`'s turn in `chat` if it waits or runs here.
pub(crate) fn cancel_in(cancels: &Cancels, chat: &ChatId, question: MessageId) -> bool {
    let cancels = cancels.lock().unwrap_or_else(PoisonError::into_inner);
    match cancels.get(&question) {
        Some((of, token)) if of == chat => {
            token.cancel();
            true
        }
        _ => false,
    }
}

/// What a turn cancelled by another server's ask ended with, for that server's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteEnd {
    /// The question.
    pub question: MessageId,
    /// The stored (partial) answer, if anything came.
    pub answer: Option<MessageId>,
}

/// Forwards cancels to the server running the turn and serves the other servers' cancels.
/// Shared (`Arc`) by the chat service and the transport that receives the bus's events.
pub struct CancelRelay {
    bus: Arc<dyn Bus>,
    cancels: Cancels,
    /// Asks of this server waiting for their answer, by request name.
    asks: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// Questions cancelled here for another server: their end is published.
    for_others: Mutex<HashMap<MessageId, ChatId>>,
    /// Turns cancelled on another server for a client here that ended: the chat service
    /// ends them on its sockets.
    ended: Mutex<Option<tokio::sync::mpsc::UnboundedSender<(ChatId, RemoteEnd)>>>,
}

impl std::fmt::Debug for CancelRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelRelay").finish_non_exhaustive()
    }
}

impl CancelRelay {
    pub(crate) fn new(bus: Arc<dyn Bus>) -> Self {
        Self {
            bus,
            cancels: Cancels::default(),
            asks: Mutex::new(HashMap::new()),
            for_others: Mutex::new(HashMap::new()),
            ended: Mutex::new(None),
        }
    }

    /// The turns of this server, by question.
    pub(crate) fn cancels(&self) -> Cancels {
        Arc::clone(&self.cancels)
    }

    /// Where ended remote turns go (set once by the chat service).
    pub(crate) fn on_ended(&self, tx: tokio::sync::mpsc::UnboundedSender<(ChatId, RemoteEnd)>) {
        *self.ended.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }

    fn publish(&self, chat: &ChatId, kind: EventKind) {
        self.bus.publish_event(&ChatEvent {
            chat: chat.clone(),
            kind,
        });
    }

    /// Asks the other servers to cancel `question`'s turn in `chat`; true once one confirmed
    /// (within [`REMOTE_CANCEL_WAIT`]).
    pub(crate) async fn ask(&self, chat: &ChatId, question: MessageId) -> bool {
        let request = MessageId::new_v7().to_string();
        let (tx, rx) = oneshot::channel();
        self.lock_asks().insert(request.clone(), tx);
        self.publish(
            chat,
            EventKind::CancelAsk {
                question,
                request: request.clone(),
            },
        );
        let taken = matches!(
            tokio::time::timeout(REMOTE_CANCEL_WAIT, rx).await,
            Ok(Ok(()))
        );
        self.lock_asks().remove(&request);
        metrics::counter!("jiva_copilot_remote_cancels_total", "outcome" => if taken { "taken" } else { "unanswered" })
            .increment(1);
        taken
    }

    fn lock_asks(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<()>>> {
        self.asks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An event another server published (the transport hands every event here; those that
    /// are not the relay's are ignored).
    pub fn received(&self, event: &ReceivedEvent) {
        let chat = &event.event.chat;
        match &event.event.kind {
            EventKind::CancelAsk { question, request }
                if cancel_in(&self.cancels, chat, *question) =>
            {
                self.for_others
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(*question, chat.clone());
                self.publish(
                    chat,
                    EventKind::CancelTaken {
                        request: request.clone(),
                    },
                );
            }
            EventKind::CancelTaken { request } => {
                if let Some(tx) = self.lock_asks().remove(request) {
                    let _ = tx.send(());
                }
            }
            EventKind::TurnCancelled { question, answer } => {
                let ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(tx) = ended.as_ref() {
                    let _ = tx.send((
                        chat.clone(),
                        RemoteEnd {
                            question: *question,
                            answer: *answer,
                        },
                    ));
                }
            }
            _ => {}
        }
    }

    /// The turn answering `question` ended here; when another server asked to cancel it, that
    /// server (and any other) is told, so it ends the turn on its sockets.
    pub(crate) fn turn_ended(&self, chat: &ChatId, question: MessageId, answer: Option<MessageId>) {
        let asked = self
            .for_others
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&question);
        if asked.is_some() {
            self.publish(chat, EventKind::TurnCancelled { question, answer });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiva_core::{AgentId, ConnectionType, MockBus};

    fn chat() -> ChatId {
        ChatId::new(AgentId::parse("a-1").unwrap(), ConnectionType::Copilot)
    }

    fn from_other(kind: EventKind) -> ReceivedEvent {
        ReceivedEvent {
            from: "other".into(),
            event: ChatEvent { chat: chat(), kind },
        }
    }

    #[test]
    fn an_ask_for_a_turn_here_cancels_it_answers_and_publishes_its_end_once() {
        let published = Arc::new(Mutex::new(Vec::new()));
        let mut bus = MockBus::new();
        let seen = Arc::clone(&published);
        bus.expect_publish_event()
            .returning(move |e| seen.lock().unwrap().push(e.kind.clone()));
        let relay = CancelRelay::new(Arc::new(bus));
        let question = MessageId::new_v7();
        let token = CancellationToken::new();
        relay
            .cancels()
            .lock()
            .unwrap()
            .insert(question, (chat(), token.clone()));
        // An ask about another question is not answered.
        relay.received(&from_other(EventKind::CancelAsk {
            question: MessageId::new_v7(),
            request: "r-0".into(),
        }));
        relay.received(&from_other(EventKind::CancelAsk {
            question,
            request: "r-1".into(),
        }));
        assert!(token.is_cancelled());
        let answer = Some(MessageId::new_v7());
        relay.turn_ended(&chat(), question, answer);
        relay.turn_ended(&chat(), question, answer);
        assert_eq!(
            *published.lock().unwrap(),
            vec![
                EventKind::CancelTaken {
                    request: "r-1".into()
                },
                EventKind::TurnCancelled { question, answer },
            ]
        );
    }

    #[tokio::test]
    async fn an_ask_is_confirmed_by_its_answer_and_otherwise_refused_after_the_wait() {
        tokio::time::pause();
        let mut bus = MockBus::new();
        bus.expect_publish_event().returning(|_| ());
        let relay = Arc::new(CancelRelay::new(Arc::new(bus)));
        let asking = {
            let relay = Arc::clone(&relay);
            tokio::spawn(async move { relay.ask(&chat(), MessageId::new_v7()).await })
        };
        // The ask is registered once the task ran; then its answer arrives.
        while relay.lock_asks().is_empty() {
            tokio::task::yield_now().await;
        }
        let request = relay.lock_asks().keys().next().unwrap().clone();
        relay.received(&from_other(EventKind::CancelTaken { request }));
        assert!(asking.await.unwrap());
        // Nobody answers: refused once the wait is over.
        assert!(!relay.ask(&chat(), MessageId::new_v7()).await);
    }
}
