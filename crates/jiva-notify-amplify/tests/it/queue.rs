//! The queue in front of the client: `notify` returns at once, a full queue drops the oldest,
//! and shutdown flushes.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use jiva_core::{Notifier, NotifyError};
use jiva_notify_amplify::{BreakerState, QueueStats, ShutdownReport};
use tokio::sync::Semaphore;

use crate::appsync::{Reply, StandIn};
use crate::{agent_message, config};

/// Polls `future` exactly once: `Some` when it finished without waiting for anything.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// A generous deadline: these shutdowns finish by flushing, never by the clock.
const FLUSH: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_full_queue_drops_the_oldest_and_delivers_the_newest() {
    let gate = Arc::new(Semaphore::new(0));
    let mut appsync = StandIn::start(vec![Reply::Gate(gate.clone())], Reply::Created).await;
    let mut config = config(&appsync.url);
    config.queue_capacity = 2;
    config.concurrency = 1;
    let queue = jiva_notify_amplify::start(config).unwrap();

    queue.notify(agent_message("n0")).await.unwrap();
    // The worker is now inside the first delivery, held at the gate.
    assert_eq!(appsync.next_request().await.primary_id(), "n0");
    for n in 1..=5 {
        queue.notify(agent_message(&format!("n{n}"))).await.unwrap();
    }
    assert_eq!(
        queue.stats(),
        QueueStats {
            depth: 2,
            in_flight: 1,
            delivered: 0,
            failed: 0,
            dropped: 3,
            breaker: BreakerState::Closed,
        }
    );

    gate.add_permits(1);
    let report = queue.shutdown(FLUSH).await;

    assert_eq!(
        report,
        ShutdownReport {
            delivered: 3,
            failed: 0,
            dropped: 0,
            timed_out: false
        }
    );
    // n0 was taken above; after it, only the two newest were sent.
    let after_first: Vec<String> = appsync
        .received()
        .iter()
        .map(|r| r.primary_id().to_owned())
        .collect();
    assert_eq!(after_first, ["n4", "n5"]);
    assert_eq!(queue.stats().dropped, 3);
    assert_eq!(queue.stats().delivered, 3);
}

#[tokio::test]
async fn shutdown_flushes_what_was_queued_then_refuses_more() {
    let mut appsync = StandIn::ok().await;
    let queue = jiva_notify_amplify::start(config(&appsync.url)).unwrap();
    for n in 0..5 {
        queue.notify(agent_message(&format!("n{n}"))).await.unwrap();
    }

    let report = queue.shutdown(FLUSH).await;

    assert_eq!(
        report,
        ShutdownReport {
            delivered: 5,
            failed: 0,
            dropped: 0,
            timed_out: false
        }
    );
    let delivered: Vec<String> = appsync
        .received()
        .iter()
        .map(|r| r.primary_id().to_owned())
        .collect();
    assert_eq!(delivered, ["n0", "n1", "n2", "n3", "n4"]);
    let late = queue.notify(agent_message("late")).await;
    assert!(matches!(late, Err(NotifyError::Dropped(_))), "{late:?}");
    assert!(appsync.received().is_empty());
}

#[tokio::test]
async fn failed_deliveries_are_counted_and_do_not_stop_the_worker() {
    let mut appsync =
        StandIn::start(vec![crate::appsync::validation_error()], Reply::Created).await;
    let queue = jiva_notify_amplify::start(config(&appsync.url)).unwrap();
    queue.notify(agent_message("bad")).await.unwrap();
    queue.notify(agent_message("good")).await.unwrap();

    let report = queue.shutdown(FLUSH).await;

    assert_eq!((report.delivered, report.failed), (1, 1));
    assert_eq!(appsync.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_make_notify_wait() {
    let mut appsync = StandIn::start(Vec::new(), Reply::Hang).await;
    let mut config = config(&appsync.url);
    config.queue_capacity = 8;
    config.concurrency = 1;
    let queue = jiva_notify_amplify::start(config).unwrap();

    queue.notify(agent_message("first")).await.unwrap();
    // The worker is now waiting on a server that never answers.
    appsync.next_request().await;
    for n in 0..1000 {
        // Each call finishes on its first poll: it waits for nothing, least of all the server.
        let result = poll_once(queue.notify(agent_message(&format!("n{n}"))));
        assert!(matches!(result, Some(Ok(()))), "notify {n}: {result:?}");
    }
    let stats = queue.stats();
    assert_eq!(
        (stats.depth, stats.in_flight, stats.delivered, stats.dropped),
        (8, 1, 0, 992)
    );

    // Nothing can be flushed: the deadline passes, and what is left is counted as dropped.
    let report = queue.shutdown(Duration::from_millis(50)).await;
    assert_eq!(
        report,
        ShutdownReport {
            delivered: 0,
            failed: 0,
            dropped: 9,
            timed_out: true
        }
    );
    assert_eq!(queue.stats().dropped, 1001);
}
