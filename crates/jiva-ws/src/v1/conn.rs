//! One v1 socket: a reader (this task) that answers the client's frames and a writer task that
//! sends the welcome, the catch-up and then live frames, joined on exit. Limits, close codes
//! and shutdown are v0's (`crate::conn`).

use std::sync::Arc;

use axum::extract::ws::{Message as WsMessage, WebSocket};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use jiva_chat::{CancelRefusal, Rejection, Subscriber};
use jiva_core::{ChatId, Identity, Message, MessageId, Sender, Seq, Timestamp, sender_for};
use jiva_protocol::{
    Ack, ClientFrame, ErrorCode, Limits, Member, Page, PageRequest, Pong, Send as SendFrame,
    ServerFrame, UserSender, Welcome,
};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{catchup, encode};
use crate::conn::{
    Ending, Reader, Refused, Sink, close_socket, reply_to, until_closed, write_live,
};
use crate::frames::Frame;
use crate::limits;
use crate::signals::{Flag, Signals};
use crate::state::State;

/// What a socket's reader and writer both know.
struct Socket<'a> {
    state: &'a Arc<State>,
    chat: &'a ChatId,
    identity: Option<&'a Identity>,
    /// The caller in presence.
    me: &'a Member,
}

/// Runs one v1 socket of `chat` until it closes; `since` is the resume point, if any.
pub(crate) async fn run(
    state: Arc<State>,
    chat: ChatId,
    identity: Option<Identity>,
    socket: WebSocket,
    since: Option<Seq>,
) {
    let conn = state.next_conn_id();
    let span = tracing::debug_span!("conn", conn, chat = %chat, protocol = "v1");
    async move {
        metrics::gauge!("jiva_sockets_open").increment(1.0);
        metrics::counter!("jiva_v1_sockets_total").increment(1);
        tracing::debug!(resume = since.is_some(), "v1 socket opened");
        let (tx, rx) = mpsc::channel(state.config.outbound_queue.max(1));
        let slow = CancellationToken::new();
        let subscriber = Subscriber {
            conn,
            tx: tx.clone(),
            slow: slow.clone(),
        };
        let me = super::member(identity.as_ref(), conn);
        let listener = super::Listener {
            conn,
            tx: tx.clone(),
            slow: slow.clone(),
        };
        let (_present, members) = state.presence.enter(&chat, me.clone(), Some(listener));
        let (sink, stream) = socket.split();
        let (end_tx, end_rx) = oneshot::channel();
        let signals = Arc::new(Signals::default());
        let writer = tokio::spawn(
            write_loop(
                Arc::clone(&state),
                chat.clone(),
                (me.clone(), members),
                since,
                sink,
                rx,
                (slow.clone(), end_rx),
                subscriber,
                Arc::clone(&signals),
                identity.as_ref().and_then(|i| i.expires_at),
            )
            .in_current_span(),
        );
        let socket = Socket {
            state: &state,
            chat: &chat,
            identity: identity.as_ref(),
            me: &me,
        };
        let ending = read_loop(&socket, stream, &tx, &slow, &signals).await;
        let _ = end_tx.send(ending);
        drop(tx);
        let _ = writer.await;
        metrics::gauge!("jiva_sockets_open").decrement(1.0);
        tracing::debug!("v1 socket closed");
    }
    .instrument(span)
    .await;
}

async fn read_loop(
    socket: &Socket<'_>,
    stream: SplitStream<WebSocket>,
    tx: &mpsc::Sender<Frame>,
    slow: &CancellationToken,
    signals: &Signals,
) -> Ending {
    let state = socket.state;
    let reply = reply_to(tx, slow);
    let refuse = |refused| {
        reply(match refused {
            Refused::OverRate => encode::error(
                ErrorCode::RateLimited,
                limits::Refusal::MessageRate.reason(),
                None,
            ),
            Refused::Binary => encode::error(
                ErrorCode::BinaryNotSupported,
                "binary frames are not supported",
                None,
            ),
        })
    };
    let mut reader = Reader::new(state, stream);
    // Made once, not per frame (see the v0 reader).
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
        let frame = match ClientFrame::from_json(&text) {
            Ok(frame) => frame,
            Err(e) => {
                let (code, reason) = if e.is_syntax() {
                    (ErrorCode::InvalidJson, "invalid JSON")
                } else {
                    (ErrorCode::InvalidFrame, "not a v1 frame")
                };
                reply(encode::error(code, reason, readable_ref(&text).as_deref()));
                continue;
            }
        };
        let reference = frame.reference().map(str::to_owned);
        if reference
            .as_deref()
            .is_some_and(|r| !jiva_protocol::valid_id(r))
        {
            reply(encode::error(ErrorCode::InvalidId, "invalid ref", None));
            continue;
        }
        match frame {
            ClientFrame::Send(send) => {
                // The socket must be in its room before its message is shown.
                if !signals.joined.is_set() {
                    tokio::select! {
                        () = signals.joined.wait() => {}
                        () = &mut done => return Ending::Quiet,
                        () = &mut shutdown => return Ending::Shutdown,
                    }
                }
                reply(Box::pin(accept(socket, send)).await);
            }
            ClientFrame::Page(request) => reply(Box::pin(page(socket, request)).await),
            ClientFrame::Ping(p) => reply(encode::own(&ServerFrame::Pong(Pong { r#ref: p.r#ref }))),
            ClientFrame::Cancel(c) => {
                if let Some(refused) = Box::pin(cancel(socket, &c.question_id)).await {
                    reply(encode::error(refused.0, refused.1, c.r#ref.as_deref()));
                }
            }
            // Never answered; relayed (or dropped over the rate) by presence.
            ClientFrame::Typing(t) => {
                state.presence.typing(socket.chat, socket.me, t.active);
            }
        }
    }
}

/// The `ref` of a frame that is JSON but no valid frame, when it has a readable one.
fn readable_ref(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let reference = value.get("ref")?.as_str()?;
    jiva_protocol::valid_id(reference).then(|| reference.to_owned())
}

/// Answers a `send`: `ack` once stored (now or by an earlier send of the same `client_id`), or
/// an error.
async fn accept(socket: &Socket<'_>, send: SendFrame) -> Frame {
    let SendFrame {
        r#ref: reference,
        client_id,
        sender,
        text,
    } = send;
    let refuse = |code, reason: &str| encode::error(code, reason, reference.as_deref());
    if !jiva_protocol::valid_id(&client_id) {
        return refuse(ErrorCode::InvalidId, "invalid client_id");
    }
    if text.is_empty() {
        return refuse(ErrorCode::EmptyText, "message is empty");
    }
    let claimed = match sender {
        UserSender::Agent => Sender::Agent,
        UserSender::Supervisor => Sender::Supervisor,
    };
    let sender = match sender_for(socket.identity, socket.chat, claimed) {
        Ok(sender) => sender,
        Err(denied) => {
            metrics::counter!("jiva_auth_refusals_total", "reason" => denied.code()).increment(1);
            return refuse(ErrorCode::WrongSender, &denied.to_string());
        }
    };
    // A client id names one message of its author in its chat (see `MessageId::for_client`).
    let author = match socket.identity {
        Some(identity) => format!("{}:{}", identity.role.as_str(), identity.agent.as_str()),
        None => sender.as_str().to_owned(),
    };
    let mut message = Message::user(socket.chat.clone(), sender, text);
    message.id = MessageId::for_client(socket.chat, &author, &client_id);
    if let Some(refusal) = limits::copilot_refusal(socket.state, &message) {
        return refuse(ErrorCode::CopilotRateLimited, refusal.reason());
    }
    let message_id = message.id;
    match socket.state.chats.send(message).await {
        Ok(appended) => encode::own(&ServerFrame::Ack(Ack {
            r#ref: reference.clone(),
            client_id,
            message_id: message_id.to_string(),
            seq: appended.seq().get(),
        })),
        Err(Rejection::CopilotBusy) => {
            refuse(ErrorCode::CopilotBusy, Rejection::CopilotBusy.reason())
        }
        Err(rejection) => refuse(ErrorCode::NotStored, rejection.reason()),
    }
}

/// Cancels the turn answering `question`, here or (with a cluster's bus) on the server running
/// it; the refusal's code and reason when there is none.
async fn cancel(socket: &Socket<'_>, question: &str) -> Option<(ErrorCode, &'static str)> {
    let no_turn = CancelRefusal::NoSuchTurn;
    let Ok(question) = MessageId::parse(question) else {
        return Some((ErrorCode::NoSuchTurn, no_turn.reason()));
    };
    match socket
        .state
        .chats
        .cancel_anywhere(socket.chat, question)
        .await
    {
        Ok(()) => None,
        Err(CancelRefusal::NotACopilotChat) => Some((
            ErrorCode::NotACopilotChat,
            CancelRefusal::NotACopilotChat.reason(),
        )),
        Err(refusal) => Some((ErrorCode::NoSuchTurn, refusal.reason())),
    }
}

/// Answers a `page` request from the store, in chat order.
async fn page(socket: &Socket<'_>, request: PageRequest) -> Frame {
    let reference = request.r#ref;
    if request.before == 0 {
        return encode::error(
            ErrorCode::InvalidFrame,
            "before must be at least 1",
            reference.as_deref(),
        );
    }
    let limit = request
        .limit
        .unwrap_or(jiva_protocol::PAGE_DEFAULT)
        .clamp(1, jiva_protocol::PAGE_MAX);
    metrics::counter!("jiva_v1_pages_total").increment(1);
    let older = socket
        .state
        .chats
        .store()
        .before(socket.chat, Seq::new(request.before), limit as usize)
        .await;
    match older {
        Ok(older) => encode::own(&ServerFrame::Page(Page {
            r#ref: reference,
            before: request.before,
            messages: older.messages.iter().map(encode::message).collect(),
            has_older: older.has_older,
        })),
        Err(e) => {
            tracing::error!(error = %e, "reading a page of history failed");
            encode::error(
                ErrorCode::HistoryUnavailable,
                "history unavailable",
                reference.as_deref(),
            )
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_loop(
    state: Arc<State>,
    chat: ChatId,
    me: (Member, Vec<Member>),
    since: Option<Seq>,
    mut sink: Sink,
    mut rx: mpsc::Receiver<Frame>,
    (slow, mut ending): (CancellationToken, oneshot::Receiver<Ending>),
    subscriber: Subscriber<Frame>,
    signals: Arc<Signals>,
    expires_at: Option<Timestamp>,
) {
    let conn = subscriber.conn;
    // Filled as the catch-up goes, so that the closing writes drop live copies of what it
    // showed even when the socket closes mid-catch-up (as v0's writer does).
    let mut replayed = catchup::Replayed::default();
    // In a block: the pinned future borrows the sink and the queue until it is dropped.
    let (outcome, client_closed) = {
        let serve = std::pin::pin!(serve(
            &state,
            &chat,
            me,
            since,
            &mut sink,
            &mut rx,
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
    let text = |frame: &Frame| catchup::live_text(frame, &replayed);
    close_socket(&state, &mut sink, &mut rx, outcome, client_closed, &text).await;
}

/// Welcome, catch-up, then live frames until the queue closes.
#[allow(clippy::too_many_arguments)]
async fn serve(
    state: &State,
    chat: &ChatId,
    (me, members): (Member, Vec<Member>),
    since: Option<Seq>,
    sink: &mut Sink,
    rx: &mut mpsc::Receiver<Frame>,
    subscriber: (Subscriber<Frame>, &Flag),
    replayed: &mut catchup::Replayed,
    ping: &Notify,
) -> Result<(), axum::Error> {
    let welcome = ServerFrame::Welcome(Welcome {
        protocol: jiva_protocol::SUBPROTOCOL.to_owned(),
        chat_id: chat.canonical(),
        you: me.clone(),
        limits: Limits {
            latest: jiva_protocol::LATEST_DEFAULT,
            page_max: jiva_protocol::PAGE_MAX,
            resume_max: u32::try_from(state.config.v1_resume_max).unwrap_or(u32::MAX),
            typing_interval_ms: jiva_protocol::TYPING_INTERVAL_MS,
            max_frame_bytes: state.config.max_frame_bytes as u64,
        },
    });
    sink.feed(WsMessage::Text(encode::text(&welcome))).await?;
    let presence = ServerFrame::Presence(jiva_protocol::Presence { members });
    sink.feed(WsMessage::Text(encode::text(&presence))).await?;
    Box::pin(catchup::run(
        state,
        chat,
        sink,
        since,
        subscriber,
        &mut *replayed,
    ))
    .await?;
    // Following the chat on the bus now: the other servers' members answer.
    state.presence.query(chat);
    let replayed = &*replayed;
    write_live(sink, rx, ping, |frame| catchup::live_text(&frame, replayed)).await
}
