//! Exponential backoff with jitter around one delivery attempt.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::config::RetryPolicy;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The service took the notification.
    Delivered,
    /// The service refused it; sending it again will not help.
    Rejected(String),
    /// A failure that may pass: 5xx, 429, time-out, connection error.
    Transient(String),
}

/// How a delivery ended after all its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Delivered at the given attempt (1 is the first).
    Delivered { attempts: u32 },
    /// Refused; not retried.
    Rejected { reason: String, attempts: u32 },
    /// Every attempt failed transiently; the last reason is kept.
    GaveUp { reason: String, attempts: u32 },
}

/// The backoff before retry number `retry` (0 for the first retry): `base * 2^retry`, capped at
/// `max_delay`, of which the upper half is scaled by `unit` ("equal jitter"), so that the delay
/// lies in `[d/2, d]`. `unit` is in `[0, 1)`.
pub(crate) fn backoff(policy: &RetryPolicy, retry: u32, unit: f64) -> Duration {
    let factor = 2u32.saturating_pow(retry);
    let full = policy
        .base_delay
        .saturating_mul(factor)
        .min(policy.max_delay);
    let half = full / 2;
    half + (full - half).mul_f64(unit.clamp(0.0, 1.0))
}

/// A number in `[0, 1)` from the standard library's randomly keyed hasher: enough for jitter,
/// which only has to keep many senders from retrying in step.
pub(crate) fn jitter_unit() -> f64 {
    let bits = RandomState::new().build_hasher().finish() >> 11;
    // 53 random bits over 2^53: exact in an f64 and below 1.
    bits as f64 / (1u64 << 53) as f64
}

/// Runs `attempt` until it delivers, is rejected, or `policy.max_retries` retries have failed,
/// sleeping a jittered exponential backoff before each retry. `attempt` gets the attempt number
/// (1 is the first).
pub(crate) async fn run<F, Fut>(
    policy: &RetryPolicy,
    mut jitter: impl FnMut() -> f64,
    mut attempt: F,
) -> Outcome
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempt>,
{
    let mut number = 1u32;
    loop {
        match attempt(number).await {
            Attempt::Delivered => return Outcome::Delivered { attempts: number },
            Attempt::Rejected(reason) => {
                return Outcome::Rejected {
                    reason,
                    attempts: number,
                };
            }
            Attempt::Transient(reason) => {
                let retry = number - 1;
                if retry >= policy.max_retries {
                    return Outcome::GaveUp {
                        reason,
                        attempts: number,
                    };
                }
                let delay = backoff(policy, retry, jitter());
                tracing::debug!(
                    attempt = number,
                    %reason,
                    delay_ms = delay.as_millis() as u64,
                    "notification attempt failed; retrying"
                );
                tokio::time::sleep(delay).await;
                number += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }
    }

    #[test]
    fn backoff_doubles_within_the_jitter_band_and_is_capped() {
        let p = policy(10);
        assert_eq!(backoff(&p, 0, 0.0), Duration::from_millis(50));
        let top = backoff(&p, 0, 0.999_999);
        assert!(
            top > Duration::from_millis(99) && top < Duration::from_millis(100),
            "{top:?}"
        );
        assert_eq!(backoff(&p, 1, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(&p, 2, 0.5), Duration::from_millis(300));
        // 100 ms * 2^4 = 1.6 s, capped at 1 s.
        assert_eq!(backoff(&p, 4, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(&p, 40, 0.0), Duration::from_millis(500));
        assert!(backoff(&p, u32::MAX, 0.999) <= p.max_delay);
    }

    #[test]
    fn jitter_is_a_unit_fraction() {
        for _ in 0..1000 {
            let u = jitter_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }

    /// Runs the loop over a scripted list of attempt results, with time paused so that the
    /// backoff sleeps pass instantly; returns the outcome and the attempt numbers seen.
    async fn scripted(max_retries: u32, script: Vec<Attempt>) -> (Outcome, Vec<u32>) {
        let script = RefCell::new(script.into_iter());
        let seen = RefCell::new(Vec::new());
        let outcome = run(
            &policy(max_retries),
            || 0.5,
            |n| {
                seen.borrow_mut().push(n);
                let next = script.borrow_mut().next().expect("script too short");
                async move { next }
            },
        )
        .await;
        (outcome, seen.into_inner())
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_delivered() {
        let (outcome, seen) = scripted(
            3,
            vec![
                Attempt::Transient("HTTP 500".into()),
                Attempt::Transient("HTTP 429".into()),
                Attempt::Delivered,
            ],
        )
        .await;
        assert_eq!(outcome, Outcome::Delivered { attempts: 3 });
        assert_eq!(seen, [1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejection_is_not_retried() {
        let (outcome, seen) = scripted(3, vec![Attempt::Rejected("bad enum".into())]).await;
        assert_eq!(
            outcome,
            Outcome::Rejected {
                reason: "bad enum".into(),
                attempts: 1
            }
        );
        assert_eq!(seen, [1]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded() {
        let (outcome, seen) = scripted(
            2,
            vec![
                Attempt::Transient("a".into()),
                Attempt::Transient("b".into()),
                Attempt::Transient("c".into()),
            ],
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::GaveUp {
                reason: "c".into(),
                attempts: 3
            }
        );
        assert_eq!(seen, [1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_retries_means_one_attempt() {
        let (outcome, seen) = scripted(0, vec![Attempt::Transient("a".into())]).await;
        assert!(matches!(outcome, Outcome::GaveUp { attempts: 1, .. }));
        assert_eq!(seen, [1]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_waits_the_backoff_before_each_retry() {
        let start = tokio::time::Instant::now();
        let (outcome, _) = scripted(
            2,
            vec![
                Attempt::Transient("a".into()),
                Attempt::Transient("b".into()),
                Attempt::Delivered,
            ],
        )
        .await;
        assert_eq!(outcome, Outcome::Delivered { attempts: 3 });
        // With time paused the clock moves exactly by the sleeps: 75 ms + 150 ms at unit 0.5.
        assert_eq!(start.elapsed(), Duration::from_millis(225));
    }
}
