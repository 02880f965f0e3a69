//! Robustness of the queue against an AppSync that fails for a while: nothing the queue can hold
//! is lost, deliveries stay within the configured concurrency, and an open breaker sends nothing
//! but its probes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiva_core::Notifier;
use tokio::sync::Semaphore;

use crate::appsync::{Reply, StandIn};
use crate::{OPEN_FOR, agent_message, config};

/// A generous deadline: these shutdowns finish by flushing, never by the clock.
const FLUSH: Duration = Duration::from_secs(60);

#[tokio::test]
async fn an_outage_loses_no_notification_and_each_is_delivered_once() {
    let mut appsync = StandIn::with_outage(Duration::from_secs(2)).await;
    let queue = jiva_notify_amplify::start(config(&appsync.url)).unwrap();

    queue.notify(agent_message("n0")).await.unwrap();
    // The outage has begun: it lasts two seconds from this first request.
    assert_eq!(appsync.next_request().await.primary_id(), "n0");
    for n in 1..200 {
        queue.notify(agent_message(&format!("n{n}"))).await.unwrap();
    }
    let report = queue.shutdown(FLUSH).await;

    let created = appsync.created();
    let mut missing: Vec<String> = (0..200)
        .map(|n| format!("n{n}"))
        .filter(|id| !created.contains_key(id))
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "{} never arrived: {missing:?}",
        missing.len()
    );
    let expected: HashMap<String, u32> = (0..200).map(|n| (format!("n{n}"), 1)).collect();
    assert_eq!(created, expected, "some arrived more than once");
    assert_eq!(
        (report.delivered, report.failed, report.dropped),
        (200, 0, 0)
    );
    let stats = queue.stats();
    assert_eq!((stats.failed, stats.dropped), (0, 0));
}

#[tokio::test]
async fn deliveries_in_flight_never_exceed_the_configured_concurrency() {
    let gate = Arc::new(Semaphore::new(0));
    let mut appsync = StandIn::start(Vec::new(), Reply::Gate(gate.clone())).await;
    let mut config = config(&appsync.url);
    config.concurrency = 3;
    let queue = jiva_notify_amplify::start(config).unwrap();
    for n in 0..40 {
        queue.notify(agent_message(&format!("n{n}"))).await.unwrap();
    }
    // Three requests arrive and wait at the closed gate.
    for _ in 0..3 {
        appsync.next_request().await;
    }
    assert_eq!(queue.stats().in_flight, 3);

    gate.add_permits(40);
    let report = queue.shutdown(FLUSH).await;

    assert_eq!(report.delivered, 40);
    assert_eq!(appsync.max_in_flight(), 3);
    assert_eq!(appsync.created().len(), 40);
}

#[tokio::test]
async fn an_open_breaker_sends_nothing_but_one_probe_at_a_time() {
    let mut appsync = StandIn::ok().await;
    appsync.set_down(true);
    let mut config = config(&appsync.url);
    config.concurrency = 4;
    config.breaker.failure_threshold = 3;
    config.retry.max_retries = 0;
    let queue = jiva_notify_amplify::start(config).unwrap();
    for n in 0..50 {
        queue.notify(agent_message(&format!("n{n}"))).await.unwrap();
    }

    // While closed, at most threshold + concurrency - 1 = 6 requests go out before the breaker
    // opens; every one after them is a probe. Wait for four probes.
    let mut requests = Vec::new();
    for _ in 0..10 {
        requests.push(appsync.next_request().await);
    }
    for (i, probe) in requests.iter().enumerate().skip(6) {
        assert_eq!(probe.others_in_flight, 0, "request {i} was not alone");
    }
    // Each probe after the first follows the failure of the one before by the full delay (the
    // first may follow a straggler from before the breaker opened).
    for (i, probe) in requests.iter().enumerate().skip(7) {
        let answered = probe.last_answered.unwrap();
        assert!(
            probe.arrived.duration_since(answered) >= OPEN_FOR,
            "request {i} came {:?} after the last failure, before the breaker half-opened",
            probe.arrived.duration_since(answered)
        );
    }
    let stats = queue.stats();
    assert_eq!((stats.delivered, stats.failed, stats.dropped), (0, 0, 0));
    assert_eq!(stats.depth + stats.in_flight, 50);

    appsync.set_down(false);
    let report = queue.shutdown(FLUSH).await;

    assert_eq!(
        (report.delivered, report.failed, report.dropped),
        (50, 0, 0)
    );
    let expected: HashMap<String, u32> = (0..50).map(|n| (format!("n{n}"), 1)).collect();
    assert_eq!(appsync.created(), expected);
}
