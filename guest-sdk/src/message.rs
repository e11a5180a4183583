//! The queued message that a worker handles, and parsing of its JSON payload
//! into the worker's own types.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::bindings::herald::worker::types as wit;

/// A message taken from a queue and handed to the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    id: String,
    queue: String,
    payload: String,
    attempt: u32,
    enqueued_at: String,
}

impl Message {
    /// Creates a message, for example to test a worker's `handle` natively.
    /// Inside a component the SDK creates messages from the host's batch.
    pub fn new(
        id: impl Into<String>,
        queue: impl Into<String>,
        payload: impl Into<String>,
        attempt: u32,
        enqueued_at: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            queue: queue.into(),
            payload: payload.into(),
            attempt,
            enqueued_at: enqueued_at.into(),
        }
    }

    /// Returns the message id, unique across all queues (a UUIDv7 in its text
    /// form).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Returns the name of the queue that the message was taken from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Returns the number of this attempt, starting at 1. Deferrals do not
    /// count as attempts.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Returns the time the message was enqueued, as RFC 3339 in UTC.
    pub fn enqueued_at(&self) -> &str {
        &self.enqueued_at
    }

    /// Returns the producer's payload as JSON text.
    pub fn raw_payload(&self) -> &str {
        &self.payload
    }

    /// Parses the JSON payload into `T`.
    ///
    /// # Errors
    ///
    /// Returns [`PayloadError`] when the payload is not valid JSON or does not
    /// match `T`, for example when a field is missing. With `?` in
    /// [`Worker::handle`](crate::Worker::handle) the error fails the message,
    /// because an invalid payload never becomes valid on a later attempt.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        serde_json::from_str(&self.payload).map_err(|source| PayloadError { source })
    }
}

impl From<wit::Message> for Message {
    fn from(message: wit::Message) -> Self {
        Self {
            id: message.id,
            queue: message.queue,
            payload: message.payload,
            attempt: message.attempt,
            enqueued_at: message.enqueued_at,
        }
    }
}

/// Error from [`Message::payload`]: the payload is not valid JSON or does not
/// match the requested type.
#[derive(Debug)]
pub struct PayloadError {
    source: serde_json::Error,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // serde_json's message names the field or value and its line and
        // column, such as "missing field `email` at line 1 column 15".
        write!(f, "invalid payload: {}", self.source)
    }
}

impl std::error::Error for PayloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Signup {
        email: String,
        name: String,
    }

    fn message_with_payload(payload: &str) -> Message {
        Message::new(
            "0190b5a1-7c3e-7d2a-9f00-000000000001",
            "signups",
            payload,
            1,
            "2025-01-01T00:00:00Z",
        )
    }

    #[test]
    fn accessors_return_fields() {
        let message = Message::new(
            "0190b5a1-7c3e-7d2a-9f00-000000000001",
            "signups",
            "{}",
            3,
            "2025-01-01T00:00:00Z",
        );

        assert_eq!(message.id(), "0190b5a1-7c3e-7d2a-9f00-000000000001");
        assert_eq!(message.queue(), "signups");
        assert_eq!(message.raw_payload(), "{}");
        assert_eq!(message.attempt(), 3);
        assert_eq!(message.enqueued_at(), "2025-01-01T00:00:00Z");
    }

    #[test]
    fn payload_parses_typed_struct() {
        let message = message_with_payload(r#"{"email": "ada@example.com", "name": "Ada"}"#);

        let signup: Signup = message.payload().unwrap();

        assert_eq!(
            signup,
            Signup {
                email: "ada@example.com".to_string(),
                name: "Ada".to_string(),
            }
        );
    }

    #[test]
    fn payload_missing_field_names_field() {
        let message = message_with_payload(r#"{"name": "Ada"}"#);

        let error = message.payload::<Signup>().unwrap_err();

        assert_eq!(
            error.to_string(),
            "invalid payload: missing field `email` at line 1 column 15"
        );
    }

    #[test]
    fn payload_wrong_type_names_value() {
        let message = message_with_payload(r#"{"email": 42, "name": "Ada"}"#);

        let error = message.payload::<Signup>().unwrap_err();

        let text = error.to_string();
        assert!(text.contains("invalid type: integer `42`"), "{text}");
    }

    #[test]
    fn payload_invalid_json_is_error() {
        let message = message_with_payload("not json");

        let error = message.payload::<Signup>().unwrap_err();

        assert!(error.to_string().starts_with("invalid payload: "));
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn from_wit_copies_fields() {
        let message = Message::from(wit::Message {
            id: "id-1".to_string(),
            queue: "signups".to_string(),
            payload: "{}".to_string(),
            attempt: 2,
            enqueued_at: "2025-01-01T00:00:00Z".to_string(),
        });

        assert_eq!(
            message,
            Message::new("id-1", "signups", "{}", 2, "2025-01-01T00:00:00Z")
        );
    }
}
