//! Rooms: the subscribers (sockets) of each chat on this server, and fan-out to them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
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
    /// The chat's room when the append began; `None` once shown, or when the chat had no room.
    room: Option<Shared<F>>,
}

impl<F: Clone> Drop for InFlight<'_, F> {
    fn drop(&mut self) {
        let Some(room) = self.room.take() else {
            return;
        };
        let mut room = room.lock().unwrap_or_else(PoisonError::into_inner);
        if room.gone {
            return;
        }
        let gap = room.sequence(|order, mut deliver| {
            order.end();
            // The number it may have taken will not come: fill the gap if others have waited.
            order.expire(Instant::now(), GAP_WAIT, &mut deliver)
        });
        room.fill(self.rooms.filler.as_ref(), gap);
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
    /// The room's chat (where its gaps are filled from).
    chat: ChatId,
    subscribers: Vec<Subscriber<F>>,
    /// `jiva_frames_out_total`, registered once per room rather than looked up per frame.
    frames_out: metrics::Counter,
    /// Stored frames leave in the chat's sequence order.
    order: Sequencer<F>,
    /// Set when the room leaves the map (its last socket left): a handle taken before then
    /// (an append in flight) finds the chat's current room by its id instead.
    gone: bool,
}

impl<F> Room<F> {
    fn new(chat: ChatId, others_append: bool) -> Self {
        Self {
            chat,
            subscribers: Vec::new(),
            frames_out: metrics::counter!("jiva_frames_out_total"),
            order: if others_append {
                Sequencer::with_other_writers()
            } else {
                Sequencer::default()
            },
            gone: false,
        }
    }
}

impl<F: Clone> Room<F> {
    /// Queues `frame` on every socket; sockets that cannot keep up are closed and forgotten.
    fn offer(subscribers: &mut Vec<Subscriber<F>>, frames_out: &metrics::Counter, frame: &F) {
        subscribers.retain(|s| s.offer(frame.clone()));
        frames_out.increment(subscribers.len() as u64);
    }

    /// Runs `step` on the room's sequencer, with what it delivers offered to the sockets.
    fn sequence<T>(&mut self, step: impl FnOnce(&mut Sequencer<F>, &mut dyn FnMut(F)) -> T) -> T {
        let Room {
            subscribers,
            frames_out,
            order,
            ..
        } = self;
        step(order, &mut |f| Room::offer(subscribers, frames_out, &f))
    }

    /// Pushes stored frame number `seq` through the room's sequencer (see [`Rooms::show`]).
    fn push(
        &mut self,
        seq: Seq,
        frame: F,
        filler: Option<&mpsc::Sender<(ChatId, Gap)>>,
    ) -> Option<oneshot::Receiver<()>> {
        let now = Instant::now();
        // Gaps older than the wait are filled by whoever comes next, even if the task that
        // waits for them is gone.
        let gap = self.sequence(|order, mut deliver| order.expire(now, GAP_WAIT, &mut deliver));
        self.fill(filler, gap);
        self.sequence(|order, mut deliver| order.push(seq.get(), frame, now, &mut deliver))
    }

    /// Sends `gap` to `filler` to be filled from the store; without a filler (or with its queue
    /// full: `jiva_seq_fills_refused_total`) skips it at once, as far as it can.
    fn fill(&mut self, filler: Option<&mpsc::Sender<(ChatId, Gap)>>, mut gap: Option<Gap>) {
        while let Some(this) = gap {
            let sent =
                filler.is_some_and(|filler| filler.try_send((self.chat.clone(), this)).is_ok());
            if sent {
                return;
            }
            if filler.is_some() {
                metrics::counter!("jiva_seq_fills_refused_total").increment(1);
            }
            let now = Instant::now();
            gap = self.sequence(|order, mut deliver| {
                order.skip(this, &mut deliver);
                order.expire(now, GAP_WAIT, &mut deliver)
            });
        }
    }

    /// What the filler does next (see [`AfterFill`]).
    fn after_fill(&mut self, now: Instant) -> AfterFill {
        self.sequence(
            |order, mut deliver| match order.expire(now, GAP_WAIT, &mut deliver) {
                Some(gap) => AfterFill::Fill(gap),
                None => order
                    .next_check(GAP_WAIT)
                    .map_or(AfterFill::Done, AfterFill::Wait),
            },
        )
    }
}

/// A room, shared between the map of rooms and the appends in flight in its chat.
type Shared<F> = Arc<Mutex<Room<F>>>;

/// Every chat that has at least one socket. Broadcasts to one chat are serialised, so every
/// socket of a chat sees its frames in the same order.
///
/// Each room has a lock of its own: the map's lock is held only to find (or add, or remove) a
/// room, and an append takes its chat's room once, in [`Rooms::begin`], for the whole of its
/// way to [`Rooms::show`]. Lock order: the map, then a room.
pub(crate) struct Rooms<F> {
    rooms: Mutex<HashMap<ChatId, Shared<F>>>,
    /// Where gaps to fill from the store go (see `sequencer`); without it, or when it is full,
    /// a gap is skipped.
    filler: Option<mpsc::Sender<(ChatId, Gap)>>,
    /// Whether other servers append to the same chats (see `sequencer`).
    others_append: bool,
}

impl<F> Default for Rooms<F> {
    fn default() -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            filler: None,
            others_append: false,
        }
    }
}

impl<F> Rooms<F> {
    /// Rooms whose timed-out sequence gaps are sent to `filler`, to be filled from the store
    /// and handed back with [`Rooms::filled`]; `others_append` when other servers append to
    /// the same chats (a cluster: see `sequencer`).
    pub fn with_filler(filler: mpsc::Sender<(ChatId, Gap)>, others_append: bool) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            filler: Some(filler),
            others_append,
        }
    }
}

impl<F: Clone> Rooms<F> {
    /// The room of `chat`, if it has one.
    fn room(&self, chat: &ChatId) -> Option<Shared<F>> {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        rooms.get(chat).map(Arc::clone)
    }

    /// Runs `f` on the room of `chat` under its lock; `None` when the chat has no room.
    fn with_room<T>(&self, chat: &ChatId, f: impl FnOnce(&mut Room<F>) -> T) -> Option<T> {
        loop {
            let shared = self.room(chat)?;
            let mut room = shared.lock().unwrap_or_else(PoisonError::into_inner);
            // Removed between the look-up and the lock: the chat may have a new room already.
            if !room.gone {
                return Some(f(&mut room));
            }
        }
    }

    /// Adds a socket to its chat's room. Returns the number of the next stored frame the room
    /// will deliver, when the room knows it (the socket receives every stored frame from that
    /// number on live, so its replay needs only the messages before it), and whether the room
    /// is new.
    pub fn join(&self, chat: &ChatId, subscriber: Subscriber<F>) -> (Option<Seq>, bool) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let shared = rooms
            .entry(chat.clone())
            .or_insert_with(|| Arc::new(Mutex::new(Room::new(chat.clone(), self.others_append))));
        let mut room = shared.lock().unwrap_or_else(PoisonError::into_inner);
        let first = room.subscribers.is_empty();
        if first {
            metrics::gauge!("jiva_chats_open").increment(1.0);
        }
        // Most chats have one or two sockets: room for one, where `Vec`'s first growth would
        // reserve four (an idle socket's room holds 72 bytes less).
        if room.subscribers.capacity() == 0 {
            room.subscribers.reserve_exact(1);
        }
        room.subscribers.push(subscriber);
        (room.order.next().map(Seq::new), first)
    }

    /// Removes socket `conn` from its chat's room; true when that was the room's last socket
    /// (the room is gone).
    pub fn leave(&self, chat: &ChatId, conn: u64) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(shared) = rooms.get(chat) else {
            return false;
        };
        let mut room = shared.lock().unwrap_or_else(PoisonError::into_inner);
        room.subscribers.retain(|s| s.conn != conn);
        if !room.subscribers.is_empty() {
            return false;
        }
        room.gone = true;
        drop(room);
        rooms.remove(chat);
        metrics::gauge!("jiva_chats_open").decrement(1.0);
        true
    }

    /// Queues `frame` on every socket of `chat`; sockets that cannot keep up are closed.
    /// Returns how many sockets it was queued on.
    pub fn broadcast(&self, chat: &ChatId, frame: &F) -> usize {
        self.with_room(chat, |room| {
            Room::offer(&mut room.subscribers, &room.frames_out, frame);
            room.subscribers.len()
        })
        .unwrap_or(0)
    }

    /// An append of `chat` starts: until the returned guard is shown or dropped, a missing
    /// number in the chat is waited for longer (see `sequencer`). The guard holds the chat's
    /// room, so showing the frame does not look it up again.
    pub fn begin(&self, chat: &ChatId) -> InFlight<'_, F> {
        let room = self.room(chat).filter(|shared| {
            let mut room = shared.lock().unwrap_or_else(PoisonError::into_inner);
            if room.gone {
                return false;
            }
            room.order.begin();
            true
        });
        InFlight { rooms: self, room }
    }

    /// Shows the stored frame number `seq` of `chat` to every socket of the chat, in the
    /// chat's sequence order: at once when it is the next one (with the held frames it
    /// unblocks), otherwise it is held and the returned receiver resolves when it goes out.
    /// The caller then waits for that, at most [`GAP_WAIT`], and calls [`Rooms::expire`].
    pub fn show(
        &self,
        mut flight: InFlight<'_, F>,
        chat: &ChatId,
        seq: Seq,
        frame: F,
    ) -> Option<oneshot::Receiver<()>> {
        if let Some(shared) = flight.room.take() {
            let mut room = shared.lock().unwrap_or_else(PoisonError::into_inner);
            if !room.gone {
                // The append ends here, under the same lock as its frame is pushed.
                room.order.end();
                return room.push(seq, frame, self.filler.as_ref());
            }
        }
        // The chat had no room when the append began, or that room has gone since: the
        // chat's room now (if any) gets the frame, as a frame stored elsewhere would.
        self.show_remote(chat, seq, frame)
    }

    /// Shows stored frame number `seq` of `chat` that another server stored (it came over the
    /// bus): it enters the same sequencer as this server's own frames, but is no append of
    /// this server's. Returns a receiver when the frame is held (see [`Rooms::show`]); `None`
    /// also when no socket of `chat` is here.
    pub fn show_remote(&self, chat: &ChatId, seq: Seq, frame: F) -> Option<oneshot::Receiver<()>> {
        let filler = self.filler.as_ref();
        self.with_room(chat, |room| room.push(seq, frame, filler))
            .flatten()
    }

    /// Fills (or skips) the sequence gaps of `chat` that have waited long enough.
    pub fn expire(&self, chat: &ChatId) {
        let filler = self.filler.as_ref();
        self.with_room(chat, |room| {
            let gap = room.sequence(|order, mut deliver| {
                order.expire(Instant::now(), GAP_WAIT, &mut deliver)
            });
            room.fill(filler, gap);
        });
    }

    /// The store's answer to a fill of `gap` (sent by [`Rooms::expire`] and friends): the
    /// frames of the chat's messages numbered after `gap.after`, by number. Says what the
    /// filler does next (see [`AfterFill`]).
    pub fn filled(&self, chat: &ChatId, gap: Gap, frames: Vec<(u64, F)>) -> AfterFill {
        self.with_room(chat, |room| {
            let now = Instant::now();
            room.sequence(|order, mut deliver| order.fill(gap, frames, now, &mut deliver));
            room.after_fill(now)
        })
        .unwrap_or(AfterFill::Done)
    }

    /// Looks at `chat` again for the filler (see [`AfterFill::Wait`]).
    pub fn recheck(&self, chat: &ChatId) -> AfterFill {
        self.with_room(chat, |room| room.after_fill(Instant::now()))
            .unwrap_or(AfterFill::Done)
    }

    /// A socket of `chat` replayed its history, whose last number was `last` (0: none): a room
    /// that does not know where its chat is yet starts there. `ahead` are frames the replay
    /// read past a number that may still arrive (see [`Sequencer::ahead`]). Returns the number
    /// the room delivers next, and what its held frames need (see [`AfterFill`]).
    pub fn replayed(
        &self,
        chat: &ChatId,
        last: u64,
        ahead: Vec<(u64, F)>,
    ) -> (Option<u64>, AfterFill) {
        self.with_room(chat, |room| {
            let now = Instant::now();
            let next = room.sequence(|order, mut deliver| {
                order.baseline(last, &mut deliver);
                order.ahead(ahead, now, &mut deliver);
                order.next()
            });
            (next, room.after_fill(now))
        })
        .unwrap_or((None, AfterFill::Done))
    }

    /// Waits, at most `patience`, until every socket of `chat` has room for `frames` more
    /// frames (its whole queue, if that is smaller), so that a producer as fast as a copilot
    /// answer arriving all at once goes at the pace of the sockets instead of overflowing
    /// them. A socket still short of room after `patience` is closed as a slow consumer.
    pub async fn wait_for_room(&self, chat: &ChatId, frames: usize, patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            let short = self
                .with_room(chat, |room| {
                    room.subscribers
                        .iter()
                        .find(|s| {
                            !s.tx.is_closed()
                                && !s.slow.is_cancelled()
                                && s.tx.capacity() < frames.min(s.tx.max_capacity())
                        })
                        .map(|s| (s.conn, s.tx.clone(), s.slow.clone()))
                })
                .flatten();
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
        self.with_room(chat, |room| room.subscribers.len())
            .unwrap_or(0)
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

    fn subscriber(conn: u64) -> (Subscriber<String>, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(4);
        let slow = CancellationToken::new();
        (Subscriber { conn, tx, slow }, rx)
    }

    #[test]
    fn an_append_shows_its_frame_in_the_chats_room_even_if_the_room_was_replaced_meanwhile() {
        let rooms = Rooms::<String>::default();
        let (first, _rx1) = subscriber(1);
        rooms.join(&chat("a"), first);
        rooms.replayed(&chat("a"), 0, Vec::new());
        // A socket joins `name`'s room (new or not) and replays an empty chat, then `flight`'s
        // frame is shown: what that socket receives.
        let join_then_show = |name: &str, conn: u64, flight: InFlight<String>| {
            let (sub, mut rx) = subscriber(conn);
            rooms.join(&chat(name), sub);
            rooms.replayed(&chat(name), 0, Vec::new());
            let held = rooms.show(flight, &chat(name), Seq::new(1), frame(1));
            assert!(held.is_none());
            rx.try_recv().unwrap()
        };
        let flight = rooms.begin(&chat("a"));
        // The room's last socket leaves during the append, and a new socket opens a new room.
        assert!(rooms.leave(&chat("a"), 1));
        assert_eq!(join_then_show("a", 2, flight), "1");
        // An append that began with no room at all is shown in the room there is then.
        let flight = rooms.begin(&chat("b"));
        assert_eq!(join_then_show("b", 3, flight), "1");
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
