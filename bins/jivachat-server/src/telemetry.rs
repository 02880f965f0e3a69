//! Metrics: the process-wide Prometheus recorder behind `GET /metrics`.
//!
//! The libraries only emit through the `metrics` facade (`jiva_sockets_open`,
//! `jiva_messages_in_total`, ...); this module owns the one recorder a process can have. It is
//! installed the first time [`expose`] runs and reused after that, so several servers in one
//! process (the end-to-end tests) share it and see each other's counts. When another recorder
//! was installed first (a program embedding [`crate::run`]), `/metrics` stays off and a warning
//! says why.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jiva_ws::Transport;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of `jiva_store_append_seconds`: 250 µs to 2.5 s. SQLite group commits land in the
/// low milliseconds, DynamoDB writes in the tens.
pub const STORE_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Gives `transport` a `/metrics` endpoint backed by the process's Prometheus recorder,
/// installing the recorder first if this is the first call.
pub fn expose(transport: Transport) -> Transport {
    match handle() {
        Some(handle) => transport.with_metrics(Arc::new(move || handle.render())),
        None => transport,
    }
}

/// The process's recorder, installed on first use; `None` when it could not be installed.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE.get_or_init(install).clone()
}

fn install() -> Option<PrometheusHandle> {
    let builder = match PrometheusBuilder::new().set_buckets_for_metric(
        Matcher::Full("jiva_store_append_seconds".into()),
        STORE_BUCKETS,
    ) {
        Ok(builder) => builder,
        Err(e) => {
            tracing::warn!(error = %e, "metrics disabled: bad histogram buckets");
            return None;
        }
    };
    let handle = match builder.install_recorder() {
        Ok(handle) => handle,
        Err(e) => {
            tracing::warn!(error = %e, "metrics disabled: another metrics recorder is installed");
            return None;
        }
    };
    describe();
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        // Scrapes still fold samples in; only an unscraped histogram grows.
        tracing::warn!(error = %e, "metrics upkeep thread not started");
    }
    Some(handle)
}

/// Help texts, and every series registered at zero so that a scrape shows it before the first
/// event.
fn describe() {
    use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

    let gauges = [
        ("jiva_sockets_open", "WebSocket connections open now."),
        (
            "jiva_chats_open",
            "Chats with at least one socket open now.",
        ),
    ];
    for (name, help) in gauges {
        describe_gauge!(name, Unit::Count, help);
        gauge!(name).increment(0.0);
    }
    let counters = [
        (
            "jiva_messages_in_total",
            "Chat messages received from clients (before storing).",
        ),
        ("jiva_frames_in_total", "WebSocket text frames received."),
        (
            "jiva_frames_out_total",
            "Broadcast frames queued to sockets (one per socket per frame).",
        ),
        (
            "jiva_store_failures_total",
            "Messages the store failed to append.",
        ),
        ("jiva_copilot_turns_total", "Copilot turns started."),
        (
            "jiva_copilot_failures_total",
            "Copilot turns that ended with an error frame.",
        ),
        (
            "jiva_slow_consumer_closes_total",
            "Sockets closed because their outbound queue was full.",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, Unit::Count, help);
        counter!(name).increment(0);
    }
    describe_histogram!(
        "jiva_store_append_seconds",
        Unit::Seconds,
        "Time to append one message to the store."
    );
}
