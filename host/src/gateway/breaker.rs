//! The circuit breaker of one gateway: after a run of transient failures it
//! stops calling the provider for a cool-down, so a provider that is down
//! costs each send a fast failure instead of a timeout.
//!
//! A closed circuit lets calls through. An open one fails them fast until
//! the cool-down ends. Then it is half-open: one probe call goes through,
//! and its result closes or reopens the circuit. A probe that never reports back, because
//! its send was cancelled, lets the next probe through after another
//! cool-down.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::SendError;

/// A gateway's circuit breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    gateway: String,
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    phase: Phase,
    /// Transient failures since the last success.
    consecutive_failures: u32,
    /// End of the current cool-down, while open or probing.
    until: Instant,
    /// Wall-clock time of `until` in ms since the epoch, for reports.
    until_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Phase {
    Closed,
    Open,
    HalfOpen,
}

/// Whether a call may go to the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Call the provider.
    Allowed,
    /// Do not call it; the circuit is open for this much longer.
    Rejected(Duration),
}

/// A breaker's state as `GET /v1/gateways` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CircuitReport {
    /// `closed`, `open` or `half-open`.
    pub state: &'static str,
    /// Transient failures since the last success.
    pub consecutive_failures: u32,
    /// Failures in a row that open the circuit.
    pub threshold: u32,
    /// End of the cool-down as RFC 3339, while open or half-open.
    pub open_until: Option<String>,
}

impl CircuitBreaker {
    /// Creates a closed breaker that opens after `threshold` consecutive
    /// transient failures and stays open for `cooldown`.
    pub fn new(gateway: &str, threshold: u32, cooldown: Duration) -> Self {
        Self {
            gateway: gateway.to_owned(),
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State {
                phase: Phase::Closed,
                consecutive_failures: 0,
                until: Instant::now(),
                until_ms: 0,
            }),
        }
    }

    /// Decides whether a call may go out now. When an open circuit's
    /// cool-down has ended, this admits one probe and moves to half-open.
    pub fn admit(&self) -> Admission {
        let now = Instant::now();
        let mut state = self.lock();
        match state.phase {
            Phase::Closed => Admission::Allowed,
            Phase::Open | Phase::HalfOpen if now >= state.until => {
                state.phase = Phase::HalfOpen;
                state.until = now + self.cooldown;
                state.until_ms = crate::clock::now_ms() + self.cooldown.as_millis() as i64;
                tracing::info!(gateway = %self.gateway, "circuit half-open, sending a probe");
                Admission::Allowed
            }
            Phase::Open | Phase::HalfOpen => Admission::Rejected(state.until - now),
        }
    }

    /// Records the result of an admitted call. Transient and rate-limited
    /// failures count against the provider. A success, a permanent rejection
    /// and invalid input all show that the provider responds, so they close
    /// the circuit.
    pub fn record(&self, result: &Result<String, SendError>) {
        let failed = matches!(
            result,
            Err(SendError::Transient(_) | SendError::RateLimited { .. })
        );
        let mut state = self.lock();
        if !failed {
            if state.phase != Phase::Closed {
                tracing::info!(gateway = %self.gateway, "circuit closed, the provider responds again");
            }
            state.phase = Phase::Closed;
            state.consecutive_failures = 0;
            return;
        }
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let trips = state.phase == Phase::HalfOpen
            || (state.phase == Phase::Closed && state.consecutive_failures >= self.threshold);
        if trips {
            state.phase = Phase::Open;
            state.until = Instant::now() + self.cooldown;
            state.until_ms = crate::clock::now_ms() + self.cooldown.as_millis() as i64;
            tracing::warn!(
                gateway = %self.gateway,
                consecutive_failures = state.consecutive_failures,
                cooldown_secs = self.cooldown.as_secs(),
                "circuit open, failing sends without calling the provider"
            );
        }
    }

    /// Returns the state for reports.
    pub fn report(&self) -> CircuitReport {
        let state = *self.lock();
        let phase = match state.phase {
            // An open circuit past its cool-down admits the next call.
            Phase::Open if Instant::now() >= state.until => Phase::HalfOpen,
            phase => phase,
        };
        CircuitReport {
            state: match phase {
                Phase::Closed => "closed",
                Phase::Open => "open",
                Phase::HalfOpen => "half-open",
            },
            consecutive_failures: state.consecutive_failures,
            threshold: self.threshold,
            open_until: (phase != Phase::Closed).then(|| crate::clock::to_rfc3339(state.until_ms)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> Result<String, SendError> {
        Err(SendError::Transient("503".into()))
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let breaker = CircuitBreaker::new("g", 3, Duration::from_secs(60));
        for _ in 0..2 {
            assert_eq!(breaker.admit(), Admission::Allowed);
            breaker.record(&transient());
        }
        assert_eq!(breaker.report().state, "closed");
        breaker.record(&transient());
        assert!(matches!(breaker.admit(), Admission::Rejected(_)));
        let report = breaker.report();
        assert_eq!(report.state, "open");
        assert_eq!(report.consecutive_failures, 3);
        assert!(report.open_until.is_some());
    }

    #[test]
    fn success_resets_the_count() {
        let breaker = CircuitBreaker::new("g", 2, Duration::from_secs(60));
        breaker.record(&transient());
        breaker.record(&Ok("id".into()));
        breaker.record(&transient());
        assert_eq!(breaker.admit(), Admission::Allowed);
    }

    #[test]
    fn permanent_rejection_does_not_count() {
        let breaker = CircuitBreaker::new("g", 1, Duration::from_secs(60));
        breaker.record(&Err(SendError::Permanent("550".into())));
        breaker.record(&Err(SendError::InvalidInput("bad".into())));
        assert_eq!(breaker.admit(), Admission::Allowed);
    }

    #[test]
    fn half_open_admits_one_probe() {
        let breaker = CircuitBreaker::new("g", 1, Duration::from_millis(20));
        breaker.record(&transient());
        assert!(matches!(breaker.admit(), Admission::Rejected(_)));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(breaker.admit(), Admission::Allowed);
        assert!(matches!(breaker.admit(), Admission::Rejected(_)));
        breaker.record(&transient());
        assert_eq!(breaker.report().state, "open");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(breaker.admit(), Admission::Allowed);
        breaker.record(&Ok("id".into()));
        assert_eq!(breaker.report().state, "closed");
        assert_eq!(breaker.admit(), Admission::Allowed);
    }
}
