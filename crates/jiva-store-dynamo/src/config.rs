//! The store's configuration: a plain struct the binary fills in.

use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;

/// How a [`crate::DynamoStore`] finds and uses its tables.
///
/// This crate never reads the environment: the binary fills this in. Credentials and, unless
/// [`Config::region`] is set, the region come from the AWS SDK's default chain
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `~/.aws`, ...), and the SDK itself
/// honours `AWS_ENDPOINT_URL` when [`Config::endpoint_url`] is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The chats table (default `Chats`), keyed by `AgentID` (S) and `SecondaryID` (S).
    pub chats_table: String,
    /// The messages table (default `Messages`). See `docs/dynamodb.md` for its key design.
    pub messages_table: String,
    /// Send requests here instead of AWS (a local DynamoDB-compatible server, e.g.
    /// `http://127.0.0.1:8000`).
    pub endpoint_url: Option<String>,
    /// The region to use instead of the default chain's.
    pub region: Option<String>,
    /// Legacy layout: the `Messages` table is keyed by `MessageID` alone and history is read
    /// through this global secondary index on (`ChatID` S, `Timestamp` N). `None` (the default)
    /// selects the native layout: key (`ChatID`, `SortKey`).
    pub legacy_index: Option<String>,
    /// Legacy layout only: a second, sparse global secondary index on (`ChatID` S, `Seq` N)
    /// (only numbered items are in it). With it, history and `recent` return the chat's
    /// numbered messages in sequence order, after the earlier server's unnumbered ones in time
    /// order; without it (`None`, the default) the legacy layout reads everything in time order
    /// and warns once at construction (see `docs/dynamodb.md`, "Replay in sequence order").
    /// Ignored in the native layout.
    pub legacy_seq_index: Option<String>,
    /// Attempts per request, first try included (SDK standard retry mode with jittered
    /// exponential backoff). `1` disables retries. Default 3.
    pub max_attempts: u32,
    /// The first retry's backoff; later ones grow exponentially up to [`Config::max_backoff`].
    /// Default 50 ms.
    pub initial_backoff: Duration,
    /// The longest backoff between two attempts. Default 2 s.
    pub max_backoff: Duration,
    /// How long to wait for a TCP/TLS connection. Default 3 s.
    pub connect_timeout: Duration,
    /// How long one whole operation (all its attempts) may take. Default 10 s.
    pub operation_timeout: Duration,
    /// Native layout: how long an append keeps trying for a free sequence number while other
    /// servers keep taking the chat's next numbers first (each conflict: a jittered pause of at
    /// most 50 ms, one more put; every third, one read of the chat's newest number). Past it, and
    /// after at least 8 conflicts, the append fails with `StoreError::Conflict`. Default 3 s.
    pub append_deadline: Duration,
    /// Store operations (an append with its retries, a history read, a chat's registration)
    /// this store runs at once; more wait for a turn, at most [`Config::operation_timeout`],
    /// then fail with `StoreError::Unavailable` (`jiva_dynamo_turn_timeouts_total`; the gauge
    /// `jiva_dynamo_operations_waiting` shows how many wait). It keeps a burst (every client
    /// of a lost node catching up at once) queued here instead of piling on a table that
    /// answers slowly, where requests would time out and be retried while the table still
    /// works on them. The readiness check is not counted. `0`: no limit. Default 256.
    pub max_in_flight: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            chats_table: "Chats".to_owned(),
            messages_table: "Messages".to_owned(),
            endpoint_url: None,
            region: None,
            legacy_index: None,
            legacy_seq_index: None,
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(10),
            append_deadline: Duration::from_secs(3),
            max_in_flight: 256,
        }
    }
}

impl Config {
    /// The SDK retry configuration these settings describe.
    pub fn retry_config(&self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts.max(1))
            .with_initial_backoff(self.initial_backoff)
            .with_max_backoff(self.max_backoff)
    }

    /// The SDK timeout configuration these settings describe.
    pub fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout)
            .operation_timeout(self.operation_timeout)
            .build()
    }

    /// Applies the endpoint, region, retry and timeout settings to an SDK client builder.
    pub fn apply_to(
        &self,
        builder: aws_sdk_dynamodb::config::Builder,
    ) -> aws_sdk_dynamodb::config::Builder {
        let mut builder = builder
            .retry_config(self.retry_config())
            .timeout_config(self.timeout_config());
        if let Some(url) = &self.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        if let Some(region) = &self.region {
            builder = builder.region(aws_sdk_dynamodb::config::Region::new(region.clone()));
        }
        builder
    }
}
