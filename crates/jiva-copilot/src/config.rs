//! How to reach the copilot, and how long to wait for it.

use std::time::Duration;

use jiva_core::TurnTimeouts;

use crate::decode::DEFAULT_MAX_OBJECT_BYTES;

/// The configuration of an [`HttpCopilot`](crate::HttpCopilot). The binary composes it; this
/// crate never reads the environment.
///
/// `Debug` hides the endpoint's password and query, which may hold a key.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// The `http` or `https` URL the question is POSTed to (`COPILOT_ENDPOINT`).
    pub endpoint: String,
    /// Longest time to open the connection (TCP and TLS). Default: [`TurnTimeouts::connect`]
    /// (5 s).
    pub connect_timeout: Duration,
    /// Longest time from starting the request (connecting included) to the response headers
    /// and the first byte of the body. Default: [`TurnTimeouts::first_byte`] (30 s).
    pub first_byte_timeout: Duration,
    /// Longest silence between two pieces of the body. Default: [`TurnTimeouts::idle`] (30 s).
    pub idle_timeout: Duration,
    /// Largest answer object the decoder accepts, in bytes. Default:
    /// [`DEFAULT_MAX_OBJECT_BYTES`] (1 MiB).
    pub max_object_bytes: usize,
}

impl Config {
    /// A configuration for `endpoint` with the default limits.
    pub fn new(endpoint: impl Into<String>) -> Self {
        let timeouts = TurnTimeouts::default();
        Self {
            endpoint: endpoint.into(),
            connect_timeout: timeouts.connect,
            first_byte_timeout: timeouts.first_byte,
            idle_timeout: timeouts.idle,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
        }
    }

    /// Every problem of this configuration, one line each; empty when it is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match reqwest::Url::parse(&self.endpoint) {
            Ok(url) => {
                if !matches!(url.scheme(), "http" | "https") {
                    problems.push(format!(
                        "copilot endpoint: scheme must be http or https, not {:?}",
                        url.scheme()
                    ));
                }
                if url.host_str().is_none_or(str::is_empty) {
                    problems.push("copilot endpoint: the URL has no host".to_string());
                }
            }
            Err(e) => problems.push(format!("copilot endpoint: not a URL ({e})")),
        }
        for (name, value) in [
            ("connect timeout", self.connect_timeout),
            ("first-byte timeout", self.first_byte_timeout),
            ("idle timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                problems.push(format!("copilot {name}: must be more than zero"));
            }
        }
        if self.max_object_bytes == 0 {
            problems.push("copilot max object size: must be more than zero".to_string());
        }
        problems
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoint = match reqwest::Url::parse(&self.endpoint) {
            Ok(url) => redacted(&url),
            Err(_) => "<not a URL>".to_string(),
        };
        f.debug_struct("Config")
            .field("endpoint", &endpoint)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_object_bytes", &self.max_object_bytes)
            .finish()
    }
}

/// `url` without its password and query, for logs and `Debug`.
pub(crate) fn redacted(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        url.set_query(Some("***"));
    }
    url.to_string()
}

/// Why an [`HttpCopilot`](crate::HttpCopilot) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration is not usable; one line per problem.
    #[error("invalid copilot configuration: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The HTTP client could not be built (for example, no TLS backend could be set up).
    #[error("the copilot HTTP client could not be built")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_come_from_the_turn_timeouts() {
        let config = Config::new("http://127.0.0.1:1/ask");
        let timeouts = TurnTimeouts::default();
        assert_eq!(config.connect_timeout, timeouts.connect);
        assert_eq!(config.first_byte_timeout, timeouts.first_byte);
        assert_eq!(config.idle_timeout, timeouts.idle);
        assert_eq!(config.max_object_bytes, 1024 * 1024);
        assert_eq!(config.problems(), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut config = Config::new("ftp://example.invalid/x");
        config.idle_timeout = Duration::ZERO;
        config.max_object_bytes = 0;
        let problems = config.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("scheme"));
        assert!(problems[1].contains("idle"));
        assert!(problems[2].contains("max object"));
    }

    #[test]
    fn debug_hides_the_password_and_query_of_the_endpoint() {
        let config = Config::new("https://user:hunter2@copilot.example/ask?key=s3cret");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("copilot.example/ask"), "{shown}");
        let shown = format!("{:?}", Config::new("not a url"));
        assert!(shown.contains("<not a URL>"), "{shown}");
    }

    #[test]
    fn a_non_url_is_a_problem() {
        for endpoint in ["", "not a url", "http://"] {
            let problems = Config::new(endpoint).problems();
            assert_eq!(problems.len(), 1, "{endpoint:?}: {problems:?}");
            assert!(problems[0].contains("endpoint"));
        }
    }
}
