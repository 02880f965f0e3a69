//! `jiva-chat` is what a JivaChat chat does, between the ports of `jiva-core` and the
//! transports: it stores a message, orders it in its chat, shows it to the chat's subscribers
//! on this server, publishes it to the other servers, raises its notification, and runs the
//! chat's copilot turns. A transport (the v0 WebSocket in `jiva-ws`, a later one) parses,
//! authenticates and calls [`Chats`]; it never decides what is stored or who is notified.
//!
//! Layout:
//! - `chats`: [`Chats`], the service (registration, subscribers joining and leaving, accepting
//!   a message, the messages other servers publish).
//! - `ports`: [`Ports`] (store, notifier, copilot, bus), [`SingleNode`] (the in-process bus),
//!   the transport's [`Encoder`], [`Config`] and [`Rejection`].
//! - `rooms`: the subscribers of each chat here, and fan-out to them ([`Subscriber`]).
//! - `sequencer`: the per-chat reorder step: stored frames leave in the chat's sequence order.
//! - `turns`: copilot turns, one at a time per chat, each in its own task.
//! - `relay`: [`CancelRelay`], cancels of turns that run on another server (over the bus's
//!   events), and the other servers' cancels of turns that run here.
//!
//! What it deliberately is not: a transport. It knows no socket, HTTP, JSON or wire frame: the
//! transport's [`Encoder`] makes frames of what it shows, and a [`Subscriber`] is a bounded queue
//! of those frames. It never names a concrete store, notifier, copilot or bus.
//!
//! Invariants:
//! - Stored before shown: a message is shown and published only after the store acknowledged
//!   it; a failure is [`Rejection::NotStored`] and shows nothing.
//! - One order per chat, on every server: a stored message is encoded once, and its frame goes
//!   through its chat's sequencer to every subscriber here, in the order a replay returns. The
//!   messages other servers stored (from the [`Bus`](jiva_core::Bus)) enter the same sequencer;
//!   they are shown, never stored or notified again (the storing server notifies, once). A
//!   number that does not arrive within [`GAP_WAIT`] (or [`MAX_WAIT`] while an append of the
//!   chat is in flight here) is read from the store and shown in order; only a number the
//!   store does not have either is skipped (in a cluster, only once the frame after it has
//!   waited [`MAX_WAIT`]: it may be another server's append on its way). A late frame already
//!   shown is dropped.
//! - The local path costs no task hop and no allocation beyond the frame: the frame expected
//!   next is delivered in the appending task; [`SingleNode`]'s `publish` does nothing.
//! - A copilot turn always ends with the encoder's `end` frame; one turn runs at a time per
//!   chat on this server, and a question beyond [`Config::copilot_queue`] waiting is refused
//!   before it is stored.
//! - A subscriber whose queue is full is marked slow (its token cancelled) and dropped from its
//!   chat; the chat goes on.
//! - A chat is followed on the bus while it has a subscriber here.

/// Benchmark hooks (`benches/`); not public API.
#[doc(hidden)]
pub mod bench;
mod chats;
mod ports;
mod relay;
mod rooms;
mod sequencer;
mod turns;

pub use chats::Chats;
pub use ports::{
    CancelRefusal, Config, Encoder, Ports, Rejection, SingleNode, TurnEnding, TurnError,
};
pub use relay::{CancelRelay, REMOTE_CANCEL_WAIT, RemoteEnd};
pub use rooms::Subscriber;
pub use sequencer::{GAP_WAIT, MAX_WAIT, may_still_arrive};

#[cfg(test)]
mod testing {
    use jiva_core::{CopilotChunk, Message};

    /// Frames as plain strings: `"{seq}:{text}"` for a stored message.
    pub struct TextEncoder;

    impl crate::Encoder for TextEncoder {
        type Frame = String;

        fn stored(&self, message: &Message) -> String {
            let seq = message.seq.map_or(0, jiva_core::Seq::get);
            format!("{seq}:{}", message.text())
        }

        fn chunk(&self, chunk: &CopilotChunk) -> String {
            format!("chunk:{}", chunk.output.as_deref().unwrap_or(""))
        }

        fn error(&self, reason: &str) -> String {
            format!("error:{reason}")
        }

        fn end(&self) -> String {
            "end".to_owned()
        }
    }
}
