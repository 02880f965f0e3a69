//! `jiva-copilot` is the streaming HTTP client of the AI copilot: [`HttpCopilot`] implements the
//! [`jiva_core::Copilot`] port. It POSTs the question and the earlier turns as JSON to the
//! configured endpoint and decodes the streamed answer into [`jiva_core::CopilotChunk`]s as the
//! bytes arrive.
//!
//! Layout:
//! - [`Config`] and [`ConfigError`]: the endpoint, the time limits and the decoder's size limit.
//! - [`HttpCopilot`]: one shared `reqwest` client (connection pool, rustls), the request, status
//!   and time-limit handling, and the translation of every failure into a
//!   [`jiva_core::CopilotError`].
//! - [`decode`]: the incremental, bounded decoder of the answer body (objects back to back,
//!   newline-delimited JSON or server-sent events), usable on its own and fuzzed.
//! - `testing` (feature `testing`, for dev-dependencies): a scripted copilot stand-in on
//!   loopback that records what it receives.
//!
//! What this crate deliberately is not: it knows nothing of WebSockets, storage, notifications or
//! the chat. It does not assemble, store or relay the answer, send `end`, or limit the whole turn;
//! that is the relay's job in `jiva-ws`, which sees this crate only as `Arc<dyn Copilot>`. It
//! never reads the environment (not even the `HTTP_PROXY` variables `reqwest` would read by
//! default) and never prints; it logs sizes, statuses and durations, never question or answer
//! text.
//!
//! Invariants:
//! - The request body is exactly `{"input":..,"chat_history":[{"role":"human"|"ai","content":..}]}`,
//!   built from this crate's own wire structs, never from serde derives on core types.
//! - Chunk values are passed through unchanged: `null` or absent stays `None`, newlines are kept.
//! - Errors before the first chunk come from [`jiva_core::Copilot::ask`]; after it, an error is the
//!   stream's last item and the stream ends there.
//! - Memory per call is bounded by the decoder's object limit; no input makes the decoder panic.

mod client;
mod config;
pub mod decode;
#[cfg(feature = "testing")]
pub mod testing;
mod wire;

pub use client::HttpCopilot;
pub use config::{Config, ConfigError};
pub use decode::{ChunkDecoder, DecodeError};
