//! The event that a worker builds and POSTs through
//! [`gateway::send_webhook`](crate::gateway::send_webhook).

use serde::Serialize;

use crate::bindings::herald::worker::gateway as wit;
use crate::gateway::SendError;

/// An event that a webhook gateway POSTs as signed JSON to its configured URL.
///
/// The body carries `event_type` as `type` and the data as `data`. The host
/// signs the request, so the receiver can check that it came from Herald.
///
/// ```
/// use herald_sdk::WebhookEvent;
/// use serde::Serialize;
///
/// #[derive(Serialize)]
/// struct InvoicePaid {
///     invoice_id: String,
///     amount_cents: u64,
/// }
///
/// let paid = InvoicePaid { invoice_id: "in_1042".to_string(), amount_cents: 4900 };
/// let event = WebhookEvent::new("invoice.paid", &paid)?.idempotency_key("in_1042-paid");
///
/// assert_eq!(event.event_type, "invoice.paid");
/// assert_eq!(event.data, r#"{"invoice_id":"in_1042","amount_cents":4900}"#);
/// # Ok::<(), herald_sdk::gateway::SendError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookEvent {
    /// Event type, such as `invoice.paid`.
    pub event_type: String,
    /// Event data as JSON text.
    pub data: String,
    /// Key that makes the send idempotent for this worker. With `None` the
    /// host derives one from the message id, the channel and the event type,
    /// so a second event of the same type for the same message is suppressed
    /// as a duplicate. Give each such event its own key.
    pub idempotency_key: Option<String>,
}

impl WebhookEvent {
    /// Creates an event of type `event_type` whose data is `data` serialized
    /// as JSON. Any JSON value is allowed, though receivers usually expect an
    /// object.
    ///
    /// # Errors
    ///
    /// Returns [`SendError::InvalidInput`] when `data` does not serialize to
    /// JSON, for example a map with non-string keys. With `?` in
    /// [`Worker::handle`](crate::Worker::handle) the error fails the message.
    pub fn new(event_type: impl Into<String>, data: &impl Serialize) -> Result<Self, SendError> {
        let event_type = event_type.into();
        let data = serde_json::to_string(data).map_err(|error| {
            SendError::InvalidInput(format!(
                "data of webhook event `{event_type}` does not serialize to JSON: {error}"
            ))
        })?;

        Ok(Self {
            event_type,
            data,
            idempotency_key: None,
        })
    }

    /// Sets the key that makes the send idempotent. A second send with the
    /// same key by the same worker returns the first receipt instead of
    /// sending again, even from another message.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

impl From<&WebhookEvent> for wit::WebhookEvent {
    fn from(event: &WebhookEvent) -> Self {
        wit::WebhookEvent {
            event_type: event.event_type.clone(),
            data: event.data.clone(),
            idempotency_key: event.idempotency_key.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn new_serializes_data() {
        let event =
            WebhookEvent::new("invoice.paid", &json!({"id": "in_1", "amount": 4900})).unwrap();

        assert_eq!(event.event_type, "invoice.paid");
        assert_eq!(event.data, r#"{"amount":4900,"id":"in_1"}"#);
        assert_eq!(event.idempotency_key, None);
    }

    #[test]
    fn new_allows_any_json_value() {
        let cases = [
            (json!(null), "null"),
            (json!([1, 2]), "[1,2]"),
            (json!("text"), r#""text""#),
        ];

        for (data, expected) in cases {
            let event = WebhookEvent::new("ping", &data).unwrap();
            assert_eq!(event.data, expected);
        }
    }

    #[test]
    fn new_rejects_unserializable_data() {
        let data = BTreeMap::from([((1, 2), "tuple keys are not JSON")]);

        let error = WebhookEvent::new("invoice.paid", &data).unwrap_err();

        let SendError::InvalidInput(message) = error else {
            panic!("expected invalid input, got {error:?}");
        };
        assert!(
            message.starts_with("data of webhook event `invoice.paid` does not serialize"),
            "{message}"
        );
    }

    #[test]
    fn idempotency_key_is_set() {
        let event = WebhookEvent::new("invoice.paid", &json!({}))
            .unwrap()
            .idempotency_key("in_1-paid");

        assert_eq!(event.idempotency_key.as_deref(), Some("in_1-paid"));
    }

    #[test]
    fn into_wit_copies_fields() {
        let event = WebhookEvent::new("invoice.paid", &json!({"id": "in_1"}))
            .unwrap()
            .idempotency_key("in_1-paid");

        let wit_event = wit::WebhookEvent::from(&event);

        assert_eq!(wit_event.event_type, "invoice.paid");
        assert_eq!(wit_event.data, r#"{"id":"in_1"}"#);
        assert_eq!(wit_event.idempotency_key.as_deref(), Some("in_1-paid"));
    }
}
