//! The task behind a [`Client`](crate::Client): owns the socket, reconnects, resends, resumes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use jiva_protocol::{
    Ack, Cancel, ClientFrame, ErrorCode, Page, PageRequest, SUBPROTOCOL, ServerFrame, TypingRequest,
};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::endpoints::Endpoints;
use crate::pending::PendingSends;
use crate::seq::{Seen, SeqTracker};
use crate::tls::{self, Dialer};
use crate::{ClientError, Config, Event, Protocol, TokenPlacement, V0Frame};

type Ws = WebSocketStream<tls::Stream>;
type Sink = SplitSink<Ws, Message>;
type Stream = SplitStream<Ws>;

/// How long a clean close waits for the server's close frame.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// What a [`Client`](crate::Client) asks its task to do.
pub(crate) enum Command {
    Send {
        client_id: String,
        text: String,
        reply: oneshot::Sender<Result<Ack, ClientError>>,
    },
    Say {
        text: String,
    },
    Page {
        before: u64,
        limit: Option<u32>,
        reply: oneshot::Sender<Result<Page, ClientError>>,
    },
    Cancel {
        question_id: String,
    },
    Typing {
        active: bool,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

const NO_SEQ: u64 = u64::MAX;

/// What the task shares with the handles: read without asking the task.
#[derive(Debug)]
pub(crate) struct Shared {
    last_seq: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) resumed: AtomicU64,
    pub(crate) duplicates_dropped: AtomicU64,
    /// The index of the endpoint of the current (or last) connection.
    pub(crate) endpoint: AtomicUsize,
}

impl Shared {
    pub(crate) fn new(last_seq: Option<u64>) -> Self {
        Self {
            last_seq: AtomicU64::new(last_seq.unwrap_or(NO_SEQ)),
            connections: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            duplicates_dropped: AtomicU64::new(0),
            endpoint: AtomicUsize::new(0),
        }
    }

    pub(crate) fn last_seq(&self) -> Option<u64> {
        match self.last_seq.load(Ordering::Acquire) {
            NO_SEQ => None,
            seq => Some(seq),
        }
    }
}

/// Opens the first connection: each endpoint once, in turn, until one opens. An error that
/// will not change (a refusal of the request, not of the endpoint) is returned at once; when
/// every endpoint fails, the last endpoint's error.
pub(crate) async fn open_first(
    config: &Config,
    dialer: &Dialer,
    endpoints: &mut Endpoints,
) -> Result<Ws, ClientError> {
    let mut left = endpoints.len();
    loop {
        match open(config, dialer, endpoints.current(), config.since).await {
            Ok(ws) => return Ok(ws),
            Err(e) if e.is_transient() && left > 1 => {
                tracing::debug!(endpoint = endpoints.index(), error = %e, "jiva-client: endpoint unreachable, trying the next");
                endpoints.failed();
                left -= 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Opens one connection to the endpoint `base` (no retry).
pub(crate) async fn open(
    config: &Config,
    dialer: &Dialer,
    base: &str,
    since: Option<u64>,
) -> Result<Ws, ClientError> {
    let url = config.connect_url(base, since);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::InvalidConfig(format!("url: {e}")))?;
    if config.protocol == Protocol::V1 {
        request.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    if let (Some(token), TokenPlacement::Header) = (&config.token, config.token_placement) {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| ClientError::InvalidConfig("the token is not a valid header".into()))?;
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let attempt = tokio::time::timeout(config.connect_timeout, async {
        let stream = dialer.dial(request.uri()).await?;
        Ok::<_, ClientError>(tokio_tungstenite::client_async(request, stream).await)
    })
    .await
    .map_err(|_| ClientError::Timeout)??;
    match attempt {
        Ok((ws, response)) => {
            let chosen = response.headers().get(SEC_WEBSOCKET_PROTOCOL);
            if config.protocol == Protocol::V1 && chosen.is_none_or(|p| p != SUBPROTOCOL) {
                return Err(ClientError::V1NotAccepted);
            }
            Ok(ws)
        }
        Err(WsError::Http(response)) => Err(ClientError::Refused {
            status: response.status().as_u16(),
        }),
        Err(WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(_))) => {
            Err(ClientError::V1NotAccepted)
        }
        Err(e) => Err(ClientError::Connection(Box::new(e))),
    }
}

/// Why a connection ended.
enum Ended {
    /// It dropped: reconnect.
    Lost(String),
    /// The client asked to close (or every handle is gone).
    Close,
}

type AckWaiter = oneshot::Sender<Result<Ack, ClientError>>;

pub(crate) struct Driver {
    config: Config,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    dialer: Dialer,
    endpoints: Endpoints,
    seq: SeqTracker,
    pending: PendingSends<AckWaiter>,
    pages: HashMap<String, oneshot::Sender<Result<Page, ClientError>>>,
    /// v0 messages and v1 cancels given while disconnected, written on the next connection.
    outbox: VecDeque<String>,
    next_ref: u64,
    closing: Option<oneshot::Sender<()>>,
    final_error: Option<ClientError>,
    /// Whether the current connection has caught up (v1 `live`; v0 at once).
    caught_up: bool,
}

impl Driver {
    pub(crate) fn new(
        config: Config,
        dialer: Dialer,
        endpoints: Endpoints,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
    ) -> Self {
        let seq = SeqTracker::starting_at(config.since);
        let pending = PendingSends::new(config.max_pending);
        Self {
            config,
            shared,
            commands,
            events,
            dialer,
            endpoints,
            seq,
            pending,
            pages: HashMap::new(),
            outbox: VecDeque::new(),
            next_ref: 0,
            closing: None,
            final_error: None,
            caught_up: false,
        }
    }

    /// Serves `first`, then reconnects after every drop until closed or out of attempts.
    pub(crate) async fn run(mut self, first: Ws) {
        let mut socket = Some(first);
        let mut since = self.config.since;
        let mut attempt = 0;
        loop {
            let ws = match socket.take() {
                Some(ws) => ws,
                None => {
                    since = self.seq.last();
                    match self.reconnect(&mut attempt, since).await {
                        Some(ws) => ws,
                        None => break,
                    }
                }
            };
            self.caught_up = self.config.protocol == Protocol::V0;
            match self.serve(ws, since).await {
                Ended::Close => break,
                Ended::Lost(reason) => {
                    // A connection dropped before it caught up (the server could not read the
                    // history) counts as a failed attempt: the next one waits longer.
                    if self.caught_up {
                        attempt = 0;
                    }
                    tracing::debug!(%reason, pending = self.pending.len(), "jiva-client: connection lost");
                    for (_, reply) in self.pages.drain() {
                        let _ = reply.send(Err(ClientError::Disconnected));
                    }
                    self.emit(Event::Disconnected { reason }).await;
                }
            }
        }
        self.finish();
    }

    async fn emit(&self, event: Event) {
        // A dropped `Events` only means nobody listens; the client goes on.
        let _ = self.events.send(event).await;
    }

    fn next_ref(&mut self, prefix: &str) -> String {
        self.next_ref += 1;
        format!("{prefix}-{}", self.next_ref)
    }

    /// Waits and reconnects until a connection opens (`None`: closed or given up).
    async fn reconnect(&mut self, attempt: &mut u32, since: Option<u64>) -> Option<Ws> {
        loop {
            *attempt = attempt.saturating_add(1);
            let Some(delay) = self.config.reconnect.delay(*attempt, fastrand::f64()) else {
                self.final_error = Some(ClientError::Connection(
                    format!("gave up after {} attempts", *attempt - 1).into(),
                ));
                return None;
            };
            self.emit(Event::Reconnecting {
                attempt: *attempt,
                delay,
            })
            .await;
            let wake = tokio::time::sleep(delay);
            tokio::pin!(wake);
            loop {
                tokio::select! {
                    () = &mut wake => break,
                    command = self.commands.recv() => match command {
                        None => return None,
                        Some(command) => if self.offline(command) {
                            return None;
                        },
                    },
                }
            }
            match open(&self.config, &self.dialer, self.endpoints.current(), since).await {
                Ok(ws) => return Some(ws),
                Err(e) if e.is_transient() => {
                    tracing::debug!(attempt = *attempt, endpoint = self.endpoints.index(), error = %e, "jiva-client: reconnection failed");
                    // The next attempt goes to the next endpoint (the same one when alone).
                    self.endpoints.failed();
                }
                Err(e) => {
                    self.final_error = Some(e);
                    return None;
                }
            }
        }
    }

    /// A command while disconnected; true when it asks to close.
    fn offline(&mut self, command: Command) -> bool {
        match command {
            Command::Send {
                client_id,
                text,
                reply,
            } => {
                self.add_pending(client_id, &text, reply);
            }
            Command::Say { text } => {
                let frame = self.v0_frame(&text);
                self.queue(frame);
            }
            Command::Cancel { question_id } => {
                let frame = self.cancel_frame(question_id);
                self.queue(frame);
            }
            Command::Page { reply, .. } => {
                let _ = reply.send(Err(ClientError::Disconnected));
            }
            // An indicator is only worth anything now.
            Command::Typing { .. } => {}
            Command::Close { done } => {
                self.closing = Some(done);
                return true;
            }
        }
        false
    }

    fn queue(&mut self, frame: String) {
        if self.outbox.len() >= self.config.max_pending {
            tracing::warn!("jiva-client: outbox full while disconnected, frame dropped");
            return;
        }
        self.outbox.push_back(frame);
    }

    /// Records a send; false when the table is full (the caller was told).
    fn add_pending(&mut self, client_id: String, text: &str, reply: AckWaiter) -> bool {
        let frame = ClientFrame::Send(jiva_protocol::Send {
            r#ref: Some(client_id.clone()),
            client_id: client_id.clone(),
            sender: self.config.sender,
            text: text.to_owned(),
        })
        .to_json();
        match self.pending.add(&client_id, frame, reply) {
            Ok(()) => true,
            Err(reply) => {
                let _ = reply.send(Err(ClientError::TooManyPending));
                false
            }
        }
    }

    fn v0_frame(&self, text: &str) -> String {
        let sender = match self.config.sender {
            jiva_protocol::UserSender::Agent => "agent",
            jiva_protocol::UserSender::Supervisor => "supervisor",
        };
        serde_json::json!({
            "chat_id": format!("{}-{}", self.config.agent_id, self.config.chat.as_str()),
            "sender": sender,
            "message": text,
        })
        .to_string()
    }

    fn cancel_frame(&mut self, question_id: String) -> String {
        ClientFrame::Cancel(Cancel {
            r#ref: Some(self.next_ref("x")),
            question_id,
        })
        .to_json()
    }

    /// Serves one connection until it drops or the client closes.
    async fn serve(&mut self, ws: Ws, since: Option<u64>) -> Ended {
        self.shared.connections.fetch_add(1, Ordering::Relaxed);
        self.shared
            .endpoint
            .store(self.endpoints.index(), Ordering::Relaxed);
        let since = since.filter(|_| self.config.protocol == Protocol::V1);
        if since.is_some() {
            self.shared.resumed.fetch_add(1, Ordering::Relaxed);
        }
        let (mut sink, mut stream) = ws.split();
        self.emit(Event::Connected {
            protocol: self.config.protocol,
            since,
        })
        .await;
        let resend: Vec<String> = self.pending.frames().map(str::to_owned).collect();
        let queued: Vec<String> = self.outbox.drain(..).collect();
        for frame in resend.into_iter().chain(queued) {
            if let Err(e) = sink.send(Message::text(frame)).await {
                return Ended::Lost(e.to_string());
            }
        }
        let mut closed_by_server = None;
        loop {
            tokio::select! {
                frame = stream.next() => match frame {
                    None | Some(Err(WsError::ConnectionClosed)) => {
                        return Ended::Lost(closed_by_server.unwrap_or_else(|| "the connection ended".into()));
                    }
                    Some(Err(e)) => return Ended::Lost(e.to_string()),
                    Some(Ok(Message::Text(text))) => {
                        if let Some(reason) = self.on_text(text.as_str()).await {
                            close_socket(sink, stream).await;
                            return Ended::Lost(reason);
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.map_or(1005, |f| u16::from(f.code));
                        closed_by_server = Some(format!("closed by the server ({code})"));
                    }
                    Some(Ok(_)) => {}
                },
                command = self.commands.recv() => match command {
                    None => {
                        close_socket(sink, stream).await;
                        return Ended::Close;
                    }
                    Some(Command::Close { done }) => {
                        self.closing = Some(done);
                        close_socket(sink, stream).await;
                        return Ended::Close;
                    }
                    Some(command) => {
                        if let Err(e) = self.online(command, &mut sink).await {
                            return Ended::Lost(e.to_string());
                        }
                    }
                },
            }
        }
    }

    /// A command while connected (never `Close`).
    async fn online(&mut self, command: Command, sink: &mut Sink) -> Result<(), WsError> {
        let frame = match command {
            Command::Send {
                client_id,
                text,
                reply,
            } => {
                if !self.add_pending(client_id.clone(), &text, reply) {
                    return Ok(());
                }
                match self.pending.frame_of(&client_id) {
                    Some(frame) => frame.to_owned(),
                    None => return Ok(()),
                }
            }
            Command::Say { text } => self.v0_frame(&text),
            Command::Page {
                before,
                limit,
                reply,
            } => {
                let r = self.next_ref("p");
                self.pages.insert(r.clone(), reply);
                ClientFrame::Page(PageRequest {
                    r#ref: Some(r),
                    before,
                    limit,
                })
                .to_json()
            }
            Command::Cancel { question_id } => self.cancel_frame(question_id),
            Command::Typing { active } => ClientFrame::Typing(TypingRequest {
                r#ref: None,
                active,
            })
            .to_json(),
            Command::Close { done } => {
                self.closing = Some(done);
                return Ok(());
            }
        };
        sink.send(Message::text(frame)).await
    }

    /// Handles one text frame; `Some(reason)` when the connection must be dropped (and
    /// resumed on a new one).
    async fn on_text(&mut self, text: &str) -> Option<String> {
        if self.config.protocol == Protocol::V0 {
            self.emit(Event::V0(V0Frame::parse(text))).await;
            return None;
        }
        let frame = match ServerFrame::from_json(text) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(error = %e, bytes = text.len(), "jiva-client: unreadable v1 frame");
                return None;
            }
        };
        let mut drop_connection = None;
        match &frame {
            ServerFrame::Message(m) => {
                if let Some(seq) = m.seq {
                    if self.seq.message(seq) == Seen::Duplicate {
                        self.shared
                            .duplicates_dropped
                            .fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                }
            }
            ServerFrame::Latest(l) => self
                .seq
                .reached(l.messages.iter().filter_map(|m| m.seq).max()),
            ServerFrame::Live(l) => {
                self.seq.reached(l.seq);
                self.caught_up = true;
            }
            ServerFrame::Reload(_) => self.seq.reset(),
            ServerFrame::Ack(ack) => {
                if let Some(answered) = self.pending.answer(&ack.client_id) {
                    for waiter in answered.waiters {
                        let _ = waiter.send(Ok(ack.clone()));
                    }
                }
            }
            ServerFrame::Page(page) => {
                if let Some(reply) = page.r#ref.as_ref().and_then(|r| self.pages.remove(r)) {
                    let _ = reply.send(Ok(page.clone()));
                }
            }
            // The server could not read the catch-up (no `ref`: not a page's answer): what
            // follows on this connection would leave a hole behind the resume point. Dropped
            // before reading further, it is resumed from the same point on a new connection.
            ServerFrame::Error(error)
                if error.r#ref.is_none() && error.code == ErrorCode::HistoryUnavailable =>
            {
                drop_connection = Some("the server could not read the history to catch up".into());
            }
            ServerFrame::Error(error) => {
                if let Some(r) = &error.r#ref {
                    if let Some(answered) = self.pending.answer(r) {
                        for waiter in answered.waiters {
                            let _ = waiter.send(Err(ClientError::Rejected(error.clone())));
                        }
                    } else if let Some(reply) = self.pages.remove(r) {
                        let _ = reply.send(Err(ClientError::Rejected(error.clone())));
                    }
                }
            }
            _ => {}
        }
        self.shared
            .last_seq
            .store(self.seq.last().unwrap_or(NO_SEQ), Ordering::Release);
        self.emit(Event::V1(frame)).await;
        drop_connection
    }

    /// The client is done: every waiter learns it, then the closer.
    fn finish(mut self) {
        for answered in self.pending.drain() {
            for waiter in answered.waiters {
                let _ = waiter.send(Err(ClientError::Closed));
            }
        }
        for (_, reply) in self.pages.drain() {
            let _ = reply.send(Err(ClientError::Closed));
        }
        // The last event; when nobody reads the queue, the end of `Events` says it as well.
        let _ = self.events.try_send(Event::Closed {
            error: self.final_error.take(),
        });
        if let Some(done) = self.closing.take() {
            let _ = done.send(());
        }
    }
}

/// The close handshake: our close frame, then the server's (bounded).
async fn close_socket(mut sink: Sink, mut stream: Stream) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    if sink.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_PATIENCE, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}
