//! Metrics: the process-wide Prometheus recorder behind `GET /metrics`.
//!
//! The libraries only emit through the `metrics` facade (`jiva_sockets_open`,
//! `jiva_messages_in_total`, ...); this module owns the one recorder a process can have. It is
//! installed the first time [`expose`] runs and reused after that, so several servers in one
//! process (the end-to-end tests) share it and see each other's counts. When another recorder
//! was installed first (a program embedding [`crate::run`]), `/metrics` stays off and a warning
//! says why.
//!
//! The notification queue keeps its own counters ([`NotificationQueue::stats`]); they are read
//! at each scrape into the `jiva_notify_*` series.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use jiva_notify_amplify::NotificationQueue;
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

/// The notification queues whose counters each scrape reads (one per running server; dropped
/// queues are forgotten).
static QUEUES: Mutex<Vec<Weak<NotificationQueue>>> = Mutex::new(Vec::new());

/// Keeps the gauge `jiva_bus_connected` equal to the bus's state from now on. The bus sets it
/// too, but what it set before the recorder was installed (at start-up) is lost.
pub fn watch_bus(mut connected: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            let up = *connected.borrow_and_update();
            metrics::gauge!("jiva_bus_connected").set(if up { 1.0 } else { 0.0 });
            if connected.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Gives `transport` a `/metrics` endpoint backed by the process's Prometheus recorder,
/// installing the recorder first if this is the first call.
pub fn expose(transport: Transport) -> Transport {
    match handle() {
        Some(handle) => transport.with_metrics(Arc::new(move || {
            sample_notifications();
            handle.render()
        })),
        None => transport,
    }
}

/// Exports `queue`'s counters (depth, in flight, delivered, failed, dropped) at each scrape.
pub fn watch_notifications(queue: Option<&Arc<NotificationQueue>>) {
    if let Some(queue) = queue {
        QUEUES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(queue));
    }
}

/// Reads the live queues' counters into the `jiva_notify_*` series (summed, should a process
/// run several servers).
fn sample_notifications() {
    let mut queues = QUEUES.lock().unwrap_or_else(PoisonError::into_inner);
    queues.retain(|q| q.strong_count() > 0);
    let mut total = (0usize, 0usize, 0u64, 0u64, 0u64);
    let mut breaker = jiva_notify_amplify::BreakerState::Closed.gauge();
    for queue in queues.iter().filter_map(Weak::upgrade) {
        let stats = queue.stats();
        total.0 += stats.depth;
        total.1 += stats.in_flight;
        breaker = breaker.max(stats.breaker.gauge());
        total.2 += stats.delivered;
        total.3 += stats.failed;
        total.4 += stats.dropped;
    }
    drop(queues);
    let (depth, in_flight, delivered, failed, dropped) = total;
    metrics::gauge!("jiva_notify_queue_depth").set(depth as f64);
    metrics::gauge!("jiva_notify_in_flight").set(in_flight as f64);
    metrics::gauge!("jiva_notify_delivered").set(delivered as f64);
    metrics::gauge!("jiva_notify_failed").set(failed as f64);
    metrics::gauge!("jiva_notify_dropped").set(dropped as f64);
    metrics::gauge!("jiva_notify_breaker_state").set(breaker);
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
        (
            "jiva_chats_registered",
            "Chats this server remembers as registered (those with a socket open).",
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
        (
            "jiva_seq_held_frames_total",
            "Stored frames held until the frames numbered before them went out.",
        ),
        (
            "jiva_seq_gaps_skipped_total",
            "Sequence numbers skipped because they never arrived within the gap wait.",
        ),
        (
            "jiva_seq_late_frames_total",
            "Stored frames that arrived after their gap was skipped (shown out of order).",
        ),
        (
            "jiva_dynamo_seq_conflicts_total",
            "DynamoDB appends that found their sequence number taken and read the chat again.",
        ),
        (
            "jiva_dynamo_seq_give_ups_total",
            "DynamoDB appends that found no free sequence number before the append deadline.",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, Unit::Count, help);
        counter!(name).increment(0);
    }
    describe_limits();
    describe_histogram!(
        "jiva_store_append_seconds",
        Unit::Seconds,
        "Time to append one message to the store."
    );
}

/// The limits' series (see the README's "Limits"), registered at zero with every label.
fn describe_limits() {
    use metrics::{Unit, counter, describe_counter};

    describe_counter!(
        "jiva_handshakes_refused_total",
        Unit::Count,
        "WebSocket handshakes refused by a limit, by reason."
    );
    for reason in ["sockets_total", "sockets_per_ip", "handshake_rate"] {
        counter!("jiva_handshakes_refused_total", "reason" => reason).increment(0);
    }
    describe_counter!(
        "jiva_messages_refused_total",
        Unit::Count,
        "Frames refused (not handled, not stored) by a limit, by reason."
    );
    for reason in ["message_rate", "copilot_rate"] {
        counter!("jiva_messages_refused_total", "reason" => reason).increment(0);
    }
    describe_counter!(
        "jiva_tls_reloads_total",
        Unit::Count,
        "TLS certificate reloads (file change or SIGHUP), by outcome; a failed one keeps the old certificate."
    );
    for outcome in ["ok", "failed"] {
        counter!("jiva_tls_reloads_total", "outcome" => outcome).increment(0);
    }
    let counters = [
        (
            "jiva_rate_limit_closes_total",
            "Sockets closed with 1008 for sending over their message rate.",
        ),
        (
            "jiva_idle_closes_total",
            "Sockets closed after the idle timeout with no frame and no pong.",
        ),
        (
            "jiva_tls_handshake_failures_total",
            "TLS handshakes that failed or timed out.",
        ),
        (
            "jiva_request_header_timeouts_total",
            "Connections closed for not sending a request head in time.",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, Unit::Count, help);
        counter!(name).increment(0);
    }
}
