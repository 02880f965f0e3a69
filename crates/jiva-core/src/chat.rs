//! Chats: the pair (agent id, connection type).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

/// The id of a contact-centre agent, kept whole.
///
/// Agent ids are UUIDs in the deployed client, so they contain `-`; nothing in JivaChat ever
/// splits a string to recover one (the earlier server did, and stored truncated ids).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(String);

/// Why a string is not an [`AgentId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidAgentId {
    /// The id is missing or empty.
    #[error("agentID is missing or empty")]
    Empty,
    /// The id is longer than [`AgentId::MAX_LEN`] bytes.
    #[error("agentID is longer than {max} bytes", max = AgentId::MAX_LEN)]
    TooLong,
    /// The id holds a character outside `[A-Za-z0-9._:@-]`.
    #[error("agentID may only contain letters, digits and . _ : @ -")]
    BadCharacter,
}

impl AgentId {
    /// The longest accepted agent id, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates `raw` as an agent id.
    pub fn parse(raw: &str) -> Result<Self, InvalidAgentId> {
        if raw.is_empty() {
            return Err(InvalidAgentId::Empty);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(InvalidAgentId::TooLong);
        }
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-');
        if !raw.chars().all(allowed) {
            return Err(InvalidAgentId::BadCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The whole id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `-` (the whole id when it has none). The deployed client
    /// compares notification `primaryID`s with this segment.
    pub fn first_segment(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AgentId {
    type Err = InvalidAgentId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Which of an agent's chats a socket belongs to (`secondaryID` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnectionType {
    /// The human chat between one agent and the supervisors.
    Supervisor,
    /// The agent's chat with the AI copilot.
    Copilot,
}

/// A `secondaryID` that is neither `supervisor` nor `copilot`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secondaryID must be \"supervisor\" or \"copilot\"")]
pub struct UnknownConnectionType;

impl ConnectionType {
    /// The wire and storage spelling: `supervisor` or `copilot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Supervisor => "supervisor",
            Self::Copilot => "copilot",
        }
    }

    /// Parses the exact, case-sensitive wire spelling.
    pub fn parse(raw: &str) -> Result<Self, UnknownConnectionType> {
        match raw {
            "supervisor" => Ok(Self::Supervisor),
            "copilot" => Ok(Self::Copilot),
            _ => Err(UnknownConnectionType),
        }
    }
}

impl fmt::Display for ConnectionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConnectionType {
    type Err = UnknownConnectionType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A chat: one agent's supervisor chat or copilot chat.
///
/// Made once per connection and then cloned and hashed for every message, so it is shared
/// (`Arc`: a clone is a reference count), keeps its canonical string, and hashes as one `u64`
/// worked out when it is made, with a key random per process (as std's `HashMap` keys are, so
/// ids a client chooses cannot be made to collide).
#[derive(Clone)]
pub struct ChatId(Arc<Parts>);

struct Parts {
    agent: AgentId,
    kind: ConnectionType,
    /// `"{agent}-{kind}"`.
    canonical: Box<str>,
    /// The canonical string hashed with [`hash_key`].
    hash: u64,
}

/// The process's key for [`ChatId`] hashes.
fn hash_key() -> &'static RandomState {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new)
}

impl ChatId {
    /// The chat of `agent` of the given kind.
    pub fn new(agent: AgentId, kind: ConnectionType) -> Self {
        let canonical: Box<str> = format!("{agent}-{kind}").into();
        let hash = hash_key().hash_one(&canonical);
        Self(Arc::new(Parts {
            agent,
            kind,
            canonical,
            hash,
        }))
    }

    /// The agent whose chat this is.
    pub fn agent(&self) -> &AgentId {
        &self.0.agent
    }

    /// Supervisor or copilot.
    pub fn kind(&self) -> ConnectionType {
        self.0.kind
    }

    /// The canonical string `"{agent}-{kind}"` used on the wire and in storage. It is produced
    /// here and never parsed back: the parts are always kept separately.
    pub fn canonical(&self) -> String {
        self.0.canonical.to_string()
    }

    /// [`ChatId::canonical`], borrowed (made once, when the id was).
    pub fn as_canonical(&self) -> &str {
        &self.0.canonical
    }
}

impl PartialEq for ChatId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.kind == other.0.kind && self.0.agent == other.0.agent)
    }
}

impl Eq for ChatId {}

impl Hash for ChatId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Equal ids have equal canonical strings, so equal hashes.
        state.write_u64(self.0.hash);
    }
}

impl PartialOrd for ChatId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ChatId {
    /// By agent, then kind.
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.0.agent, self.0.kind).cmp(&(&other.0.agent, other.0.kind))
    }
}

impl fmt::Debug for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatId")
            .field("agent", &self.0.agent)
            .field("kind", &self.0.kind)
            .finish()
    }
}

impl fmt::Display for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.canonical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21";

    #[test]
    fn canonical_form_keeps_the_whole_uuid_agent_id() {
        let chat = ChatId::new(AgentId::parse(UUID).unwrap(), ConnectionType::Supervisor);
        assert_eq!(chat.canonical(), format!("{UUID}-supervisor"));
        assert_eq!(chat.agent().as_str(), UUID);
        assert_eq!(chat.to_string(), chat.canonical());
        assert_eq!(chat.as_canonical(), chat.canonical());
    }

    #[test]
    fn equal_chats_are_equal_and_hash_alike_however_they_were_made() {
        use std::collections::HashSet;
        let agent = || AgentId::parse(UUID).unwrap();
        let a = ChatId::new(agent(), ConnectionType::Supervisor);
        let b = ChatId::new(agent(), ConnectionType::Supervisor);
        let copilot = ChatId::new(agent(), ConnectionType::Copilot);
        assert_eq!(a, b);
        assert_ne!(a, copilot);
        let set: HashSet<ChatId> = [a.clone(), b, copilot.clone()].into_iter().collect();
        assert_eq!(set.len(), 2);
        assert!(set.contains(&a) && set.contains(&copilot));
        assert!(a < copilot, "by agent, then kind");
        assert_eq!(
            format!("{a:?}"),
            format!("ChatId {{ agent: AgentId({UUID:?}), kind: Supervisor }}")
        );
    }

    #[test]
    fn first_segment_is_the_part_before_the_first_dash() {
        assert_eq!(AgentId::parse(UUID).unwrap().first_segment(), "0b5c7e2a");
        assert_eq!(AgentId::parse("plain").unwrap().first_segment(), "plain");
    }

    #[test]
    fn agent_id_validation() {
        assert_eq!(AgentId::parse(""), Err(InvalidAgentId::Empty));
        assert_eq!(
            AgentId::parse(&"a".repeat(129)),
            Err(InvalidAgentId::TooLong)
        );
        assert!(AgentId::parse(&"a".repeat(128)).is_ok());
        assert_eq!(AgentId::parse("a b"), Err(InvalidAgentId::BadCharacter));
        assert_eq!(AgentId::parse("a&b"), Err(InvalidAgentId::BadCharacter));
        assert_eq!(AgentId::parse("é"), Err(InvalidAgentId::BadCharacter));
        assert!(AgentId::parse("agent.one@site:2_x-y").is_ok());
    }

    #[test]
    fn connection_type_is_case_sensitive() {
        assert_eq!(
            ConnectionType::parse("supervisor"),
            Ok(ConnectionType::Supervisor)
        );
        assert_eq!(
            ConnectionType::parse("copilot"),
            Ok(ConnectionType::Copilot)
        );
        assert!(ConnectionType::parse("Supervisor").is_err());
        assert!(ConnectionType::parse("").is_err());
        assert!(ConnectionType::parse("human").is_err());
    }
}
