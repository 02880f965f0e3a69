//! The chat service: what happens to a message once a transport has parsed and authorized it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use futures_util::StreamExt;
use jiva_core::{
    Appended, ChatId, ConnectionType, Cursor, HistoryPage, Incoming, Message, MessageId,
    MessageStore, Notification, Seq, StoreError,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ports::{CancelRefusal, Config, Encoder, Ports, Rejection, TurnEnding};
use crate::relay::{CancelRelay, RemoteEnd};
use crate::rooms::{AfterFill, Rooms, Subscriber};
use crate::sequencer::{GAP_WAIT, Gap};
use crate::turns::Turns;

/// What the chat service and its copilot turns share: the ports, the encoder and the rooms.
pub(crate) struct Core<E: Encoder> {
    pub config: Config,
    pub ports: Ports,
    pub encoder: E,
    pub rooms: Rooms<E::Frame>,
    /// Copilot turn tasks (the transport's tracker: shutdown waits for them).
    pub tracker: TaskTracker,
    /// Cancelled when the server starts shutting down: running turns end.
    pub shutdown: CancellationToken,
    /// See [`Core::meters`].
    pub meters: OnceLock<Meters>,
    /// Cancels of turns running on other servers, and theirs of turns running here.
    pub relay: Arc<CancelRelay>,
}

/// The metrics recorded for every message, registered once instead of looked up in the
/// recorder's registry per message.
pub(crate) struct Meters {
    messages_in: metrics::Counter,
    append_seconds: metrics::Histogram,
}

impl<E: Encoder> Core<E> {
    /// Registered on first use, by the first message: the embedding program installs its
    /// metrics recorder before it serves, but possibly after it made the service.
    fn meters(&self) -> &Meters {
        self.meters.get_or_init(|| Meters {
            messages_in: metrics::counter!("jiva_messages_in_total"),
            append_seconds: metrics::histogram!("jiva_store_append_seconds"),
        })
    }

    /// Stores `message` (setting its [`Message::seq`]), then shows it to every subscriber of
    /// its chat here, in the chat's sequence order, and publishes it to the bus. Nothing is
    /// shown or published that is not stored. When numbers before the message's are still on
    /// their way, this waits (at most [`GAP_WAIT`]) until the message has gone out, so that a
    /// sender's messages keep their order.
    ///
    /// A message whose id is already stored (a client's resend, see
    /// [`jiva_core::MessageId::for_client`]) is neither shown nor published again: it was when
    /// it was stored.
    pub async fn store_and_show(&self, message: &mut Message) -> Result<Appended, StoreError> {
        let started = Instant::now();
        // Counted in flight until shown; dropped (a failure) if the append fails.
        let flight = self.rooms.begin(&message.chat);
        let stored = self.ports.store.append(message).await;
        self.meters()
            .append_seconds
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = &stored {
            metrics::counter!("jiva_store_failures_total").increment(1);
            tracing::error!(chat = %message.chat, message_id = %message.id, error = %e, "storing a message failed");
        }
        let appended = stored?;
        let seq = appended.seq();
        message.seq = Some(seq);
        if let Appended::AlreadyStored(_) = appended {
            metrics::counter!("jiva_messages_resent_total").increment(1);
            return Ok(appended);
        }
        let frame = self.encoder.stored(message);
        self.ports.bus.publish(message);
        if let Some(shown) = self.rooms.show(flight, &message.chat, seq, frame) {
            if tokio::time::timeout(GAP_WAIT, shown).await.is_err() {
                self.rooms.expire(&message.chat);
            }
        }
        Ok(appended)
    }

    /// Queues `frame` on every subscriber of `chat` here, outside the sequence (copilot chunks,
    /// errors, `end`).
    pub fn broadcast(&self, chat: &ChatId, frame: &E::Frame) {
        self.rooms.broadcast(chat, frame);
    }

    /// Hands a notification to the notifier; failures are logged here, once.
    pub async fn notify(&self, notification: Notification) {
        if let Err(e) = self.ports.notifier.notify(notification).await {
            tracing::warn!(error = %e, "notification not accepted");
        }
    }

    /// Does what `after` says for the held frames of `chat`, and what the room says next, until
    /// nothing is held or another fill takes over: fills a gap from the store (see `sequencer`:
    /// reads the chat's newest messages and hands the frames after the gap to the room; a read
    /// that fails or takes longer than [`FILL_TIMEOUT`] skips it), or waits until frames read
    /// from the store (which no task waits for) have waited long enough.
    async fn settle(&self, chat: ChatId, mut after: AfterFill) {
        loop {
            after = match after {
                AfterFill::Fill(gap) => {
                    metrics::counter!("jiva_seq_gap_fills_total").increment(1);
                    let read = self.ports.store.recent(&chat, gap.window());
                    let frames = match tokio::time::timeout(FILL_TIMEOUT, read).await {
                        Ok(Ok(messages)) => messages
                            .iter()
                            .filter_map(|m| {
                                let seq = m.seq?.get();
                                (seq > gap.after).then(|| (seq, self.encoder.stored(m)))
                            })
                            .collect(),
                        Ok(Err(e)) => {
                            tracing::warn!(chat = %chat, error = %e, "reading the store to fill a sequence gap failed");
                            Vec::new()
                        }
                        Err(_) => {
                            tracing::warn!(chat = %chat, "reading the store to fill a sequence gap timed out");
                            Vec::new()
                        }
                    };
                    self.rooms.filled(&chat, gap, frames)
                }
                AfterFill::Wait(at) => {
                    tokio::time::sleep_until(at).await;
                    self.rooms.recheck(&chat)
                }
                AfterFill::Done => return,
            };
        }
    }

    /// Shows a message another server stored (from the bus): never stored or notified again.
    fn received(self: &Arc<Self>, message: &Message) {
        let Some(seq) = message.seq else {
            return;
        };
        let frame = self.encoder.stored(message);
        if let Some(shown) = self.rooms.show_remote(&message.chat, seq, frame) {
            // Held for a number still missing: make sure the gap is skipped after its wait
            // even if nothing else arrives in this chat.
            let core = Arc::clone(self);
            let chat = message.chat.clone();
            tokio::spawn(async move {
                if tokio::time::timeout(GAP_WAIT, shown).await.is_err() {
                    core.rooms.expire(&chat);
                }
            });
        }
    }
}

/// A chat service: stores, orders, shows, publishes and notifies a chat's messages, and runs
/// its copilot turns. Transports call it; they never decide what is stored or who is notified.
///
/// `E` is the transport's [`Encoder`]: subscribers receive its frames, each stored message
/// encoded once whatever the number of subscribers.
pub struct Chats<E: Encoder> {
    core: Arc<Core<E>>,
    turns: Turns<E>,
    registered: Mutex<HashSet<ChatId>>,
    /// Stops the task that receives the bus's messages.
    _receiving: tokio_util::sync::DropGuard,
}

impl<E: Encoder> Chats<E> {
    /// A chat service over `ports`. Copilot turns run on `tracker` and end when `shutdown` is
    /// cancelled. Messages from other servers are received on a task of the current tokio
    /// runtime (none is started outside one: then nothing is received).
    pub fn new(
        config: Config,
        ports: Ports,
        encoder: E,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        // Sequence gaps that time out are filled from the store by a task of the runtime.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let (filler, gaps) = tokio::sync::mpsc::channel(FILL_QUEUE);
        let rooms = match runtime {
            Some(_) => Rooms::with_filler(filler, !ports.bus.single_node()),
            None => Rooms::default(),
        };
        let relay = Arc::new(CancelRelay::new(Arc::clone(&ports.bus)));
        let core = Arc::new(Core {
            config,
            ports,
            encoder,
            rooms,
            tracker,
            shutdown,
            meters: OnceLock::new(),
            relay,
        });
        let stop = CancellationToken::new();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (tx, ended) = tokio::sync::mpsc::unbounded_channel();
            core.relay.on_ended(tx);
            runtime.spawn(end_remote_turns(Arc::downgrade(&core), ended, stop.clone()));
        }
        if let Some(runtime) = runtime {
            runtime.spawn(fill_gaps(Arc::downgrade(&core), gaps, stop.clone()));
        }
        match core.ports.bus.incoming() {
            Ok(incoming) => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(receive(Arc::downgrade(&core), incoming, stop.clone()));
                }
                Err(_) => {
                    tracing::warn!("no tokio runtime: messages of other servers are not received")
                }
            },
            Err(e) => tracing::warn!(error = %e, "the bus's incoming stream is unavailable"),
        }
        Self {
            turns: Turns::new(Arc::clone(&core)),
            core,
            registered: Mutex::new(HashSet::new()),
            _receiving: stop.drop_guard(),
        }
    }

    /// The store (for history replay and readiness).
    pub fn store(&self) -> &Arc<dyn MessageStore> {
        &self.core.ports.store
    }

    /// Whether the bus reaches the other servers now (always true on a single node).
    pub fn bus_connected(&self) -> bool {
        self.core.ports.bus.connected()
    }

    /// Registers `chat` in the store once per process (until its last subscriber leaves).
    pub async fn register(&self, chat: &ChatId) -> Result<(), StoreError> {
        let known = self
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(chat);
        if !known {
            self.core.ports.store.register_chat(chat).await?;
            let inserted = self
                .registered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(chat.clone());
            if inserted {
                metrics::gauge!("jiva_chats_registered").increment(1.0);
            }
        }
        Ok(())
    }

    /// Adds a subscriber to `chat` and, for its first, follows the chat on the bus. Returns the
    /// number of the next stored frame the chat will deliver here, when known: the subscriber
    /// receives every stored frame from that number on, so its replay needs only the messages
    /// before it. Then replay, and call [`Chats::replayed`].
    pub async fn join(&self, chat: &ChatId, subscriber: Subscriber<E::Frame>) -> Option<Seq> {
        let (start, first) = self.core.rooms.join(chat, subscriber);
        if first {
            self.follow(chat).await;
        }
        start
    }

    /// Removes subscriber `conn` from `chat`; with the last one gone, unfollows the chat on
    /// the bus and forgets that it is registered, so memory follows the open chats.
    pub async fn leave(&self, chat: &ChatId, conn: u64) {
        if !self.core.rooms.leave(chat, conn) {
            return;
        }
        let removed = self
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(chat);
        if removed {
            metrics::gauge!("jiva_chats_registered").decrement(1.0);
        }
        let bus = &self.core.ports.bus;
        if !bus.connected() {
            let (bus, chat) = (Arc::clone(bus), chat.clone());
            tokio::spawn(async move { unfollow(bus.as_ref(), &chat).await });
            return;
        }
        unfollow(bus.as_ref(), chat).await;
        // A subscriber that joined while this one left must not lose the chat.
        if self.core.rooms.sockets(chat) > 0 {
            self.follow(chat).await;
        }
    }

    async fn follow(&self, chat: &ChatId) {
        let bus = &self.core.ports.bus;
        if bus.connected() {
            if let Err(e) = bus.follow(chat).await {
                tracing::warn!(chat = %chat, error = %e, "following a chat on the bus failed");
            }
        } else {
            // The bus follows once it is back; a join does not wait for it.
            let (bus, chat) = (Arc::clone(bus), chat.clone());
            tokio::spawn(async move {
                if let Err(e) = bus.follow(&chat).await {
                    tracing::debug!(chat = %chat, error = %e, "following a chat on the bus failed");
                }
            });
        }
    }

    /// A page of `chat`'s history, oldest first (see [`MessageStore::history`]).
    pub async fn history(
        &self,
        chat: &ChatId,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        self.core.ports.store.history(chat, cursor, limit).await
    }

    /// A subscriber of `chat` replayed its history, with no number missing up to `last` (0:
    /// none): a chat that does not know where it is on this server yet starts there. `ahead`
    /// are the stored messages the replay read past a missing number that may still arrive
    /// ([`may_still_arrive`](crate::may_still_arrive)), not sent: they are shown after it, in
    /// order, or once its gap is filled from the store or skipped. Returns the number the chat
    /// delivers next here; when that is past `last + 1`, another subscriber's replay went
    /// further first, and the messages before it are the caller's to replay.
    pub fn replayed(&self, chat: &ChatId, last: u64, ahead: &[Message]) -> Option<Seq> {
        let frames: Vec<_> = ahead
            .iter()
            .filter_map(|m| Some((m.seq?.get(), self.core.encoder.stored(m))))
            .collect();
        let held = !frames.is_empty();
        let (next, after) = self.core.rooms.replayed(chat, last, frames);
        if held && after != AfterFill::Done {
            // No task waits for frames read from the store: this one fills or skips their gap.
            let core = Arc::clone(&self.core);
            let chat = chat.clone();
            tokio::spawn(async move { core.settle(chat, after).await });
        }
        next.map(Seq::new)
    }

    /// Subscribers of `chat` here.
    pub fn subscribers(&self, chat: &ChatId) -> usize {
        self.core.rooms.sockets(chat)
    }

    /// Accepts a message a transport parsed and authorized: admits it into its copilot chat's
    /// turn queue (a copilot chat), stores it, shows it to every subscriber of its chat (on
    /// every server), raises its notification and, on a copilot chat, queues the turn that
    /// answers it.
    pub async fn accept(&self, message: Message) -> Result<(), Rejection> {
        self.send(message).await.map(|_| ())
    }

    /// [`Chats::accept`], telling where the message was stored. A message whose id is already
    /// stored (a resend) is [`Appended::AlreadyStored`] with its number: nothing is shown,
    /// published or notified again and no copilot turn starts.
    pub async fn send(&self, mut message: Message) -> Result<Appended, Rejection> {
        self.core.meters().messages_in.increment(1);
        let ticket = match message.chat.kind() {
            ConnectionType::Copilot => Some(
                self.turns
                    .admit(&message.chat)
                    .ok_or(Rejection::CopilotBusy)?,
            ),
            ConnectionType::Supervisor => None,
        };
        let appended = self
            .core
            .store_and_show(&mut message)
            .await
            .map_err(|_| Rejection::NotStored)?;
        if let Appended::AlreadyStored(_) = appended {
            // The ticket, unused, gives its place in the copilot queue back.
            return Ok(appended);
        }
        let notification = Notification::for_message(&message);
        if let Some(ticket) = ticket {
            ticket.submit(message);
        }
        if let Some(notification) = notification {
            self.core.notify(notification).await;
        }
        Ok(appended)
    }
}

impl<E: Encoder> Chats<E> {
    /// Stops the copilot turn answering `question` in `chat`, waiting or running on this
    /// server: the copilot request is dropped, what came is stored marked as stopped, and the
    /// turn ends as every turn does ([`TurnEnding::Cancelled`](crate::TurnEnding)).
    pub fn cancel(&self, chat: &ChatId, question: MessageId) -> Result<(), CancelRefusal> {
        if chat.kind() != ConnectionType::Copilot {
            return Err(CancelRefusal::NotACopilotChat);
        }
        if self.turns.cancel(chat, question) {
            Ok(())
        } else {
            Err(CancelRefusal::NoSuchTurn)
        }
    }

    /// [`Chats::cancel`], and when the turn is not here but the chat's turn lease is held (a
    /// turn runs on another server of the cluster), asks the other servers through the bus:
    /// `Ok` once the server running or queueing it confirmed (see [`CancelRelay`]). That server
    /// ends the turn on its sockets and, when it has ended, this one ends it on its own.
    pub async fn cancel_anywhere(
        &self,
        chat: &ChatId,
        question: MessageId,
    ) -> Result<(), CancelRefusal> {
        match self.cancel(chat, question) {
            Err(CancelRefusal::NoSuchTurn) => {}
            done => return done,
        }
        match self.core.ports.turn_lock.held(chat).await {
            Ok(true) => {}
            Ok(false) => return Err(CancelRefusal::NoSuchTurn),
            Err(e) => {
                tracing::warn!(chat = %chat, error = %e, "cannot tell whether a turn runs elsewhere");
                return Err(CancelRefusal::NoSuchTurn);
            }
        }
        match self.core.relay.ask(chat, question).await {
            true => Ok(()),
            false => Err(CancelRefusal::NoSuchTurn),
        }
    }

    /// The relay of cancels between servers: the transport hands it the bus's events.
    pub fn cancel_relay(&self) -> Arc<CancelRelay> {
        Arc::clone(&self.core.relay)
    }
}

/// Ends, on this server's sockets, turns that another server cancelled for a client here.
async fn end_remote_turns<E: Encoder>(
    core: std::sync::Weak<Core<E>>,
    mut ended: tokio::sync::mpsc::UnboundedReceiver<(ChatId, RemoteEnd)>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            next = ended.recv() => next,
            () = stop.cancelled() => return,
        };
        let (Some((chat, end)), Some(core)) = (next, core.upgrade()) else {
            return;
        };
        let frame = core
            .encoder
            .turn_end(end.question, TurnEnding::Cancelled, end.answer);
        core.broadcast(&chat, &frame);
    }
}

async fn unfollow(bus: &dyn jiva_core::Bus, chat: &ChatId) {
    if let Err(e) = bus.unfollow(chat).await {
        tracing::debug!(chat = %chat, error = %e, "unfollowing a chat on the bus failed");
    }
}

/// Gap fills waiting for the task that starts them (at most one per room is outstanding; past
/// this, a gap is skipped: `jiva_seq_fills_refused_total`).
const FILL_QUEUE: usize = 1024;

/// How long a fill waits for the store (below [`MAX_WAIT`](crate::MAX_WAIT), after which the
/// room gives the fill up).
const FILL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts a fill from the store for each sequence gap that timed out, until the service is gone.
async fn fill_gaps<E: Encoder>(
    core: std::sync::Weak<Core<E>>,
    mut gaps: tokio::sync::mpsc::Receiver<(ChatId, Gap)>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            next = gaps.recv() => next,
            () = stop.cancelled() => return,
        };
        let Some((chat, gap)) = next else {
            return;
        };
        let Some(core) = core.upgrade() else {
            return;
        };
        tokio::spawn(async move { core.settle(chat, AfterFill::Fill(gap)).await });
    }
}

/// Shows the messages other servers published, until the bus or the service is gone.
async fn receive<E: Encoder>(
    core: std::sync::Weak<Core<E>>,
    mut incoming: Incoming,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            next = incoming.next() => next,
            () = stop.cancelled() => return,
        };
        let Some(message) = next else {
            return;
        };
        let Some(core) = core.upgrade() else {
            return;
        };
        core.received(&message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TextEncoder;
    use jiva_core::{
        AgentId, Appended, ChunkStream, CopilotChunk, MockBus, MockCopilot, MockMessageStore,
        MockNotifier, Sender,
    };
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::sync::mpsc;

    fn chat(kind: ConnectionType) -> ChatId {
        ChatId::new(AgentId::parse("agent-1").unwrap(), kind)
    }

    /// A bus that expects nothing but to be asked for its stream; `published` counts publishes.
    fn bus_with(incoming: mpsc::Receiver<Message>, published: Arc<AtomicU64>) -> MockBus {
        let mut bus = MockBus::new();
        bus.expect_single_node().return_const(false);
        bus.expect_incoming().return_once(move || {
            Ok(Box::pin(futures_util::stream::unfold(
                incoming,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            )))
        });
        bus.expect_connected().return_const(true);
        bus.expect_follow().returning(|_| Ok(()));
        bus.expect_unfollow().returning(|_| Ok(()));
        bus.expect_publish().returning(move |m| {
            assert!(m.seq.is_some(), "a published message carries its number");
            published.fetch_add(1, Ordering::SeqCst);
        });
        bus
    }

    /// A store that numbers appends 1, 2, 3... unless `fail`.
    fn numbering_store(fail: bool) -> MockMessageStore {
        let mut store = MockMessageStore::new();
        let next = AtomicU64::new(1);
        store.expect_append().returning(move |_| {
            if fail {
                return Err(StoreError::InvalidInput("refused".into()));
            }
            Ok(Appended::Stored(Seq::new(
                next.fetch_add(1, Ordering::SeqCst),
            )))
        });
        store
    }

    fn service(ports: Ports) -> Chats<TextEncoder> {
        Chats::new(
            Config::default(),
            ports,
            TextEncoder,
            TaskTracker::new(),
            CancellationToken::new(),
        )
    }

    fn subscriber(conn: u64) -> (Subscriber<String>, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(16);
        let slow = CancellationToken::new();
        (Subscriber { conn, tx, slow }, rx)
    }

    /// Says "hello" on a supervisor chat with one subscriber, on a store that numbers or
    /// (`fail`) refuses, expecting `notifications`; returns the answer, the frames shown and
    /// the messages published.
    async fn hello(fail: bool, notifications: usize) -> (Result<(), Rejection>, Vec<String>, u64) {
        let published = Arc::new(AtomicU64::new(0));
        let (_remote, incoming) = mpsc::channel(1);
        let mut notifier = MockNotifier::new();
        notifier
            .expect_notify()
            .times(notifications)
            .returning(|_| Ok(()));
        let chats = service(
            Ports::new(Arc::new(numbering_store(fail)))
                .with_notifier(Arc::new(notifier))
                .with_bus(Arc::new(bus_with(incoming, Arc::clone(&published)))),
        );
        let chat = chat(ConnectionType::Supervisor);
        let (sub, mut rx) = subscriber(1);
        assert_eq!(chats.join(&chat, sub).await, None);
        chats.replayed(&chat, 0, &[]);
        let message = Message::user(chat.clone(), Sender::Agent, "hello".into());
        let accepted = chats.accept(message).await;
        let mut frames = Vec::new();
        while let Ok(frame) = rx.try_recv() {
            frames.push(frame);
        }
        (accepted, frames, published.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_stored_message_is_shown_published_and_notified_once() {
        let (accepted, frames, published) = hello(false, 1).await;
        assert_eq!(accepted, Ok(()));
        assert_eq!(frames, ["1:hello"]);
        assert_eq!(published, 1);
    }

    #[tokio::test]
    async fn a_message_the_store_refuses_is_not_shown_published_or_notified() {
        let (accepted, frames, published) = hello(true, 0).await;
        assert_eq!(accepted, Err(Rejection::NotStored));
        assert!(frames.is_empty());
        assert_eq!(published, 0);
    }

    #[tokio::test]
    async fn messages_from_other_servers_join_the_chats_order_and_are_never_stored_or_notified() {
        let published = Arc::new(AtomicU64::new(0));
        let (remote, incoming) = mpsc::channel(4);
        let mut notifier = MockNotifier::new();
        // Only this server's own message is notified.
        notifier.expect_notify().times(1).returning(|_| Ok(()));
        let mut store = MockMessageStore::new();
        // This server's append gets number 2: number 1 is another server's.
        store
            .expect_append()
            .times(1)
            .returning(|_| Ok(Appended::Stored(Seq::new(2))));
        let chats = service(
            Ports::new(Arc::new(store))
                .with_notifier(Arc::new(notifier))
                .with_bus(Arc::new(bus_with(incoming, Arc::clone(&published)))),
        );
        let chat = chat(ConnectionType::Supervisor);
        let (sub, mut rx) = subscriber(1);
        chats.join(&chat, sub).await;
        chats.replayed(&chat, 0, &[]);
        let local = Message::user(chat.clone(), Sender::Agent, "local".into());
        let (accepted, ()) = tokio::join!(chats.accept(local), async {
            let mut other = Message::user(chat.clone(), Sender::Supervisor, "remote".into());
            other.seq = Some(Seq::new(1));
            remote.send(other).await.unwrap();
        });
        accepted.unwrap();
        assert_eq!(rx.recv().await.unwrap(), "1:remote");
        assert_eq!(rx.recv().await.unwrap(), "2:local");
        assert_eq!(published.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bus_frame_later_than_the_gap_wait_is_shown_in_order_from_the_store() {
        let chat = chat(ConnectionType::Supervisor);
        let numbered = |n: u64, text: &str| {
            let mut m = Message::user(chat.clone(), Sender::Supervisor, text.into());
            m.seq = Some(Seq::new(n));
            m
        };
        let (one, two, three, four) = (
            numbered(1, "one"),
            numbered(2, "two"),
            numbered(3, "three"),
            numbered(4, "four"),
        );
        let mut store = MockMessageStore::new();
        // Another server stored 1, 2 and 3 (acknowledged); 2's bus frame is slow.
        let stored = vec![one.clone(), two.clone(), three.clone()];
        store
            .expect_recent()
            .times(1)
            .returning(move |asked, limit| {
                assert!(limit >= 2, "the read reaches back to the gap");
                assert_eq!(asked.kind(), ConnectionType::Supervisor);
                Ok(stored.clone())
            });
        let (remote, incoming) = mpsc::channel(8);
        let published = Arc::new(AtomicU64::new(0));
        let chats =
            service(Ports::new(Arc::new(store)).with_bus(Arc::new(bus_with(incoming, published))));
        let (sub, mut rx) = subscriber(1);
        chats.join(&chat, sub).await;
        chats.replayed(&chat, 0, &[]);
        remote.send(one).await.unwrap();
        remote.send(three).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), "1:one");
        // Time runs on (paused: it jumps) past the gap wait; the store fills the gap.
        let started = tokio::time::Instant::now();
        assert_eq!(rx.recv().await.unwrap(), "2:two");
        assert!(started.elapsed() >= GAP_WAIT);
        assert_eq!(rx.recv().await.unwrap(), "3:three");
        // 2's frame arrives at last: shown already, it is dropped; the chat goes on.
        remote.send(two).await.unwrap();
        remote.send(four).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), "4:four");
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn messages_a_replay_held_past_a_missing_number_go_out_after_it_or_once_it_is_skipped() {
        let chat = chat(ConnectionType::Supervisor);
        let numbered = |n: u64, text: &str| {
            let mut m = Message::user(chat.clone(), Sender::Supervisor, text.into());
            m.seq = Some(Seq::new(n));
            m
        };
        let (one, two, three) = (numbered(1, "one"), numbered(2, "two"), numbered(3, "three"));
        // First room: 2 comes (over the bus) after the replay held 3; nothing is read.
        let (remote, incoming) = mpsc::channel(8);
        let chats = service(
            Ports::new(Arc::new(MockMessageStore::new()))
                .with_bus(Arc::new(bus_with(incoming, Arc::default()))),
        );
        let (sub, mut rx) = subscriber(1);
        chats.join(&chat, sub).await;
        let next = chats.replayed(&chat, 1, std::slice::from_ref(&three));
        assert_eq!(next, Some(Seq::new(2)));
        assert!(rx.try_recv().is_err(), "3 waits for 2");
        remote.send(two).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), "2:two");
        assert_eq!(rx.recv().await.unwrap(), "3:three");

        // Second room: 2 never comes; after the wait, the store (which lacks it) is read and
        // 3 goes out alone, with no other message to push it.
        let mut store = MockMessageStore::new();
        let stored = vec![one, three.clone()];
        store
            .expect_recent()
            .returning(move |_, _| Ok(stored.clone()));
        let chats = service(Ports::new(Arc::new(store)));
        let (sub, mut rx) = subscriber(1);
        chats.join(&chat, sub).await;
        chats.replayed(&chat, 1, std::slice::from_ref(&three));
        let started = tokio::time::Instant::now();
        assert_eq!(rx.recv().await.unwrap(), "3:three");
        assert!(started.elapsed() >= GAP_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_number_the_store_lacks_after_the_wait_is_skipped_and_the_chat_goes_on() {
        let chat = chat(ConnectionType::Supervisor);
        let numbered = |n: u64| {
            let mut m = Message::user(chat.clone(), Sender::Supervisor, format!("m{n}"));
            m.seq = Some(Seq::new(n));
            m
        };
        // The store has 1, 2, 3 and 5: 4's append failed after taking its number.
        let stored: Vec<Message> = [1, 2, 3, 5].into_iter().map(numbered).collect();
        let reads = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&reads);
        let mut store = MockMessageStore::new();
        store.expect_recent().returning(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(stored.clone())
        });
        let (remote, incoming) = mpsc::channel(8);
        let chats = service(
            Ports::new(Arc::new(store))
                .with_bus(Arc::new(bus_with(incoming, Arc::new(AtomicU64::new(0))))),
        );
        let (sub, mut rx) = subscriber(1);
        chats.join(&chat, sub).await;
        chats.replayed(&chat, 0, &[]);
        let started = tokio::time::Instant::now();
        remote.send(numbered(1)).await.unwrap();
        remote.send(numbered(3)).await.unwrap();
        let mut shown = Vec::new();
        for _ in 0..4 {
            shown.push(rx.recv().await.unwrap());
        }
        // 2 and 5 came from the store: 5, held behind 4, is shown once 4 has been looked for
        // in the store each wait (another server's append of 4 may still be on its way) until
        // 5 has waited the longest wait, then skipped, with nothing else arriving in the chat.
        assert_eq!(shown, ["1:m1", "2:m2", "3:m3", "5:m5"]);
        assert!(started.elapsed() >= GAP_WAIT + crate::MAX_WAIT);
        let each_wait = crate::MAX_WAIT.as_secs() / GAP_WAIT.as_secs();
        assert!(reads.load(Ordering::SeqCst) > each_wait, "{reads:?}");
        // 5's bus frame, late, is dropped; 6 goes on.
        remote.send(numbered(5)).await.unwrap();
        remote.send(numbered(6)).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), "6:m6");
    }

    #[tokio::test]
    async fn a_chat_is_followed_while_it_has_subscribers_here() {
        let mut bus = MockBus::new();
        bus.expect_single_node().return_const(false);
        bus.expect_incoming()
            .return_once(|| Ok(Box::pin(futures_util::stream::empty())));
        bus.expect_connected().return_const(true);
        bus.expect_follow().times(1).returning(|_| Ok(()));
        bus.expect_unfollow().times(1).returning(|_| Ok(()));
        let mut store = MockMessageStore::new();
        store.expect_register_chat().times(1).returning(|_| Ok(()));
        let chats = service(Ports::new(Arc::new(store)).with_bus(Arc::new(bus)));
        let chat = chat(ConnectionType::Supervisor);
        chats.register(&chat).await.unwrap();
        chats.register(&chat).await.unwrap();
        let (one, _rx1) = subscriber(1);
        let (two, _rx2) = subscriber(2);
        chats.join(&chat, one).await;
        chats.join(&chat, two).await;
        chats.leave(&chat, 1).await;
        assert_eq!(chats.subscribers(&chat), 1);
        chats.leave(&chat, 2).await;
        assert_eq!(chats.subscribers(&chat), 0);
    }

    /// Asks "question" on a copilot chat whose copilot answers "answer", with `ports` given
    /// the store and the copilot; returns the frames its subscriber got once the turn ended.
    async fn one_turn(ports: impl FnOnce(Ports) -> Ports) -> Vec<String> {
        let mut store = numbering_store(false);
        store.expect_recent().returning(|_, _| Ok(Vec::new()));
        let mut copilot = MockCopilot::new();
        copilot.expect_ask().times(1).returning(|request| {
            assert_eq!(request.input, "question");
            let chunks: ChunkStream = Box::pin(futures_util::stream::iter([Ok(CopilotChunk {
                action: None,
                output: Some("answer".into()),
            })]));
            Ok(chunks)
        });
        let tracker = TaskTracker::new();
        let chats = Chats::new(
            Config::default(),
            ports(Ports::new(Arc::new(store)).with_copilot(Arc::new(copilot))),
            TextEncoder,
            tracker.clone(),
            CancellationToken::new(),
        );
        let chat = chat(ConnectionType::Copilot);
        let (sub, mut rx) = subscriber(1);
        chats.join(&chat, sub).await;
        chats.replayed(&chat, 0, &[]);
        let question = Message::user(chat.clone(), Sender::Agent, "question".into());
        chats.accept(question).await.unwrap();
        tracker.close();
        tracker.wait().await;
        let mut frames = Vec::new();
        while let Ok(frame) = rx.try_recv() {
            frames.push(frame);
        }
        frames
    }

    #[tokio::test]
    async fn a_copilot_turn_streams_stores_its_answer_and_ends() {
        let mut notifier = MockNotifier::new();
        // The answer (a question to the copilot raises none).
        notifier.expect_notify().times(1).returning(|_| Ok(()));
        let frames = one_turn(|ports| ports.with_notifier(Arc::new(notifier))).await;
        assert_eq!(frames, ["1:question", "chunk:answer", "2:answer", "end"]);
    }

    #[tokio::test]
    async fn cancel_ends_the_running_turn_with_what_came_and_a_waiting_one_is_never_asked() {
        let mut store = numbering_store(false);
        store.expect_recent().returning(|_, _| Ok(Vec::new()));
        let mut copilot = MockCopilot::new();
        // Only the first question is asked: a chunk, then nothing until the turn is cancelled.
        copilot.expect_ask().times(1).returning(|_| {
            let chunk = Ok(CopilotChunk {
                action: None,
                output: Some("part".into()),
            });
            let chunks: ChunkStream = Box::pin(
                futures_util::stream::iter([chunk]).chain(futures_util::stream::pending()),
            );
            Ok(chunks)
        });
        let tracker = TaskTracker::new();
        let chats = Chats::new(
            Config::default(),
            Ports::new(Arc::new(store)).with_copilot(Arc::new(copilot)),
            TextEncoder,
            tracker.clone(),
            CancellationToken::new(),
        );
        let copilot_chat = chat(ConnectionType::Copilot);
        let (sub, mut rx) = subscriber(1);
        chats.join(&copilot_chat, sub).await;
        chats.replayed(&copilot_chat, 0, &[]);
        let first = Message::user(copilot_chat.clone(), Sender::Agent, "q1".into());
        let first_id = first.id;
        chats.accept(first).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), "1:q1");
        assert_eq!(rx.recv().await.unwrap(), "chunk:part");
        let second = Message::user(copilot_chat.clone(), Sender::Agent, "q2".into());
        let second_id = second.id;
        chats.accept(second).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), "2:q2");
        assert_eq!(chats.cancel(&copilot_chat, second_id), Ok(()));
        assert_eq!(chats.cancel(&copilot_chat, first_id), Ok(()));
        tracker.close();
        tracker.wait().await;
        let mut rest = Vec::new();
        while let Ok(frame) = rx.try_recv() {
            rest.push(frame);
        }
        assert_eq!(rest, ["3:part\n\n[Answer stopped.]", "end", "end"]);
        assert_eq!(
            chats.cancel(&copilot_chat, first_id),
            Err(CancelRefusal::NoSuchTurn)
        );
        assert_eq!(
            chats.cancel(&chat(ConnectionType::Supervisor), first_id),
            Err(CancelRefusal::NotACopilotChat)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_copilot_turn_waits_while_another_server_holds_the_chats_lease() {
        let mut lock = jiva_core::MockTurnLock::new();
        let tries = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&tries);
        // Held elsewhere for the first three tries.
        lock.expect_try_acquire()
            .returning(move |_, _, _| Ok(counted.fetch_add(1, Ordering::SeqCst) >= 3));
        lock.expect_renew().returning(|_, _, _| Ok(true));
        lock.expect_release().times(1).returning(|_, _| Ok(()));
        let frames = one_turn(|ports| ports.with_turn_lock(Arc::new(lock))).await;
        assert_eq!(tries.load(Ordering::SeqCst), 4);
        assert_eq!(frames, ["1:question", "chunk:answer", "2:answer", "end"]);
    }
}
