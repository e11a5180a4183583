//! Enqueueing follow-up messages, for example to fan a large recipient list
//! out into batches.

use std::fmt;

use serde::Serialize;

use crate::bindings::herald::worker::queue as wit;

/// Options of one [`enqueue`].
///
/// ```
/// use herald_sdk::queue::EnqueueOptions;
///
/// let options = EnqueueOptions::new()
///     .delay_seconds(300)
///     .priority(10)
///     .idempotency_key("digest-2025-01-01");
/// assert_eq!(options.delay_seconds, Some(300));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnqueueOptions {
    /// Seconds to wait before the message is due. With `None` it is due at
    /// once.
    pub delay_seconds: Option<u32>,
    /// Priority of the message. Higher priorities are reserved first, and
    /// `None` means 0.
    pub priority: Option<i32>,
    /// Key that makes the enqueue idempotent on the target queue.
    pub idempotency_key: Option<String>,
}

impl EnqueueOptions {
    /// Creates options with no delay, the default priority and no
    /// idempotency key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the delay in seconds before the message is due.
    pub fn delay_seconds(mut self, seconds: u32) -> Self {
        self.delay_seconds = Some(seconds);
        self
    }

    /// Sets the priority. Higher priorities are reserved first.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the key that makes the enqueue idempotent. A second enqueue with
    /// the same key on the same queue returns the first message's id.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// Enqueues `payload`, serialized as JSON, on `queue` and returns the new
/// message id, or the earlier id when the idempotency key was seen before.
///
/// # Errors
///
/// Returns [`QueueError::InvalidPayload`] without calling the host when
/// `payload` does not serialize to JSON, and [`QueueError::Rejected`] when
/// the host rejects the enqueue.
pub fn enqueue(
    queue: &str,
    payload: &impl Serialize,
    options: EnqueueOptions,
) -> Result<String, QueueError> {
    let payload = serde_json::to_string(payload).map_err(|error| QueueError::InvalidPayload {
        queue: queue.to_string(),
        reason: error.to_string(),
    })?;

    let options = wit::EnqueueOptions {
        delay_seconds: options.delay_seconds,
        priority: options.priority,
        idempotency_key: options.idempotency_key,
    };
    wit::enqueue(queue, &payload, &options).map_err(|reason| QueueError::Rejected {
        queue: queue.to_string(),
        reason,
    })
}

/// Reason an [`enqueue`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// The payload does not serialize to JSON. Nothing was enqueued.
    InvalidPayload {
        /// Name of the target queue.
        queue: String,
        /// The serializer's message.
        reason: String,
    },
    /// The host rejected the enqueue.
    Rejected {
        /// Name of the target queue.
        queue: String,
        /// The host's message.
        reason: String,
    },
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::InvalidPayload { queue, reason } => {
                write!(f, "invalid payload for queue `{queue}`: {reason}")
            }
            QueueError::Rejected { queue, reason } => {
                write!(f, "enqueue on queue `{queue}` failed: {reason}")
            }
        }
    }
}

impl std::error::Error for QueueError {}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn options_default_to_none() {
        let options = EnqueueOptions::new();

        assert_eq!(options.delay_seconds, None);
        assert_eq!(options.priority, None);
        assert_eq!(options.idempotency_key, None);
    }

    #[test]
    fn options_builder_sets_fields() {
        let options = EnqueueOptions::new()
            .delay_seconds(60)
            .priority(-5)
            .idempotency_key("digest-1");

        assert_eq!(options.delay_seconds, Some(60));
        assert_eq!(options.priority, Some(-5));
        assert_eq!(options.idempotency_key.as_deref(), Some("digest-1"));
    }

    #[test]
    fn enqueue_rejects_unserializable_payload() {
        // JSON object keys must be strings, so a map keyed by tuples fails
        // before the host import is called.
        let payload = HashMap::from([((1, 2), "x")]);

        let error = enqueue("digests", &payload, EnqueueOptions::new()).unwrap_err();

        let QueueError::InvalidPayload { queue, reason } = &error else {
            panic!("expected an invalid payload error, got {error:?}");
        };
        assert_eq!(queue, "digests");
        assert!(reason.contains("key must be a string"), "{reason}");
        assert!(
            error
                .to_string()
                .starts_with("invalid payload for queue `digests`: ")
        );
    }

    #[test]
    fn rejected_display_names_queue() {
        let error = QueueError::Rejected {
            queue: "digests".to_string(),
            reason: "queue not found".to_string(),
        };

        assert_eq!(
            error.to_string(),
            "enqueue on queue `digests` failed: queue not found"
        );
    }
}
