//! `jiva-protocol` is JivaChat's WebSocket protocol v1 as Rust types: every frame a client sends
//! ([`ClientFrame`]) and every frame the server sends ([`ServerFrame`]), with their serde
//! encodings, the stable error codes ([`ErrorCode`]) and the protocol's constants. The server
//! (`jiva-ws`) and Rust clients (`jiva-client`) share it, so both ends read and write the same
//! shapes. `docs/PROTOCOL-v1.md` describes each frame and the conversation; the JSON Schema
//! `docs/protocol-v1.schema.json` is checked against these types by this crate's tests.
//!
//! A client opens the same URL as a v0 client (`/?agentID=…&secondaryID=…`, the same
//! authentication) and offers the WebSocket subprotocol [`SUBPROTOCOL`]; the server answers with
//! it and speaks v1. Any other client gets v0 (`docs/PROTOCOL.md`), unchanged.
//!
//! What it deliberately is not: it does no I/O (no socket, no runtime, no clock), knows nothing
//! of the chat's core types (`jiva-core`) and never decides anything: the server converts
//! between these frames and its domain by hand at its edge, so a change here is a change of the
//! wire contract and nothing else. It must never depend on another JivaChat crate.
//!
//! Invariants:
//! - Every frame is one JSON object with a `type` field naming it (`snake_case`).
//! - Unknown fields are ignored by both ends (a later minor version may add fields); an unknown
//!   `type` is an error the receiver reports (the server: [`ErrorCode::InvalidFrame`]).
//! - Every error the server sends has a stable machine [`ErrorCode`], a human `reason` and the
//!   `ref` of the client frame it answers (`null` when it answers none).
//!
//! ```
//! use jiva_protocol::{ClientFrame, Send, ServerFrame};
//!
//! let frame = ClientFrame::Send(Send {
//!     r#ref: None,
//!     client_id: "c-1".into(),
//!     sender: jiva_protocol::UserSender::Agent,
//!     text: "hello".into(),
//! });
//! let json = frame.to_json();
//! assert_eq!(
//!     json,
//!     r#"{"type":"send","client_id":"c-1","sender":"agent","text":"hello"}"#
//! );
//! assert_eq!(ClientFrame::from_json(&json).ok(), Some(frame));
//! let ack = ServerFrame::from_json(
//!     r#"{"type":"ack","ref":null,"client_id":"c-1","message_id":"0190c5a5-9f1c-7a3e-8b4d-6f7e8a9b0c1d","seq":42}"#,
//! );
//! assert!(matches!(ack, Ok(ServerFrame::Ack(a)) if a.seq == 42));
//! ```

use serde::{Deserialize, Serialize};

/// The WebSocket subprotocol a client offers (`Sec-WebSocket-Protocol`) to speak v1.
pub const SUBPROTOCOL: &str = "jivachat.v1";

/// The JSON Schema (draft 2020-12) of every v1 frame: `$defs/client_frame` and
/// `$defs/server_frame` (the file `docs/protocol-v1.schema.json`). Tests validate the frames
/// they receive against it.
pub const SCHEMA: &str = include_str!("../../../docs/protocol-v1.schema.json");

/// The query parameter of the upgrade URL that asks to resume after a sequence number
/// (`&since=42`): the client saw every message up to and including that number.
pub const SINCE_PARAM: &str = "since";

/// How many of the newest messages a fresh connection receives in its [`Latest`] frame.
pub const LATEST_DEFAULT: u32 = 50;

/// The default `limit` of a [`PageRequest`].
pub const PAGE_DEFAULT: u32 = 50;

/// The largest `limit` of a [`PageRequest`]: a larger one is served as this.
pub const PAGE_MAX: u32 = 100;

/// The default largest number of messages a resume replays; a client further behind gets a
/// [`Reload`] and the [`Latest`] page instead (the server's `--v1-resume-max`).
pub const RESUME_MAX_DEFAULT: u32 = 1000;

/// The server relays at most one [`TypingRequest`] per identity and chat in this many
/// milliseconds; the others are dropped silently.
pub const TYPING_INTERVAL_MS: u32 = 1000;

/// A typing indicator a client has not seen renewed for this long should be hidden.
pub const TYPING_TTL_MS: u32 = 5000;

/// The longest `client_id` and `ref`, in bytes.
pub const ID_MAX_LEN: usize = 64;

/// Whether `id` is a valid `client_id` or `ref`: 1 to [`ID_MAX_LEN`] bytes of
/// `[A-Za-z0-9._:-]`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= ID_MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A frame that could not be read.
#[derive(Debug)]
pub struct DecodeError(serde_json::Error);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid v1 frame: {}", self.0)
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl DecodeError {
    /// Whether the text was not JSON at all (rather than JSON that is no known frame).
    pub fn is_syntax(&self) -> bool {
        self.0.is_syntax() || self.0.is_eof()
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    // These types are plain structs of strings, integers, booleans and vectors, with string
    // keys: serializing them cannot fail. An empty object is a harmless fallback.
    serde_json::to_string(value).unwrap_or_else(|_| String::from("{}"))
}

// ---------------------------------------------------------------------------------------------
// Client → server
// ---------------------------------------------------------------------------------------------

/// A frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Store and show a message.
    Send(Send),
    /// Ask for the page of history before a sequence number.
    Page(PageRequest),
    /// Stop the copilot turn answering a question.
    Cancel(Cancel),
    /// "I am typing" (or stopped).
    Typing(TypingRequest),
    /// A keepalive the server answers with [`Pong`].
    Ping(Ping),
}

impl ClientFrame {
    /// The frame's JSON text.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// Reads a frame.
    pub fn from_json(text: &str) -> Result<Self, DecodeError> {
        serde_json::from_str(text).map_err(DecodeError)
    }

    /// The `ref` the client gave the frame, if any.
    pub fn reference(&self) -> Option<&str> {
        match self {
            Self::Send(f) => f.r#ref.as_deref(),
            Self::Page(f) => f.r#ref.as_deref(),
            Self::Cancel(f) => f.r#ref.as_deref(),
            Self::Typing(f) => f.r#ref.as_deref(),
            Self::Ping(f) => f.r#ref.as_deref(),
        }
    }
}

/// Who sends a message, as a client says it (the server may refuse it: `wrong_sender`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserSender {
    /// The contact-centre agent.
    Agent,
    /// A supervisor (supervisor chats only).
    Supervisor,
}

/// `send`: store `text` in the socket's chat and show it to everyone in it.
///
/// Answered by [`Ack`] once stored, or by an [`ErrorFrame`]. `client_id` is the idempotency key:
/// a second `send` with the same `client_id` in the same chat (on any socket, any server, after
/// a restart) stores nothing and gets the same [`Ack`]; the server does not compare the texts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    /// Echoed in the answer; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
    /// Chosen by the client, unique per message it means (see [`valid_id`]).
    pub client_id: String,
    /// The sender the message is stored as.
    pub sender: UserSender,
    /// The message, not empty.
    pub text: String,
}

/// `page`: the newest `limit` messages numbered below `before`, in chat order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Echoed in the answer; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
    /// A sequence number (at least 1): the page ends just before it.
    pub before: u64,
    /// How many messages at most ([`PAGE_DEFAULT`] when absent; capped at [`PAGE_MAX`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `cancel`: stop the copilot turn that answers `question_id` (a copilot chat only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    /// Echoed in an error; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
    /// The `message_id` of the question (from its [`Ack`] or [`ChatMessage`]).
    pub question_id: String,
}

/// `typing`: the client's user is typing (`active` true, the default) or stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingRequest {
    /// Unused by the server's answer (there is none); allowed for symmetry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
    /// True while typing; false when the user stopped.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// `ping`: answered by [`Pong`] with the same `ref`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Echoed in the [`Pong`]; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Server → client
// ---------------------------------------------------------------------------------------------

/// A frame the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The first frame of every v1 connection.
    Welcome(Welcome),
    /// A fresh connection's (or a reloading one's) newest messages.
    Latest(Latest),
    /// A stored message: replayed on resume, then live.
    Message(ChatMessage),
    /// The catch-up is over: from here on, messages arrive live.
    Live(Live),
    /// The server cannot resume from `since`: drop the local view; [`Latest`] follows.
    Reload(Reload),
    /// A `send` was stored.
    Ack(Ack),
    /// The answer to a `page` request.
    Page(Page),
    /// A piece of a copilot answer as it streams.
    Chunk(Chunk),
    /// A copilot turn ended (always sent, whatever happened).
    TurnEnd(TurnEnd),
    /// Who is in the chat now (sent once, after [`Welcome`]).
    Presence(Presence),
    /// Someone came into the chat.
    PresenceJoin(PresenceChange),
    /// Someone left the chat (their last socket closed).
    PresenceLeave(PresenceChange),
    /// Someone is typing, or stopped.
    Typing(Typing),
    /// Something went wrong; see [`ErrorCode`].
    Error(ErrorFrame),
    /// The answer to a `ping`.
    Pong(Pong),
}

impl ServerFrame {
    /// The frame's JSON text.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// Reads a frame.
    pub fn from_json(text: &str) -> Result<Self, DecodeError> {
        serde_json::from_str(text).map_err(DecodeError)
    }
}

/// A person in a chat: one entry per identity, however many sockets it has open.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    /// The identity's id (its agent id with authentication on; `anon-…` per socket without).
    pub id: String,
    /// Its role.
    pub role: Role,
}

/// The role of a [`Member`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A contact-centre agent.
    Agent,
    /// A supervisor.
    Supervisor,
    /// A socket without an identity (authentication off): one member per socket.
    Anonymous,
}

/// The limits a server applies, told in [`Welcome`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Messages in a fresh connection's [`Latest`] frame.
    pub latest: u32,
    /// The largest `limit` of a `page` request.
    pub page_max: u32,
    /// The most messages a resume replays before answering [`Reload`] instead.
    pub resume_max: u32,
    /// At most one `typing` relayed per identity in this many milliseconds.
    pub typing_interval_ms: u32,
    /// The largest frame accepted, in bytes (larger ones close the socket with 1009).
    pub max_frame_bytes: u64,
}

/// `welcome`: the first frame on every v1 connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Always [`SUBPROTOCOL`].
    pub protocol: String,
    /// The chat's canonical id (`"{agentID}-{secondaryID}"`).
    pub chat_id: String,
    /// The caller, as others see it in presence.
    pub you: Member,
    /// The server's limits.
    pub limits: Limits,
}

/// Who wrote a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageSender {
    /// The contact-centre agent.
    Agent,
    /// A supervisor.
    Supervisor,
    /// The AI copilot.
    Copilot,
}

/// What a stored message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Typed by a person.
    Text,
    /// A whole copilot answer.
    CopilotAnswer,
}

/// A stored message (the `message` frame, and each entry of [`Latest`] and [`Page`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Its place in the chat; `null` only for messages stored before sequence numbers existed
    /// (they come first in chat order, and only in [`Latest`] and [`Page`]).
    pub seq: Option<u64>,
    /// The server's id (a UUID), equal everywhere the message appears.
    pub message_id: String,
    /// Who wrote it.
    pub sender: MessageSender,
    /// What it is.
    pub kind: MessageKind,
    /// Its text (a copilot answer: the whole answer).
    pub text: String,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub ts: i64,
}

/// `latest`: the newest messages of the chat, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest {
    /// At most [`Limits::latest`] messages, in chat order.
    pub messages: Vec<ChatMessage>,
    /// Whether older messages exist (page them with `page` before the first `seq`).
    pub has_older: bool,
}

/// `live`: the replay is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Live {
    /// The newest sequence number the connection has been sent so far (`null`: none).
    pub seq: Option<u64>,
}

/// Why a resume could not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadCode {
    /// `since` is past the chat's newest number (the client's view is from elsewhere).
    UnknownPoint,
    /// More than [`Limits::resume_max`] messages came after `since`.
    TooFarBehind,
}

/// `reload`: the server cannot fill the gap after `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reload {
    /// Why.
    pub code: ReloadCode,
    /// A human explanation.
    pub reason: String,
    /// The `since` the client asked for.
    pub since: u64,
}

/// `ack`: the `send` with `client_id` is stored (now, or by an earlier `send` with the same
/// `client_id`: the same `message_id` and `seq` either way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The `ref` of the `send`, when it had one.
    pub r#ref: Option<String>,
    /// The `send`'s `client_id`.
    pub client_id: String,
    /// The stored message's id.
    pub message_id: String,
    /// Its sequence number in the chat.
    pub seq: u64,
}

/// `page`: the answer to a [`PageRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The request's `ref`, when it had one.
    pub r#ref: Option<String>,
    /// The request's `before`.
    pub before: u64,
    /// The newest messages numbered below `before`, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Whether messages older than the first of this page exist.
    pub has_older: bool,
}

/// `chunk`: a piece of the copilot's answer to `question_id`, values as the copilot sent them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The `message_id` of the question this answers.
    pub question_id: String,
    /// The copilot's `action` (`null` for plain text).
    pub action: Option<String>,
    /// The copilot's `output` (may be `null`; `"Processing Results\n"` is a tool status line).
    pub output: Option<String>,
}

/// How a copilot turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnOutcome {
    /// The copilot answered; the answer is stored (`answer_id`).
    Answered,
    /// The turn failed (an [`ErrorFrame`] with the `question_id` said why); what came is stored.
    Failed,
    /// A client cancelled it; what came is stored, marked as cancelled.
    Cancelled,
}

/// `turn_end`: the copilot turn answering `question_id` is over; the next one may start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnEnd {
    /// The `message_id` of the question.
    pub question_id: String,
    /// How it ended.
    pub outcome: TurnOutcome,
    /// The stored answer's `message_id` (`null`: nothing was stored).
    pub answer_id: Option<String>,
}

/// `presence`: everyone in the chat now, on every server (one entry per identity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The members, the caller included, sorted by role then id.
    pub members: Vec<Member>,
}

/// `presence_join` and `presence_leave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceChange {
    /// Who came or went.
    pub member: Member,
}

/// `typing`: `member` is typing (`active`) or stopped. Never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    /// Who.
    pub member: Member,
    /// True while typing.
    pub active: bool,
}

/// `pong`: the answer to a [`Ping`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The ping's `ref`.
    pub r#ref: Option<String>,
}

/// `error`: a stable `code`, a human `reason`, and the `ref` of the frame it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people (may change between versions).
    pub reason: String,
    /// The `ref` of the client frame this answers (`null`: none, or it had none).
    pub r#ref: Option<String>,
    /// For errors of a copilot turn: the question it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question_id: Option<String>,
}

/// The stable error codes. A client that meets a code it does not know reads it as
/// [`ErrorCode::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The text frame is not JSON.
    InvalidJson,
    /// JSON, but no valid frame: not an object, an unknown `type`, a missing or mistyped field.
    InvalidFrame,
    /// A binary frame (v1 is text frames only).
    BinaryNotSupported,
    /// A `client_id` or `ref` that is not 1–64 bytes of `[A-Za-z0-9._:-]`.
    InvalidId,
    /// A `send` with an empty `text`.
    EmptyText,
    /// The `sender` does not match the caller's role.
    WrongSender,
    /// Over the per-socket message rate: not stored.
    RateLimited,
    /// Over the per-agent copilot questions per minute: not stored.
    CopilotRateLimited,
    /// The copilot chat has too many questions waiting: not stored.
    CopilotBusy,
    /// The store did not take the message: not stored, nobody saw it. Retrying with the same
    /// `client_id` is safe.
    NotStored,
    /// History could not be read (a resume, `latest` or a `page`).
    HistoryUnavailable,
    /// `cancel` on a supervisor chat.
    NotACopilotChat,
    /// `cancel` of a question that has no turn running or waiting on this chat.
    NoSuchTurn,
    /// Copilot turn: no copilot endpoint is configured.
    CopilotNotConfigured,
    /// Copilot turn: the copilot could not be reached.
    CopilotUnavailable,
    /// Copilot turn: the copilot answered with an error status.
    CopilotError,
    /// Copilot turn: the copilot did not answer in time.
    CopilotTimeout,
    /// Copilot turn: the answer was cut off or could not be read.
    CopilotCutOff,
    /// Copilot turn: the answer grew past the server's limit.
    CopilotTooLong,
    /// Copilot turn: the answer could not be stored.
    AnswerNotStored,
    /// The server is shutting down.
    ShuttingDown,
    /// A code this version of the crate does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code a server sends, in the order of the documentation.
    pub const ALL: [ErrorCode; 21] = [
        Self::InvalidJson,
        Self::InvalidFrame,
        Self::BinaryNotSupported,
        Self::InvalidId,
        Self::EmptyText,
        Self::WrongSender,
        Self::RateLimited,
        Self::CopilotRateLimited,
        Self::CopilotBusy,
        Self::NotStored,
        Self::HistoryUnavailable,
        Self::NotACopilotChat,
        Self::NoSuchTurn,
        Self::CopilotNotConfigured,
        Self::CopilotUnavailable,
        Self::CopilotError,
        Self::CopilotTimeout,
        Self::CopilotCutOff,
        Self::CopilotTooLong,
        Self::AnswerNotStored,
        Self::ShuttingDown,
    ];

    /// The code as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidFrame => "invalid_frame",
            Self::BinaryNotSupported => "binary_not_supported",
            Self::InvalidId => "invalid_id",
            Self::EmptyText => "empty_text",
            Self::WrongSender => "wrong_sender",
            Self::RateLimited => "rate_limited",
            Self::CopilotRateLimited => "copilot_rate_limited",
            Self::CopilotBusy => "copilot_busy",
            Self::NotStored => "not_stored",
            Self::HistoryUnavailable => "history_unavailable",
            Self::NotACopilotChat => "not_a_copilot_chat",
            Self::NoSuchTurn => "no_such_turn",
            Self::CopilotNotConfigured => "copilot_not_configured",
            Self::CopilotUnavailable => "copilot_unavailable",
            Self::CopilotError => "copilot_error",
            Self::CopilotTimeout => "copilot_timeout",
            Self::CopilotCutOff => "copilot_cut_off",
            Self::CopilotTooLong => "copilot_too_long",
            Self::AnswerNotStored => "answer_not_stored",
            Self::ShuttingDown => "shutting_down",
            Self::Unknown => "unknown",
        }
    }

    /// Whether resending the same frame later may succeed (`send`: with the same `client_id`).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::CopilotRateLimited
                | Self::CopilotBusy
                | Self::NotStored
                | Self::HistoryUnavailable
                | Self::ShuttingDown
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorFrame {
    /// An error answering the frame whose `ref` was `reference`.
    pub fn new(code: ErrorCode, reason: impl Into<String>, reference: Option<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            r#ref: reference,
            question_id: None,
        }
    }
}

#[cfg(test)]
mod tests;
