//! What a client connects to and how.

use std::sync::Arc;
use std::time::Duration;

use jiva_protocol::UserSender;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::{Backoff, ClientError};

/// Which protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The deployed client's protocol (`shared/PROTOCOL.md`): no acks, no resume.
    V0,
    /// `jivachat.v1` (`docs/PROTOCOL-v1.md`).
    V1,
}

/// Which of an agent's chats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    /// The agent's chat with the supervisors (`secondaryID=supervisor`).
    Supervisor,
    /// The agent's chat with the copilot (`secondaryID=copilot`).
    Copilot,
}

impl ChatKind {
    /// The `secondaryID` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Supervisor => "supervisor",
            Self::Copilot => "copilot",
        }
    }
}

/// A bearer token; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where the token goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenPlacement {
    /// `Authorization: Bearer …` (the default: kept out of URLs and their logs).
    #[default]
    Header,
    /// `&token=…` in the URL (browsers cannot set headers on a WebSocket).
    Query,
}

/// How to connect. Build it with [`Config::new`] and change the fields you need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The server's WebSocket URL, `ws://host:port/` or `wss://host:port/` (any path; no
    /// query: the client adds it). `wss://` needs trust: `tls_roots_pem` or `tls_config`.
    pub url: String,
    /// Other endpoints of the same service (the other nodes of a cluster, same form as `url`),
    /// tried in turn when `url` cannot be reached: the first connection tries each once, and
    /// a reconnection retries the endpoint that was serving, then moves to the next one after
    /// every failed attempt (wrapping around). Resuming works on any node of a cluster: the
    /// sequence numbers are the chat's, not the node's. Empty by default.
    pub fallback_urls: Vec<String>,
    /// `wss://`: PEM text of the root certificates (each entry may hold several) a server's
    /// certificate must chain to. These are the only roots: there are no built-in ones (no web
    /// PKI, no system store). Empty by default.
    pub tls_roots_pem: Vec<String>,
    /// `wss://`: a complete rustls configuration, used as it is (its roots, verifier, client
    /// certificate), instead of `tls_roots_pem` (set one of the two).
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
    /// The agent whose chat this is (`agentID`).
    pub agent_id: String,
    /// Which of the agent's chats.
    pub chat: ChatKind,
    /// v0 or v1 (default v1).
    pub protocol: Protocol,
    /// The caller's token, when the server requires one.
    pub token: Option<Token>,
    /// Where the token goes.
    pub token_placement: TokenPlacement,
    /// Who the messages are sent as (default `agent`).
    pub sender: UserSender,
    /// The reconnection policy.
    pub reconnect: Backoff,
    /// v1: resume after this sequence number on the first connection (default: fresh).
    pub since: Option<u64>,
    /// How long one connection attempt (TCP, upgrade) may take.
    pub connect_timeout: Duration,
    /// How many events wait unread before the client stops reading the socket.
    pub events_capacity: usize,
    /// How many sends may wait for their `ack` at once.
    pub max_pending: usize,
}

impl Config {
    /// v1 to `url`, the agent's chat of `chat`, no token, sending as the agent.
    pub fn new(url: impl Into<String>, agent_id: impl Into<String>, chat: ChatKind) -> Self {
        Self {
            url: url.into(),
            fallback_urls: Vec::new(),
            tls_roots_pem: Vec::new(),
            tls_config: None,
            agent_id: agent_id.into(),
            chat,
            protocol: Protocol::V1,
            token: None,
            token_placement: TokenPlacement::default(),
            sender: UserSender::Agent,
            reconnect: Backoff::default(),
            since: None,
            connect_timeout: Duration::from_secs(10),
            events_capacity: 1024,
            max_pending: 1024,
        }
    }

    /// Every problem of the configuration, one message each.
    pub fn validate(&self) -> Result<(), ClientError> {
        let mut problems = Vec::new();
        let fallbacks = self.fallback_urls.iter().enumerate();
        let urls = std::iter::once(("url".to_owned(), &self.url))
            .chain(fallbacks.map(|(i, url)| (format!("fallback_urls[{i}]"), url)));
        let trusted = self.tls_config.is_some() || !self.tls_roots_pem.is_empty();
        for (name, url) in urls {
            if url.starts_with("wss://") {
                if !trusted {
                    problems.push(format!(
                        "{name}: wss:// needs tls_roots_pem or tls_config (there are no built-in roots)"
                    ));
                }
            } else if !url.starts_with("ws://") {
                problems.push(format!("{name} must start with ws:// or wss://"));
            }
            if url.contains('?') || url.contains('#') {
                problems.push(format!("{name} must have no query or fragment"));
            }
        }
        if self.tls_config.is_some() && !self.tls_roots_pem.is_empty() {
            problems.push("set tls_roots_pem or tls_config, not both".to_owned());
        } else if let Err(pem) = crate::tls::roots_from_pem(&self.tls_roots_pem) {
            problems.extend(pem);
        }
        let id_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-');
        if self.agent_id.is_empty() || !self.agent_id.chars().all(id_ok) {
            problems.push("agent_id must be non-empty [A-Za-z0-9._:@-] (a UUID)".to_owned());
        }
        if self.events_capacity == 0 {
            problems.push("events_capacity must be at least 1".to_owned());
        }
        if self.max_pending == 0 {
            problems.push("max_pending must be at least 1".to_owned());
        }
        if self.reconnect.initial.is_zero() || self.reconnect.max < self.reconnect.initial {
            problems.push("reconnect: initial must be > 0 and max >= initial".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ClientError::InvalidConfig(problems.join("; ")))
        }
    }

    /// The URL of a connection to the endpoint `base` resuming after `since` (v1; ignored in
    /// v0).
    pub(crate) fn connect_url(&self, base: &str, since: Option<u64>) -> String {
        // The server takes agentID and secondaryID as written (the deployed client does not
        // encode them; `validate` allows only UUID characters); the token is URL-decoded.
        const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');
        let mut url = base.to_owned();
        if !url.ends_with('/') && url.matches('/').count() == 2 {
            url.push('/');
        }
        url.push_str(&format!(
            "?agentID={}&secondaryID={}",
            self.agent_id,
            self.chat.as_str()
        ));
        if let (Some(token), TokenPlacement::Query) = (&self.token, self.token_placement) {
            url.push_str("&token=");
            url.extend(utf8_percent_encode(token.expose(), QUERY_VALUE));
        }
        if let (Some(since), Protocol::V1) = (since, self.protocol) {
            url.push_str(&format!("&{}={since}", jiva_protocol::SINCE_PARAM));
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21";

    #[test]
    fn the_url_names_the_chat_the_token_and_the_resume_point() {
        let mut c = Config::new("ws://127.0.0.1:9000", AGENT, ChatKind::Copilot);
        assert_eq!(
            c.connect_url(&c.url, None),
            format!("ws://127.0.0.1:9000/?agentID={AGENT}&secondaryID=copilot")
        );
        c.token = Some(Token::new("a.b+c/d="));
        assert!(
            !c.connect_url(&c.url, None).contains("token"),
            "header by default"
        );
        c.token_placement = TokenPlacement::Query;
        assert_eq!(
            c.connect_url(&c.url, Some(42)),
            format!(
                "ws://127.0.0.1:9000/?agentID={AGENT}&secondaryID=copilot&token=a.b%2Bc%2Fd%3D&since=42"
            )
        );
        c.protocol = Protocol::V0;
        assert!(
            !c.connect_url(&c.url, Some(42)).contains("since"),
            "v0 never resumes"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut c = Config::new("http://x/?a=1", "not a uuid", ChatKind::Supervisor);
        c.max_pending = 0;
        c.fallback_urls = vec!["ws://ok:1/".into(), "ftp://y/".into()];
        let ClientError::InvalidConfig(text) = c.validate().unwrap_err() else {
            panic!("not a config error")
        };
        assert_eq!(text.split("; ").count(), 5, "{text}");
        assert!(text.contains("fallback_urls[1] must start"), "{text}");
        let mut tls = Config::new("wss://h:1/", AGENT, ChatKind::Supervisor);
        assert!(
            matches!(tls.validate(), Err(ClientError::InvalidConfig(t)) if t.contains("needs tls_roots_pem")),
            "no trust, no wss://"
        );
        tls.tls_roots_pem = vec!["no certificate here".into()];
        assert!(
            matches!(tls.validate(), Err(ClientError::InvalidConfig(t)) if t.contains("tls_roots_pem[0]"))
        );
        assert!(
            Config::new("ws://h:1/chat", AGENT, ChatKind::Supervisor)
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let mut c = Config::new("ws://h:1/", AGENT, ChatKind::Supervisor);
        c.token = Some(Token::new("s3cr3t"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
