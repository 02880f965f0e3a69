//! The bounded, drop-oldest queue between the chat path and a delivery worker.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jiva_core::{Notification, Notifier, NotifyError};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::SetupError;

/// At most one "queue full" warning per this interval; the warning carries the count.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// A delivery the queue's worker calls, one notification at a time. Unlike
/// [`Notifier::notify`], `deliver` may take as long as it needs (retries, backoff): it never
/// runs on the chat path.
///
/// Every [`Notifier`] is a `Deliver` too, so any notifier (or a mock of one) can sit behind the
/// queue.
#[async_trait]
pub trait Deliver: Send + Sync + 'static {
    /// Delivers one notification; an error means it is lost, and the worker logs it.
    async fn deliver(&self, notification: &Notification) -> Result<(), NotifyError>;
}

#[async_trait]
impl<N: Notifier + 'static> Deliver for N {
    async fn deliver(&self, notification: &Notification) -> Result<(), NotifyError> {
        self.notify(notification.clone()).await
    }
}

/// Counters of a [`NotificationQueue`] since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Notifications waiting (not counting the one being delivered).
    pub depth: usize,
    /// Whether a notification is being delivered right now.
    pub in_flight: bool,
    /// Notifications the service took.
    pub delivered: u64,
    /// Notifications whose delivery failed (refused, or every retry failed).
    pub failed: u64,
    /// Notifications never attempted to the end: pushed out of a full queue (the oldest goes),
    /// offered after shutdown, or still waiting when a shutdown deadline passed.
    pub dropped: u64,
}

/// What a [`NotificationQueue::shutdown`] did, counted from the moment it was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Delivered while flushing.
    pub delivered: u64,
    /// Failed while flushing.
    pub failed: u64,
    /// Abandoned: still queued or in flight when the deadline passed.
    pub dropped: u64,
    /// Whether the deadline passed before the queue was flushed.
    pub timed_out: bool,
}

struct State {
    queue: VecDeque<Notification>,
    closed: bool,
    in_flight: bool,
    delivered: u64,
    failed: u64,
    dropped: u64,
    drop_warnings: DropWarnings,
}

/// Rate-limits the "queue full" warning: the first drop warns, later ones only once
/// [`DROP_WARNING_INTERVAL`] has passed since the last warning, with the count since then.
#[derive(Debug, Default)]
struct DropWarnings {
    not_warned: u64,
    last: Option<Instant>,
}

impl DropWarnings {
    /// Counts one drop at `now`; `Some(drops since the last warning)` when a warning is due.
    fn record(&mut self, now: Instant) -> Option<u64> {
        self.not_warned += 1;
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= DROP_WARNING_INTERVAL);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.not_warned))
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    capacity: usize,
}

impl Shared {
    /// The state; a panic elsewhere while it was held leaves plain counters behind, which are
    /// still good to use.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stats(&self) -> QueueStats {
        let st = self.lock();
        QueueStats {
            depth: st.queue.len(),
            in_flight: st.in_flight,
            delivered: st.delivered,
            failed: st.failed,
            dropped: st.dropped,
        }
    }
}

/// The [`Notifier`] the server hands to the chat path.
///
/// `notify` only puts the notification into a bounded queue and returns at once; a worker task
/// delivers from the queue, one at a time, in order. When the queue is full the *oldest* waiting
/// notification is dropped (a newer one is worth more to a supervisor than a stale one), counted,
/// and reported in a warning at most once per 10 s.
///
/// Hold it as `Arc<NotificationQueue>`: give the chat path an `Arc<dyn Notifier>` clone and call
/// [`shutdown`](Self::shutdown) on stop. Dropping it without a shutdown lets the worker finish
/// what is queued in the background.
pub struct NotificationQueue {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for NotificationQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationQueue")
            .field("capacity", &self.shared.capacity)
            .field("stats", &self.shared.stats())
            .finish()
    }
}

impl NotificationQueue {
    /// Starts a worker delivering through `delivery`, behind a queue of `capacity` (at least 1)
    /// notifications. Must be called inside a tokio runtime, on which the worker is spawned.
    pub fn start<D: Deliver>(delivery: D, capacity: usize) -> Result<Self, SetupError> {
        if capacity == 0 {
            return Err(SetupError::InvalidSetting(
                "queue_capacity must be at least 1",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SetupError::NoRuntime)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(capacity.min(4096)),
                closed: false,
                in_flight: false,
                delivered: 0,
                failed: 0,
                dropped: 0,
                drop_warnings: DropWarnings::default(),
            }),
            wake: Notify::new(),
            capacity,
        });
        let worker = runtime.spawn(
            run_worker(Arc::clone(&shared), delivery)
                .instrument(tracing::info_span!("notification_worker", capacity)),
        );
        Ok(Self {
            shared,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// The counters: queue depth, delivered, failed, dropped.
    pub fn stats(&self) -> QueueStats {
        self.shared.stats()
    }

    /// The most notifications that wait at once.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Stops accepting (later `notify` calls fail with [`NotifyError::Dropped`]), lets the worker
    /// deliver what is queued until `deadline` has passed, then abandons the rest. Any later (or
    /// concurrent) call returns at once with an empty report.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let before = {
            let mut st = self.shared.lock();
            st.closed = true;
            (st.delivered, st.failed, st.dropped)
        };
        self.shared.wake.notify_one();
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // Only the first call flushes and accounts; any other has nothing to do.
        let Some(mut worker) = worker else {
            return ShutdownReport::default();
        };
        let mut timed_out = false;
        if tokio::time::timeout(deadline, &mut worker).await.is_err() {
            timed_out = true;
            worker.abort();
            // Only a cancelled or panicked worker lands here; either way it is gone.
            let _ = worker.await;
        }
        let report = {
            let mut st = self.shared.lock();
            let abandoned = st.queue.len() as u64 + u64::from(st.in_flight);
            st.queue.clear();
            st.in_flight = false;
            st.dropped += abandoned;
            ShutdownReport {
                delivered: st.delivered - before.0,
                failed: st.failed - before.1,
                dropped: st.dropped - before.2,
                timed_out,
            }
        };
        tracing::info!(
            delivered = report.delivered,
            failed = report.failed,
            dropped = report.dropped,
            timed_out = report.timed_out,
            "notification queue shut down"
        );
        report
    }
}

impl Drop for NotificationQueue {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

#[async_trait]
impl Notifier for NotificationQueue {
    /// Enqueues and returns at once; never waits for the network or the worker.
    async fn notify(&self, notification: Notification) -> Result<(), NotifyError> {
        let warning = {
            let mut st = self.shared.lock();
            if st.closed {
                st.dropped += 1;
                return Err(NotifyError::Dropped("the notifier is shut down"));
            }
            let mut warning = None;
            if st.queue.len() >= self.shared.capacity {
                st.queue.pop_front();
                st.dropped += 1;
                if let Some(since_last_warning) = st.drop_warnings.record(Instant::now()) {
                    warning = Some((since_last_warning, st.dropped));
                }
            }
            st.queue.push_back(notification);
            warning
        };
        self.shared.wake.notify_one();
        if let Some((since_last_warning, total)) = warning {
            tracing::warn!(
                dropped = since_last_warning,
                dropped_total = total,
                capacity = self.shared.capacity,
                "notification queue full; dropped the oldest notifications"
            );
        }
        Ok(())
    }
}

async fn run_worker<D: Deliver>(shared: Arc<Shared>, delivery: D) {
    loop {
        let next = {
            let mut st = shared.lock();
            match st.queue.pop_front() {
                Some(n) => {
                    st.in_flight = true;
                    Some(n)
                }
                None if st.closed => return,
                None => None,
            }
        };
        let Some(notification) = next else {
            // A push or a close between the check above and here leaves a permit, so no wake-up
            // is lost.
            shared.wake.notified().await;
            continue;
        };
        let started = Instant::now();
        let result = delivery.deliver(&notification).await;
        {
            let mut st = shared.lock();
            st.in_flight = false;
            match result {
                Ok(()) => st.delivered += 1,
                Err(_) => st.failed += 1,
            }
        }
        log_outcome(&notification, &result, started.elapsed());
    }
}

/// The one log line of a delivery's outcome.
fn log_outcome(n: &Notification, result: &Result<(), NotifyError>, elapsed: Duration) {
    let chat = n.chat.canonical();
    let kind = format!("{:?}", n.kind);
    let elapsed_ms = elapsed.as_millis() as u64;
    match result {
        Ok(()) => tracing::debug!(%chat, %kind, elapsed_ms, "notification delivered"),
        Err(NotifyError::Rejected(reason)) => tracing::warn!(
            %chat, %kind, elapsed_ms, %reason,
            "notification rejected by the service; not retried"
        ),
        Err(e) => {
            let cause = std::error::Error::source(e)
                .map(ToString::to_string)
                .unwrap_or_default();
            tracing::warn!(%chat, %kind, elapsed_ms, error = %e, %cause, "notification not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiva_core::{AgentId, ChatId, ConnectionType, MockNotifier, NotificationKind};
    use mockall::Sequence;
    use mockall::predicate::eq;

    fn notification(agent: &str) -> Notification {
        Notification {
            chat: ChatId::new(AgentId::parse(agent).unwrap(), ConnectionType::Supervisor),
            kind: NotificationKind::Agent,
        }
    }

    #[tokio::test]
    async fn a_mock_notifier_behind_the_queue_gets_every_notification_in_order() {
        let mut mock = MockNotifier::new();
        let mut seq = Sequence::new();
        mock.expect_notify()
            .with(eq(notification("a")))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(()));
        mock.expect_notify()
            .with(eq(notification("b")))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Err(NotifyError::Rejected("no".into())));
        mock.expect_notify()
            .with(eq(notification("c")))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(()));

        let queue = NotificationQueue::start(mock, 8).unwrap();
        for agent in ["a", "b", "c"] {
            queue.notify(notification(agent)).await.unwrap();
        }
        let report = queue.shutdown(Duration::from_secs(60)).await;
        assert_eq!(
            report,
            ShutdownReport {
                delivered: 2,
                failed: 1,
                dropped: 0,
                timed_out: false
            }
        );
        assert_eq!(
            queue.stats(),
            QueueStats {
                depth: 0,
                in_flight: false,
                delivered: 2,
                failed: 1,
                dropped: 0
            }
        );
    }

    #[tokio::test]
    async fn notify_after_shutdown_is_refused_and_counted() {
        let mut mock = MockNotifier::new();
        mock.expect_notify().never();
        let queue = NotificationQueue::start(mock, 1).unwrap();
        assert_eq!(
            queue.shutdown(Duration::from_secs(60)).await,
            ShutdownReport::default()
        );
        let refused = queue.notify(notification("late")).await;
        assert!(
            matches!(refused, Err(NotifyError::Dropped(_))),
            "{refused:?}"
        );
        assert_eq!(queue.stats().dropped, 1);
        // A second shutdown has nothing left to do.
        assert_eq!(
            queue.shutdown(Duration::from_secs(60)).await,
            ShutdownReport::default()
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_drops_the_oldest() {
        let mut mock = MockNotifier::new();
        let mut seq = Sequence::new();
        for agent in ["c", "d"] {
            mock.expect_notify()
                .with(eq(notification(agent)))
                .times(1)
                .in_sequence(&mut seq)
                .returning(|_| Ok(()));
        }
        let queue = NotificationQueue::start(mock, 2).unwrap();
        // On a current-thread runtime the worker cannot run until this task yields, and
        // `notify` never yields: all four land in the queue before the worker looks.
        for agent in ["a", "b", "c", "d"] {
            queue.notify(notification(agent)).await.unwrap();
        }
        assert_eq!(queue.stats().depth, 2);
        assert_eq!(queue.stats().dropped, 2);
        let report = queue.shutdown(Duration::from_secs(60)).await;
        assert_eq!(report.delivered, 2);
        assert_eq!(report.dropped, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_full_warnings_are_rate_limited_and_carry_the_count() {
        let mut warnings = DropWarnings::default();
        assert_eq!(warnings.record(Instant::now()), Some(1));
        for _ in 0..4 {
            assert_eq!(warnings.record(Instant::now()), None);
        }
        tokio::time::advance(DROP_WARNING_INTERVAL - Duration::from_millis(1)).await;
        assert_eq!(warnings.record(Instant::now()), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(warnings.record(Instant::now()), Some(6));
        assert_eq!(warnings.record(Instant::now()), None);
    }

    #[test]
    fn start_needs_a_runtime_and_a_capacity() {
        assert!(matches!(
            NotificationQueue::start(MockNotifier::new(), 4),
            Err(SetupError::NoRuntime)
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        assert!(matches!(
            NotificationQueue::start(MockNotifier::new(), 0),
            Err(SetupError::InvalidSetting(_))
        ));
    }

    /// A delivery that never finishes.
    struct Hangs;

    #[async_trait]
    impl Deliver for Hangs {
        async fn deliver(&self, _: &Notification) -> Result<(), NotifyError> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_abandons_what_is_left_at_the_deadline() {
        let queue = NotificationQueue::start(Hangs, 4).unwrap();
        for agent in ["a", "b", "c"] {
            queue.notify(notification(agent)).await.unwrap();
        }
        let report = queue.shutdown(Duration::from_secs(5)).await;
        assert_eq!(
            report,
            ShutdownReport {
                delivered: 0,
                failed: 0,
                dropped: 3,
                timed_out: true
            }
        );
        assert_eq!(queue.stats().depth, 0);
        assert!(!queue.stats().in_flight);
    }
}
