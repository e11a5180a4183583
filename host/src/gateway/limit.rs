//! The rate and concurrency limits of one gateway, shared by every worker on
//! the node.
//!
//! The rate is a token bucket that contains one second's worth of sends (at
//! least one), refilled continuously. A send that finds the bucket empty
//! takes a token on credit and sleeps until that token would have arrived,
//! so waiting sends go out in the order they asked and never spin.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Rate;

/// A token bucket.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    capacity: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Tokens available; negative while sends wait on credit.
    tokens: f64,
    refilled_at: Instant,
}

impl RateLimiter {
    /// Creates a full bucket for `rate`.
    pub fn new(rate: Rate) -> Self {
        let per_second = rate.per_second();
        let capacity = per_second.max(1.0);
        Self {
            per_second,
            capacity,
            bucket: Mutex::new(Bucket {
                tokens: capacity,
                refilled_at: Instant::now(),
            }),
        }
    }

    /// Takes one token and returns how long the caller must wait before
    /// sending.
    pub fn reserve(&self) -> Duration {
        let now = Instant::now();
        let mut bucket = self
            .bucket
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let elapsed = now.duration_since(bucket.refilled_at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.capacity);
        bucket.refilled_at = now;
        bucket.tokens -= 1.0;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.per_second)
        }
    }

    /// Waits for a token when one comes within `max_wait`. A longer wait
    /// returns the token and `Err` with the wait, so the caller can retry
    /// later instead of holding a worker past its deadline. A wait cut short,
    /// because the send was cancelled, returns its token too.
    pub async fn acquire(&self, max_wait: Duration) -> Result<(), Duration> {
        let wait = self.reserve();
        if wait.is_zero() {
            return Ok(());
        }
        if wait > max_wait {
            self.give_back();
            return Err(wait);
        }
        let mut refund = Refund(Some(self));
        tokio::time::sleep(wait).await;
        refund.0 = None;
        Ok(())
    }

    fn give_back(&self) {
        let mut bucket = self
            .bucket
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        bucket.tokens = (bucket.tokens + 1.0).min(self.capacity);
    }
}

/// Returns a reserved token when dropped while still armed.
struct Refund<'a>(Option<&'a RateLimiter>);

impl Drop for Refund<'_> {
    fn drop(&mut self) {
        if let Some(limiter) = self.0 {
            limiter.give_back();
        }
    }
}

/// A cap on sends in progress at once.
#[derive(Debug)]
pub struct InFlight {
    max: usize,
    permits: std::sync::Arc<Semaphore>,
}

impl InFlight {
    /// Allows `max` sends at once.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            permits: std::sync::Arc::new(Semaphore::new(max)),
        }
    }

    /// Waits for a free slot, held until the permit drops.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        std::sync::Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Returns the configured maximum.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Returns the number of sends in progress.
    pub fn in_use(&self) -> usize {
        self.max - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_starts_full_then_spaces_sends() {
        let limiter = RateLimiter::new(Rate::parse("10/s").unwrap());
        for _ in 0..10 {
            assert_eq!(limiter.reserve(), Duration::ZERO);
        }
        // The eleventh and twelfth wait one and two tenths of a second.
        let first = limiter.reserve();
        let second = limiter.reserve();
        assert!(first > Duration::from_millis(90), "{first:?}");
        assert!(second > Duration::from_millis(190), "{second:?}");
    }

    #[test]
    fn slow_rates_hold_one_token() {
        let limiter = RateLimiter::new(Rate::parse("60/m").unwrap());
        assert_eq!(limiter.reserve(), Duration::ZERO);
        assert!(limiter.reserve() > Duration::from_millis(900));
    }

    #[tokio::test]
    async fn cancelled_wait_returns_its_token() {
        let limiter = RateLimiter::new(Rate::parse("60/m").unwrap());
        assert_eq!(limiter.reserve(), Duration::ZERO);
        let wait = limiter.acquire(Duration::from_secs(5));
        let cancelled = tokio::time::timeout(Duration::from_millis(10), wait).await;
        assert!(cancelled.is_err());
        // Without the refund this wait would be about two seconds.
        let wait = limiter.reserve();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
    }

    #[tokio::test]
    async fn long_wait_is_returned_not_slept() {
        let limiter = RateLimiter::new(Rate::parse("60/m").unwrap());
        assert_eq!(limiter.acquire(Duration::from_millis(100)).await, Ok(()));
        let Err(wait) = limiter.acquire(Duration::from_millis(100)).await else {
            panic!("expected the wait to be returned");
        };
        assert!(wait > Duration::from_millis(900), "{wait:?}");
        // The refused token went back: the next wait is not longer.
        assert!(limiter.reserve() <= wait);
    }

    #[tokio::test]
    async fn in_flight_counts_permits() {
        let limit = InFlight::new(2);
        let one = limit.acquire().await;
        let _two = limit.acquire().await;
        assert_eq!(limit.in_use(), 2);
        drop(one);
        assert_eq!(limit.in_use(), 1);
        assert_eq!(limit.max(), 2);
    }
}
