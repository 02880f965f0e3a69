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
    /// Address to listen on.
    #[arg(long, env = "JIVA_LISTEN", default_value = "127.0.0.1:3030")]
    pub listen: String,
    /// Directory of the embedded store.
    #[arg(long, env = "JIVA_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Which store to use: `sqlite` (embedded).
    #[arg(long, env = "JIVA_STORE", default_value = "sqlite")]
    pub store: String,
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
    /// The copilot endpoint (used by the copilot relay).
    #[arg(long, env = "COPILOT_ENDPOINT")]
    pub copilot_endpoint: Option<String>,
    /// The AppSync GraphQL URL (used by notifications).
    #[arg(long, env = "GRAPHQL_API_URL")]
    pub graphql_api_url: Option<String>,
    /// The AppSync API key (used by notifications).
    #[arg(long, env = "GRAPHQL_API_KEY", hide_env_values = true)]
    pub graphql_api_key: Option<String>,
}

/// Which store backs the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded SQLite store in the data directory.
    Sqlite,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A secret string whose `Debug` does not show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The validated configuration of the server.
#[derive(Debug, Clone)]
pub struct Config {
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
    /// Copilot endpoint, when configured.
    pub copilot_endpoint: Option<String>,
    /// AppSync URL, when configured.
    pub graphql_api_url: Option<String>,
    /// AppSync API key, when configured.
    pub graphql_api_key: Option<Secret>,
}

impl Config {
    /// Defaults (as with no flags and no environment) with the store in `data_dir`; for tests
    /// and embedding.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3030)),
            data_dir: data_dir.into(),
            store: StoreChoice::Sqlite,
            log: "info".into(),
            log_format: LogFormat::Text,
            transport: jiva_ws::Config::default(),
            copilot_endpoint: None,
            graphql_api_url: None,
            graphql_api_key: None,
        }
    }

    /// Validates every flag; returns every problem found, one message each.
    pub fn from_args(args: Args) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut config = Self::with_data_dir(args.data_dir.clone());
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
            other => problems.push(format!(
                "--store / JIVA_STORE: {other:?} is not a store (expected sqlite)"
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
        let url =
            |name: &str, value: Option<String>, problems: &mut Vec<String>| -> Option<String> {
                let value = value.filter(|v| !v.trim().is_empty())?;
                if !(value.starts_with("http://") || value.starts_with("https://")) {
                    problems.push(format!("{name}: {value:?} is not an http(s) URL"));
                }
                Some(value)
            };
        config.copilot_endpoint = url(
            "--copilot-endpoint / COPILOT_ENDPOINT",
            args.copilot_endpoint,
            &mut problems,
        );
        config.graphql_api_url = url(
            "--graphql-api-url / GRAPHQL_API_URL",
            args.graphql_api_url,
            &mut problems,
        );
        config.graphql_api_key = args.graphql_api_key.filter(|k| !k.is_empty()).map(Secret);
        if config.graphql_api_url.is_some() && config.graphql_api_key.is_none() {
            problems.push("GRAPHQL_API_KEY: required when GRAPHQL_API_URL is set".into());
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
        ]))
        .unwrap_err();
        assert_eq!(problems.len(), 6, "{problems:#?}");
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
