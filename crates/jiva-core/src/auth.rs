//! Who is calling, and what they may open: the [`Authenticator`] port, the [`Identity`] it
//! yields, and the pure rules [`authorize`] and [`sender_for`].
//!
//! The rules are one place on purpose: a transport authenticates, then asks [`authorize`]
//! before it opens a chat and [`sender_for`] before it stores a message. With authentication
//! off ([`NoAuth`]) there is no identity and neither rule is asked: everyone may open every
//! chat and write as either side, as the deployed client expects.

use async_trait::async_trait;

use crate::chat::{AgentId, ChatId, ConnectionType};
use crate::message::{Sender, Timestamp};

/// What an authenticated caller is in the contact centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserRole {
    /// A contact-centre agent: its own chats only.
    Agent,
    /// A supervisor: every agent's supervisor chat, and its own copilot chat.
    Supervisor,
}

impl UserRole {
    /// `agent` or `supervisor`, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Supervisor => "supervisor",
        }
    }

    /// The sender a message of this role is stored as.
    pub fn sender(self) -> Sender {
        match self {
            Self::Agent => Sender::Agent,
            Self::Supervisor => Sender::Supervisor,
        }
    }
}

/// A caller whose token was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The caller's own agent id (supervisors have one too: their copilot chat is theirs).
    pub agent: AgentId,
    /// Agent or supervisor.
    pub role: UserRole,
    /// The token's subject (`sub`), for logs; may be empty.
    pub subject: String,
    /// When the token stops being accepted (its `exp` plus the allowed clock skew); a socket
    /// opened with it is closed then.
    pub expires_at: Option<Timestamp>,
}

/// Why a caller could not be authenticated. Each variant has a stable [`code`](Self::code)
/// (metrics labels, logs) and a one-line [`Display`](std::fmt::Display) reason safe to send to
/// the caller: it never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was given.
    #[error("a token is required")]
    Missing,
    /// The token is not a well-formed JWT, or a claim has the wrong type.
    #[error("the token is malformed")]
    Malformed,
    /// The token's algorithm is not the one configured (including `none`).
    #[error("the token's algorithm is not accepted")]
    WrongAlgorithm,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// The token names a signing key that is not known (even after fetching the keys again).
    #[error("the token's signing key is unknown")]
    UnknownKey,
    /// `exp` is past (beyond the allowed clock skew).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the allowed clock skew).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    /// `aud` (id tokens) or `client_id` (access tokens) is not the configured client.
    #[error("the token's audience is not accepted")]
    WrongAudience,
    /// `token_use` is neither `id` nor `access`.
    #[error("the token's use is not accepted")]
    WrongTokenUse,
    /// A required claim is missing or invalid (the claim's name is given).
    #[error("the token has no valid {0} claim")]
    MissingClaim(String),
    /// The signing keys could not be fetched: the server, not the caller, is at fault.
    #[error("signing keys are unavailable")]
    KeysUnavailable,
}

impl AuthError {
    /// A short stable code: `missing`, `malformed`, `algorithm`, `signature`, `unknown_key`,
    /// `expired`, `not_yet_valid`, `issuer`, `audience`, `token_use`, `claim`,
    /// `keys_unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::WrongAlgorithm => "algorithm",
            Self::BadSignature => "signature",
            Self::UnknownKey => "unknown_key",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "issuer",
            Self::WrongAudience => "audience",
            Self::WrongTokenUse => "token_use",
            Self::MissingClaim(_) => "claim",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// Verifies callers' tokens.
///
/// Contract: `authenticate` returns `Ok(None)` only when authentication is off (anyone may
/// open any chat); an authenticator that is on returns an [`Identity`] or an error, and
/// [`AuthError::Missing`] when no token was given.
///
/// No mock is generated for this port (a borrowed `Option<&str>` argument defeats mockall);
/// tests use [`NoAuth`] or a real authenticator with tokens they sign.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// Verifies `token` (as given by the caller, already URL-decoded).
    async fn authenticate(&self, token: Option<&str>) -> Result<Option<Identity>, AuthError>;

    /// Whether callers must present a token (false only for [`NoAuth`]).
    fn required(&self) -> bool {
        true
    }
}

/// Authentication off: every caller is let in without an identity, and any token is ignored.
/// The default, as the deployed client sends no token.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAuth;

#[async_trait]
impl Authenticator for NoAuth {
    async fn authenticate(&self, _token: Option<&str>) -> Result<Option<Identity>, AuthError> {
        Ok(None)
    }

    fn required(&self) -> bool {
        false
    }
}

/// Why an authenticated caller may not do something. Each variant has a stable
/// [`code`](Self::code) and a one-line reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// An agent asked for another agent's chat.
    #[error("an agent may only open its own chats")]
    NotYourChat,
    /// A supervisor asked for another agent's copilot chat.
    #[error("a supervisor may only open its own copilot chat")]
    NotYourCopilotChat,
    /// A message on the supervisor chat claims the caller's other role.
    #[error("sender does not match your role")]
    WrongSender,
}

impl Denied {
    /// A short stable code: `not_your_chat`, `not_your_copilot_chat`, `wrong_sender`.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotYourChat => "not_your_chat",
            Self::NotYourCopilotChat => "not_your_copilot_chat",
            Self::WrongSender => "wrong_sender",
        }
    }
}

/// Whether `identity` may open `chat`: an agent only its own chats; a supervisor any agent's
/// supervisor chat and its own copilot chat.
pub fn authorize(identity: &Identity, chat: &ChatId) -> Result<(), Denied> {
    let own = chat.agent() == &identity.agent;
    match (identity.role, chat.kind()) {
        (UserRole::Agent, _) if own => Ok(()),
        (UserRole::Agent, _) => Err(Denied::NotYourChat),
        (UserRole::Supervisor, ConnectionType::Supervisor) => Ok(()),
        (UserRole::Supervisor, ConnectionType::Copilot) if own => Ok(()),
        (UserRole::Supervisor, ConnectionType::Copilot) => Err(Denied::NotYourCopilotChat),
    }
}

/// The sender a message `claimed` by the client is stored as. Without an identity (auth off),
/// and on a copilot chat (the deployed widget always sends `agent`), the claim stands. On a
/// supervisor chat the identity's role decides, and a claim of the other role is refused.
pub fn sender_for(
    identity: Option<&Identity>,
    chat: &ChatId,
    claimed: Sender,
) -> Result<Sender, Denied> {
    match (identity, chat.kind()) {
        (Some(identity), ConnectionType::Supervisor) => {
            let sender = identity.role.sender();
            if sender == claimed {
                Ok(sender)
            } else {
                Err(Denied::WrongSender)
            }
        }
        _ => Ok(claimed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str) -> AgentId {
        AgentId::parse(id).unwrap()
    }

    fn who(id: &str, role: UserRole) -> Identity {
        Identity {
            agent: agent(id),
            role,
            subject: String::new(),
            expires_at: None,
        }
    }

    #[test]
    fn who_may_open_which_chat() {
        use ConnectionType::{Copilot, Supervisor};
        use UserRole::{Agent, Supervisor as Sup};
        let cases = [
            // (caller's role, chat of the caller itself?, chat kind, expected)
            (Agent, true, Supervisor, Ok(())),
            (Agent, true, Copilot, Ok(())),
            (Agent, false, Supervisor, Err(Denied::NotYourChat)),
            (Agent, false, Copilot, Err(Denied::NotYourChat)),
            (Sup, true, Supervisor, Ok(())),
            (Sup, true, Copilot, Ok(())),
            (Sup, false, Supervisor, Ok(())),
            (Sup, false, Copilot, Err(Denied::NotYourCopilotChat)),
        ];
        for (role, own, kind, expected) in cases {
            let caller = who("me", role);
            let chat = ChatId::new(agent(if own { "me" } else { "someone-else" }), kind);
            assert_eq!(
                authorize(&caller, &chat),
                expected,
                "{role:?} own={own} {kind:?}"
            );
        }
    }

    #[test]
    fn a_chat_of_an_agent_whose_id_extends_mine_is_not_mine() {
        let caller = who("me", UserRole::Agent);
        let chat = ChatId::new(agent("me-too"), ConnectionType::Supervisor);
        assert_eq!(authorize(&caller, &chat), Err(Denied::NotYourChat));
    }

    #[test]
    fn which_sender_a_message_is_stored_as() {
        use ConnectionType::{Copilot, Supervisor};
        let agent_caller = who("me", UserRole::Agent);
        let supervisor_caller = who("me", UserRole::Supervisor);
        let cases = [
            // (identity, chat kind, claimed, expected)
            (None, Supervisor, Sender::Agent, Ok(Sender::Agent)),
            (None, Supervisor, Sender::Supervisor, Ok(Sender::Supervisor)),
            (None, Copilot, Sender::Agent, Ok(Sender::Agent)),
            (
                Some(&agent_caller),
                Supervisor,
                Sender::Agent,
                Ok(Sender::Agent),
            ),
            (
                Some(&agent_caller),
                Supervisor,
                Sender::Supervisor,
                Err(Denied::WrongSender),
            ),
            (
                Some(&supervisor_caller),
                Supervisor,
                Sender::Supervisor,
                Ok(Sender::Supervisor),
            ),
            (
                Some(&supervisor_caller),
                Supervisor,
                Sender::Agent,
                Err(Denied::WrongSender),
            ),
            // The copilot widget always says "agent", whoever holds it.
            (
                Some(&agent_caller),
                Copilot,
                Sender::Agent,
                Ok(Sender::Agent),
            ),
            (
                Some(&supervisor_caller),
                Copilot,
                Sender::Agent,
                Ok(Sender::Agent),
            ),
        ];
        for (identity, kind, claimed, expected) in cases {
            let chat = ChatId::new(agent("me"), kind);
            assert_eq!(
                sender_for(identity, &chat, claimed),
                expected,
                "{identity:?} {kind:?} {claimed:?}"
            );
        }
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(AuthError::Expired.code(), "expired");
        assert_eq!(AuthError::MissingClaim("x".into()).code(), "claim");
        assert_eq!(Denied::NotYourChat.code(), "not_your_chat");
        assert_eq!(
            Denied::WrongSender.to_string(),
            "sender does not match your role"
        );
    }

    #[tokio::test]
    async fn no_auth_lets_everyone_in_without_an_identity() {
        assert_eq!(NoAuth.authenticate(None).await, Ok(None));
        assert_eq!(NoAuth.authenticate(Some("junk")).await, Ok(None));
        assert!(!NoAuth.required());
    }
}
