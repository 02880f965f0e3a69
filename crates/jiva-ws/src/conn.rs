//! One WebSocket connection: a reader (this task) and a writer task, joined on exit.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use jiva_chat::Subscriber;
use jiva_core::{ChatId, Identity, Message, Seq, Timestamp, sender_for};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::frames::{self, Frame, Inbound};
use crate::limits::{self, Verdict};
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
enum Ending {
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
pub(crate) async fn run(
    state: Arc<State>,
    chat: ChatId,
    identity: Option<Identity>,
    socket: WebSocket,
) {
    let conn = state.next_conn_id();
    let span = tracing::debug_span!("conn", conn, chat = %chat);
    async move {
        metrics::gauge!("jiva_sockets_open").increment(1.0);
        tracing::debug!("socket opened");
        let (tx, rx) = mpsc::channel(state.config.outbound_queue.max(1));
        let slow = CancellationToken::new();
        let start = state
            .chats
            .join(
                &chat,
                Subscriber {
                    conn,
                    tx: tx.clone(),
                    slow: slow.clone(),
                },
            )
            .await;

        let (sink, stream) = socket.split();
        let (end_tx, end_rx) = oneshot::channel();
        let done = CancellationToken::new();
        let ping = Arc::new(Notify::new());
        let writer = tokio::spawn(
            write_loop(
                Arc::clone(&state),
                chat.clone(),
                sink,
                rx,
                slow.clone(),
                end_rx,
                done.clone(),
                start,
                Arc::clone(&ping),
                identity.as_ref().and_then(|i| i.expires_at),
            )
            .in_current_span(),
        );
        let ending = read_loop(
            &state,
            &chat,
            identity.as_ref(),
            stream,
            &tx,
            &slow,
            &done,
            &ping,
        )
        .await;
        state.chats.leave(&chat, conn).await;
        let _ = end_tx.send(ending);
        drop(tx);
        let _ = writer.await;
        metrics::gauge!("jiva_sockets_open").decrement(1.0);
        tracing::debug!("socket closed");
    }
    .instrument(span)
    .await;
}

#[allow(clippy::too_many_arguments)]
async fn read_loop(
    state: &Arc<State>,
    chat: &ChatId,
    identity: Option<&Identity>,
    mut stream: SplitStream<WebSocket>,
    tx: &mpsc::Sender<Frame>,
    slow: &CancellationToken,
    done: &CancellationToken,
    ping: &Notify,
) -> Ending {
    // Only the sender sees its errors; a sender that cannot take them is slow.
    let reply = |frame: Frame| {
        if tx.try_send(frame).is_err() {
            slow.cancel();
        }
    };
    let mut bucket = state.limiter.message_bucket();
    let mut liveness = limits::Liveness::new(state.limiter.limits().idle_timeout);
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            () = state.shutdown.cancelled() => return Ending::Shutdown,
            () = done.cancelled() => return Ending::Quiet,
            alive = liveness.tick() => {
                if !alive {
                    return Ending::Idle;
                }
                ping.notify_one();
                continue;
            }
        };
        liveness.seen();
        if matches!(next, Some(Ok(WsMessage::Text(_) | WsMessage::Binary(_)))) {
            match bucket.take() {
                Verdict::Accept => {}
                Verdict::Refuse => {
                    reply(frames::error(limits::Refusal::MessageRate.reason()));
                    continue;
                }
                Verdict::Drop => continue,
                Verdict::Close => return Ending::Policy,
            }
        }
        match next {
            None => return Ending::Quiet,
            Some(Ok(WsMessage::Close(_))) => return Ending::ClientClosed,
            Some(Ok(WsMessage::Text(text))) => {
                metrics::counter!("jiva_frames_in_total").increment(1);
                match frames::parse_inbound(&text) {
                    Ok(Inbound::Keepalive) => {}
                    Ok(Inbound::Chat { sender, text }) => {
                        let sender = match sender_for(identity, chat, sender) {
                            Ok(sender) => sender,
                            Err(denied) => {
                                metrics::counter!("jiva_auth_refusals_total", "reason" => denied.code()).increment(1);
                                reply(frames::error(&denied.to_string()));
                                continue;
                            }
                        };
                        let message = Message::user(chat.clone(), sender, text);
                        if let Some(refusal) = limits::copilot_refusal(state, &message) {
                            refusal.frames().into_iter().for_each(reply);
                            continue;
                        }
                        // Boxed: an idle socket's task then holds only what waiting for the
                        // next frame needs, not room for a whole store round-trip.
                        if let Err(rejection) = Box::pin(state.chats.accept(message)).await {
                            reply(frames::error(rejection.reason()));
                        }
                    }
                    Err(reason) => reply(frames::error(reason)),
                }
            }
            Some(Ok(WsMessage::Binary(_))) => {
                reply(frames::error("binary frames are not supported"))
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            Some(Err(e)) => {
                let too_big = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<tokio_tungstenite::tungstenite::Error>())
                    .is_some_and(|e| {
                        matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_))
                    });
                if too_big {
                    tracing::info!("frame larger than the limit; closing the socket");
                    return Ending::TooBig;
                }
                tracing::debug!(error = %e, "socket read failed");
                return Ending::Quiet;
            }
        }
    }
}

type Sink = SplitSink<WebSocket, WsMessage>;

#[allow(clippy::too_many_arguments)]
async fn write_loop(
    state: Arc<State>,
    chat: ChatId,
    mut sink: Sink,
    mut rx: mpsc::Receiver<Frame>,
    slow: CancellationToken,
    mut ending: oneshot::Receiver<Ending>,
    done: CancellationToken,
    start: Option<Seq>,
    ping: Arc<Notify>,
    expires_at: Option<Timestamp>,
) {
    let close_timeout = state.config.close_timeout;
    let close = |code: u16, reason: &'static str| CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let mut client_closed = false;
    let outcome = tokio::select! {
        biased;
        end = &mut ending => match end {
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
        () = slow.cancelled() => Some(close(CLOSE_SLOW_CONSUMER, "slow consumer")),
        () = state.shutdown.cancelled() => Some(close(CLOSE_GOING_AWAY, "server shutting down")),
        () = auth::expiry(expires_at) => {
            metrics::counter!("jiva_token_expired_closes_total").increment(1);
            Some(close(CLOSE_TOKEN_EXPIRED, "token expired"))
        }
        result = serve_frames(&state, &chat, &mut sink, &mut rx, start, &ping) => {
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
    done.cancel();
    if client_closed && outcome.is_none() {
        // Sends the close frame the WebSocket layer queued in answer to the client's.
        let _ = timeout(close_timeout, sink.close()).await;
    }
    if let Some(frame) = outcome {
        if frame.code == CLOSE_POLICY {
            // The frames answered before the limit closed the socket (the echoes and the
            // rate-limit error) are still delivered.
            let _ = timeout(close_timeout, write_queued(&mut sink, &mut rx)).await;
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
async fn write_queued(sink: &mut Sink, rx: &mut mpsc::Receiver<Frame>) -> Result<(), axum::Error> {
    while let Ok(frame) = rx.try_recv() {
        sink.feed(WsMessage::Text(frame.text)).await?;
    }
    sink.flush().await
}

/// Replays the chat's history, then writes live frames until the queue closes.
async fn serve_frames(
    state: &State,
    chat: &ChatId,
    sink: &mut Sink,
    rx: &mut mpsc::Receiver<Frame>,
    start: Option<Seq>,
    ping: &Notify,
) -> Result<(), axum::Error> {
    // Boxed for the same reason as `accept`: the replay's state is freed once it is done.
    let replayed = Box::pin(replay(state, chat, sink, start)).await?;
    loop {
        let frame = tokio::select! {
            frame = rx.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
            () = ping.notified() => {
                sink.send(WsMessage::Ping(Default::default())).await?;
                continue;
            }
        };
        let mut batch = 0;
        let mut next = Some(frame);
        while let Some(frame) = next {
            // A live frame of a message the replay already showed is dropped.
            if !frame.seq.is_some_and(|seq| replayed.contains(&seq)) {
                sink.feed(WsMessage::Text(frame.text)).await?;
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

/// Sends the stored history, oldest first, and tells the room where the chat is; returns the
/// newest sequence numbers replayed (their live copies are duplicates).
///
/// `start` is the number the room was about to deliver when the socket joined: the socket gets
/// that frame and every later one live, so messages numbered from `start` on are left out here
/// (they may be stored already, with frames still on their way, or stored out of order: the
/// replay never shows a number before the ones it precedes). Without a `start` (a new room)
/// the whole history is replayed.
async fn replay(
    state: &State,
    chat: &ChatId,
    sink: &mut Sink,
    start: Option<Seq>,
) -> Result<BTreeSet<Seq>, axum::Error> {
    let mut last: Option<Seq> = None;
    let mut replayed = BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = match state
            .chats
            .history(chat, cursor, state.config.history_page.max(1))
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "reading history failed");
                sink.send(WsMessage::Text(frames::error("history unavailable").text))
                    .await?;
                return Ok(replayed);
            }
        };
        for message in &page.messages {
            if let Some(seq) = message.seq {
                if start.is_some_and(|start| seq >= start) {
                    continue;
                }
                replayed.insert(seq);
                if replayed.len() > REPLAYED_KEPT {
                    replayed.pop_first();
                }
            }
            last = last.max(message.seq);
            sink.feed(WsMessage::Text(frames::stored(message, message.seq).text))
                .await?;
        }
        sink.flush().await?;
        match page.next {
            Some(next) if !page.messages.is_empty() => cursor = Some(next),
            _ => {
                state.chats.replayed(chat, last.map_or(0, Seq::get));
                return Ok(replayed);
            }
        }
    }
}
