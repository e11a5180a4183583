//! The error that [`Worker::handle`](crate::Worker::handle) returns, and how
//! each SDK error maps to retry, fail or defer.

use std::fmt;

use crate::audit::AuditError;
use crate::gateway::SendError;
use crate::message::PayloadError;
use crate::outcome::Outcome;
use crate::queue::QueueError;
use crate::template::TemplateError;

/// Reason that a message was not handled, with the [`Outcome`] it leads to.
///
/// Build one with [`Error::retry`], [`Error::retry_after`], [`Error::fail`]
/// or [`Error::defer`], or let `?` convert an SDK error:
///
/// | Error | Outcome |
/// |---|---|
/// | [`PayloadError`] | fail |
/// | [`TemplateError::NotFound`] | retry, backoff chosen by the host |
/// | other [`TemplateError`]s | fail |
/// | [`SendError::Transient`] | retry, backoff chosen by the host |
/// | [`SendError::RateLimited`] | retry after the gateway's delay |
/// | [`SendError::Permanent`], [`SendError::InvalidInput`] | fail |
/// | [`QueueError::InvalidPayload`], [`AuditError::InvalidDetail`] | fail |
/// | [`QueueError::Rejected`], [`AuditError::Rejected`] | retry |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ErrorKind {
    Retry {
        message: String,
        delay_seconds: Option<u32>,
    },
    Fail(String),
    Defer(u32),
}

impl Error {
    /// Creates an error that retries the message after a delay that the host
    /// picks by exponential backoff.
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Retry {
                message: message.into(),
                delay_seconds: None,
            },
        }
    }

    /// Creates an error that retries the message after `seconds`.
    pub fn retry_after(message: impl Into<String>, seconds: u32) -> Self {
        Self {
            kind: ErrorKind::Retry {
                message: message.into(),
                delay_seconds: Some(seconds),
            },
        }
    }

    /// Creates an error that fails the message for good. The host
    /// dead-letters it with `reason`.
    pub fn fail(reason: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Fail(reason.into()),
        }
    }

    /// Creates an error that runs the message again after `seconds` without
    /// spending an attempt.
    pub fn defer(seconds: u32) -> Self {
        Self {
            kind: ErrorKind::Defer(seconds),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Retry { message, .. } => f.write_str(message),
            ErrorKind::Fail(reason) => f.write_str(reason),
            ErrorKind::Defer(seconds) => write!(f, "deferred for {seconds} s"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for Outcome {
    fn from(error: Error) -> Self {
        match error.kind {
            ErrorKind::Retry {
                message,
                delay_seconds,
            } => Outcome::Retry {
                error: message,
                delay_seconds,
            },
            ErrorKind::Fail(reason) => Outcome::Fail(reason),
            ErrorKind::Defer(seconds) => Outcome::Defer(seconds),
        }
    }
}

/// Fails the message, because an invalid payload never becomes valid on a
/// later attempt.
impl From<PayloadError> for Error {
    fn from(error: PayloadError) -> Self {
        Error::fail(error.to_string())
    }
}

/// Fails the message, because the same template and context fail the same way
/// on every attempt. A stored template that is not found retries instead, so
/// a worker deployed before its template is uploaded loses nothing.
impl From<TemplateError> for Error {
    fn from(error: TemplateError) -> Self {
        match error {
            TemplateError::NotFound(_) => Error::retry(error.to_string()),
            _ => Error::fail(error.to_string()),
        }
    }
}

/// Retries transient and rate-limited failures and fails the others.
impl From<SendError> for Error {
    fn from(error: SendError) -> Self {
        let message = error.to_string();
        match error {
            SendError::Transient(_) => Error::retry(message),
            SendError::RateLimited {
                retry_after_seconds,
                ..
            } => Error::retry_after(message, retry_after_seconds),
            SendError::Permanent(_) | SendError::InvalidInput(_) => Error::fail(message),
        }
    }
}

/// Fails the message when the payload does not serialize and retries it when
/// the host rejects the enqueue.
///
/// The host does not say whether a rejection is temporary, so a rejection
/// that never clears costs the message's remaining attempts.
impl From<QueueError> for Error {
    fn from(error: QueueError) -> Self {
        let message = error.to_string();
        match error {
            QueueError::InvalidPayload { .. } => Error::fail(message),
            QueueError::Rejected { .. } => Error::retry(message),
        }
    }
}

/// Fails the message when the detail does not serialize and retries it when
/// the host rejects the event.
///
/// The host does not say whether a rejection is temporary, so a rejection
/// that never clears costs the message's remaining attempts.
impl From<AuditError> for Error {
    fn from(error: AuditError) -> Self {
        let message = error.to_string();
        match error {
            AuditError::InvalidDetail { .. } => Error::fail(message),
            AuditError::Rejected { .. } => Error::retry(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::Message;

    #[test]
    fn retry_has_no_delay() {
        let outcome = Outcome::from(Error::retry("smtp timed out"));

        assert_eq!(
            outcome,
            Outcome::Retry {
                error: "smtp timed out".to_string(),
                delay_seconds: None,
            }
        );
    }

    #[test]
    fn retry_after_keeps_delay() {
        let outcome = Outcome::from(Error::retry_after("quota reached", 90));

        assert_eq!(
            outcome,
            Outcome::Retry {
                error: "quota reached".to_string(),
                delay_seconds: Some(90),
            }
        );
    }

    #[test]
    fn fail_keeps_reason() {
        let outcome = Outcome::from(Error::fail("unknown plan `gold`"));

        assert_eq!(outcome, Outcome::Fail("unknown plan `gold`".to_string()));
    }

    #[test]
    fn defer_keeps_seconds() {
        assert_eq!(Outcome::from(Error::defer(3600)), Outcome::Defer(3600));
    }

    #[test]
    fn display_shows_message() {
        assert_eq!(Error::retry("smtp timed out").to_string(), "smtp timed out");
        assert_eq!(
            Error::retry_after("quota reached", 5).to_string(),
            "quota reached"
        );
        assert_eq!(Error::fail("bad address").to_string(), "bad address");
        assert_eq!(Error::defer(60).to_string(), "deferred for 60 s");
    }

    #[test]
    fn payload_error_fails() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code, reason = "only parsing is under test")]
        struct Signup {
            email: String,
        }
        let message = Message::new("id-1", "signups", "{}", 1, "2025-01-01T00:00:00Z");
        let payload_error = message.payload::<Signup>().unwrap_err();

        let outcome = Outcome::from(Error::from(payload_error));

        let Outcome::Fail(reason) = outcome else {
            panic!("expected a fail outcome, got {outcome:?}");
        };
        assert!(reason.contains("missing field `email`"), "{reason}");
    }

    #[test]
    fn template_error_fails() {
        let error = TemplateError::InvalidTemplate("unexpected end of input on line 2".to_string());

        let outcome = Outcome::from(Error::from(error));

        assert_eq!(
            outcome,
            Outcome::Fail("invalid template: unexpected end of input on line 2".to_string())
        );
    }

    #[test]
    fn template_not_found_retries() {
        let error = TemplateError::NotFound("daily-digest".to_string());

        let outcome = Outcome::from(Error::from(error));

        let Outcome::Retry { error: reason, .. } = outcome else {
            panic!("expected a retry outcome, got {outcome:?}");
        };
        assert!(
            reason.contains("PUT /v1/templates/daily-digest"),
            "{reason}"
        );
    }

    #[test]
    fn transient_send_error_retries_with_backoff() {
        let error = SendError::Transient("421 service not available".to_string());

        let outcome = Outcome::from(Error::from(error));

        assert_eq!(
            outcome,
            Outcome::Retry {
                error: "send failed temporarily: 421 service not available".to_string(),
                delay_seconds: None,
            }
        );
    }

    #[test]
    fn rate_limited_send_error_retries_after_delay() {
        let error = SendError::RateLimited {
            message: "too many messages".to_string(),
            retry_after_seconds: 120,
        };

        let outcome = Outcome::from(Error::from(error));

        assert_eq!(
            outcome,
            Outcome::Retry {
                error: "send rate-limited, retry after 120 s: too many messages".to_string(),
                delay_seconds: Some(120),
            }
        );
    }

    #[test]
    fn permanent_send_error_fails() {
        let error = SendError::Permanent("550 mailbox unavailable".to_string());

        let outcome = Outcome::from(Error::from(error));

        assert_eq!(
            outcome,
            Outcome::Fail("send rejected permanently: 550 mailbox unavailable".to_string())
        );
    }

    #[test]
    fn invalid_input_send_error_fails() {
        let error = SendError::InvalidInput("invalid address `ada@`".to_string());

        let outcome = Outcome::from(Error::from(error));

        assert_eq!(
            outcome,
            Outcome::Fail("send rejected as invalid input: invalid address `ada@`".to_string())
        );
    }

    #[test]
    fn queue_errors_map_by_kind() {
        let invalid = QueueError::InvalidPayload {
            queue: "digests".to_string(),
            reason: "key must be a string".to_string(),
        };
        let rejected = QueueError::Rejected {
            queue: "digests".to_string(),
            reason: "queue `digests` not found".to_string(),
        };

        assert!(matches!(
            Outcome::from(Error::from(invalid)),
            Outcome::Fail(_)
        ));
        assert!(matches!(
            Outcome::from(Error::from(rejected)),
            Outcome::Retry {
                delay_seconds: None,
                ..
            }
        ));
    }

    #[test]
    fn audit_errors_map_by_kind() {
        let invalid = AuditError::InvalidDetail {
            event: "welcome-sent".to_string(),
            reason: "key must be a string".to_string(),
        };
        let rejected = AuditError::Rejected {
            event: "welcome-sent".to_string(),
            reason: "message id not in batch".to_string(),
        };

        assert!(matches!(
            Outcome::from(Error::from(invalid)),
            Outcome::Fail(_)
        ));
        assert!(matches!(
            Outcome::from(Error::from(rejected)),
            Outcome::Retry { .. }
        ));
    }
}
