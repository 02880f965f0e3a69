//! Configuration: flags, environment and `.env`, validated all at once before binding.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Command-line flags; each can also be set by the environment variable named beside it.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "jivachat-server",
    version,
    about = "The JivaChat real-time chat server"
)]
pub struct Args {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "JIVA_LISTEN", default_value = "127.0.0.1:3030")]
    pub listen: String,
    /// Directory of the embedded store.
    #[arg(long, env = "JIVA_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Which store to use: `sqlite` (embedded) or `dynamodb`.
    #[arg(long, env = "JIVA_STORE", default_value = "sqlite")]
    pub store: String,
    /// DynamoDB chats table.
    #[arg(long, env = "JIVA_DYNAMODB_CHATS_TABLE", default_value = "Chats")]
    pub dynamodb_chats_table: String,
    /// DynamoDB messages table.
    #[arg(long, env = "JIVA_DYNAMODB_MESSAGES_TABLE", default_value = "Messages")]
    pub dynamodb_messages_table: String,
    /// Legacy layout: read history through this GSI on (ChatID, Timestamp) of a `Messages`
    /// table keyed by `MessageID` alone (see docs/dynamodb.md).
    #[arg(long, env = "JIVA_DYNAMODB_LEGACY_INDEX")]
    pub dynamodb_legacy_index: Option<String>,
    /// DynamoDB attempts per request, first try included (retries with backoff).
    #[arg(long, env = "JIVA_DYNAMODB_MAX_ATTEMPTS", default_value = "3")]
    pub dynamodb_max_attempts: String,
    /// Log filter, in `RUST_LOG` syntax (e.g. `info`, `jiva_ws=debug`).
    #[arg(long, env = "JIVA_LOG", default_value = "info")]
    pub log: String,
    /// Log format: `text` or `json`.
    #[arg(long, env = "JIVA_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Largest frame a client may send, in bytes.
    #[arg(long, env = "JIVA_MAX_FRAME_BYTES", default_value = "65536")]
    pub max_frame_bytes: String,
    /// Frames queued per socket before it is closed as a slow consumer.
    #[arg(long, env = "JIVA_OUTBOUND_QUEUE", default_value = "256")]
    pub outbound_queue: String,
    /// Milliseconds shutdown waits for sockets and copilot turns.
    #[arg(long, env = "JIVA_SHUTDOWN_GRACE_MS", default_value = "5000")]
    pub shutdown_grace_ms: String,
    /// The copilot endpoint; unset, copilot questions get an error frame and `end`.
    #[arg(long, env = "COPILOT_ENDPOINT")]
    pub copilot_endpoint: Option<String>,
    /// Milliseconds to connect to the copilot.
    #[arg(long, env = "COPILOT_CONNECT_TIMEOUT_MS", default_value = "5000")]
    pub copilot_connect_timeout_ms: String,
    /// Milliseconds from the copilot request to the first byte of its answer.
    #[arg(long, env = "COPILOT_FIRST_BYTE_TIMEOUT_MS", default_value = "30000")]
    pub copilot_first_byte_timeout_ms: String,
    /// Longest silence between two pieces of a copilot answer, in milliseconds.
    #[arg(long, env = "COPILOT_IDLE_TIMEOUT_MS", default_value = "30000")]
    pub copilot_idle_timeout_ms: String,
    /// Longest whole copilot turn, request to `end`, in milliseconds.
    #[arg(long, env = "COPILOT_TURN_TIMEOUT_MS", default_value = "120000")]
    pub copilot_turn_timeout_ms: String,
    /// Earlier turns sent to the copilot, at most.
    #[arg(long, env = "COPILOT_HISTORY_TURNS", default_value = "50")]
    pub copilot_history_turns: String,
    /// Bytes of earlier turns sent to the copilot, at most.
    #[arg(long, env = "COPILOT_HISTORY_BYTES", default_value = "65536")]
    pub copilot_history_bytes: String,
    /// Copilot questions of one chat that may wait behind the running turn.
    #[arg(long, env = "COPILOT_QUEUE", default_value = "4")]
    pub copilot_queue: String,
    /// The AppSync GraphQL URL; unset, notifications are disabled.
    #[arg(long, env = "GRAPHQL_API_URL")]
    pub graphql_api_url: Option<String>,
    /// The AppSync API key (required with GRAPHQL_API_URL).
    #[arg(long, env = "GRAPHQL_API_KEY", hide_env_values = true)]
    pub graphql_api_key: Option<String>,
    /// The `NotificationType` value for supervisor messages: `SUPERVISOR` or `SUPER`.
    #[arg(
        long,
        env = "JIVA_NOTIFY_SUPERVISOR_TYPE",
        default_value = "SUPERVISOR"
    )]
    pub notify_supervisor_type: String,
    /// What goes into `primaryID`: `first-segment` of the agent id, or the `full` id.
    #[arg(long, env = "JIVA_NOTIFY_PRIMARY_ID", default_value = "first-segment")]
    pub notify_primary_id: String,
    /// Notifications waiting for delivery; when full the oldest is dropped.
    #[arg(long, env = "JIVA_NOTIFY_QUEUE", default_value = "1024")]
    pub notify_queue: String,
    /// Retries of a notification after a transient failure.
    #[arg(long, env = "JIVA_NOTIFY_RETRIES", default_value = "3")]
    pub notify_retries: String,
    /// Notification deliveries in flight at most.
    #[arg(long, env = "JIVA_NOTIFY_CONCURRENCY", default_value = "4")]
    pub notify_concurrency: String,
    /// Consecutive failed notification deliveries that open the breaker (sending pauses).
    #[arg(long, env = "JIVA_NOTIFY_BREAKER_FAILURES", default_value = "5")]
    pub notify_breaker_failures: String,
    /// How long the notification breaker stays open before one probe is sent.
    #[arg(long, env = "JIVA_NOTIFY_BREAKER_OPEN_MS", default_value = "5000")]
    pub notify_breaker_open_ms: String,
}

/// What the server binary does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Serve chats (the default).
    Serve,
    /// Create the store's tables if they do not exist, then exit (idempotent).
    CreateTables,
}

/// Which store backs the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded SQLite store in the data directory.
    Sqlite,
    /// DynamoDB, with credentials and region from the AWS SDK's default chain.
    Dynamodb(Box<jiva_store_dynamo::Config>),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated configuration of the server.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to do.
    pub command: Command,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The embedded store's directory.
    pub data_dir: PathBuf,
    /// The store.
    pub store: StoreChoice,
    /// Log filter.
    pub log: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Transport settings.
    pub transport: jiva_ws::Config,
    /// The copilot client, when `COPILOT_ENDPOINT` is set.
    pub copilot: Option<jiva_copilot::Config>,
    /// The Amplify notifier, when `GRAPHQL_API_URL` is set.
    pub notify: Option<jiva_notify_amplify::Config>,
}

impl Config {
    /// Defaults (as with no flags and no environment) with the store in `data_dir`; for tests
    /// and embedding.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            command: Command::Serve,
            listen: SocketAddr::from(([127, 0, 0, 1], 3030)),
            data_dir: data_dir.into(),
            store: StoreChoice::Sqlite,
            log: "info".into(),
            log_format: LogFormat::Text,
            transport: jiva_ws::Config::default(),
            copilot: None,
            notify: None,
        }
    }

    /// Validates every flag; returns every problem found, one message each.
    pub fn from_args(args: Args) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut config = Self::with_data_dir(args.data_dir.clone());
        config.command = args.command.unwrap_or(Command::Serve);
        match args.listen.parse() {
            Ok(addr) => config.listen = addr,
            Err(_) => problems.push(format!(
                "--listen / JIVA_LISTEN: {:?} is not an address like 127.0.0.1:3030",
                args.listen
            )),
        }
        if args.data_dir.as_os_str().is_empty() {
            problems.push("--data-dir / JIVA_DATA_DIR: must not be empty".into());
        }
        match args.store.as_str() {
            "sqlite" => config.store = StoreChoice::Sqlite,
            "dynamodb" => {
                let mut dynamo = jiva_store_dynamo::Config {
                    chats_table: args.dynamodb_chats_table.clone(),
                    messages_table: args.dynamodb_messages_table.clone(),
                    legacy_index: args.dynamodb_legacy_index.clone().filter(|i| !i.is_empty()),
                    ..jiva_store_dynamo::Config::default()
                };
                match args.dynamodb_max_attempts.parse::<u32>() {
                    Ok(n) if n > 0 => dynamo.max_attempts = n,
                    _ => problems.push(format!(
                        "--dynamodb-max-attempts / JIVA_DYNAMODB_MAX_ATTEMPTS: {:?} is not a positive whole number",
                        args.dynamodb_max_attempts
                    )),
                }
                for (name, table) in [
                    ("JIVA_DYNAMODB_CHATS_TABLE", &dynamo.chats_table),
                    ("JIVA_DYNAMODB_MESSAGES_TABLE", &dynamo.messages_table),
                ] {
                    if table.len() < 3 || table.len() > 255 {
                        problems.push(format!(
                            "{name}: {table:?} is not a DynamoDB table name (3 to 255 characters)"
                        ));
                    }
                }
                config.store = StoreChoice::Dynamodb(Box::new(dynamo));
            }
            other => problems.push(format!(
                "--store / JIVA_STORE: {other:?} is not a store (expected sqlite or dynamodb)"
            )),
        }
        if tracing_subscriber::EnvFilter::try_new(&args.log).is_err() {
            problems.push(format!(
                "--log / JIVA_LOG: {:?} is not a log filter",
                args.log
            ));
        }
        config.log = args.log;
        match args.log_format.as_str() {
            "text" => config.log_format = LogFormat::Text,
            "json" => config.log_format = LogFormat::Json,
            other => problems.push(format!(
                "--log-format / JIVA_LOG_FORMAT: {other:?} is not text or json"
            )),
        }
        let mut positive = |name: &str, raw: &str| -> usize {
            match raw.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    problems.push(format!("{name}: {raw:?} is not a positive whole number"));
                    1
                }
            }
        };
        config.transport.max_frame_bytes = positive(
            "--max-frame-bytes / JIVA_MAX_FRAME_BYTES",
            &args.max_frame_bytes,
        );
        config.transport.outbound_queue = positive(
            "--outbound-queue / JIVA_OUTBOUND_QUEUE",
            &args.outbound_queue,
        );
        let grace = positive(
            "--shutdown-grace-ms / JIVA_SHUTDOWN_GRACE_MS",
            &args.shutdown_grace_ms,
        );
        config.transport.shutdown_grace = Duration::from_millis(grace as u64);
        let ms = |problems: &mut Vec<String>, name: &str, raw: &str| -> Duration {
            match raw.parse::<u64>() {
                Ok(n) if n > 0 => Duration::from_millis(n),
                _ => {
                    problems.push(format!(
                        "{name}: {raw:?} is not a positive number of milliseconds"
                    ));
                    Duration::from_millis(1)
                }
            }
        };
        let count = |problems: &mut Vec<String>, name: &str, raw: &str| -> usize {
            raw.parse::<usize>().unwrap_or_else(|_| {
                problems.push(format!("{name}: {raw:?} is not a whole number"));
                0
            })
        };

        config.transport.copilot_turn_timeout = ms(
            &mut problems,
            "COPILOT_TURN_TIMEOUT_MS",
            &args.copilot_turn_timeout_ms,
        );
        config.transport.copilot_history.max_turns = count(
            &mut problems,
            "COPILOT_HISTORY_TURNS",
            &args.copilot_history_turns,
        );
        config.transport.copilot_history.max_bytes = count(
            &mut problems,
            "COPILOT_HISTORY_BYTES",
            &args.copilot_history_bytes,
        );
        config.transport.copilot_queue = count(&mut problems, "COPILOT_QUEUE", &args.copilot_queue);
        let connect = ms(
            &mut problems,
            "COPILOT_CONNECT_TIMEOUT_MS",
            &args.copilot_connect_timeout_ms,
        );
        let first_byte = ms(
            &mut problems,
            "COPILOT_FIRST_BYTE_TIMEOUT_MS",
            &args.copilot_first_byte_timeout_ms,
        );
        let idle = ms(
            &mut problems,
            "COPILOT_IDLE_TIMEOUT_MS",
            &args.copilot_idle_timeout_ms,
        );
        if let Some(endpoint) = args.copilot_endpoint.filter(|e| !e.trim().is_empty()) {
            let mut copilot = jiva_copilot::Config::new(endpoint);
            copilot.connect_timeout = connect;
            copilot.first_byte_timeout = first_byte;
            copilot.idle_timeout = idle;
            problems.extend(
                copilot
                    .problems()
                    .into_iter()
                    .map(|p| format!("COPILOT_ENDPOINT: {p}")),
            );
            config.copilot = Some(copilot);
        }

        let supervisor = args
            .notify_supervisor_type
            .parse::<jiva_notify_amplify::SupervisorSpelling>();
        if supervisor.is_err() {
            problems.push(format!(
                "JIVA_NOTIFY_SUPERVISOR_TYPE: {:?} is not SUPERVISOR or SUPER",
                args.notify_supervisor_type
            ));
        }
        let primary_id = match args.notify_primary_id.as_str() {
            "first-segment" => jiva_notify_amplify::PrimaryId::FirstSegment,
            "full" => jiva_notify_amplify::PrimaryId::FullAgentId,
            other => {
                problems.push(format!(
                    "JIVA_NOTIFY_PRIMARY_ID: {other:?} is not first-segment or full"
                ));
                jiva_notify_amplify::PrimaryId::FirstSegment
            }
        };
        let queue = count(&mut problems, "JIVA_NOTIFY_QUEUE", &args.notify_queue);
        let retries = args.notify_retries.parse::<u32>().unwrap_or_else(|_| {
            problems.push(format!(
                "JIVA_NOTIFY_RETRIES: {:?} is not a whole number",
                args.notify_retries
            ));
            0
        });
        let notify_concurrency = count(
            &mut problems,
            "JIVA_NOTIFY_CONCURRENCY",
            &args.notify_concurrency,
        );
        let breaker_failures = count(
            &mut problems,
            "JIVA_NOTIFY_BREAKER_FAILURES",
            &args.notify_breaker_failures,
        );
        let breaker_open = ms(
            &mut problems,
            "JIVA_NOTIFY_BREAKER_OPEN_MS",
            &args.notify_breaker_open_ms,
        );
        let url = args.graphql_api_url.filter(|u| !u.trim().is_empty());
        let key = args.graphql_api_key.filter(|k| !k.is_empty());
        match (url, key) {
            (Some(url), Some(key)) => {
                let mut notify =
                    jiva_notify_amplify::Config::new(url, jiva_notify_amplify::ApiKey::new(key));
                notify.primary_id = primary_id;
                notify.supervisor_spelling = supervisor.unwrap_or_default();
                notify.queue_capacity = queue;
                notify.retry.max_retries = retries;
                notify.concurrency = notify_concurrency;
                notify.breaker.failure_threshold =
                    u32::try_from(breaker_failures).unwrap_or(u32::MAX);
                notify.breaker.open_for = breaker_open;
                problems.extend(
                    notify
                        .problems()
                        .into_iter()
                        .map(|p| format!("GRAPHQL_API_URL / GRAPHQL_API_KEY: {p}")),
                );
                config.notify = Some(notify);
            }
            (Some(_), None) => {
                problems.push("GRAPHQL_API_KEY: required when GRAPHQL_API_URL is set".into())
            }
            (None, _) => {}
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["jivachat-server"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::from_args(args(&[])).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:3030");
        assert_eq!(config.transport.max_frame_bytes, 65536);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let problems = Config::from_args(args(&[
            "--listen",
            "nowhere",
            "--store",
            "mongo",
            "--log-format",
            "xml",
            "--max-frame-bytes",
            "0",
            "--graphql-api-url",
            "ftp://x",
            "--copilot-endpoint",
            "nope",
            "--copilot-idle-timeout-ms",
            "0",
            "--notify-supervisor-type",
            "BOSS",
        ]))
        .unwrap_err();
        // listen, store, log format, frame size, idle timeout, copilot URL, supervisor type,
        // missing API key.
        assert_eq!(problems.len(), 8, "{problems:#?}");
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let config = Config::from_args(args(&[
            "--graphql-api-url",
            "https://x",
            "--graphql-api-key",
            "hunter2",
        ]))
        .unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
