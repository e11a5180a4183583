//! Sample Herald worker that relays an event to a webhook receiver.
//!
//! It takes a payload such as
//!
//! ```json
//! {"type": "invoice.paid", "data": {"invoice_id": "in_1042", "amount_cents": 4900}, "id": "evt_81"}
//! ```
//!
//! and POSTs the event through the gateway named `webhook`, a gateway of
//! kind `webhook` whose URL and signing secret the operator configures. The
//! receiver gets `type` and `data` in a JSON body that the host signs, so it
//! can check that the event came from Herald.
//!
//! `type` names the event, such as `invoice.paid`. `data` is any JSON value
//! and is relayed unchanged. `id` is optional. When present it is the send's
//! idempotency key, so the same event enqueued twice, even as two messages,
//! reaches the receiver once. Without it the host derives the key from the
//! message id and the event type, which covers retries of one message.

use herald_sdk::{Error, Message, WebhookEvent, Worker, gateway, log};
use serde::Deserialize;
use serde_json::Value;

/// Name of the gateway that POSTs the event.
const GATEWAY: &str = "webhook";

/// Payload that the producer enqueues.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Relay {
    #[serde(rename = "type")]
    event_type: String,
    data: Value,
    id: Option<String>,
}

impl Relay {
    /// Parses and checks the payload of `message`. Every error fails the
    /// message, because an invalid payload never becomes valid on a retry.
    fn from_message(message: &Message) -> Result<Self, Error> {
        let relay: Relay = message.payload()?;

        if relay.event_type.is_empty() {
            return Err(Error::fail(
                "invalid payload: `type` is empty, expected an event type such as invoice.paid",
            ));
        }
        if relay
            .event_type
            .chars()
            .any(|character| character.is_whitespace() || character.is_control())
        {
            return Err(Error::fail(format!(
                "invalid payload: `type` {:?} contains whitespace or a control character, \
                 expected an event type such as invoice.paid",
                relay.event_type
            )));
        }
        if relay.id.as_ref().is_some_and(|id| id.trim().is_empty()) {
            return Err(Error::fail(
                "invalid payload: `id` is empty, leave it out or give the event's unique id",
            ));
        }

        Ok(relay)
    }

    fn into_event(self) -> Result<WebhookEvent, Error> {
        let mut event = WebhookEvent::new(self.event_type, &self.data)?;
        event.idempotency_key = self.id;
        Ok(event)
    }
}

/// Worker that relays the event.
struct WebhookRelay;

impl Worker for WebhookRelay {
    fn handle(message: &Message) -> Result<(), Error> {
        let event = Relay::from_message(message)?.into_event()?;

        // A 429 or 5xx response, or none at all, retries the message. Another
        // 4xx response fails it.
        let receipt = gateway::send_webhook(GATEWAY, message, &event)?;

        let status = if receipt.duplicate {
            "already relayed"
        } else {
            "relayed"
        };
        log::for_message(message).info(&format!(
            "event `{}` {status}, delivery {}",
            event.event_type, receipt.delivery_id
        ));
        Ok(())
    }
}

herald_sdk::export_worker!(WebhookRelay);

#[cfg(test)]
mod tests {
    use herald_sdk::Outcome;

    use super::*;

    fn message_with_payload(payload: &str) -> Message {
        Message::new(
            "0190b5a1-7c3e-7d2a-9f00-000000000001",
            "webhook-relay",
            payload,
            1,
            "2025-01-01T00:00:00Z",
        )
    }

    /// Returns the reason of the fail outcome that parsing `payload` gives.
    fn fail_reason(payload: &str) -> String {
        let error = Relay::from_message(&message_with_payload(payload)).unwrap_err();
        match Outcome::from(error) {
            Outcome::Fail(reason) => reason,
            other => panic!("expected a fail outcome, got {other:?}"),
        }
    }

    #[test]
    fn payload_becomes_event() {
        let message = message_with_payload(
            r#"{"type": "invoice.paid", "data": {"invoice_id": "in_1042"}, "id": "evt_81"}"#,
        );

        let event = Relay::from_message(&message).unwrap().into_event().unwrap();

        assert_eq!(event.event_type, "invoice.paid");
        assert_eq!(event.data, r#"{"invoice_id":"in_1042"}"#);
        assert_eq!(event.idempotency_key.as_deref(), Some("evt_81"));
    }

    #[test]
    fn event_without_id_has_no_key() {
        let message = message_with_payload(r#"{"type": "user.deleted", "data": {"id": 7}}"#);

        let event = Relay::from_message(&message).unwrap().into_event().unwrap();

        assert_eq!(event.idempotency_key, None);
    }

    #[test]
    fn any_json_data_is_relayed() {
        let cases = [
            (r#"[1, 2]"#, "[1,2]"),
            (r#""text""#, r#""text""#),
            ("null", "null"),
            ("4900", "4900"),
        ];

        for (data, expected) in cases {
            let payload = format!(r#"{{"type": "ping", "data": {data}}}"#);
            let event = Relay::from_message(&message_with_payload(&payload))
                .unwrap()
                .into_event()
                .unwrap();
            assert_eq!(event.data, expected, "{payload}");
        }
    }

    #[test]
    fn missing_fields_fail_naming_field() {
        let cases = [
            (r#"{"data": {}}"#, "type"),
            (r#"{"type": "invoice.paid"}"#, "data"),
        ];

        for (payload, field) in cases {
            let reason = fail_reason(payload);
            assert!(
                reason.contains(&format!("missing field `{field}`")),
                "{payload}: {reason}"
            );
        }
    }

    #[test]
    fn empty_type_fails() {
        let reason = fail_reason(r#"{"type": "", "data": {}}"#);

        assert!(reason.contains("`type` is empty"), "{reason}");
    }

    #[test]
    fn type_with_whitespace_fails() {
        let reason = fail_reason(r#"{"type": "invoice paid", "data": {}}"#);

        assert!(reason.contains("\"invoice paid\""), "{reason}");
        assert!(reason.contains("whitespace"), "{reason}");
    }

    #[test]
    fn empty_id_fails() {
        let reason = fail_reason(r#"{"type": "invoice.paid", "data": {}, "id": ""}"#);

        assert!(reason.contains("`id` is empty"), "{reason}");
    }

    #[test]
    fn unknown_field_fails() {
        let reason = fail_reason(r#"{"event": "invoice.paid", "data": {}}"#);

        assert!(reason.contains("unknown field `event`"), "{reason}");
    }
}
