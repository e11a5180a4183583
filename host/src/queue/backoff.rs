//! Retry delays: exponential backoff with full jitter.
//!
//! The delay before attempt `n + 1` is drawn uniformly from
//! `[0, min(cap, base * 2^(n - 1))]`. Full jitter spreads the retries of many
//! messages that failed together (a gateway outage, say) over the whole
//! window instead of sending them back in lockstep.

use std::time::Duration;

use rand::Rng;

/// Backoff settings of one worker binding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Upper bound of the first retry's delay.
    pub base: Duration,
    /// Largest delay ever returned.
    pub cap: Duration,
}

impl Backoff {
    /// Returns the upper bound of the delay after failed attempt `attempt`
    /// (1-based), before jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(63);
        let factor = 2f64.powi(exponent as i32);
        let ceiling = self.base.as_secs_f64() * factor;
        Duration::from_secs_f64(ceiling.min(self.cap.as_secs_f64()))
    }

    /// Returns a random delay in `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_secs_f64();
        if ceiling <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(rand::rng().random_range(0.0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        base: Duration::from_secs(2),
        cap: Duration::from_secs(60),
    };

    #[test]
    fn ceiling_doubles_per_attempt() {
        assert_eq!(BACKOFF.ceiling(1), Duration::from_secs(2));
        assert_eq!(BACKOFF.ceiling(2), Duration::from_secs(4));
        assert_eq!(BACKOFF.ceiling(5), Duration::from_secs(32));
    }

    #[test]
    fn ceiling_stops_at_cap() {
        assert_eq!(BACKOFF.ceiling(6), Duration::from_secs(60));
        assert_eq!(BACKOFF.ceiling(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn delay_stays_within_ceiling() {
        for attempt in 1..12 {
            for _ in 0..100 {
                assert!(BACKOFF.delay(attempt) <= BACKOFF.ceiling(attempt));
            }
        }
    }

    #[test]
    fn delay_is_jittered() {
        let delays: Vec<Duration> = (0..50).map(|_| BACKOFF.delay(5)).collect();
        let first = delays[0];
        assert!(delays.iter().any(|delay| *delay != first), "{delays:?}");
    }

    #[test]
    fn zero_base_means_no_delay() {
        let backoff = Backoff {
            base: Duration::ZERO,
            cap: Duration::from_secs(60),
        };
        assert_eq!(backoff.delay(3), Duration::ZERO);
    }
}
