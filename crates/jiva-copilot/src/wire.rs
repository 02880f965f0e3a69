//! The request body as the copilot endpoint expects it, written by hand from core types.

use jiva_core::CopilotRequest;
use serde::Serialize;

/// `{"input": "...", "chat_history": [...]}`.
#[derive(Debug, Serialize)]
pub(crate) struct WireRequest<'a> {
    input: &'a str,
    chat_history: Vec<WireTurn<'a>>,
}

/// `{"role": "human" | "ai", "content": "..."}`.
#[derive(Debug, Serialize)]
struct WireTurn<'a> {
    role: &'static str,
    content: &'a str,
}

impl<'a> WireRequest<'a> {
    pub(crate) fn from_request(request: &'a CopilotRequest) -> Self {
        Self {
            input: &request.input,
            chat_history: request
                .history
                .iter()
                .map(|turn| WireTurn {
                    role: turn.role.as_str(),
                    content: &turn.content,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiva_core::{AgentId, ChatId, ConnectionType, Role, Turn};

    #[test]
    fn request_json_has_exactly_the_expected_shape() {
        let request = CopilotRequest {
            chat: ChatId::new(AgentId::parse("a-1").unwrap(), ConnectionType::Copilot),
            input: "why \"}\"?\n".into(),
            history: vec![
                Turn {
                    role: Role::Human,
                    content: "q1".into(),
                },
                Turn {
                    role: Role::Ai,
                    content: "a1".into(),
                },
            ],
        };
        let json = serde_json::to_string(&WireRequest::from_request(&request)).unwrap();
        assert_eq!(
            json,
            r#"{"input":"why \"}\"?\n","chat_history":[{"role":"human","content":"q1"},{"role":"ai","content":"a1"}]}"#
        );
    }

    #[test]
    fn empty_history_is_an_empty_list() {
        let request = CopilotRequest {
            chat: ChatId::new(AgentId::parse("a-1").unwrap(), ConnectionType::Copilot),
            input: "q".into(),
            history: vec![],
        };
        let json = serde_json::to_string(&WireRequest::from_request(&request)).unwrap();
        assert_eq!(json, r#"{"input":"q","chat_history":[]}"#);
    }
}
