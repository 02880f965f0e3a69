//! Chats: the pair (agent id, connection type).

use std::fmt;
use std::str::FromStr;

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
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChatId {
    agent: AgentId,
    kind: ConnectionType,
}

impl ChatId {
    /// The chat of `agent` of the given kind.
    pub fn new(agent: AgentId, kind: ConnectionType) -> Self {
        Self { agent, kind }
    }

    /// The agent whose chat this is.
    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    /// Supervisor or copilot.
    pub fn kind(&self) -> ConnectionType {
        self.kind
    }

    /// The canonical string `"{agent}-{kind}"` used on the wire and in storage. It is produced
    /// here and never parsed back: the parts are always kept separately.
    pub fn canonical(&self) -> String {
        format!("{}-{}", self.agent, self.kind)
    }
}

impl fmt::Display for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.agent, self.kind)
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
