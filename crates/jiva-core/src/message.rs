//! Messages: user messages and copilot answers, with server-assigned ids and timestamps.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::chat::ChatId;

/// A message id: a UUID assigned by the server (version 7, so ids sort by creation time). Items
/// written by the earlier server carry random (v4) ids, which are accepted too; a message a
/// client named with its own id (protocol v1's `client_id`) has an id derived from that name
/// ([`MessageId::for_client`], version 5), so that a resend is the same message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(Uuid);

/// The namespace of [`MessageId::for_client`] ids (a fixed random UUID; never change it).
const CLIENT_NAMESPACE: Uuid = Uuid::from_u128(0x6f1e_2c4a_9b3d_4e57_8a60_d1c2_b3a4_9587);

/// A string that is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message id is not a UUID")]
pub struct InvalidMessageId;

impl MessageId {
    /// A fresh, time-ordered (v7) id.
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id of the message that `author` named `client_id` in `chat`: the same for every
    /// resend, on every server and after restarts, so that a store, which appends
    /// idempotently by id, keeps it once. A UUID v5 (SHA-1 of `"{chat}\n{author}\n{client_id}"`
    /// in a JivaChat namespace): it never equals a server-made (v7) id.
    pub fn for_client(chat: &ChatId, author: &str, client_id: &str) -> Self {
        let name = format!("{}\n{author}\n{client_id}", chat.canonical());
        Self(Uuid::new_v5(&CLIENT_NAMESPACE, name.as_bytes()))
    }

    /// Whether this id was derived from a client's name for its message
    /// ([`MessageId::for_client`], a UUID v5): the same message may come again, from any
    /// server, at any time, so a store must recognise it whatever it remembers.
    pub fn is_for_client(&self) -> bool {
        self.0.get_version_num() == 5
    }

    /// Wraps an existing UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// Parses the hyphenated (or any other standard) UUID form.
    pub fn parse(raw: &str) -> Result<Self, InvalidMessageId> {
        Uuid::parse_str(raw).map(Self).map_err(|_| InvalidMessageId)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// A point in time, in whole milliseconds since the Unix epoch (the storage resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Now, truncated to the millisecond. A clock set before 1970 reads as the epoch.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// From epoch milliseconds.
    pub fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Epoch milliseconds.
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (floored, also before 1970).
    pub fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// The nanoseconds past [`Timestamp::secs`], in `0..1_000_000_000`.
    pub fn subsec_nanos(self) -> u32 {
        // rem_euclid(1000) is in 0..1000, so the product fits in u32.
        u32::try_from(self.0.rem_euclid(1000)).unwrap_or(0) * 1_000_000
    }
}

/// A message's place in its chat: the store numbers each chat's messages 1, 2, 3, ... as it
/// stores them, and that number is the chat's one order (live and replayed).
///
/// Numbers are per chat, assigned once (a retried append of the same message keeps its number)
/// and increasing in the order of storage. A store may leave a number unused (an append that
/// failed after taking it), so readers must not expect every number to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seq(u64);

impl Seq {
    /// The first message of a chat.
    pub const FIRST: Self = Self(1);

    /// Wraps a number read from storage or a wire.
    pub fn new(n: u64) -> Self {
        Self(n)
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The number after this one.
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sender {
    /// The contact-centre agent.
    Agent,
    /// A supervisor (supervisor chats only).
    Supervisor,
    /// The AI copilot (copilot answers only).
    Copilot,
}

/// A sender name that is none of `agent`, `supervisor`, `Copilot`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sender must be \"agent\" or \"supervisor\"")]
pub struct UnknownSender;

impl Sender {
    /// The wire and storage spelling: `agent`, `supervisor`, `Copilot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Supervisor => "supervisor",
            Self::Copilot => "Copilot",
        }
    }

    /// Parses a stored sender name (`Copilot` is accepted in any case, as older items vary).
    pub fn parse(raw: &str) -> Result<Self, UnknownSender> {
        match raw {
            "agent" => Ok(Self::Agent),
            "supervisor" => Ok(Self::Supervisor),
            _ if raw.eq_ignore_ascii_case("copilot") => Ok(Self::Copilot),
            _ => Err(UnknownSender),
        }
    }

    /// Parses the sender of a chat message sent by a client: only `agent` and `supervisor`.
    pub fn parse_user(raw: &str) -> Result<Self, UnknownSender> {
        match raw {
            "agent" => Ok(Self::Agent),
            "supervisor" => Ok(Self::Supervisor),
            _ => Err(UnknownSender),
        }
    }
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A message typed by a person (`Message` in storage).
    Text(String),
    /// A whole copilot answer (`Action = "Combined"`, `Output` in storage).
    CopilotAnswer(String),
}

/// A stored (or about to be stored) message of one chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Assigned by the server; equal in the live frame and in storage.
    pub id: MessageId,
    /// The chat it belongs to.
    pub chat: ChatId,
    /// Who wrote it.
    pub sender: Sender,
    /// When the server accepted it, to the millisecond.
    pub timestamp: Timestamp,
    /// Its content.
    pub body: Body,
    /// Its place in the chat, once stored: set on messages read back from a store; `None` on a
    /// message not stored yet, and on messages stored before stores numbered them.
    pub seq: Option<Seq>,
}

impl Message {
    /// A new message typed by `sender`, with a fresh id and the current time.
    pub fn user(chat: ChatId, sender: Sender, text: String) -> Self {
        Self {
            id: MessageId::new_v7(),
            chat,
            sender,
            timestamp: Timestamp::now(),
            body: Body::Text(text),
            seq: None,
        }
    }

    /// A new copilot answer, with a fresh id and the current time.
    pub fn copilot_answer(chat: ChatId, output: String) -> Self {
        Self {
            id: MessageId::new_v7(),
            chat,
            sender: Sender::Copilot,
            timestamp: Timestamp::now(),
            body: Body::CopilotAnswer(output),
            seq: None,
        }
    }

    /// The text, whichever the kind.
    pub fn text(&self) -> &str {
        match &self.body {
            Body::Text(t) | Body::CopilotAnswer(t) => t,
        }
    }

    /// Whether this is a copilot answer.
    pub fn is_copilot_answer(&self) -> bool {
        matches!(self.body, Body::CopilotAnswer(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_splits_into_secs_and_nanos() {
        let t = Timestamp::from_millis(1_718_000_000_123);
        assert_eq!(t.secs(), 1_718_000_000);
        assert_eq!(t.subsec_nanos(), 123_000_000);
        let before_epoch = Timestamp::from_millis(-1);
        assert_eq!(before_epoch.secs(), -1);
        assert_eq!(before_epoch.subsec_nanos(), 999_000_000);
    }

    #[test]
    fn v7_ids_sort_by_creation() {
        let a = MessageId::new_v7();
        let b = MessageId::new_v7();
        assert!(a < b);
        assert_eq!(MessageId::parse(&a.to_string()), Ok(a));
        assert!(MessageId::parse("nope").is_err());
    }

    #[test]
    fn a_client_named_id_is_the_same_for_every_resend_and_scoped_to_its_chat_and_author() {
        use crate::{AgentId, ConnectionType};
        let chat = |kind| ChatId::new(AgentId::parse("a-1").unwrap(), kind);
        let supervisor = chat(ConnectionType::Supervisor);
        let id = MessageId::for_client(&supervisor, "agent", "c-1");
        assert_eq!(id, MessageId::for_client(&supervisor, "agent", "c-1"));
        assert_eq!(id.as_uuid().get_version_num(), 5);
        assert_ne!(id, MessageId::for_client(&supervisor, "agent", "c-2"));
        assert_ne!(id, MessageId::for_client(&supervisor, "supervisor", "c-1"));
        assert_ne!(
            id,
            MessageId::for_client(&chat(ConnectionType::Copilot), "agent", "c-1")
        );
    }

    #[test]
    fn senders_round_trip_and_users_cannot_claim_copilot() {
        for s in [Sender::Agent, Sender::Supervisor, Sender::Copilot] {
            assert_eq!(Sender::parse(s.as_str()), Ok(s));
        }
        assert_eq!(Sender::parse("copilot"), Ok(Sender::Copilot));
        assert!(Sender::parse_user("Copilot").is_err());
        assert!(Sender::parse_user("Agent").is_err());
    }
}
