//! The outcome that a worker returns for each message of a batch, and what
//! the host does with it.

use crate::bindings::herald::worker::types as wit;
use crate::error::Error;

/// Decision that a worker returns for one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The message is handled. The host marks it completed.
    Done,
    /// The attempt failed but a later one may succeed. The host reschedules
    /// the message and dead-letters it after the binding's maximum attempts.
    Retry {
        /// Reason the attempt failed. The host stores it as the message's last
        /// error.
        error: String,
        /// Seconds to wait before the next attempt. With `None` the host picks
        /// the delay by exponential backoff with jitter.
        delay_seconds: Option<u32>,
    },
    /// The message can never succeed. The host dead-letters it at once with
    /// this reason.
    Fail(String),
    /// The message is not due yet. The host runs it again after this many
    /// seconds without spending an attempt, up to a maximum number of
    /// deferrals that the host sets.
    Defer(u32),
}

impl From<Result<(), Error>> for Outcome {
    fn from(result: Result<(), Error>) -> Self {
        match result {
            Ok(()) => Outcome::Done,
            Err(error) => error.into(),
        }
    }
}

impl From<Outcome> for wit::Outcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Done => wit::Outcome::Done,
            Outcome::Retry {
                error,
                delay_seconds,
            } => wit::Outcome::Retry(wit::Retry {
                error,
                delay_seconds,
            }),
            Outcome::Fail(reason) => wit::Outcome::Fail(reason),
            Outcome::Defer(seconds) => wit::Outcome::Defer(seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_result_is_done() {
        assert_eq!(Outcome::from(Ok(())), Outcome::Done);
    }

    #[test]
    fn err_result_is_error_outcome() {
        let outcome = Outcome::from(Err(Error::fail("unknown template `welcome`")));

        assert_eq!(
            outcome,
            Outcome::Fail("unknown template `welcome`".to_string())
        );
    }

    #[test]
    fn into_wit_keeps_each_variant() {
        assert!(matches!(
            wit::Outcome::from(Outcome::Done),
            wit::Outcome::Done
        ));

        let retry = wit::Outcome::from(Outcome::Retry {
            error: "smtp timed out".to_string(),
            delay_seconds: Some(30),
        });
        let wit::Outcome::Retry(retry) = retry else {
            panic!("expected a retry outcome, got {retry:?}");
        };
        assert_eq!(retry.error, "smtp timed out");
        assert_eq!(retry.delay_seconds, Some(30));

        let fail = wit::Outcome::from(Outcome::Fail("bad address".to_string()));
        assert!(matches!(fail, wit::Outcome::Fail(reason) if reason == "bad address"));

        let defer = wit::Outcome::from(Outcome::Defer(600));
        assert!(matches!(defer, wit::Outcome::Defer(600)));
    }
}
