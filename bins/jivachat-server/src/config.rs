//! Configuration: flags, environment and `.env`, validated all at once before binding.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The largest `COPILOT_MAX_ANSWER_BYTES` accepted: 384 KiB of answer text leaves room for the
/// notice and the other attributes in a 400 KB DynamoDB item.
const MAX_ANSWER_BYTES_LIMIT: usize = 384 * 1024;

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
    /// Legacy layout: the sparse GSI on (ChatID, Seq) through which history is replayed in
    /// sequence order (needs --dynamodb-legacy-index; see docs/dynamodb.md).
    #[arg(long, env = "JIVA_DYNAMODB_LEGACY_SEQ_INDEX")]
    pub dynamodb_legacy_seq_index: Option<String>,
    /// DynamoDB attempts per request, first try included (retries with backoff).
    #[arg(long, env = "JIVA_DYNAMODB_MAX_ATTEMPTS", default_value = "3")]
    pub dynamodb_max_attempts: String,
    /// How long an append keeps trying for a free sequence number while other servers take the
    /// chat's next numbers first, in milliseconds (see docs/dynamodb.md).
    #[arg(long, env = "JIVA_DYNAMODB_APPEND_DEADLINE_MS", default_value = "3000")]
    pub dynamodb_append_deadline_ms: String,
    /// DynamoDB operations one server runs at once; more wait their turn (up to the 10 s
    /// operation timeout, then the store is unavailable to them). 0: no limit.
    #[arg(long, env = "JIVA_DYNAMODB_MAX_IN_FLIGHT", default_value = "256")]
    pub dynamodb_max_in_flight: String,
    /// Fan-out between servers: `inprocess` (one server) or `redis` (a cluster on one shared
    /// store; needs `--store dynamodb` and `--redis-url`).
    #[arg(long, env = "JIVA_BUS", default_value = "inprocess")]
    pub bus: String,
    /// The Redis of `--bus redis` (`redis://[user:password@]host:port[/db]`).
    #[arg(long, env = "JIVA_REDIS_URL")]
    pub redis_url: Option<String>,
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
    /// Protocol v1: the most messages a resume (`?since=`) replays; further behind, `reload`.
    #[arg(long, env = "JIVA_V1_RESUME_MAX", default_value = "1000")]
    pub v1_resume_max: String,
    /// Milliseconds shutdown waits for sockets, copilot turns and notifications, all together.
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
    /// The largest copilot answer kept, in bytes; a longer one is cut there (1..=393216).
    #[arg(long, env = "COPILOT_MAX_ANSWER_BYTES", default_value = "262144")]
    pub copilot_max_answer_bytes: String,
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
    /// Sockets open at once; one more handshake is answered 503 (0: no limit).
    #[arg(long, env = "JIVA_MAX_SOCKETS", default_value = "100000")]
    pub max_sockets: String,
    /// Sockets open at once per client IP; one more handshake is answered 429 (0: no limit).
    #[arg(long, env = "JIVA_MAX_SOCKETS_PER_IP", default_value = "100")]
    pub max_sockets_per_ip: String,
    /// Take the client IP from the right-most `X-Forwarded-For` entry (behind a proxy that
    /// appends it) instead of the TCP peer.
    #[arg(
        long,
        env = "JIVA_TRUST_FORWARDED_FOR",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub trust_forwarded_for: String,
    /// WebSocket handshakes per client IP per second; more are answered 429 (0: no limit).
    #[arg(long, env = "JIVA_HANDSHAKES_PER_IP_PER_SEC", default_value = "50")]
    pub handshakes_per_ip_per_sec: String,
    /// Frames per socket per second after the burst (0: no limit).
    #[arg(long, env = "JIVA_MESSAGES_PER_SEC", default_value = "50")]
    pub messages_per_sec: String,
    /// Frames a socket may send at once before `--messages-per-sec` paces it.
    #[arg(long, env = "JIVA_MESSAGE_BURST", default_value = "500")]
    pub message_burst: String,
    /// Copilot questions per agent per minute (0: no limit).
    #[arg(long, env = "JIVA_COPILOT_QUESTIONS_PER_MIN", default_value = "30")]
    pub copilot_questions_per_min: String,
    /// Seconds a socket may stay silent (no frame, no pong) before it is closed (0: never).
    #[arg(long, env = "JIVA_IDLE_TIMEOUT_SECS", default_value = "90")]
    pub idle_timeout_secs: String,
    /// Seconds a connection may take to send a request head (0: no limit).
    #[arg(long, env = "JIVA_REQUEST_HEADER_TIMEOUT_SECS", default_value = "30")]
    pub request_header_timeout_secs: String,
    /// PEM certificate chain; with `--tls-key`, the server speaks HTTPS and `wss://`.
    #[arg(long, env = "JIVA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "JIVA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Seconds between checks of the TLS files for changes (0: reload on SIGHUP only).
    #[arg(long, env = "JIVA_TLS_RELOAD_SECS", default_value = "5")]
    pub tls_reload_secs: String,
    /// Serve `/metrics` on this separate address (plain HTTP) instead of the main listener.
    #[arg(long, env = "JIVA_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Who may connect: `none` (anyone: the deployed client sends no token), `jwt` (HS256
    /// tokens signed with JIVA_JWT_SECRET) or `cognito` (RS256 tokens of a Cognito user pool).
    #[arg(long, env = "JIVA_AUTH", default_value = "none")]
    pub auth: String,
    /// The HS256 secret of `--auth jwt` and of the `token` command (at least 32 bytes).
    #[arg(long, env = "JIVA_JWT_SECRET", hide_env_values = true, value_parser = secret)]
    pub jwt_secret: Option<jiva_auth::JwtSecret>,
    /// The Cognito user pool's AWS region (`--auth cognito`).
    #[arg(long, env = "JIVA_COGNITO_REGION")]
    pub cognito_region: Option<String>,
    /// The Cognito user pool id (`--auth cognito`).
    #[arg(long, env = "JIVA_COGNITO_USER_POOL_ID")]
    pub cognito_user_pool_id: Option<String>,
    /// The Cognito app client id: `aud` of id tokens, `client_id` of access tokens.
    #[arg(long, env = "JIVA_COGNITO_CLIENT_ID")]
    pub cognito_client_id: Option<String>,
    /// Where the Cognito signing keys are fetched from (default: the pool's JWKS URL).
    #[arg(long, env = "JIVA_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Seconds of clock skew allowed on a token's `exp` and `nbf`.
    #[arg(long, env = "JIVA_AUTH_LEEWAY_SECS", default_value = "60")]
    pub auth_leeway_secs: String,
    /// The Cognito key set is fetched again for an unknown `kid` at most once per this many
    /// seconds.
    #[arg(long, env = "JIVA_JWKS_REFETCH_SECS", default_value = "30")]
    pub jwks_refetch_secs: String,
    /// The token claim holding the caller's agent id.
    #[arg(long, env = "JIVA_CLAIM_AGENT_ID", default_value = "custom:profileId")]
    pub claim_agent_id: String,
    /// The token claim holding the caller's groups.
    #[arg(long, env = "JIVA_CLAIM_GROUPS", default_value = "cognito:groups")]
    pub claim_groups: String,
    /// Members of this group are supervisors.
    #[arg(long, env = "JIVA_SUPERVISOR_GROUP", default_value = "Supervisor")]
    pub supervisor_group: String,
    /// Comma-separated origins (`https://host[:port]`) browsers may connect from; unset: any.
    #[arg(long, env = "JIVA_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,
}

fn secret(raw: &str) -> Result<jiva_auth::JwtSecret, String> {
    Ok(jiva_auth::JwtSecret::new(raw))
}

/// What the server binary does.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Serve chats (the default).
    Serve,
    /// Create the store's tables if they do not exist, then exit (idempotent).
    CreateTables,
    /// Print an HS256 token signed with JIVA_JWT_SECRET, with the configured claim names, then
    /// exit (development and service clients).
    Token(TokenArgs),
}

/// The flags of the `token` command.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TokenArgs {
    /// The agent id the token is for.
    #[arg(long)]
    pub agent: String,
    /// `agent` or `supervisor`.
    #[arg(long, default_value = "agent")]
    pub role: String,
    /// How long the token is valid: a number with `s`, `m`, `h` or `d` (e.g. `90s`, `1h`).
    #[arg(long, default_value = "1h")]
    pub ttl: String,
}

/// A validated `token` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Whose token.
    pub agent: jiva_core::AgentId,
    /// Agent or supervisor.
    pub role: jiva_core::UserRole,
    /// Valid for this long from now.
    pub ttl: Duration,
}

/// Who may connect.
#[derive(Debug, Clone)]
pub enum AuthChoice {
    /// Anyone, as the deployed client expects (it sends no token).
    None,
    /// HS256 tokens signed with a shared secret.
    Jwt(jiva_auth::JwtConfig),
    /// RS256 tokens of a Cognito user pool.
    Cognito(Box<jiva_auth::CognitoConfig>),
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
    /// Who may connect.
    pub auth: AuthChoice,
    /// The token to print, for the `token` command.
    pub token: Option<TokenRequest>,
    /// The HS256 secret, when one is set (the `token` command signs with it).
    pub jwt_secret: Option<jiva_auth::JwtSecret>,
    /// Claim names, for the `token` command.
    pub claims: jiva_auth::ClaimNames,
    /// Native TLS, when `--tls-cert` and `--tls-key` are set.
    pub tls: Option<jiva_ws::TlsFiles>,
    /// The admin listener's address (`/metrics` only there), when set.
    pub admin_listen: Option<SocketAddr>,
    /// Fan-out between servers.
    pub bus: crate::BusChoice,
}

/// Reads a "true"/"false" style value.
fn boolish(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Validates the TLS flags: both files or neither, and they must load (parse, key matching).
fn read_tls(args: &Args, problems: &mut Vec<String>) -> Option<jiva_ws::TlsFiles> {
    let poll = match args.tls_reload_secs.parse::<u64>() {
        Ok(0) => None,
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => {
            problems.push(format!(
                "--tls-reload-secs / JIVA_TLS_RELOAD_SECS: {:?} is not a whole number",
                args.tls_reload_secs
            ));
            None
        }
    };
    let cert = args.tls_cert.clone().filter(|p| !p.as_os_str().is_empty());
    let key = args.tls_key.clone().filter(|p| !p.as_os_str().is_empty());
    match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let files = jiva_ws::TlsFiles { cert, key, poll };
            match jiva_ws::Tls::load(files.clone()) {
                Ok(_) => Some(files),
                Err(e) => {
                    problems.push(format!("--tls-cert / --tls-key: {e}"));
                    None
                }
            }
        }
        (Some(_), None) => {
            problems.push("--tls-key / JIVA_TLS_KEY: required with --tls-cert".into());
            None
        }
        (None, Some(_)) => {
            problems.push("--tls-cert / JIVA_TLS_CERT: required with --tls-key".into());
            None
        }
    }
}

/// Validates the limit flags into `limits`, one problem per bad value.
fn read_limits(args: &Args, limits: &mut jiva_ws::Limits, problems: &mut Vec<String>) {
    let mut whole = |name: &str, raw: &str| -> u32 {
        raw.parse::<u32>().unwrap_or_else(|_| {
            problems.push(format!(
                "{name}: {raw:?} is not a whole number (0 turns the limit off)"
            ));
            0
        })
    };
    limits.max_sockets = whole("--max-sockets / JIVA_MAX_SOCKETS", &args.max_sockets) as usize;
    limits.max_sockets_per_ip = whole(
        "--max-sockets-per-ip / JIVA_MAX_SOCKETS_PER_IP",
        &args.max_sockets_per_ip,
    ) as usize;
    limits.handshakes_per_ip_per_sec = whole(
        "--handshakes-per-ip-per-sec / JIVA_HANDSHAKES_PER_IP_PER_SEC",
        &args.handshakes_per_ip_per_sec,
    );
    limits.messages_per_sec = whole(
        "--messages-per-sec / JIVA_MESSAGES_PER_SEC",
        &args.messages_per_sec,
    );
    limits.message_burst = whole("--message-burst / JIVA_MESSAGE_BURST", &args.message_burst);
    limits.copilot_questions_per_min = whole(
        "--copilot-questions-per-min / JIVA_COPILOT_QUESTIONS_PER_MIN",
        &args.copilot_questions_per_min,
    );
    limits.idle_timeout = Duration::from_secs(u64::from(whole(
        "--idle-timeout-secs / JIVA_IDLE_TIMEOUT_SECS",
        &args.idle_timeout_secs,
    )));
    limits.request_header_timeout = Duration::from_secs(u64::from(whole(
        "--request-header-timeout-secs / JIVA_REQUEST_HEADER_TIMEOUT_SECS",
        &args.request_header_timeout_secs,
    )));
    match boolish(&args.trust_forwarded_for) {
        Some(trust) => limits.trust_forwarded_for = trust,
        None => problems.push(format!(
            "--trust-forwarded-for / JIVA_TRUST_FORWARDED_FOR: {:?} is not true or false",
            args.trust_forwarded_for
        )),
    }
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
            auth: AuthChoice::None,
            token: None,
            jwt_secret: None,
            claims: jiva_auth::ClaimNames::default(),
            tls: None,
            admin_listen: None,
            bus: crate::BusChoice::InProcess,
        }
    }

    /// Validates every flag; returns every problem found, one message each.
    pub fn from_args(args: Args) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut config = Self::with_data_dir(args.data_dir.clone());
        config.command = args.command.clone().unwrap_or(Command::Serve);
        crate::auth_config::from_args(&args, &mut config, &mut problems);
        read_limits(&args, &mut config.transport.limits, &mut problems);
        config.tls = read_tls(&args, &mut problems);
        match args.admin_listen.as_deref().filter(|a| !a.is_empty()) {
            None => {}
            Some(raw) => match raw.parse() {
                Ok(addr) => {
                    config.admin_listen = Some(addr);
                    config.transport.metrics_on_main_listener = false;
                }
                Err(_) => problems.push(format!(
                    "--admin-listen / JIVA_ADMIN_LISTEN: {raw:?} is not an address like 127.0.0.1:9090"
                )),
            },
        }
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
                    legacy_seq_index: args
                        .dynamodb_legacy_seq_index
                        .clone()
                        .filter(|i| !i.is_empty()),
                    ..jiva_store_dynamo::Config::default()
                };
                if dynamo.legacy_seq_index.is_some() && dynamo.legacy_index.is_none() {
                    problems.push(
                        "--dynamodb-legacy-seq-index / JIVA_DYNAMODB_LEGACY_SEQ_INDEX: needs --dynamodb-legacy-index / JIVA_DYNAMODB_LEGACY_INDEX (the sequence index belongs to a Messages table keyed by MessageID)".into(),
                    );
                }
                match args.dynamodb_max_attempts.parse::<u32>() {
                    Ok(n) if n > 0 => dynamo.max_attempts = n,
                    _ => problems.push(format!(
                        "--dynamodb-max-attempts / JIVA_DYNAMODB_MAX_ATTEMPTS: {:?} is not a positive whole number",
                        args.dynamodb_max_attempts
                    )),
                }
                match args.dynamodb_append_deadline_ms.parse::<u64>() {
                    Ok(ms) if ms > 0 => dynamo.append_deadline = Duration::from_millis(ms),
                    _ => problems.push(format!(
                        "--dynamodb-append-deadline-ms / JIVA_DYNAMODB_APPEND_DEADLINE_MS: {:?} is not a positive whole number of milliseconds",
                        args.dynamodb_append_deadline_ms
                    )),
                }
                match args.dynamodb_max_in_flight.parse::<usize>() {
                    Ok(n) => dynamo.max_in_flight = n,
                    _ => problems.push(format!(
                        "--dynamodb-max-in-flight / JIVA_DYNAMODB_MAX_IN_FLIGHT: {:?} is not a whole number (0: no limit)",
                        args.dynamodb_max_in_flight
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
        crate::bus_config::from_args(&args, &mut config, &mut problems);
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
        config.transport.v1_resume_max =
            positive("--v1-resume-max / JIVA_V1_RESUME_MAX", &args.v1_resume_max);
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
        config.transport.copilot_max_answer_bytes = count(
            &mut problems,
            "COPILOT_MAX_ANSWER_BYTES",
            &args.copilot_max_answer_bytes,
        );
        let parsed = args.copilot_max_answer_bytes.parse::<usize>().is_ok();
        if parsed
            && !(1..=MAX_ANSWER_BYTES_LIMIT).contains(&config.transport.copilot_max_answer_bytes)
        {
            problems.push(format!(
                "COPILOT_MAX_ANSWER_BYTES: must be from 1 to {MAX_ANSWER_BYTES_LIMIT} (a stored answer must fit a 400 KB DynamoDB item)"
            ));
        }
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
    fn the_legacy_sequence_index_needs_the_legacy_index() {
        let problems = Config::from_args(args(&[
            "--store",
            "dynamodb",
            "--dynamodb-legacy-seq-index",
            "ChatID-Seq-index",
        ]))
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].contains("--dynamodb-legacy-index"),
            "{problems:#?}"
        );
        let config = Config::from_args(args(&[
            "--store",
            "dynamodb",
            "--dynamodb-legacy-index",
            "ChatID-Timestamp-index",
            "--dynamodb-legacy-seq-index",
            "ChatID-Seq-index",
        ]))
        .unwrap();
        let StoreChoice::Dynamodb(dynamo) = config.store else {
            panic!("not the DynamoDB store");
        };
        assert_eq!(dynamo.legacy_seq_index.as_deref(), Some("ChatID-Seq-index"));
    }

    #[test]
    fn dynamodb_operations_in_flight_default_to_256_and_take_a_whole_number() {
        let in_flight = |extra: &[&str]| {
            let mut argv = vec!["--store", "dynamodb"];
            argv.extend_from_slice(extra);
            Config::from_args(args(&argv)).map(|c| match c.store {
                StoreChoice::Dynamodb(dynamo) => dynamo.max_in_flight,
                _ => usize::MAX,
            })
        };
        assert_eq!(in_flight(&[]), Ok(256));
        assert_eq!(in_flight(&["--dynamodb-max-in-flight", "8"]), Ok(8));
        assert_eq!(in_flight(&["--dynamodb-max-in-flight", "0"]), Ok(0));
        let problems = in_flight(&["--dynamodb-max-in-flight=many"]).unwrap_err();
        assert!(
            problems.len() == 1 && problems[0].contains("--dynamodb-max-in-flight"),
            "{problems:#?}"
        );
    }

    #[test]
    fn the_copilot_answer_bound_must_fit_a_dynamodb_item() {
        for (raw, problem) in [
            ("0", Some("must be from 1")),
            ("393217", Some("must be from 1")),
            ("lots", Some("not a whole number")),
            ("393216", None),
        ] {
            let parsed = Config::from_args(args(&["--copilot-max-answer-bytes", raw]));
            match problem {
                Some(problem) => {
                    let problems = parsed.unwrap_err();
                    assert_eq!(problems.len(), 1, "{problems:#?}");
                    assert!(problems[0].contains(problem), "{problems:#?}");
                }
                None => assert_eq!(parsed.unwrap().transport.copilot_max_answer_bytes, 393216),
            }
        }
        let defaults = Config::from_args(args(&[])).unwrap();
        assert_eq!(defaults.transport.copilot_max_answer_bytes, 256 * 1024);
    }

    #[test]
    fn limits_and_tls_flags_are_validated() {
        let problems = Config::from_args(args(&[
            "--max-sockets",
            "many",
            "--trust-forwarded-for",
            "maybe",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--admin-listen",
            "nowhere",
        ]))
        .unwrap_err();
        // max sockets, trust, the key missing beside the certificate, admin address.
        assert_eq!(problems.len(), 4, "{problems:#?}");
        let problems = Config::from_args(args(&[
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ]))
        .unwrap_err();
        assert!(
            problems[0].contains("/nonexistent/cert.pem"),
            "{problems:#?}"
        );
        let config = Config::from_args(args(&[
            "--trust-forwarded-for",
            "--max-sockets-per-ip",
            "0",
            "--admin-listen",
            "127.0.0.1:9090",
        ]))
        .unwrap();
        assert!(config.transport.limits.trust_forwarded_for);
        assert_eq!(config.transport.limits.max_sockets_per_ip, 0);
        assert!(!config.transport.metrics_on_main_listener);
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
