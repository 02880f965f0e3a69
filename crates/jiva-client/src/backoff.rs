//! How long to wait before each reconnection attempt: exponential, capped, jittered, bounded.

use std::time::Duration;

/// The reconnection policy: attempt `n` (counting from 1) waits a random time between half and
/// all of `min(max, initial · 2^(n-1))` ("equal jitter": many clients dropped at once by a
/// restarting server come back spread out, yet none retries at once). After `max_attempts`
/// failed attempts in a row (when set) the client gives up.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// The ceiling of the first attempt's wait.
    pub initial: Duration,
    /// The largest wait.
    pub max: Duration,
    /// How many attempts in a row may fail before the client gives up; `None`: never gives up.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    /// 100 ms doubling up to 10 s, never giving up.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (1 for the first reconnection), with `random` a number
    /// in `[0, 1]` (values outside are clamped); `None` once the attempts are spent.
    pub fn delay(&self, attempt: u32, random: f64) -> Option<Duration> {
        if self.max_attempts.is_some_and(|max| attempt > max) {
            return None;
        }
        let doublings = attempt.saturating_sub(1).min(32);
        let ceiling = self
            .initial
            .checked_mul(1u32 << doublings.min(31))
            .map_or(self.max, |d| d.min(self.max));
        let half = ceiling / 2;
        Some(half + half.mul_f64(random.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: Option<u32>) -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            max_attempts,
        }
    }

    #[test]
    fn the_wait_doubles_up_to_the_cap() {
        let b = policy(None);
        let top: Vec<_> = (1..=7).map(|n| b.delay(n, 1.0).unwrap()).collect();
        let ms: Vec<u128> = top.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_ceiling() {
        let b = policy(None);
        assert_eq!(b.delay(3, 0.0), Some(Duration::from_millis(200)));
        assert_eq!(b.delay(3, 0.5), Some(Duration::from_millis(300)));
        assert_eq!(b.delay(3, 7.0), Some(Duration::from_millis(400)));
        assert_eq!(b.delay(3, -1.0), Some(Duration::from_millis(200)));
    }

    #[test]
    fn attempts_are_bounded_when_asked() {
        let b = policy(Some(3));
        assert!(b.delay(3, 0.5).is_some());
        assert_eq!(b.delay(4, 0.5), None);
        assert!(policy(None).delay(u32::MAX, 0.5).is_some());
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let b = Backoff {
            initial: Duration::from_secs(u64::MAX / 4),
            max: Duration::from_secs(60),
            max_attempts: None,
        };
        assert_eq!(b.delay(40, 1.0), Some(Duration::from_secs(60)));
    }
}
