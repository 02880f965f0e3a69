//! `--bus` and `--redis-url`: how this server hears of the messages other servers store.

use std::sync::Arc;

use anyhow::Context;

use crate::config::{Args, Config, StoreChoice};

/// How stored messages reach the sockets of other servers.
#[derive(Debug, Clone, Default)]
pub enum BusChoice {
    /// One server: nothing leaves the process (the default).
    #[default]
    InProcess,
    /// A cluster: every stored message is published on Redis pub/sub.
    Redis(jiva_bus_redis::RedisUrl),
}

/// Reads `--bus` and `--redis-url` into `config`, adding one message per problem. Run after the
/// store is read: a cluster needs a store every server shares.
pub(crate) fn from_args(args: &Args, config: &mut Config, problems: &mut Vec<String>) {
    let url = args.redis_url.as_deref().filter(|u| !u.is_empty());
    match args.bus.as_str() {
        "inprocess" => config.bus = BusChoice::InProcess,
        "redis" => {
            match url {
                Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                    config.bus = BusChoice::Redis(jiva_bus_redis::RedisUrl::new(url));
                }
                Some(_) => problems
                    .push("--redis-url / JIVA_REDIS_URL: not a redis:// or rediss:// URL".into()),
                None => {
                    problems.push("--redis-url / JIVA_REDIS_URL: required with --bus redis".into())
                }
            }
            if config.store == StoreChoice::Sqlite {
                problems.push(
                    "--bus redis: a cluster needs a store every server shares (--store dynamodb); \
                     the SQLite store belongs to one process"
                        .into(),
                );
            }
        }
        other => problems.push(format!(
            "--bus / JIVA_BUS: {other:?} is not a bus (expected inprocess or redis)"
        )),
    }
}

/// Connects the configured bus (also the cluster's copilot turn lock); `None` for the
/// in-process one. An unreachable Redis does not stop the start: the bus starts disconnected
/// (`/readyz` answers degraded) and connects in the background.
pub(crate) async fn connect(
    config: &Config,
) -> anyhow::Result<Option<Arc<jiva_bus_redis::RedisBus>>> {
    match &config.bus {
        BusChoice::InProcess => Ok(None),
        BusChoice::Redis(url) => {
            let bus = jiva_bus_redis::RedisBus::connect(jiva_bus_redis::Config::new(url.clone()))
                .await
                .context("connecting to Redis (--redis-url)")?;
            if jiva_core::Bus::connected(&bus) {
                tracing::info!(bus = "redis", origin = bus.origin(), "bus connected");
            } else {
                tracing::warn!(
                    bus = "redis",
                    origin = bus.origin(),
                    "bus not connected: serving local chats, connecting in the background"
                );
            }
            Ok(Some(Arc::new(bus)))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn problems(extra: &[&str]) -> Vec<String> {
        let mut argv = vec!["jivachat-server"];
        argv.extend_from_slice(extra);
        match Config::from_args(Args::try_parse_from(argv).unwrap()) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    #[test]
    fn a_redis_bus_needs_a_url_and_a_shared_store() {
        assert!(problems(&[]).is_empty());
        let refused = problems(&["--bus", "redis", "--redis-url", "redis://127.0.0.1:6379"]);
        assert_eq!(refused.len(), 1, "{refused:#?}");
        assert!(refused[0].contains("--store dynamodb"), "{refused:#?}");
        let refused = problems(&["--bus", "redis", "--store", "dynamodb"]);
        assert_eq!(refused.len(), 1, "{refused:#?}");
        assert!(refused[0].contains("--redis-url"), "{refused:#?}");
        let accepted = problems(&[
            "--bus",
            "redis",
            "--store",
            "dynamodb",
            "--redis-url",
            "redis://127.0.0.1:6379",
        ]);
        assert!(accepted.is_empty(), "{accepted:#?}");
        assert_eq!(problems(&["--bus", "kafka"]).len(), 1);
    }
}
