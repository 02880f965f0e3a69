//! What can go wrong.

use jiva_protocol::ErrorFrame;

/// An error of the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The [`Config`](crate::Config) has problems (all of them, separated by `; `).
    #[error("invalid client configuration: {0}")]
    InvalidConfig(String),
    /// The server answered the upgrade with an HTTP status (400 bad chat, 401/403 auth, …).
    #[error("the server refused the connection: HTTP {status}")]
    Refused {
        /// The status code.
        status: u16,
    },
    /// v1 was asked for and the server did not choose `jivachat.v1` (a server without v1).
    #[error("the server does not speak jivachat.v1")]
    V1NotAccepted,
    /// The server could not be reached, or the connection failed.
    #[error("connection failed: {0}")]
    Connection(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The TLS handshake of a `wss://` connection was refused: the server's certificate does
    /// not chain to the roots given, is not valid for the URL's host name, has expired, or the
    /// handshake itself failed. Retrying will not change it: the client does not reconnect.
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] rustls::Error),
    /// A connection attempt took longer than `connect_timeout`.
    #[error("connection attempt timed out")]
    Timeout,
    /// The server answered the frame with an error frame.
    #[error("the server refused the frame: {} ({})", .0.code, .0.reason)]
    Rejected(ErrorFrame),
    /// The connection dropped before the answer came (a `page`); ask again.
    #[error("disconnected before the answer came")]
    Disconnected,
    /// The client is closed (by [`Client::close`](crate::Client::close), or it gave up
    /// reconnecting).
    #[error("the client is closed")]
    Closed,
    /// The operation exists only in v1.
    #[error("this needs protocol v1")]
    NotV1,
    /// Too many sends wait for their `ack` (`max_pending`).
    #[error("too many sends wait for an ack")]
    TooManyPending,
    /// A `client_id` that is not 1–64 bytes of `[A-Za-z0-9._:-]`.
    #[error("invalid client id")]
    InvalidId,
}

impl ClientError {
    /// Whether reconnecting may help (the server or network may come back); a refusal of the
    /// request itself (4xx but 408/429, v1 not spoken, a bad config) will not change.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Refused { status } => *status >= 500 || *status == 408 || *status == 429,
            Self::Connection(_) | Self::Timeout | Self::Disconnected => true,
            _ => false,
        }
    }
}
