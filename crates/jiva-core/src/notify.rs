//! The notification port and the rule that maps a stored message to a notification.

use std::error::Error as StdError;

use async_trait::async_trait;

use crate::chat::{ChatId, ConnectionType};
use crate::message::{Message, Sender};

/// What a notification announces (the Amplify `NotificationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationKind {
    /// The agent wrote in the supervisor chat.
    Agent,
    /// A supervisor wrote in the supervisor chat.
    Supervisor,
    /// The copilot finished an answer.
    Copilot,
}

/// A notification raised by a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The chat the message was stored in.
    pub chat: ChatId,
    /// What happened.
    pub kind: NotificationKind,
}

impl Notification {
    /// The notification a stored message raises, if any: on a supervisor chat, `Agent` or
    /// `Supervisor` after the sender; after a copilot answer, `Copilot`. The agent's own
    /// questions to the copilot raise none.
    pub fn for_message(message: &Message) -> Option<Self> {
        let kind = match (
            message.chat.kind(),
            message.sender,
            message.is_copilot_answer(),
        ) {
            (_, _, true) => NotificationKind::Copilot,
            (ConnectionType::Supervisor, Sender::Agent, false) => NotificationKind::Agent,
            (ConnectionType::Supervisor, Sender::Supervisor, false) => NotificationKind::Supervisor,
            _ => return None,
        };
        Some(Self {
            chat: message.chat.clone(),
            kind,
        })
    }
}

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The notification service refused it; retrying will not help.
    #[error("notification rejected: {0}")]
    Rejected(String),
    /// The service could not be reached or failed transiently.
    #[error("notification service unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync + 'static>),
    /// The notifier is shutting down or its queue is full; the notification was dropped.
    #[error("notification dropped: {0}")]
    Dropped(&'static str),
}

/// Delivers notifications.
///
/// Contract: `notify` is called on the chat path, after the message is stored and shown, so it
/// must return promptly (enqueue and deliver in the background). It must never block a chat.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Hands over a notification for delivery.
    async fn notify(&self, notification: Notification) -> Result<(), NotifyError>;
}

/// A [`Notifier`] that delivers nothing, for servers without a notification service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disabled;

#[async_trait]
impl Notifier for Disabled {
    async fn notify(&self, _notification: Notification) -> Result<(), NotifyError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::AgentId;

    fn chat(kind: ConnectionType) -> ChatId {
        ChatId::new(AgentId::parse("a-1").unwrap(), kind)
    }

    #[test]
    fn supervisor_chat_notifies_after_the_sender() {
        let m = Message::user(chat(ConnectionType::Supervisor), Sender::Agent, "hi".into());
        assert_eq!(
            Notification::for_message(&m).unwrap().kind,
            NotificationKind::Agent
        );
        let m = Message::user(
            chat(ConnectionType::Supervisor),
            Sender::Supervisor,
            "hi".into(),
        );
        assert_eq!(
            Notification::for_message(&m).unwrap().kind,
            NotificationKind::Supervisor
        );
    }

    #[test]
    fn copilot_chat_notifies_only_for_answers() {
        let q = Message::user(chat(ConnectionType::Copilot), Sender::Agent, "q".into());
        assert_eq!(Notification::for_message(&q), None);
        let a = Message::copilot_answer(chat(ConnectionType::Copilot), "a".into());
        let n = Notification::for_message(&a).unwrap();
        assert_eq!(n.kind, NotificationKind::Copilot);
        assert_eq!(n.chat, chat(ConnectionType::Copilot));
    }
}
