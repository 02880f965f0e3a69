//! One WebSocket connection: a reader (this task) and a writer task, joined on exit.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use futures_util::future::OptionFuture;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use jiva_chat::Subscriber;
use jiva_core::{ChatId, Cursor, Identity, Message, Seq, Timestamp, sender_for};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::timeout;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::Instrument;

use crate::frames::{self, Frame, Inbound};
use crate::limits::{self, Verdict};
use crate::signals::{Flag, Signals};
use crate::state::State;
use crate::{
    CLOSE_GOING_AWAY, CLOSE_IDLE, CLOSE_POLICY, CLOSE_SLOW_CONSUMER, CLOSE_TOKEN_EXPIRED,
    CLOSE_TOO_BIG, auth,
};

/// Replayed sequence numbers remembered to drop their live copies: a live frame numbered below
/// the room's position when the socket joined is a frame that arrived late (its gap had been
/// skipped), so only the newest numbers matter.
const REPLAYED_KEPT: usize = 4096;

/// Frames written per flush.
const WRITE_BATCH: usize = 64;

/// Why the reader stopped, and so how the writer closes.
pub(crate) enum Ending {
    /// The connection dropped (or the writer ended first): nothing more to say.
    Quiet,
    /// The client sent a close frame: answer it (RFC 6455 §5.5.1; the WebSocket layer queued
    /// the echo of its code), then end.
    ClientClosed,
    /// A frame was too large: close with 1009.
    TooBig,
    /// The server is shutting down: close with 1001.
    Shutdown,
    /// The client kept sending over its message rate: close with 1008.
    Policy,
    /// Nothing arrived for the idle timeout: try to close with [`CLOSE_IDLE`].
    Idle,
}

/// Runs one socket of `chat` until it closes. `identity` is the caller's (none when
/// authentication is off).
///
/// A plain function returning the socket's future, not an `async fn`: an idle socket's task
/// holds that future for its whole life, and an `async fn` wrapping it would keep a second
/// copy of every argument beside it (the `WebSocket` alone is 368 bytes) after moving them on.
/// For the same reason the socket is split, and its writer spawned, here: a value the future
/// captures keeps its room in the future for as long as the socket is open, even once moved
/// on. The identity is boxed: the reader needs it rarely, and 72 bytes held in every idle
/// socket's task are the difference between two of the allocator's size classes.
pub(crate) fn run(
    state: Arc<State>,
    chat: ChatId,
    identity: Option<Identity>,
    socket: WebSocket,
) -> impl std::future::Future<Output = ()> + Send {
    let conn = state.next_conn_id();
    let span = tracing::debug_span!("conn", conn, chat = %chat);
    // Counted in the chat's presence (protocol v1) while open.
    let member = crate::v1::member(identity.as_ref(), conn);
    let present = state.presence.enter(&chat, member, None);
    let (sink, stream) = socket.split();
    let (tx, rx) = mpsc::channel(state.config.outbound_queue.max(1));
    // Cancelled when the socket is slow, and with the server's shutdown (a child token):
    // the writer waits on one token for both, and tells them apart by the shutdown's.
    let slow = state.shutdown.child_token();
    // The writer joins the chat's room once it has caught up with the stored history, and
    // leaves it when it ends.
    let subscriber = Subscriber {
        conn,
        tx: tx.clone(),
        slow: slow.clone(),
    };
    let (end_tx, end_rx) = oneshot::channel();
    let signals = Arc::new(Signals::default());
    let writer = tokio::spawn(
        write_loop(
            Arc::clone(&state),
            chat.clone(),
            sink,
            rx,
            slow.clone(),
            end_rx,
            subscriber,
            Arc::clone(&signals),
            identity.as_ref().and_then(|i| i.expires_at),
        )
        .instrument(span.clone()),
    );
    let identity = identity.map(Box::new);
    async move {
        metrics::gauge!("jiva_sockets_open").increment(1.0);
        tracing::debug!("socket opened");
        let ending = read_loop(
            &state,
            &chat,
            identity.as_deref(),
            stream,
            &tx,
            &slow,
            &signals,
        )
        .await;
        let _ = end_tx.send(ending);
        drop(tx);
        let _ = writer.await;
        // Out of the chat's presence; dropped here rather than bound to a local, which would
        // hold a second copy of it in the future.
        drop(present);
        metrics::gauge!("jiva_sockets_open").decrement(1.0);
        tracing::debug!("socket closed");
    }
    .instrument(span)
}

/// The socket's reader, until it stops; returns why. A plain function returning an `async`
/// block, like [`run`]: an `async fn` would keep a copy of each argument beside the one it
/// moved into its body.
#[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
fn read_loop(
    state: &Arc<State>,
    chat: &ChatId,
    identity: Option<&Identity>,
    stream: SplitStream<WebSocket>,
    tx: &mpsc::Sender<Frame>,
    slow: &CancellationToken,
    signals: &Signals,
) -> impl Future<Output = Ending> + Send {
    async move {
        let reply = reply_to(tx, slow);
        let refuse = |refused| {
            reply(frames::error(match refused {
                Refused::OverRate => limits::Refusal::MessageRate.reason(),
                Refused::Binary => "binary frames are not supported",
            }))
        };
        let mut reader = Reader::new(state, stream);
        // Made once, not per frame: each waits in its token's list until it fires, and then the
        // reader returns.
        let mut shutdown = std::pin::pin!(state.shutdown.cancelled());
        let mut done = std::pin::pin!(signals.done.wait());
        loop {
            let text = match reader
                .next(&mut shutdown, &mut done, &signals.ping, &refuse)
                .await
            {
                Ok(text) => text,
                Err(ending) => return ending,
            };
            match frames::parse_inbound(&text) {
                Ok(Inbound::Keepalive) => {}
                Ok(Inbound::Chat { sender, text }) => {
                    // Boxed: an idle socket's task then holds only what waiting for the next
                    // frame needs, not room for the message and a store round-trip.
                    let handled = Box::pin(chat_message(
                        state,
                        chat,
                        identity,
                        (sender, text),
                        &reply,
                        &signals.joined,
                        (&mut done, &mut shutdown),
                    ))
                    .await;
                    if let Some(ending) = handled {
                        return ending;
                    }
                }
                Err(reason) => reply(frames::error(reason)),
            }
        }
    }
}

/// A chat message from the client: checked against the caller's identity and the copilot
/// limits, then accepted once the socket is in its room. `Some` when the socket must end while
/// waiting for that.
async fn chat_message(
    state: &State,
    chat: &ChatId,
    identity: Option<&Identity>,
    (sender, text): (jiva_core::Sender, String),
    reply: &impl Fn(Frame),
    joined: &Flag,
    (done, shutdown): (
        &mut Pin<&mut impl Future<Output = ()>>,
        &mut Pin<&mut WaitForCancellationFuture<'_>>,
    ),
) -> Option<Ending> {
    let sender = match sender_for(identity, chat, sender) {
        Ok(sender) => sender,
        Err(denied) => {
            metrics::counter!("jiva_auth_refusals_total", "reason" => denied.code()).increment(1);
            reply(frames::error(&denied.to_string()));
            return None;
        }
    };
    let message = Message::user(chat.clone(), sender, text);
    if let Some(refusal) = limits::copilot_refusal(state, &message) {
        refusal.frames().into_iter().for_each(reply);
        return None;
    }
    // The socket must be in its room before its message (and the copilot turn it starts) is
    // shown, or it would miss the turn's frames.
    if !joined.is_set() {
        tokio::select! {
            () = joined.wait() => {}
            () = done.as_mut() => return Some(Ending::Quiet),
            () = shutdown.as_mut() => return Some(Ending::Shutdown),
        }
    }
    if let Err(rejection) = state.chats.accept(message).await {
        reply(frames::error(rejection.reason()));
    }
    None
}

/// A data frame the reader answers with an error and skips.
pub(crate) enum Refused {
    /// Over the socket's message rate.
    OverRate,
    /// A binary frame (the protocols are text).
    Binary,
}

/// Only the sender sees its errors; a sender whose queue cannot take them is slow.
pub(crate) fn reply_to<'a>(
    tx: &'a mpsc::Sender<Frame>,
    slow: &'a CancellationToken,
) -> impl Fn(Frame) + Sync + 'a {
    move |frame| {
        if tx.try_send(frame).is_err() {
            slow.cancel();
        }
    }
}

/// A socket's reading side, shared by the v0 and v1 readers: the stream, the message rate's
/// bucket, the idle check, and the frames-in counter (registered once per socket, not looked up
/// in the recorder's registry per frame).
pub(crate) struct Reader {
    stream: SplitStream<WebSocket>,
    bucket: limits::MessageBucket,
    liveness: limits::Liveness,
    frames_in: metrics::Counter,
}

impl Reader {
    pub(crate) fn new(state: &State, stream: SplitStream<WebSocket>) -> Self {
        Self {
            stream,
            bucket: state.limiter.message_bucket(),
            liveness: limits::Liveness::new(state.limiter.limits().idle_timeout),
            frames_in: metrics::counter!("jiva_frames_in_total"),
        }
    }

    /// The socket's next text frame; `Err` says why the reader stops. Pings the socket
    /// (through the writer) while it is idle; a data frame over the message rate, or a binary
    /// one, is answered with `refuse` and skipped. Not an `async fn`, like [`read_loop`], for
    /// the same reason.
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn next(
        &mut self,
        shutdown: &mut Pin<&mut WaitForCancellationFuture<'_>>,
        done: &mut Pin<&mut (impl Future<Output = ()> + Send)>,
        ping: &Notify,
        refuse: &(impl Fn(Refused) + Sync),
    ) -> impl Future<Output = Result<Utf8Bytes, Ending>> + Send {
        async move {
            loop {
                let next = tokio::select! {
                    next = self.stream.next() => next,
                    () = shutdown.as_mut() => return Err(Ending::Shutdown),
                    () = done.as_mut() => return Err(Ending::Quiet),
                    alive = self.liveness.tick() => {
                        if !alive {
                            return Err(Ending::Idle);
                        }
                        ping.notify_one();
                        continue;
                    }
                };
                self.liveness.seen();
                let text = match next {
                    None => return Err(Ending::Quiet),
                    Some(Err(e)) => return Err(read_failed(&e)),
                    Some(Ok(WsMessage::Close(_))) => return Err(Ending::ClientClosed),
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                    Some(Ok(WsMessage::Text(text))) => Some(text),
                    Some(Ok(WsMessage::Binary(_))) => None,
                };
                match self.bucket.take() {
                    Verdict::Accept => {}
                    Verdict::Refuse => {
                        refuse(Refused::OverRate);
                        continue;
                    }
                    Verdict::Drop => continue,
                    Verdict::Close => return Err(Ending::Policy),
                }
                let Some(text) = text else {
                    refuse(Refused::Binary);
                    continue;
                };
                self.frames_in.increment(1);
                return Ok(text);
            }
        }
    }
}

/// How a read error ends the socket: 1009 for a frame over the size limit, quietly otherwise.
fn read_failed(e: &axum::Error) -> Ending {
    let too_big = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<tokio_tungstenite::tungstenite::Error>())
        .is_some_and(|e| matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)));
    if too_big {
        tracing::info!("frame larger than the limit; closing the socket");
        return Ending::TooBig;
    }
    tracing::debug!(error = %e, "socket read failed");
    Ending::Quiet
}

pub(crate) type Sink = SplitSink<WebSocket, WsMessage>;

/// The writer's task: replay, then live frames, then the close. A plain function returning an
/// `async move` block rather than an `async fn`: an `async fn` moves each argument into a local
/// of its own beside the argument's slot, and this future lives as long as the socket.
#[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
fn write_loop(
    state: Arc<State>,
    chat: ChatId,
    mut sink: Sink,
    mut rx: mpsc::Receiver<Frame>,
    slow: CancellationToken,
    mut ending: oneshot::Receiver<Ending>,
    subscriber: Subscriber<Frame>,
    signals: Arc<Signals>,
    expires_at: Option<Timestamp>,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let conn = subscriber.conn;
        // Here, not in the serve future: a socket closed while it replays (a rate limit) still
        // drops the live copies of what it replayed from the frames it writes before closing.
        let mut replayed = BTreeSet::new();
        // In a block: the pinned future borrows the sink and the queue until it is dropped.
        let (outcome, client_closed) = {
            let serve = std::pin::pin!(serve_frames(
                &state,
                &chat,
                (&mut sink, &mut rx),
                (subscriber, &signals.joined),
                &mut replayed,
                &signals.ping,
            ));
            until_closed(&state, &slow, &mut ending, expires_at, serve).await
        };
        if signals.joined.is_set() {
            state.chats.leave(&chat, conn).await;
        }
        signals.done.set();
        close_socket(
            &state,
            &mut sink,
            &mut rx,
            outcome,
            client_closed,
            &|frame| live_text(frame, &replayed),
        )
        .await;
    }
}

/// Runs a socket's writer (`serve`) until it ends or something closes the socket: the reader's
/// ending, a slow queue, shutdown or the token's expiry. Returns the close frame to send
/// (`None`: none) and whether the client closed first.
///
/// `serve` is pinned by the caller and borrowed: moved in, it would take room twice in the
/// writer's task (once as this function's argument, once inside its `select!`). Not an
/// `async fn`, like [`write_loop`], for the same reason.
#[allow(clippy::manual_async_fn)]
pub(crate) fn until_closed<'a, F>(
    state: &'a State,
    slow: &'a CancellationToken,
    ending: &'a mut oneshot::Receiver<Ending>,
    expires_at: Option<Timestamp>,
    serve: Pin<&'a mut F>,
) -> impl std::future::Future<Output = (Option<CloseFrame>, bool)> + Send + 'a
where
    F: std::future::Future<Output = Result<(), axum::Error>> + Send,
{
    async move {
        let close = |code: u16, reason: &'static str| CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let mut client_closed = false;
        let outcome = tokio::select! {
            biased;
            end = ending => match end {
                Ok(Ending::ClientClosed) => {
                    client_closed = true;
                    None
                }
                Ok(Ending::TooBig) => Some(close(CLOSE_TOO_BIG, "frame too large")),
                Ok(Ending::Shutdown) => Some(close(CLOSE_GOING_AWAY, "server shutting down")),
                Ok(Ending::Policy) => Some(close(CLOSE_POLICY, "rate limit exceeded")),
                Ok(Ending::Idle) => Some(close(CLOSE_IDLE, "idle timeout")),
                Ok(Ending::Quiet) | Err(_) => None,
            },
            // `slow` is a child of the shutdown token: cancelled by either.
            () = slow.cancelled() => Some(if state.shutdown.is_cancelled() {
                close(CLOSE_GOING_AWAY, "server shutting down")
            } else {
                close(CLOSE_SLOW_CONSUMER, "slow consumer")
            }),
            // Only with an expiry (authentication on): boxed, so that a socket without one
            // holds no room for a timer.
            Some(()) = OptionFuture::from(expires_at.map(|at| Box::pin(auth::expiry(at)))) => {
                metrics::counter!("jiva_token_expired_closes_total").increment(1);
                Some(close(CLOSE_TOKEN_EXPIRED, "token expired"))
            }
            result = serve => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "socket write failed");
                }
                None
            }
        };
        // However the race between the branches above went, a server that is shutting down says so.
        let outcome = outcome.or_else(|| {
            state
                .shutdown
                .is_cancelled()
                .then(|| close(CLOSE_GOING_AWAY, "server shutting down"))
        });
        (outcome, client_closed)
    }
}

/// Closes a socket whose writer ended: answers the client's close, or sends `outcome` (after
/// the frames already queued, when a rate limit closes it, each written as `text` makes it).
pub(crate) async fn close_socket(
    state: &State,
    sink: &mut Sink,
    rx: &mut mpsc::Receiver<Frame>,
    outcome: Option<CloseFrame>,
    client_closed: bool,
    text: &(dyn Fn(&Frame) -> Option<Utf8Bytes> + Sync),
) {
    let close_timeout = state.config.close_timeout;
    if client_closed && outcome.is_none() {
        // Sends the close frame the WebSocket layer queued in answer to the client's.
        let _ = timeout(close_timeout, sink.close()).await;
    }
    if let Some(frame) = outcome {
        if frame.code == CLOSE_POLICY {
            // The frames answered before the limit closed the socket (the echoes and the
            // rate-limit error) are still delivered.
            let _ = timeout(close_timeout, write_queued(sink, rx, text)).await;
        }
        let too_big = frame.code == CLOSE_TOO_BIG;
        let _ = timeout(close_timeout, sink.send(WsMessage::Close(Some(frame)))).await;
        if too_big {
            // The rest of the oversized frame is still unread, so closing the TCP socket now
            // makes the kernel send a reset, which can destroy the close frame before the client
            // has read it. Linger a moment (or until shutdown) so that the client sees 1009.
            tokio::select! {
                () = tokio::time::sleep(close_timeout) => {}
                () = state.shutdown.cancelled() => {}
            }
        }
    }
}

/// Writes the frames already queued, without waiting for more.
async fn write_queued(
    sink: &mut Sink,
    rx: &mut mpsc::Receiver<Frame>,
    text: &(dyn Fn(&Frame) -> Option<Utf8Bytes> + Sync),
) -> Result<(), axum::Error> {
    while let Ok(frame) = rx.try_recv() {
        if let Some(text) = text(&frame) {
            sink.feed(WsMessage::Text(text)).await?;
        }
    }
    sink.flush().await
}

/// Replays the chat's history, joining its room on the way (the `Flag` is set then), then
/// writes live frames until the queue closes. Not an `async fn`, like [`read_loop`].
#[allow(clippy::manual_async_fn)]
fn serve_frames(
    state: &State,
    chat: &ChatId,
    (sink, rx): (&mut Sink, &mut mpsc::Receiver<Frame>),
    subscriber: (Subscriber<Frame>, &Flag),
    replayed: &mut BTreeSet<Seq>,
    ping: &Notify,
) -> impl Future<Output = Result<(), axum::Error>> + Send {
    async move {
        // Boxed for the same reason as `accept`: the replay's state is freed once it is done.
        Box::pin(replay(state, chat, sink, subscriber, &mut *replayed)).await?;
        let replayed = &*replayed;
        // A live frame of a message the replay already showed is dropped.
        write_live(sink, rx, ping, |frame| live_text(&frame, replayed)).await
    }
}

/// A live frame's text, or `None` for the live copy of a message the socket replayed.
fn live_text(frame: &Frame, replayed: &BTreeSet<Seq>) -> Option<Utf8Bytes> {
    (!frame.seq.is_some_and(|seq| replayed.contains(&seq))).then(|| frame.text.clone())
}

/// Writes live frames from `rx` until the queue closes, in batches of at most [`WRITE_BATCH`]
/// per flush, with a ping whenever `ping` fires; `text` gives a frame's text, or `None` to
/// drop it (v0 and v1 sockets differ only there). Not an `async fn`, like [`read_loop`].
#[allow(clippy::manual_async_fn)]
pub(crate) fn write_live(
    sink: &mut Sink,
    rx: &mut mpsc::Receiver<Frame>,
    ping: &Notify,
    mut text: impl FnMut(Frame) -> Option<Utf8Bytes> + Send,
) -> impl Future<Output = Result<(), axum::Error>> + Send {
    async move {
        // Made once and again only after it fired, not on every wake-up: a new `Notified` joins
        // the `Notify`'s list of waiters and leaves it when dropped.
        let mut pinged = std::pin::pin!(ping.notified());
        loop {
            let frame = tokio::select! {
                // A ping first: a queue that never empties does not starve it.
                biased;
                () = &mut pinged => {
                    pinged.set(ping.notified());
                    sink.send(WsMessage::Ping(Default::default())).await?;
                    continue;
                }
                frame = rx.recv() => match frame {
                    Some(frame) => frame,
                    None => break,
                },
            };
            let mut batch = 0;
            let mut next = Some(frame);
            while let Some(frame) = next {
                if let Some(text) = text(frame) {
                    sink.feed(WsMessage::Text(text)).await?;
                    batch += 1;
                }
                next = if batch < WRITE_BATCH {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            sink.flush().await?;
        }
        Ok(())
    }
}

/// Catch-up passes over the store before a socket joins its room (see [`replay`]); after
/// that many it joins even if messages keep arriving faster than it replays.
const CATCH_UP_PASSES: usize = 8;

/// Sends the stored history, oldest first, joins the chat's room and tells it where the chat
/// is; records the newest sequence numbers replayed in `replayed` (their live copies are
/// duplicates) as it goes, so that they outlive a replay cut short by the socket closing.
///
/// A socket that joined its room first would queue the chat's live frames while it replays,
/// and a long history under a busy chat overflows that bounded queue (a healthy reader closed
/// as a slow consumer). So the socket replays from the store *before* joining, in passes, each
/// resuming where the previous one ended, until a pass finds nothing new (or after
/// [`CATCH_UP_PASSES`]); only then does it join, learn the number the room will deliver next
/// (`start`), and replay what was stored since its last pass and numbered below `start`. Live
/// frames queue only during that last, short pass. Memory per socket stays bounded: a replay
/// holds one page, and a reader too slow for the live frames still overflows its queue.
///
/// `start` (`None` for a new room) is the number the room was about to deliver when the socket
/// joined: the socket gets that frame and every later one live, so the last pass leaves out
/// messages numbered from `start` on (they may be stored already, with frames still on their
/// way, or stored out of order). Numbers an earlier pass replayed at or past `start` are in the
/// returned set, so their live copies are dropped. A new room (`start` `None`) learns where the
/// chat is from this replay: the last pass then stops at a missing number that may still
/// arrive and hands what it read past it to the room ([`Ahead`]); should another socket have
/// told the room a later start meanwhile, one more pass replays up to it.
async fn replay(
    state: &State,
    chat: &ChatId,
    sink: &mut Sink,
    subscriber: (Subscriber<Frame>, &Flag),
    replayed: &mut BTreeSet<Seq>,
) -> Result<(), axum::Error> {
    let mut progress = Progress {
        last: None,
        resume: None,
        replayed,
        ahead: Ahead::default(),
    };
    let mut available = true;
    for pass in 0..CATCH_UP_PASSES {
        match replay_pass(state, chat, sink, &mut progress, None, pass == 0).await? {
            Some(0) => break,
            Some(_) => {}
            None => {
                available = false;
                break;
            }
        }
    }
    let start = state.chats.join(chat, subscriber.0).await;
    subscriber.1.set();
    if available
        && replay_pass(state, chat, sink, &mut progress, Some(start), false)
            .await?
            .is_some()
    {
        let last = progress.last.map_or(0, Seq::get);
        let next = state.chats.replayed(chat, last, &progress.ahead.take());
        // A room that did not know where its chat was may have learnt it from another socket
        // meanwhile, further on: what lies before that is this socket's to replay.
        if start.is_none() && next.is_some_and(|next| next.get() > last + 1) {
            replay_pass(state, chat, sink, &mut progress, Some(next), false).await?;
        }
    }
    Ok(())
}

/// Messages a socket's last replay pass read past a missing number that may still arrive
/// ([`jiva_chat::may_still_arrive`]), when its room did not know where the chat was yet: they
/// go to the room ([`jiva_chat::Chats::replayed`]) instead of the socket, so that the missing
/// number, once stored, is shown before them (or they go out once the room filled or skipped
/// it). Shown at once, they would come before it.
#[derive(Default)]
pub(crate) struct Ahead(Vec<Message>);

/// What a replay pass does with the next message it read.
pub(crate) enum Step {
    /// Sent to the socket.
    Send,
    /// Handed to the room (see [`Ahead`]).
    Hold,
    /// [`Ahead::MAX`] are held: the pass ends; the room fills the rest from the store.
    Stop,
}

impl Ahead {
    /// The most messages held.
    const MAX: usize = 1000;

    /// What a replay pass does with `message`, numbered after its `last` one. Before joining
    /// (`start` `None`) it stops at a missing number: an append may still be in flight, and a
    /// later pass (or the last one) resumes there. In a room that does not know where its chat
    /// is (`Some(None)`), what lies past a missing number that may still arrive is held.
    /// Otherwise it is sent.
    pub(crate) fn step(
        &mut self,
        start: Option<Option<Seq>>,
        last: Option<Seq>,
        message: &Message,
        now: Timestamp,
    ) -> Step {
        let in_order = message.seq == Some(last.map_or(Seq::FIRST, Seq::next));
        match start {
            None if !in_order => Step::Stop,
            Some(None) => self.hold(in_order, message, now),
            _ => Step::Send,
        }
    }

    /// [`Ahead::step`] in a room that does not know where its chat is.
    fn hold(&mut self, in_order: bool, message: &Message, now: Timestamp) -> Step {
        if self.0.is_empty() {
            if in_order || !jiva_chat::may_still_arrive(message.timestamp, now) {
                return Step::Send;
            }
        } else if self.0.len() >= Self::MAX {
            return Step::Stop;
        }
        self.0.push(message.clone());
        Step::Hold
    }

    /// The newest number held: reads go on after it.
    pub(crate) fn newest(&self) -> Option<Seq> {
        self.0.last().and_then(|m| m.seq)
    }

    pub(crate) fn take(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.0)
    }
}

/// Where a replay is.
struct Progress<'a> {
    /// The newest number replayed.
    last: Option<Seq>,
    /// The cursor of the page that held it (a pass resumes there, skipping what it showed).
    resume: Option<Cursor>,
    /// The newest numbers replayed (the socket's writer keeps them).
    replayed: &'a mut BTreeSet<Seq>,
    /// Read, but held for the room (see [`Ahead`]).
    ahead: Ahead,
}

impl Progress<'_> {
    /// The newest number read: the next read starts after it.
    fn read(&self) -> Option<Seq> {
        self.ahead.newest().or(self.last)
    }
}

/// One pass over the history from where the last one ended: sends the messages numbered after
/// `progress.last` (and, with `start` known, below it; with `legacy`, the unnumbered messages
/// of before sequence numbers, which come first). Returns how many it sent, or `None` when the
/// store failed (the socket was told).
///
/// Once a number was replayed, a store that seeks ([`jiva_core::MessageStore::seeks_by_number`])
/// is read from just after it, so each row is read once; otherwise the pass resumes at the
/// page that held it (`progress.resume`) and skips what it showed.
async fn replay_pass(
    state: &State,
    chat: &ChatId,
    sink: &mut Sink,
    progress: &mut Progress<'_>,
    start: Option<Option<Seq>>,
    legacy: bool,
) -> Result<Option<usize>, axum::Error> {
    let below = start.flatten();
    let limit = state.config.history_page.max(1);
    let seeks = state.chats.store().seeks_by_number();
    let mut cursor = progress.resume.clone();
    let mut sent = 0;
    let now = Timestamp::now();
    loop {
        let read = match progress.read() {
            Some(last) if seeks => state
                .chats
                .store()
                .after(chat, last, limit)
                .await
                .map(|messages| Page::After(messages, last)),
            _ => state
                .chats
                .history(chat, cursor.clone(), limit)
                .await
                .map(Page::Cursor),
        };
        let page = match read {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "reading history failed");
                sink.send(WsMessage::Text(
                    frames::error("history unavailable").text.clone(),
                ))
                .await?;
                return Ok(None);
            }
        };
        for message in page.messages() {
            match message.seq {
                Some(seq) => {
                    if progress.read().is_some_and(|read| seq <= read)
                        || below.is_some_and(|below| seq >= below)
                    {
                        continue;
                    }
                    match progress.ahead.step(start, progress.last, message, now) {
                        Step::Send => {}
                        Step::Hold => continue,
                        Step::Stop => {
                            sink.flush().await?;
                            return Ok(Some(sent));
                        }
                    }
                    progress.replayed.insert(seq);
                    if progress.replayed.len() > REPLAYED_KEPT {
                        progress.replayed.pop_first();
                    }
                    progress.last = Some(seq);
                }
                None if !legacy => continue,
                None => {}
            }
            sent += 1;
            sink.feed(WsMessage::Text(frames::stored_text(message, message.seq)))
                .await?;
        }
        sink.flush().await?;
        match page {
            // A short page is the end; a full one whose numbers were all left out (at or past
            // `start`) too, since every later number is larger.
            Page::After(messages, from) => {
                if messages.len() < limit || progress.read() == Some(from) {
                    return Ok(Some(sent));
                }
            }
            Page::Cursor(page) => match page.next {
                Some(next) if !page.messages.is_empty() => {
                    if progress.last.is_some() {
                        progress.resume = cursor;
                    }
                    cursor = Some(next);
                }
                _ => {
                    if progress.last.is_some() {
                        progress.resume = cursor;
                    }
                    return Ok(Some(sent));
                }
            },
        }
    }
}

/// A page a replay pass read: from a history cursor, or the messages numbered after a number.
enum Page {
    Cursor(jiva_core::HistoryPage),
    After(Vec<Message>, Seq),
}

impl Page {
    fn messages(&self) -> &[Message] {
        match self {
            Page::Cursor(page) => &page.messages,
            Page::After(messages, _) => messages,
        }
    }
}
