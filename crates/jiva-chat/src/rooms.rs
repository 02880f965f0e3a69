//! Rooms: the subscribers (sockets) of each chat on this server, and fan-out to them.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiva_core::{ChatId, Seq};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::sequencer::{GAP_WAIT, Gap, Sequencer};

/// One subscriber's place in a room: a socket's bounded outbound queue of frames.
pub struct Subscriber<F> {
    /// The subscriber's id, unique on this server (the transport's connection id).
    pub conn: u64,
    /// Where its frames go. A full queue marks the subscriber slow.
    pub tx: mpsc::Sender<F>,
    /// Cancelled when the queue overflows: the transport closes it as a slow consumer.
    pub slow: CancellationToken,
}

impl<F> Subscriber<F> {
    /// Queues `frame`; a full queue marks the socket slow. Returns false when the socket is
    /// gone or slow, so the room can forget it.
    pub(crate) fn offer(&self, frame: F) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                close_slow(self.conn, &self.slow);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

/// Marks socket `conn` slow, so its writer closes it; counted and logged once per socket.
fn close_slow(conn: u64, slow: &CancellationToken) {
    if !slow.is_cancelled() {
        metrics::counter!("jiva_slow_consumer_closes_total").increment(1);
        tracing::warn!(conn, "closing a slow consumer");
    }
    slow.cancel();
}

/// An append in flight (see [`Rooms::begin`]); dropping it ends the append as failed.
pub(crate) struct InFlight<'a, F: Clone> {
    rooms: &'a Rooms<F>,
    /// `None` once shown.
    chat: Option<ChatId>,
}

impl<F: Clone> Drop for InFlight<'_, F> {
    fn drop(&mut self) {
        let Some(chat) = self.chat.take() else {
            return;
        };
        let mut rooms = self
            .rooms
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(Room { subscribers, order }) = rooms.get_mut(&chat) {
            order.end();
            // The number it may have taken will not come: fill the gap if others have waited.
            let gap = order.expire(Instant::now(), GAP_WAIT, &mut |f| {
                Room::offer(subscribers, &f)
            });
            self.rooms.fill(&chat, order, subscribers, gap);
        }
    }
}

/// What the filler of a chat's sequence gaps does after a fill (frames read from the store may
/// be held behind another missing number, with no task waiting for them but the filler's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFill {
    /// Fill this gap too: it has waited long enough.
    Fill(Gap),
    /// Frames are still held: call [`Rooms::recheck`] at this time.
    Wait(Instant),
    /// Nothing is held (or another fill is awaited, whose filler goes on).
    Done,
}

struct Room<F> {
    subscribers: Vec<Subscriber<F>>,
    /// Stored frames leave in the chat's sequence order.
    order: Sequencer<F>,
}

impl<F> Default for Room<F> {
    fn default() -> Self {
        Self {
            subscribers: Vec::new(),
            order: Sequencer::default(),
        }
    }
}

impl<F: Clone> Room<F> {
    /// Queues `frame` on every socket; sockets that cannot keep up are closed and forgotten.
    fn offer(subscribers: &mut Vec<Subscriber<F>>, frame: &F) {
        subscribers.retain(|s| s.offer(frame.clone()));
        metrics::counter!("jiva_frames_out_total").increment(subscribers.len() as u64);
    }
}

/// Every chat that has at least one socket. Broadcasts to one chat are serialised, so every
/// socket of a chat sees its frames in the same order.
pub(crate) struct Rooms<F> {
    rooms: Mutex<HashMap<ChatId, Room<F>>>,
    /// Where gaps to fill from the store go (see `sequencer`); without it, or when it is full,
    /// a gap is skipped.
    filler: Option<mpsc::Sender<(ChatId, Gap)>>,
}

impl<F> Default for Rooms<F> {
    fn default() -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            filler: None,
        }
    }
}

impl<F> Rooms<F> {
    /// Rooms whose timed-out sequence gaps are sent to `filler`, to be filled from the store
    /// and handed back with [`Rooms::filled`].
    pub fn with_filler(filler: mpsc::Sender<(ChatId, Gap)>) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            filler: Some(filler),
        }
    }
}

impl<F: Clone> Rooms<F> {
    /// Adds a socket to its chat's room. Returns the number of the next stored frame the room
    /// will deliver, when the room knows it (the socket receives every stored frame from that
    /// number on live, so its replay needs only the messages before it), and whether the room
    /// is new.
    pub fn join(&self, chat: &ChatId, subscriber: Subscriber<F>) -> (Option<Seq>, bool) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let room = rooms.entry(chat.clone()).or_default();
        let first = room.subscribers.is_empty();
        if first {
            metrics::gauge!("jiva_chats_open").increment(1.0);
        }
        room.subscribers.push(subscriber);
        (room.order.next().map(Seq::new), first)
    }

    /// Removes socket `conn` from its chat's room; true when that was the room's last socket
    /// (the room is gone).
    pub fn leave(&self, chat: &ChatId, conn: u64) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(room) = rooms.get_mut(chat) {
            room.subscribers.retain(|s| s.conn != conn);
            if room.subscribers.is_empty() {
                rooms.remove(chat);
                metrics::gauge!("jiva_chats_open").decrement(1.0);
                return true;
            }
        }
        false
    }

    /// Queues `frame` on every socket of `chat`; sockets that cannot keep up are closed.
    /// Returns how many sockets it was queued on.
    pub fn broadcast(&self, chat: &ChatId, frame: &F) -> usize {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(room) = rooms.get_mut(chat) else {
            return 0;
        };
        Room::offer(&mut room.subscribers, frame);
        room.subscribers.len()
    }

    /// An append of `chat` starts: until the returned guard is shown or dropped, a missing
    /// number in the chat is waited for longer (see `sequencer`).
    pub fn begin(&self, chat: &ChatId) -> InFlight<'_, F> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(room) = rooms.get_mut(chat) {
            room.order.begin();
        }
        InFlight {
            rooms: self,
            chat: Some(chat.clone()),
        }
    }

    /// Shows the stored frame number `seq` to every socket of `chat`, in the chat's sequence
    /// order: at once when it is the next one (with the held frames it unblocks), otherwise it
    /// is held and the returned receiver resolves when it goes out. The caller then waits for
    /// that, at most [`GAP_WAIT`], and calls [`Rooms::expire`].
    pub fn show(
        &self,
        mut flight: InFlight<'_, F>,
        seq: Seq,
        frame: F,
    ) -> Option<oneshot::Receiver<()>> {
        // The append ends here, under the same lock as its frame is pushed.
        let chat = flight.chat.take()?;
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let room = rooms.get_mut(&chat)?;
        let Room { subscribers, order } = room;
        order.end();
        let now = Instant::now();
        // Gaps older than the wait are filled by whoever comes next, even if the task that
        // waits for them is gone.
        let gap = order.expire(now, GAP_WAIT, &mut |f| Room::offer(subscribers, &f));
        self.fill(&chat, order, subscribers, gap);
        order.push(seq.get(), frame, now, &mut |f| Room::offer(subscribers, &f))
    }

    /// Shows stored frame number `seq` of `chat` that another server stored (it came over the
    /// bus): it enters the same sequencer as this server's own frames, but is no append of
    /// this server's. Returns a receiver when the frame is held (see [`Rooms::show`]); `None`
    /// also when no socket of `chat` is here.
    pub fn show_remote(&self, chat: &ChatId, seq: Seq, frame: F) -> Option<oneshot::Receiver<()>> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let Room { subscribers, order } = rooms.get_mut(chat)?;
        let now = Instant::now();
        let gap = order.expire(now, GAP_WAIT, &mut |f| Room::offer(subscribers, &f));
        self.fill(chat, order, subscribers, gap);
        order.push(seq.get(), frame, now, &mut |f| Room::offer(subscribers, &f))
    }

    /// Fills (or skips) the sequence gaps of `chat` that have waited long enough.
    pub fn expire(&self, chat: &ChatId) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Room { subscribers, order }) = rooms.get_mut(chat) {
            let gap = order.expire(Instant::now(), GAP_WAIT, &mut |f| {
                Room::offer(subscribers, &f)
            });
            self.fill(chat, order, subscribers, gap);
        }
    }

    /// Sends `gap` of `chat` to be filled from the store; without a filler (or with its queue
    /// full: `jiva_seq_fills_refused_total`) skips it at once, as far as it can.
    fn fill(
        &self,
        chat: &ChatId,
        order: &mut Sequencer<F>,
        subscribers: &mut Vec<Subscriber<F>>,
        mut gap: Option<Gap>,
    ) {
        while let Some(this) = gap {
            let sent = self
                .filler
                .as_ref()
                .is_some_and(|filler| filler.try_send((chat.clone(), this)).is_ok());
            if sent {
                return;
            }
            if self.filler.is_some() {
                metrics::counter!("jiva_seq_fills_refused_total").increment(1);
            }
            let now = Instant::now();
            order.fill(this, Vec::new(), now, &mut |f| Room::offer(subscribers, &f));
            gap = order.expire(now, GAP_WAIT, &mut |f| Room::offer(subscribers, &f));
        }
    }

    /// The store's answer to a fill of `gap` (sent by [`Rooms::expire`] and friends): the
    /// frames of the chat's messages numbered after `gap.after`, by number. Says what the
    /// filler does next (see [`AfterFill`]).
    pub fn filled(&self, chat: &ChatId, gap: Gap, frames: Vec<(u64, F)>) -> AfterFill {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(Room { subscribers, order }) = rooms.get_mut(chat) else {
            return AfterFill::Done;
        };
        let now = Instant::now();
        order.fill(gap, frames, now, &mut |f| Room::offer(subscribers, &f));
        Self::after_fill(order, subscribers, now)
    }

    /// Looks at `chat` again for the filler (see [`AfterFill::Wait`]).
    pub fn recheck(&self, chat: &ChatId) -> AfterFill {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(Room { subscribers, order }) = rooms.get_mut(chat) else {
            return AfterFill::Done;
        };
        Self::after_fill(order, subscribers, Instant::now())
    }

    fn after_fill(
        order: &mut Sequencer<F>,
        subscribers: &mut Vec<Subscriber<F>>,
        now: Instant,
    ) -> AfterFill {
        match order.expire(now, GAP_WAIT, &mut |f| Room::offer(subscribers, &f)) {
            Some(gap) => AfterFill::Fill(gap),
            None => order
                .next_check(GAP_WAIT)
                .map_or(AfterFill::Done, AfterFill::Wait),
        }
    }

    /// A socket of `chat` replayed its history, whose last number was `last` (0: none): a room
    /// that does not know where its chat is yet starts there.
    pub fn replayed(&self, chat: &ChatId, last: u64) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Room { subscribers, order }) = rooms.get_mut(chat) {
            order.baseline(last, &mut |f| Room::offer(subscribers, &f));
        }
    }

    /// Waits, at most `patience`, until every socket of `chat` has room for `frames` more
    /// frames (its whole queue, if that is smaller), so that a producer as fast as a copilot
    /// answer arriving all at once goes at the pace of the sockets instead of overflowing
    /// them. A socket still short of room after `patience` is closed as a slow consumer.
    pub async fn wait_for_room(&self, chat: &ChatId, frames: usize, patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            let short = {
                let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
                rooms.get(chat).and_then(|room| {
                    room.subscribers
                        .iter()
                        .find(|s| {
                            !s.tx.is_closed()
                                && !s.slow.is_cancelled()
                                && s.tx.capacity() < frames.min(s.tx.max_capacity())
                        })
                        .map(|s| (s.conn, s.tx.clone(), s.slow.clone()))
                })
            };
            let Some((conn, tx, slow)) = short else {
                return;
            };
            let wanted = frames.min(tx.max_capacity());
            // The permits are dropped at once: the room is there for the next broadcast.
            match tokio::time::timeout_at(deadline, tx.reserve_many(wanted)).await {
                Ok(Ok(_permits)) => {}
                Ok(Err(_closed)) => {}
                Err(_elapsed) => close_slow(conn, &slow),
            }
        }
    }

    /// Sockets of `chat`.
    pub fn sockets(&self, chat: &ChatId) -> usize {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        rooms.get(chat).map_or(0, |r| r.subscribers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiva_core::{AgentId, ConnectionType};

    fn chat(agent: &str) -> ChatId {
        ChatId::new(AgentId::parse(agent).unwrap(), ConnectionType::Supervisor)
    }

    fn frame(n: u8) -> String {
        format!("{n}")
    }

    #[test]
    fn broadcast_stays_in_its_chat_and_rooms_are_removed_when_empty() {
        let rooms = Rooms::<String>::default();
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        rooms.join(
            &chat("a"),
            Subscriber {
                conn: 1,
                tx: tx1,
                slow: CancellationToken::new(),
            },
        );
        rooms.join(
            &chat("b"),
            Subscriber {
                conn: 2,
                tx: tx2,
                slow: CancellationToken::new(),
            },
        );
        assert_eq!(rooms.broadcast(&chat("a"), &frame(1)), 1);
        assert_eq!(&*rx1.try_recv().unwrap(), "1");
        assert!(rx2.try_recv().is_err());
        rooms.leave(&chat("a"), 1);
        assert_eq!(rooms.sockets(&chat("a")), 0);
        assert_eq!(rooms.broadcast(&chat("a"), &frame(2)), 0);
        assert!(rooms.rooms.lock().unwrap().get(&chat("a")).is_none());
    }

    #[test]
    fn a_full_queue_marks_only_that_socket_slow() {
        let rooms = Rooms::<String>::default();
        let (slow_tx, _slow_rx) = mpsc::channel(1);
        let (fast_tx, mut fast_rx) = mpsc::channel(8);
        let slow = CancellationToken::new();
        rooms.join(
            &chat("a"),
            Subscriber {
                conn: 1,
                tx: slow_tx,
                slow: slow.clone(),
            },
        );
        rooms.join(
            &chat("a"),
            Subscriber {
                conn: 2,
                tx: fast_tx,
                slow: CancellationToken::new(),
            },
        );
        rooms.broadcast(&chat("a"), &frame(1));
        assert!(!slow.is_cancelled());
        assert_eq!(rooms.broadcast(&chat("a"), &frame(2)), 1);
        assert!(slow.is_cancelled());
        assert_eq!(rooms.sockets(&chat("a")), 1);
        assert_eq!(&*fast_rx.try_recv().unwrap(), "1");
        assert_eq!(&*fast_rx.try_recv().unwrap(), "2");
    }
}
