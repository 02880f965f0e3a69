//! The circuit breaker in front of the delivery worker: after a run of transient failures it
//! stops sending (and giving up) until one probe shows the service is back.

use std::time::Duration;

use tokio::time::Instant;

/// When the breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerPolicy {
    /// Consecutive deliveries that failed transiently (after their retries) before the breaker
    /// opens. Default 5.
    pub failure_threshold: u32,
    /// How long the breaker stays open before it lets one probe through. Default 5 s.
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

/// The breaker's state, as [`QueueStats`](crate::QueueStats) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BreakerState {
    /// Deliveries go out, up to the configured concurrency.
    #[default]
    Closed,
    /// Nothing goes out and nothing is given up; waiting notifications stay queued.
    Open,
    /// One probe is allowed out; its outcome closes or reopens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// The value of the `jiva_notify_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

/// The state machine. It does no I/O and reads no clock: callers pass `now`.
#[derive(Debug)]
pub(crate) struct Breaker {
    policy: BreakerPolicy,
    consecutive_failures: u32,
    /// `Some(until)` while open.
    open_until: Option<Instant>,
    half_open: bool,
}

impl Breaker {
    pub(crate) fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            consecutive_failures: 0,
            open_until: None,
            half_open: false,
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        if self.open_until.is_some() {
            BreakerState::Open
        } else if self.half_open {
            BreakerState::HalfOpen
        } else {
            BreakerState::Closed
        }
    }

    /// When an open breaker will half-open; `None` unless open.
    pub(crate) fn reopens_at(&self) -> Option<Instant> {
        self.open_until
    }

    /// How many more deliveries may start now, with `in_flight` already out and at most
    /// `concurrency` at once. An open breaker whose time has passed half-opens here; a half-open
    /// one allows its single probe only when nothing else is in flight.
    pub(crate) fn allowance(
        &mut self,
        now: Instant,
        in_flight: usize,
        concurrency: usize,
    ) -> usize {
        if let Some(until) = self.open_until {
            if now < until {
                return 0;
            }
            self.open_until = None;
            self.half_open = true;
            tracing::info!("notification breaker half-open; sending one probe");
        }
        if self.half_open {
            usize::from(in_flight == 0)
        } else {
            concurrency.saturating_sub(in_flight)
        }
    }

    /// The service answered (a delivery, or a rejection: either proves it is up). Closes the
    /// breaker.
    pub(crate) fn on_answer(&mut self) {
        if self.state() != BreakerState::Closed {
            tracing::info!("notification breaker closed; the service answers again");
        }
        self.consecutive_failures = 0;
        self.open_until = None;
        self.half_open = false;
    }

    /// A delivery failed transiently at `now`. A failed probe, or the threshold-th failure in a
    /// row, opens the breaker for `open_for`; a failure while already open changes nothing.
    pub(crate) fn on_transient_failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let opens = match self.state() {
            BreakerState::Open => false,
            BreakerState::HalfOpen => true,
            BreakerState::Closed => self.consecutive_failures >= self.policy.failure_threshold,
        };
        if opens {
            self.half_open = false;
            self.open_until = Some(now + self.policy.open_for);
            tracing::warn!(
                consecutive_failures = self.consecutive_failures,
                open_for_ms = self.policy.open_for.as_millis() as u64,
                "notification breaker open; holding notifications until a probe succeeds"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(5);

    fn breaker() -> Breaker {
        Breaker::new(BreakerPolicy {
            failure_threshold: 3,
            open_for: OPEN_FOR,
        })
    }

    /// A breaker just opened by three failures in a row.
    fn opened() -> Breaker {
        let mut b = breaker();
        for _ in 0..3 {
            b.on_transient_failure(Instant::now());
        }
        b
    }

    #[tokio::test(start_paused = true)]
    async fn closed_allows_up_to_the_concurrency() {
        let mut b = breaker();
        let now = Instant::now();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.allowance(now, 0, 4), 4);
        assert_eq!(b.allowance(now, 3, 4), 1);
        assert_eq!(b.allowance(now, 4, 4), 0);
        assert_eq!(b.allowance(now, 9, 4), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn it_opens_after_the_threshold_of_failures_in_a_row() {
        let mut b = breaker();
        b.on_transient_failure(Instant::now());
        b.on_transient_failure(Instant::now());
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_transient_failure(Instant::now());
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.allowance(Instant::now(), 0, 4), 0);
        assert_eq!(b.reopens_at(), Some(Instant::now() + OPEN_FOR));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_resets_the_run_of_failures() {
        let mut b = breaker();
        b.on_transient_failure(Instant::now());
        b.on_transient_failure(Instant::now());
        b.on_answer();
        b.on_transient_failure(Instant::now());
        b.on_transient_failure(Instant::now());
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn open_half_opens_after_its_delay_with_one_probe() {
        let mut b = opened();
        tokio::time::advance(OPEN_FOR - Duration::from_millis(1)).await;
        assert_eq!(b.allowance(Instant::now(), 0, 4), 0);
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.allowance(Instant::now(), 0, 4), 1);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // The probe is out: nothing else goes.
        assert_eq!(b.allowance(Instant::now(), 1, 4), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_probe_waits_for_stragglers_from_before_the_breaker_opened() {
        let mut b = opened();
        tokio::time::advance(OPEN_FOR).await;
        assert_eq!(b.allowance(Instant::now(), 2, 4), 0);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.allowance(Instant::now(), 0, 4), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_the_full_delay() {
        let mut b = opened();
        tokio::time::advance(OPEN_FOR).await;
        assert_eq!(b.allowance(Instant::now(), 0, 4), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        b.on_transient_failure(Instant::now());
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.reopens_at(), Some(Instant::now() + OPEN_FOR));
    }

    #[tokio::test(start_paused = true)]
    async fn a_successful_probe_closes_and_restores_the_concurrency() {
        let mut b = opened();
        tokio::time::advance(OPEN_FOR).await;
        assert_eq!(b.allowance(Instant::now(), 0, 4), 1);
        b.on_answer();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.allowance(Instant::now(), 0, 4), 4);
        // The run of failures starts again from zero.
        b.on_transient_failure(Instant::now());
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_while_open_do_not_extend_it() {
        let mut b = opened();
        let reopens = b.reopens_at();
        tokio::time::advance(Duration::from_secs(2)).await;
        b.on_transient_failure(Instant::now());
        assert_eq!(b.reopens_at(), reopens);
    }

    #[test]
    fn the_gauge_orders_the_states_by_severity() {
        assert_eq!(BreakerState::Closed.gauge(), 0.0);
        assert_eq!(BreakerState::HalfOpen.gauge(), 1.0);
        assert_eq!(BreakerState::Open.gauge(), 2.0);
    }
}
