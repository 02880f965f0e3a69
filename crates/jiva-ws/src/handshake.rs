//! Reading the chat out of the request's query string (PROTOCOL.md §1).

use jiva_core::{AgentId, ChatId, ConnectionType};

/// The chat named by `?agentID=…&secondaryID=…`, or a one-line reason for a 400 answer.
///
/// Names are case-sensitive and values are taken as they are (the deployed client does not
/// URL-encode them); other parameters are ignored; a parameter given twice is refused.
pub(crate) fn chat_from_query(query: Option<&str>) -> Result<ChatId, String> {
    let mut agent = None;
    let mut secondary = None;
    for pair in query.unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "agentID" => &mut agent,
            "secondaryID" => &mut secondary,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(format!("{name} is given more than once"));
        }
    }
    let agent = AgentId::parse(agent.unwrap_or("")).map_err(|e| e.to_string())?;
    let kind = match secondary {
        None | Some("") => return Err("secondaryID is missing".into()),
        Some(raw) => ConnectionType::parse(raw).map_err(|e| e.to_string())?,
    };
    Ok(ChatId::new(agent, kind))
}

/// Whether the query names a chat at all (so a plain GET can be told what is wrong with it).
pub(crate) fn names_a_chat(query: Option<&str>) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .any(|p| p.starts_with("agentID") || p.starts_with("secondaryID"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_queries() {
        let chat = chat_from_query(Some(
            "agentID=0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21&secondaryID=copilot",
        ))
        .unwrap();
        assert_eq!(
            chat.canonical(),
            "0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21-copilot"
        );
        let chat = chat_from_query(Some("x=1&secondaryID=supervisor&agentID=a")).unwrap();
        assert_eq!(chat.kind(), ConnectionType::Supervisor);
    }

    #[test]
    fn invalid_queries_have_reasons() {
        let cases = [
            (None, "agentID is missing or empty"),
            (Some(""), "agentID is missing or empty"),
            (
                Some("agentID=&secondaryID=copilot"),
                "agentID is missing or empty",
            ),
            (
                Some("agentid=a&secondaryID=copilot"),
                "agentID is missing or empty",
            ),
            (Some("agentID=a"), "secondaryID is missing"),
            (
                Some("agentID=a&secondaryID=human"),
                "secondaryID must be \"supervisor\" or \"copilot\"",
            ),
            (
                Some("agentID=a&secondaryID=Copilot"),
                "secondaryID must be \"supervisor\" or \"copilot\"",
            ),
            (
                Some("agentID=a&agentID=b&secondaryID=copilot"),
                "agentID is given more than once",
            ),
            (
                Some("agentID=a%20b&secondaryID=copilot"),
                "agentID may only contain letters, digits and . _ : @ -",
            ),
        ];
        for (query, reason) in cases {
            assert_eq!(chat_from_query(query).unwrap_err(), reason, "{query:?}");
        }
    }
}
