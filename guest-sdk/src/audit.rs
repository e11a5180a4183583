//! The application's own audit events. The host already records every
//! gateway attempt in its delivery log, so these are for events the host
//! cannot see, such as a skipped recipient.

use std::fmt;

use serde::Serialize;

use crate::bindings::herald::worker::audit as wit;
use crate::message::Message;

/// Records `event` with `detail`, serialized as JSON, against `message`,
/// which must belong to the batch being handled.
///
/// # Errors
///
/// Returns [`AuditError::InvalidDetail`] without calling the host when
/// `detail` does not serialize to JSON, and [`AuditError::Rejected`] when the
/// host rejects the event.
pub fn record_event(
    message: &Message,
    event: &str,
    detail: &impl Serialize,
) -> Result<(), AuditError> {
    let detail = serde_json::to_string(detail).map_err(|error| AuditError::InvalidDetail {
        event: event.to_string(),
        reason: error.to_string(),
    })?;

    wit::record_event(message.id(), event, &detail).map_err(|reason| AuditError::Rejected {
        event: event.to_string(),
        reason,
    })
}

/// Reason [`record_event`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditError {
    /// The detail does not serialize to JSON. Nothing was recorded.
    InvalidDetail {
        /// Name of the event.
        event: String,
        /// The serializer's message.
        reason: String,
    },
    /// The host rejected the event.
    Rejected {
        /// Name of the event.
        event: String,
        /// The host's message.
        reason: String,
    },
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditError::InvalidDetail { event, reason } => {
                write!(f, "invalid detail for audit event `{event}`: {reason}")
            }
            AuditError::Rejected { event, reason } => {
                write!(f, "recording audit event `{event}` failed: {reason}")
            }
        }
    }
}

impl std::error::Error for AuditError {}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn record_event_rejects_unserializable_detail() {
        let message = Message::new("id-1", "signups", "{}", 1, "2025-01-01T00:00:00Z");
        let detail = HashMap::from([((1, 2), "x")]);

        let error = record_event(&message, "welcome-sent", &detail).unwrap_err();

        assert!(
            matches!(&error, AuditError::InvalidDetail { event, .. } if event == "welcome-sent"),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with("invalid detail for audit event `welcome-sent`: "),
            "{error}"
        );
    }

    #[test]
    fn rejected_display_names_event() {
        let error = AuditError::Rejected {
            event: "welcome-sent".to_string(),
            reason: "message id not in batch".to_string(),
        };

        assert_eq!(
            error.to_string(),
            "recording audit event `welcome-sent` failed: message id not in batch"
        );
    }
}
