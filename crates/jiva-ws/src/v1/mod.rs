//! Protocol v1 (`docs/PROTOCOL-v1.md`): chosen at the upgrade when the client offers the
//! subprotocol `jivachat.v1`; every other client gets v0 (`conn`), unchanged.
//!
//! A v1 socket shares its chat's room with v0 sockets: the room hands every socket the same
//! frames (made once by `frames::Wire`), and a v1 socket's writer turns each into its v1 frame
//! (`encode`). What a v0 frame cannot say (the question a copilot chunk answers, how a turn
//! ended) travels beside its text in [`Meta`]. The frames this socket's reader answers with are
//! v1 already ([`Meta::Own`]).
//!
//! Layout: `conn` (the socket's reader and writer), `catchup` (the latest page or the resume,
//! then joining the room with no gap and no duplicate), `encode` (core types and room frames to
//! v1 frames), `presence` (who is in each chat and who is typing, across servers over the
//! bus's ephemeral events).

mod catchup;
mod conn;
mod encode;
mod presence;

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use jiva_chat::{TurnEnding, TurnError};
use jiva_core::{Identity, MessageId, Seq};
use jiva_protocol::{ErrorCode, Member, Role, SINCE_PARAM, SUBPROTOCOL, TurnOutcome};

pub(crate) use conn::run;
pub(crate) use presence::{Listener, Presence};

use crate::frames::Frame;

/// What a v1 socket's writer needs to know about a room frame beyond its v0 text.
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the copilot turn's variants are made once turns name their question"
)]
pub(crate) enum Meta {
    /// The text is a v1 frame already, for this socket only (an answer of its reader).
    Own,
    /// A v0-only frame, which v1 sockets skip (a failed turn's notice, shown not stored: v1
    /// clients learn of the failure from `error` and `turn_end`).
    Skip,
    /// A copilot chunk answering `question`.
    Chunk { question: MessageId },
    /// An error of the copilot turn answering `question`.
    TurnError {
        question: MessageId,
        code: ErrorCode,
    },
    /// The end of the copilot turn answering `question`.
    TurnEnd {
        question: MessageId,
        outcome: TurnOutcome,
        answer: Option<MessageId>,
    },
}

/// `frame` with what v1 sockets need beside its v0 text.
pub(crate) fn with_meta(mut frame: Frame, meta: Meta) -> Frame {
    Arc::make_mut(&mut frame).v1 = Some(Arc::new(meta));
    frame
}

/// The v1 error code of a copilot turn's failure.
pub(crate) fn turn_error_code(failure: TurnError) -> ErrorCode {
    match failure {
        TurnError::NotConfigured => ErrorCode::CopilotNotConfigured,
        TurnError::Unavailable => ErrorCode::CopilotUnavailable,
        TurnError::Status => ErrorCode::CopilotError,
        TurnError::Timeout => ErrorCode::CopilotTimeout,
        TurnError::TooLong => ErrorCode::CopilotTooLong,
        TurnError::HistoryUnavailable => ErrorCode::HistoryUnavailable,
        TurnError::ShuttingDown => ErrorCode::ShuttingDown,
        TurnError::AnswerNotStored => ErrorCode::AnswerNotStored,
        _ => ErrorCode::CopilotCutOff,
    }
}

/// The v1 outcome of a copilot turn.
pub(crate) fn turn_outcome(ending: TurnEnding) -> TurnOutcome {
    match ending {
        TurnEnding::Answered => TurnOutcome::Answered,
        TurnEnding::Cancelled => TurnOutcome::Cancelled,
        _ => TurnOutcome::Failed,
    }
}

/// Whether the upgrade request offers the subprotocol `jivachat.v1` (among any others).
pub(crate) fn offered(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

/// The `since` query parameter: `None` for a fresh connection, or a one-line reason for a 400.
pub(crate) fn since_from_query(query: Option<&str>) -> Result<Option<Seq>, String> {
    let mut since = None;
    for pair in query.unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != SINCE_PARAM {
            continue;
        }
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{SINCE_PARAM} must be a non-negative integer"))?;
        if since.replace(Seq::new(n)).is_some() {
            return Err(format!("{SINCE_PARAM} is given more than once"));
        }
    }
    Ok(since)
}

/// How presence shows the caller: its identity, or (authentication off) the socket itself.
pub(crate) fn member(identity: Option<&Identity>, conn: u64) -> Member {
    match identity {
        Some(identity) => Member {
            id: identity.agent.as_str().to_owned(),
            role: match identity.role {
                jiva_core::UserRole::Agent => Role::Agent,
                jiva_core::UserRole::Supervisor => Role::Supervisor,
            },
        },
        None => Member {
            id: format!("anon-{conn}"),
            role: Role::Anonymous,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn v1_is_chosen_only_when_offered() {
        let mut headers = HeaderMap::new();
        assert!(!offered(&headers));
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat, jivachat.v2"),
        );
        assert!(!offered(&headers));
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat, jivachat.v1"),
        );
        assert!(offered(&headers));
    }

    #[test]
    fn since_is_a_non_negative_integer_given_once() {
        assert_eq!(since_from_query(None), Ok(None));
        assert_eq!(
            since_from_query(Some("agentID=a&secondaryID=copilot&since=42")),
            Ok(Some(Seq::new(42)))
        );
        assert_eq!(since_from_query(Some("since=0")), Ok(Some(Seq::new(0))));
        for bad in ["since=-1", "since=", "since=x", "since=1&since=2"] {
            assert!(since_from_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
