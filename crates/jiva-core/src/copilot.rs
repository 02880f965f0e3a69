//! The copilot port, and the pure rules of a copilot turn: which earlier turns the copilot sees,
//! and how the streamed chunks become the stored answer.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_core::Stream;

use crate::chat::ChatId;
use crate::message::{Body, Message, MessageId, Sender};

/// The tool status line the copilot streams while it works; shown live, left out of the answer.
pub const TOOL_STATUS: &str = "Processing Results\n";

/// Who said an earlier turn, as the copilot endpoint spells it (`human` / `ai`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The agent.
    Human,
    /// The copilot.
    Ai,
}

impl Role {
    /// `human` or `ai`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Ai => "ai",
        }
    }
}

/// One earlier turn of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

/// A question for the copilot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopilotRequest {
    /// The copilot chat asking.
    pub chat: ChatId,
    /// The agent's new message.
    pub input: String,
    /// Earlier turns, oldest first, without `input`.
    pub history: Vec<Turn>,
}

/// One object of the copilot's streamed answer, values exactly as received.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopilotChunk {
    /// `action`, `None` when it was `null` or absent.
    pub action: Option<String>,
    /// `output`, `None` when it was `null` or absent.
    pub output: Option<String>,
}

/// Which time limit of a copilot call ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// Connecting to the endpoint.
    Connect,
    /// Waiting for the response to start.
    FirstByte,
    /// Silence between two chunks.
    Idle,
    /// The whole turn.
    Turn,
}

/// Why a copilot call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopilotError {
    /// No endpoint is configured.
    #[error("the copilot is not configured")]
    NotConfigured,
    /// The endpoint could not be reached.
    #[error("the copilot is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The endpoint answered with a non-success HTTP status.
    #[error("the copilot answered with status {0}")]
    Status(u16),
    /// A time limit ran out.
    #[error("the copilot timed out ({0:?})")]
    Timeout(TimeoutKind),
    /// The body ended in the middle of an object.
    #[error("the copilot's answer was cut off")]
    Truncated,
    /// The body held bytes that are not a JSON object stream.
    #[error("the copilot's answer could not be decoded: {0}")]
    Decode(String),
    /// One object was larger than the decoder's limit.
    #[error("a copilot answer chunk exceeded {0} bytes")]
    TooLarge(usize),
}

/// The streamed answer: chunks in order, ending after the last one or at the first error.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<CopilotChunk, CopilotError>> + Send>>;

/// Asks the AI copilot.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Copilot: Send + Sync {
    /// Starts an answer to `request`. Errors before the first chunk come from this call; errors
    /// after it come as the stream's last item.
    async fn ask(&self, request: CopilotRequest) -> Result<ChunkStream, CopilotError>;
}

/// A [`Copilot`] for servers without an endpoint: every call fails with
/// [`CopilotError::NotConfigured`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Unconfigured;

#[async_trait]
impl Copilot for Unconfigured {
    async fn ask(&self, _request: CopilotRequest) -> Result<ChunkStream, CopilotError> {
        Err(CopilotError::NotConfigured)
    }
}

/// Builds the stored answer from streamed chunks: the non-null outputs in order, without the
/// tool status lines, newlines kept.
#[derive(Debug, Clone, Default)]
pub struct AnswerAssembler {
    text: String,
}

impl AnswerAssembler {
    /// An empty answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one chunk.
    pub fn push(&mut self, chunk: &CopilotChunk) {
        if let Some(output) = chunk.output.as_deref() {
            if output != TOOL_STATUS {
                self.text.push_str(output);
            }
        }
    }

    /// The answer so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The whole answer.
    pub fn finish(self) -> String {
        self.text
    }
}

/// How much earlier conversation a copilot request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// At most this many turns (the newest ones).
    pub max_turns: usize,
    /// At most this many bytes of content in all (the newest turns that fit).
    pub max_bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            max_turns: 50,
            max_bytes: 64 * 1024,
        }
    }
}

/// The earlier turns of a copilot chat, oldest first, from its stored messages (oldest first):
/// the agent's messages are `human`, copilot answers are `ai`, and only the newest turns within
/// `limits` are kept.
///
/// The message `current` (the input being asked about) is left out, and so are the questions
/// stored after it: they wait behind it and are not earlier turns. Answers stored after it are
/// kept, since turns run one at a time and those answer questions asked before it. When
/// `current` is not among `messages`, all of them are earlier turns.
pub fn history_turns(messages: &[Message], current: MessageId, limits: HistoryLimits) -> Vec<Turn> {
    let at = messages
        .iter()
        .position(|m| m.id == current)
        .unwrap_or(messages.len());
    let before = messages.get(..at).unwrap_or_default();
    let after = messages.get(at..).unwrap_or_default();
    let earlier = before
        .iter()
        .chain(after.iter().filter(|m| m.is_copilot_answer()));
    let mut turns = Vec::new();
    let mut bytes = 0usize;
    for message in earlier.rev() {
        if turns.len() >= limits.max_turns {
            break;
        }
        let (role, content) = match (&message.body, message.sender) {
            (Body::CopilotAnswer(text), _) | (Body::Text(text), Sender::Copilot) => {
                (Role::Ai, text)
            }
            (Body::Text(text), _) => (Role::Human, text),
        };
        bytes = bytes.saturating_add(content.len());
        if bytes > limits.max_bytes {
            break;
        }
        turns.push(Turn {
            role,
            content: content.clone(),
        });
    }
    turns.reverse();
    turns
}

/// The default time limits of a copilot turn, shared by the adapter and the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnTimeouts {
    /// Connecting to the endpoint.
    pub connect: Duration,
    /// From the request to the first byte of the response.
    pub first_byte: Duration,
    /// Longest silence between two chunks.
    pub idle: Duration,
    /// The whole turn, from the request to `end`.
    pub turn: Duration,
}

impl Default for TurnTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            turn: Duration::from_secs(120),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{AgentId, ConnectionType};

    fn chat() -> ChatId {
        ChatId::new(AgentId::parse("a-1").unwrap(), ConnectionType::Copilot)
    }

    fn chunk(action: Option<&str>, output: Option<&str>) -> CopilotChunk {
        CopilotChunk {
            action: action.map(Into::into),
            output: output.map(Into::into),
        }
    }

    #[test]
    fn answer_skips_nulls_and_tool_status_and_keeps_newlines() {
        let mut a = AnswerAssembler::new();
        a.push(&chunk(Some("tool"), Some(TOOL_STATUS)));
        a.push(&chunk(None, Some("Hello")));
        a.push(&chunk(Some("x"), None));
        a.push(&chunk(None, Some(",\nworld }")));
        assert_eq!(a.finish(), "Hello,\nworld }");
    }

    #[test]
    fn history_maps_roles_and_leaves_out_the_current_input() {
        let q1 = Message::user(chat(), Sender::Agent, "q1".into());
        let a1 = Message::copilot_answer(chat(), "a1".into());
        let q2 = Message::user(chat(), Sender::Agent, "q2".into());
        let turns = history_turns(&[q1, a1, q2.clone()], q2.id, HistoryLimits::default());
        assert_eq!(
            turns,
            vec![
                Turn {
                    role: Role::Human,
                    content: "q1".into()
                },
                Turn {
                    role: Role::Ai,
                    content: "a1".into()
                },
            ]
        );
    }

    #[test]
    fn questions_queued_behind_the_current_one_are_not_earlier_turns() {
        let q = |text: &str| Message::user(chat(), Sender::Agent, text.into());
        let a = |text: &str| Message::copilot_answer(chat(), text.into());
        let stored = vec![q("q1"), q("q2"), q("q3"), a("a1"), a("a2")];
        let turns = |current| {
            history_turns(&stored, current, HistoryLimits::default())
                .into_iter()
                .map(|t| (t.role, t.content))
                .collect::<Vec<_>>()
        };
        let human = |t: &str| (Role::Human, t.to_owned());
        let ai = |t: &str| (Role::Ai, t.to_owned());
        assert_eq!(turns(stored[1].id), [human("q1"), ai("a1"), ai("a2")]);
        assert_eq!(
            turns(stored[2].id),
            [human("q1"), human("q2"), ai("a1"), ai("a2")]
        );
        let absent = q("not stored").id;
        assert_eq!(
            turns(absent),
            [human("q1"), human("q2"), human("q3"), ai("a1"), ai("a2")]
        );
    }

    #[test]
    fn history_keeps_the_newest_turns_within_limits() {
        let msgs: Vec<Message> = (0..10)
            .map(|i| Message::user(chat(), Sender::Agent, format!("m{i}")))
            .collect();
        let none = MessageId::new_v7();
        let by_count = history_turns(
            &msgs,
            none,
            HistoryLimits {
                max_turns: 3,
                max_bytes: 1000,
            },
        );
        let texts: Vec<&str> = by_count.iter().map(|t| t.content.as_str()).collect();
        assert_eq!(texts, ["m7", "m8", "m9"]);
        let by_size = history_turns(
            &msgs,
            none,
            HistoryLimits {
                max_turns: 100,
                max_bytes: 5,
            },
        );
        let texts: Vec<&str> = by_size.iter().map(|t| t.content.as_str()).collect();
        assert_eq!(texts, ["m8", "m9"]);
    }

    #[tokio::test]
    async fn unconfigured_copilot_says_so() {
        let request = CopilotRequest {
            chat: chat(),
            input: "q".into(),
            history: vec![],
        };
        assert!(matches!(
            Unconfigured.ask(request).await,
            Err(CopilotError::NotConfigured)
        ));
    }
}
