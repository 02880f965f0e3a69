//! The bounded, drop-oldest queue between the chat path and a delivery worker.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jiva_core::{Notification, Notifier, NotifyError};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use crate::breaker::{Breaker, BreakerPolicy, BreakerState};
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
    /// Notifications waiting (not counting those being delivered).
    pub depth: usize,
    /// Notifications being delivered right now (at most the configured concurrency).
    pub in_flight: usize,
    /// Notifications the service took.
    pub delivered: u64,
    /// Notifications given up: refused by the service, or failing transiently again and again
    /// while the service answered others.
    pub failed: u64,
    /// Notifications never attempted to the end: pushed out of a full queue (the oldest goes),
    /// offered after shutdown, or still waiting when a shutdown deadline passed.
    pub dropped: u64,
    /// The circuit breaker's state.
    pub breaker: BreakerState,
}

/// How a [`NotificationQueue`] delivers: its size, its concurrency and its breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueSettings {
    /// Notifications waiting at most; when full the oldest is dropped. At least 1.
    pub capacity: usize,
    /// Deliveries in flight at most. At least 1. Default 4.
    pub concurrency: usize,
    /// When to stop sending during an outage, and when to probe.
    pub breaker: BreakerPolicy,
    /// Deliveries of one notification that may fail transiently while the breaker stays closed
    /// (the service answering others) before it is given up. Failures that open the breaker, or
    /// happen while it is open or half-open, do not count. At least 1. Default 10.
    pub transient_limit: u32,
}

impl QueueSettings {
    /// A queue of `capacity` with the default concurrency, breaker and transient limit.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            concurrency: 4,
            breaker: BreakerPolicy::default(),
            transient_limit: 10,
        }
    }

    /// Every problem with these settings (empty when they are usable).
    pub fn problems(&self) -> Vec<SetupError> {
        let mut problems = Vec::new();
        if self.capacity == 0 {
            problems.push(SetupError::InvalidSetting(
                "queue_capacity must be at least 1",
            ));
        }
        if self.concurrency == 0 {
            problems.push(SetupError::InvalidSetting("concurrency must be at least 1"));
        }
        if self.breaker.failure_threshold == 0 {
            problems.push(SetupError::InvalidSetting(
                "breaker.failure_threshold must be at least 1",
            ));
        }
        if self.breaker.open_for.is_zero() {
            problems.push(SetupError::InvalidSetting(
                "breaker.open_for must be more than zero",
            ));
        }
        if self.transient_limit == 0 {
            problems.push(SetupError::InvalidSetting(
                "transient_limit must be at least 1",
            ));
        }
        problems
    }
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

/// A waiting notification and how often it failed transiently while the breaker stayed closed.
struct Queued {
    notification: Notification,
    transient_failures: u32,
}

struct State {
    queue: VecDeque<Queued>,
    closed: bool,
    in_flight: usize,
    delivered: u64,
    failed: u64,
    dropped: u64,
    drop_warnings: DropWarnings,
    breaker: Breaker,
}

impl State {
    /// Counts one notification dropped because the queue is full; `Some((drops since the last
    /// warning, all drops))` when a warning is due.
    fn count_full_drop(&mut self) -> Option<(u64, u64)> {
        self.dropped += 1;
        self.drop_warnings
            .record(Instant::now())
            .map(|since_last_warning| (since_last_warning, self.dropped))
    }
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
    settings: QueueSettings,
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
            breaker: st.breaker.state(),
        }
    }
}

/// The [`Notifier`] the server hands to the chat path.
///
/// `notify` only puts the notification into a bounded queue and returns at once; a worker task
/// delivers from the queue, oldest first, with up to the configured number of deliveries in
/// flight. When the queue is full the *oldest* waiting notification is dropped (a newer one is
/// worth more to a supervisor than a stale one), counted, and reported in a warning at most once
/// per 10 s.
///
/// A delivery that fails transiently (the service unavailable after the client's retries) goes
/// back to the front of the queue; it is not given up. After a run of such failures a circuit
/// breaker opens: nothing is sent until, after a delay, one probe is; its success closes the
/// breaker and the backlog drains. So an outage loses only what overflows the queue. A refusal
/// (4xx, GraphQL error) is logged and counted as failed.
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
            .field("settings", &self.shared.settings)
            .field("stats", &self.shared.stats())
            .finish()
    }
}

impl NotificationQueue {
    /// Starts a worker delivering through `delivery`, behind a queue of `capacity` (at least 1)
    /// notifications, with the default concurrency and breaker ([`QueueSettings::new`]). Must be
    /// called inside a tokio runtime, on which the worker is spawned.
    pub fn start<D: Deliver>(delivery: D, capacity: usize) -> Result<Self, SetupError> {
        Self::start_with(delivery, QueueSettings::new(capacity))
    }

    /// Starts a worker delivering through `delivery` as `settings` say; fails with the first of
    /// [`QueueSettings::problems`], or [`SetupError::NoRuntime`] outside a tokio runtime.
    pub fn start_with<D: Deliver>(
        delivery: D,
        settings: QueueSettings,
    ) -> Result<Self, SetupError> {
        if let Some(problem) = settings.problems().into_iter().next() {
            return Err(problem);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SetupError::NoRuntime)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(settings.capacity.min(4096)),
                closed: false,
                in_flight: 0,
                delivered: 0,
                failed: 0,
                dropped: 0,
                drop_warnings: DropWarnings::default(),
                breaker: Breaker::new(settings.breaker),
            }),
            wake: Notify::new(),
            settings,
        });
        let worker = runtime.spawn(run_worker(Arc::clone(&shared), delivery).instrument(
            tracing::info_span!(
                "notification_worker",
                capacity = settings.capacity,
                concurrency = settings.concurrency
            ),
        ));
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
        self.shared.settings.capacity
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
            let abandoned = st.queue.len() as u64 + st.in_flight as u64;
            st.queue.clear();
            st.in_flight = 0;
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
            if st.queue.len() >= self.shared.settings.capacity {
                st.queue.pop_front();
                warning = st.count_full_drop();
            }
            st.queue.push_back(Queued {
                notification,
                transient_failures: 0,
            });
            warning
        };
        self.shared.wake.notify_one();
        warn_full(warning, self.shared.settings.capacity);
        Ok(())
    }
}

/// The rate-limited "queue full" warning, when one is due.
fn warn_full(warning: Option<(u64, u64)>, capacity: usize) {
    if let Some((since_last_warning, total)) = warning {
        tracing::warn!(
            dropped = since_last_warning,
            dropped_total = total,
            capacity,
            "notification queue full; dropped the oldest notifications"
        );
    }
}

/// One delivery's end, as the worker settles it.
struct Finished {
    queued: Queued,
    /// Whether the breaker was closed when the delivery started.
    started_closed: bool,
    result: Result<(), NotifyError>,
    elapsed: Duration,
}

/// Starts what the breaker and the concurrency allow, then waits for a delivery to end, a
/// notification to arrive, a shutdown, or an open breaker's delay to pass. Ends once shut down
/// with nothing queued or in flight.
async fn run_worker<D: Deliver>(shared: Arc<Shared>, delivery: D) {
    let delivery = Arc::new(delivery);
    let mut deliveries: JoinSet<Finished> = JoinSet::new();
    loop {
        let (starting, started_closed, reopens_at) = {
            let mut st = shared.lock();
            let in_flight = st.in_flight;
            let allowed =
                st.breaker
                    .allowance(Instant::now(), in_flight, shared.settings.concurrency);
            let take = allowed.min(st.queue.len());
            let starting: Vec<Queued> = st.queue.drain(..take).collect();
            st.in_flight += starting.len();
            if st.closed && st.queue.is_empty() && st.in_flight == 0 {
                return;
            }
            let started_closed = st.breaker.state() == BreakerState::Closed;
            (starting, started_closed, st.breaker.reopens_at())
        };
        for queued in starting {
            let delivery = Arc::clone(&delivery);
            deliveries.spawn(async move {
                let started = Instant::now();
                let result = delivery.deliver(&queued.notification).await;
                Finished {
                    queued,
                    started_closed,
                    result,
                    elapsed: started.elapsed(),
                }
            });
        }
        let half_opens = async {
            match reopens_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(joined) = deliveries.join_next() => settle(&shared, joined),
            // A push or a close since the last look leaves a permit, so no wake-up is lost.
            () = shared.wake.notified() => {}
            () = half_opens => {}
        }
    }
}

/// Counts a delivery's end, tells the breaker, and puts a transient failure back in the queue.
fn settle(shared: &Shared, joined: Result<Finished, tokio::task::JoinError>) {
    let finished = match joined {
        Ok(finished) => finished,
        Err(e) => {
            let mut st = shared.lock();
            st.in_flight = st.in_flight.saturating_sub(1);
            st.failed += 1;
            drop(st);
            tracing::error!(error = %e, "a notification delivery panicked; it is lost");
            return;
        }
    };
    let Finished {
        mut queued,
        started_closed,
        result,
        elapsed,
    } = finished;
    let mut st = shared.lock();
    st.in_flight = st.in_flight.saturating_sub(1);
    match &result {
        Ok(()) => {
            st.delivered += 1;
            st.breaker.on_answer();
        }
        Err(NotifyError::Unavailable(_)) => {
            st.breaker.on_transient_failure(Instant::now());
            if started_closed && st.breaker.state() == BreakerState::Closed {
                queued.transient_failures += 1;
            }
            if queued.transient_failures >= shared.settings.transient_limit {
                st.failed += 1;
                drop(st);
                log_outcome(&queued.notification, &result, elapsed, "given up");
                return;
            }
            let warning = if st.queue.len() >= shared.settings.capacity {
                // It is older than everything waiting: it is the one a full queue drops.
                st.count_full_drop()
            } else {
                st.queue.push_front(queued);
                None
            };
            drop(st);
            warn_full(warning, shared.settings.capacity);
            tracing::debug!(
                elapsed_ms = elapsed.as_millis() as u64,
                "notification delivery failed transiently; queued again"
            );
            return;
        }
        Err(NotifyError::Rejected(_)) => {
            st.failed += 1;
            st.breaker.on_answer();
        }
        Err(_) => st.failed += 1,
    }
    drop(st);
    log_outcome(&queued.notification, &result, elapsed, "not delivered");
}

/// The one log line of a delivery's outcome.
fn log_outcome(
    n: &Notification,
    result: &Result<(), NotifyError>,
    elapsed: Duration,
    failure: &'static str,
) {
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
            tracing::warn!(%chat, %kind, elapsed_ms, error = %e, %cause, "notification {failure}");
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

        let mut settings = QueueSettings::new(8);
        settings.concurrency = 1;
        let queue = NotificationQueue::start_with(mock, settings).unwrap();
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
                in_flight: 0,
                delivered: 2,
                failed: 1,
                dropped: 0,
                breaker: BreakerState::Closed,
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
        assert_eq!(queue.stats().in_flight, 0);
    }

    /// Settings of a queue of 16 that delivers one notification at a time.
    fn one_at_a_time() -> QueueSettings {
        let mut settings = QueueSettings::new(16);
        settings.concurrency = 1;
        settings
    }

    fn unavailable() -> NotifyError {
        NotifyError::Unavailable("HTTP 500".into())
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_goes_back_into_the_queue_and_is_delivered_later() {
        let mut mock = MockNotifier::new();
        let mut seq = Sequence::new();
        for fails in [true, false] {
            mock.expect_notify()
                .with(eq(notification("a")))
                .times(1)
                .in_sequence(&mut seq)
                .returning(move |_| if fails { Err(unavailable()) } else { Ok(()) });
        }
        let queue = NotificationQueue::start(mock, 4).unwrap();
        queue.notify(notification("a")).await.unwrap();
        let report = queue.shutdown(Duration::from_secs(60)).await;
        assert_eq!((report.delivered, report.failed, report.dropped), (1, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_holds_notifications_until_its_probe_succeeds() {
        let mut mock = MockNotifier::new();
        let calls = Arc::new(Mutex::new(0u32));
        let counted = Arc::clone(&calls);
        // Five failures open the breaker (threshold 5); the probe after it succeeds.
        mock.expect_notify().returning(move |_| {
            let mut n = counted.lock().unwrap();
            *n += 1;
            if *n <= 5 { Err(unavailable()) } else { Ok(()) }
        });
        let settings = one_at_a_time();
        let queue = NotificationQueue::start_with(mock, settings).unwrap();
        for agent in ["a", "b", "c"] {
            queue.notify(notification(agent)).await.unwrap();
        }
        // Let the worker fail five times and open the breaker; time stays put while it waits.
        while queue.stats().breaker != BreakerState::Open {
            tokio::task::yield_now().await;
        }
        let opened = Instant::now();
        assert_eq!(*calls.lock().unwrap(), 5);
        assert_eq!(queue.stats().depth, 3);
        let report = queue.shutdown(Duration::from_secs(60)).await;
        assert_eq!((report.delivered, report.failed, report.dropped), (3, 0, 0));
        // Nothing went out until the breaker half-opened.
        assert_eq!(opened.elapsed(), BreakerPolicy::default().open_for);
        assert_eq!(queue.stats().breaker, BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_notification_failing_while_others_are_delivered_is_given_up_at_the_limit() {
        let mut mock = MockNotifier::new();
        mock.expect_notify()
            .with(eq(notification("poison")))
            .times(3)
            .returning(|_| Err(unavailable()));
        mock.expect_notify()
            .with(eq(notification("fine")))
            .returning(|_| Ok(()));
        let mut settings = one_at_a_time();
        settings.transient_limit = 3;
        let queue = NotificationQueue::start_with(mock, settings).unwrap();
        queue.notify(notification("poison")).await.unwrap();
        for _ in 0..3 {
            queue.notify(notification("fine")).await.unwrap();
        }
        let report = queue.shutdown(Duration::from_secs(60)).await;
        assert_eq!((report.delivered, report.failed, report.dropped), (3, 1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_with_the_breaker_open_ends_at_its_deadline_and_counts_the_rest_dropped() {
        let mut mock = MockNotifier::new();
        mock.expect_notify().returning(|_| Err(unavailable()));
        let mut settings = one_at_a_time();
        settings.breaker.open_for = Duration::from_secs(60);
        let queue = NotificationQueue::start_with(mock, settings).unwrap();
        for agent in ["a", "b", "c"] {
            queue.notify(notification(agent)).await.unwrap();
        }
        let started = Instant::now();
        let report = queue.shutdown(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(
            report,
            ShutdownReport {
                delivered: 0,
                failed: 0,
                dropped: 3,
                timed_out: true
            }
        );
    }

    #[test]
    fn bad_settings_are_all_reported() {
        let mut settings = QueueSettings::new(0);
        settings.concurrency = 0;
        settings.transient_limit = 0;
        settings.breaker.failure_threshold = 0;
        settings.breaker.open_for = Duration::ZERO;
        assert_eq!(settings.problems().len(), 5);
        assert!(QueueSettings::new(1).problems().is_empty());
    }
}
