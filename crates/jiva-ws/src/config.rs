//! Transport configuration.

use std::time::Duration;

use jiva_core::HistoryLimits;

use crate::limits::Limits;

/// Limits and sizes of the WebSocket transport. `Config::default()` is what the server uses
/// unless told otherwise.
#[derive(Debug, Clone)]
pub struct Config {
    /// The largest text frame (and message) a client may send, in bytes. A larger one closes
    /// that socket with close code 1009; nobody else notices.
    pub max_frame_bytes: usize,
    /// Frames waiting to be written to one socket. A socket whose queue is full when a frame
    /// arrives is a slow consumer: it is closed with [`crate::CLOSE_SLOW_CONSUMER`].
    pub outbound_queue: usize,
    /// Messages read from the store per history page during replay.
    pub history_page: usize,
    /// WebSocket read buffer per socket, in bytes (tungstenite's default is 128 KiB): every
    /// open socket holds it, and each read from the socket takes at most this much, so a frame
    /// larger than it takes several reads. 512 fits a typical chat message in one read.
    pub read_buffer_bytes: usize,
    /// Bytes the WebSocket writer gathers before writing to the socket.
    pub write_buffer_bytes: usize,
    /// How long a close frame may take to be written before the socket is dropped.
    pub close_timeout: Duration,
    /// How long shutdown waits for sockets and copilot turns to finish, counted from its start
    /// (one deadline, [`crate::Transport::shutdown_deadline`], shared by every step).
    pub shutdown_grace: Duration,
    /// How much earlier conversation a copilot request carries.
    pub copilot_history: HistoryLimits,
    /// The longest a whole copilot turn may take, from the request to `end`.
    pub copilot_turn_timeout: Duration,
    /// Copilot questions of one chat that may wait behind the running turn. A question beyond
    /// that is refused with an error frame and not stored.
    pub copilot_queue: usize,
    /// The largest copilot answer kept, in bytes; a longer one is cut there (see
    /// [`jiva_chat::Config::copilot_max_answer_bytes`]).
    pub copilot_max_answer_bytes: usize,
    /// Limits on sockets, handshakes, messages, copilot questions and idle sockets.
    pub limits: Limits,
    /// Whether the main router serves `/metrics` (false when an admin listener serves it).
    pub metrics_on_main_listener: bool,
    /// Origins (`scheme://host[:port]`) a browser may open sockets from; empty: any. A request
    /// without an `Origin` header (not a browser) is always allowed.
    pub allowed_origins: Vec<String>,
    /// Protocol v1: the most messages a resume (`?since=`) replays; a client further behind is
    /// told to reload (`docs/PROTOCOL-v1.md`).
    pub v1_resume_max: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            outbound_queue: 256,
            history_page: 200,
            read_buffer_bytes: 512,
            write_buffer_bytes: 4 * 1024,
            close_timeout: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
            copilot_history: HistoryLimits::default(),
            copilot_turn_timeout: Duration::from_secs(120),
            copilot_queue: 4,
            copilot_max_answer_bytes: jiva_chat::Config::default().copilot_max_answer_bytes,
            limits: Limits::default(),
            metrics_on_main_listener: true,
            allowed_origins: Vec::new(),
            v1_resume_max: jiva_protocol::RESUME_MAX_DEFAULT as usize,
        }
    }
}

impl Config {
    /// The chat service's part of this configuration.
    pub(crate) fn chat(&self) -> jiva_chat::Config {
        jiva_chat::Config {
            copilot_history: self.copilot_history,
            copilot_turn_timeout: self.copilot_turn_timeout,
            copilot_queue: self.copilot_queue,
            copilot_max_answer_bytes: self.copilot_max_answer_bytes,
            ..jiva_chat::Config::default()
        }
    }
}
