//! The plain configuration the binary fills in, and the errors of setting up.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::breaker::BreakerPolicy;
use crate::queue::QueueSettings;

/// The AppSync API key. Its `Debug` prints nothing of the key, and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// What goes into `primaryID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrimaryId {
    /// The part of the agent id before the first `-`: the deployed client compares with this.
    #[default]
    FirstSegment,
    /// The whole agent id.
    FullAgentId,
}

/// How the deployment spells the supervisor value of its `NotificationType` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SupervisorSpelling {
    /// `SUPERVISOR`.
    #[default]
    Supervisor,
    /// `SUPER`.
    Super,
}

impl SupervisorSpelling {
    /// The enum value as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Supervisor => "SUPERVISOR",
            Self::Super => "SUPER",
        }
    }
}

/// A supervisor spelling other than `SUPERVISOR` or `SUPER`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the supervisor notification type must be SUPERVISOR or SUPER")]
pub struct UnknownSupervisorSpelling;

impl FromStr for SupervisorSpelling {
    type Err = UnknownSupervisorSpelling;

    /// Parses the exact, case-sensitive enum value: `SUPERVISOR` or `SUPER`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "SUPERVISOR" => Ok(Self::Supervisor),
            "SUPER" => Ok(Self::Super),
            _ => Err(UnknownSupervisorSpelling),
        }
    }
}

/// How transient failures (5xx, 429, time-outs, connection errors) are retried: exponential
/// backoff with jitter, a bounded number of times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt; `0` disables retrying. Default 3.
    pub max_retries: u32,
    /// The backoff before the first retry, doubled for each further one. Default 200 ms.
    pub base_delay: Duration,
    /// The longest backoff. Default 5 s.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Everything the Amplify notifier needs. The binary fills it in (from flags, environment or
/// `.env`); this crate never reads the environment.
///
/// Build it with [`Config::new`] and set the fields that differ from the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// `GRAPHQL_API_URL`: the AppSync GraphQL endpoint, `http` or `https`.
    pub api_url: String,
    /// `GRAPHQL_API_KEY`: sent as the `x-api-key` header.
    pub api_key: ApiKey,
    /// What goes into `primaryID`. Default: the first segment of the agent id.
    pub primary_id: PrimaryId,
    /// The supervisor value of `NotificationType`. Default `SUPERVISOR`.
    pub supervisor_spelling: SupervisorSpelling,
    /// The limit on one HTTP request, connecting included. Default 10 s.
    pub request_timeout: Duration,
    /// The limit on connecting. Default 5 s.
    pub connect_timeout: Duration,
    /// Retrying of transient failures.
    pub retry: RetryPolicy,
    /// Notifications waiting for delivery; when full the oldest is dropped. Default 1024.
    pub queue_capacity: usize,
    /// Deliveries in flight at most. Default 4.
    pub concurrency: usize,
    /// When delivery pauses during an outage, and how it probes for the end of one.
    pub breaker: BreakerPolicy,
}

impl Config {
    /// A configuration with the given endpoint and key, and defaults for everything else.
    pub fn new(api_url: impl Into<String>, api_key: ApiKey) -> Self {
        Self {
            api_url: api_url.into(),
            api_key,
            primary_id: PrimaryId::default(),
            supervisor_spelling: SupervisorSpelling::default(),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            queue_capacity: 1024,
            concurrency: 4,
            breaker: BreakerPolicy::default(),
        }
    }

    /// The queue's part of this configuration.
    pub(crate) fn queue_settings(&self) -> QueueSettings {
        let mut settings = QueueSettings::new(self.queue_capacity);
        settings.concurrency = self.concurrency;
        settings.breaker = self.breaker;
        settings
    }

    /// Every problem with this configuration at once (empty when it is usable), so that the
    /// binary can report them all before it binds.
    pub fn problems(&self) -> Vec<SetupError> {
        let mut problems = Vec::new();
        match reqwest::Url::parse(&self.api_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(_) => problems.push(SetupError::InvalidUrl("the scheme must be http or https")),
            Err(_) => problems.push(SetupError::InvalidUrl("not an absolute URL")),
        }
        if self.api_key.expose().is_empty() {
            problems.push(SetupError::InvalidApiKey("it is empty"));
        } else if reqwest::header::HeaderValue::from_str(self.api_key.expose()).is_err() {
            problems.push(SetupError::InvalidApiKey(
                "it holds characters not allowed in an HTTP header",
            ));
        }
        if self.request_timeout.is_zero() {
            problems.push(SetupError::InvalidSetting(
                "request_timeout must be more than zero",
            ));
        }
        if self.connect_timeout.is_zero() {
            problems.push(SetupError::InvalidSetting(
                "connect_timeout must be more than zero",
            ));
        }
        if self.retry.base_delay > self.retry.max_delay {
            problems.push(SetupError::InvalidSetting(
                "retry.base_delay must not exceed retry.max_delay",
            ));
        }
        problems.extend(self.queue_settings().problems());
        problems
    }
}

/// Why the notifier could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// `api_url` is not a usable endpoint.
    #[error("GraphQL API URL is invalid: {0}")]
    InvalidUrl(&'static str),
    /// `api_key` cannot be sent (the key itself is never shown).
    #[error("GraphQL API key is invalid: {0}")]
    InvalidApiKey(&'static str),
    /// Another setting is out of range.
    #[error("notification setting is invalid: {0}")]
    InvalidSetting(&'static str),
    /// The HTTP client could not be built (e.g. no TLS backend).
    #[error("could not build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The delivery worker must be started from within a tokio runtime.
    #[error("the notification worker must be started inside a tokio runtime")]
    NoRuntime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_the_config_does_not_show_the_key() {
        let config = Config::new("https://example.invalid/graphql", ApiKey::new("da2-s3cr3t"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("ApiKey(<redacted>)"), "{shown}");
    }

    #[test]
    fn a_good_config_has_no_problems() {
        let config = Config::new("https://example.invalid/graphql", ApiKey::new("da2-key"));
        assert!(config.problems().is_empty());
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let mut config = Config::new("example.invalid/graphql", ApiKey::new(""));
        config.queue_capacity = 0;
        config.request_timeout = Duration::ZERO;
        config.concurrency = 0;
        config.breaker.open_for = Duration::ZERO;
        let problems = config.problems();
        assert_eq!(problems.len(), 6, "{problems:?}");
        assert!(matches!(problems[0], SetupError::InvalidUrl(_)));
        assert!(matches!(problems[1], SetupError::InvalidApiKey(_)));

        let config = Config::new("ftp://example.invalid/", ApiKey::new("bad\nkey"));
        let problems = config.problems();
        assert!(matches!(problems[0], SetupError::InvalidUrl(_)));
        assert!(matches!(problems[1], SetupError::InvalidApiKey(_)));
        assert!(!format!("{problems:?}").contains("bad\nkey"));
    }

    #[test]
    fn supervisor_spelling_parses_exactly() {
        assert_eq!("SUPER".parse(), Ok(SupervisorSpelling::Super));
        assert_eq!("SUPERVISOR".parse(), Ok(SupervisorSpelling::Supervisor));
        assert_eq!(
            "supervisor".parse::<SupervisorSpelling>(),
            Err(UnknownSupervisorSpelling)
        );
        assert_eq!(SupervisorSpelling::default().as_str(), "SUPERVISOR");
    }
}
