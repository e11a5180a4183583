//! Sample Herald worker that sends a push notification to one device.
//!
//! It takes a payload such as
//!
//! ```json
//! {
//!   "token": "dGhpcy1pcy1hLWRldmljZS10b2tlbg",
//!   "title": "Order shipped",
//!   "body": "Your order 1042 is on its way.",
//!   "data": {"order_id": "1042", "screen": "orders"}
//! }
//! ```
//!
//! and sends one notification through the gateway named `push`, such as a
//! gateway of kind `fcm`. `token` is the registration token that the app got
//! from the push service on the device. `title`, `body` and `data` are each
//! optional, but a notification needs at least one of them. `data` reaches
//! the app as string pairs, so numbers and booleans in it are sent as their
//! JSON text (`1042`, `true`).
//!
//! The host derives the idempotency key from the message id and the token,
//! so a retried message does not notify the same device twice.

use herald_sdk::{Error, Message, Push, Worker, gateway, log};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Name of the gateway that sends the notification.
const GATEWAY: &str = "push";

/// Payload that the producer enqueues, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushPayload {
    token: String,
    title: Option<String>,
    body: Option<String>,
    #[serde(default)]
    data: Map<String, Value>,
}

/// A checked notification.
#[derive(Debug, PartialEq)]
struct Notification {
    token: String,
    title: Option<String>,
    body: Option<String>,
    /// Data for the app, in key order.
    data: Vec<(String, String)>,
}

impl Notification {
    /// Parses and checks the payload of `message`. Every error fails the
    /// message, because an invalid payload never becomes valid on a retry.
    fn from_message(message: &Message) -> Result<Self, Error> {
        let payload: PushPayload = message.payload()?;

        if payload.token.trim().is_empty() {
            return Err(Error::fail(
                "invalid payload: `token` is empty, expected the device's registration token",
            ));
        }
        if payload.token.chars().any(char::is_whitespace) {
            return Err(Error::fail(format!(
                "invalid payload: `token` {:?} contains whitespace, \
                 expected the registration token exactly as the app received it",
                payload.token
            )));
        }
        for (field, value) in [("title", &payload.title), ("body", &payload.body)] {
            if value.as_ref().is_some_and(|text| text.trim().is_empty()) {
                return Err(Error::fail(format!(
                    "invalid payload: `{field}` is empty, leave it out or give it text"
                )));
            }
        }
        if payload.title.is_none() && payload.body.is_none() && payload.data.is_empty() {
            return Err(Error::fail(
                "invalid payload: the notification is empty, \
                 set at least one of `title`, `body` and `data`",
            ));
        }

        // serde_json's map is sorted by key, so the pairs are in key order.
        let mut data = Vec::with_capacity(payload.data.len());
        for (key, value) in payload.data {
            let text = data_text(&key, value)?;
            data.push((key, text));
        }

        Ok(Self {
            token: payload.token,
            title: payload.title,
            body: payload.body,
            data,
        })
    }

    fn into_push(self) -> Push {
        let mut push = Push::new().token(self.token);
        push.title = self.title;
        push.body = self.body;
        push.data = self.data;
        push
    }
}

/// Returns the text of the data value at `key`: a string as it is, and a
/// number or boolean as its JSON text.
fn data_text(key: &str, value: Value) -> Result<String, Error> {
    match value {
        Value::String(text) => Ok(text),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        other => Err(Error::fail(format!(
            "invalid payload: `data.{key}` is {other}, expected a string, number or boolean, \
             because push data reaches the app as text"
        ))),
    }
}

/// Worker that sends the notification.
struct PushNotify;

impl Worker for PushNotify {
    fn handle(message: &Message) -> Result<(), Error> {
        let push = Notification::from_message(message)?.into_push();

        // Transient and rate-limited errors retry the message. A token that
        // the push service no longer accepts fails it.
        let receipt = gateway::send_push(GATEWAY, message, &push)?;

        let status = if receipt.duplicate {
            "already sent"
        } else {
            "sent"
        };
        log::for_message(message).info(&format!(
            "push notification {status}, delivery {}",
            receipt.delivery_id
        ));
        Ok(())
    }
}

herald_sdk::export_worker!(PushNotify);

#[cfg(test)]
mod tests {
    use herald_sdk::Outcome;

    use super::*;

    fn message_with_payload(payload: &str) -> Message {
        Message::new(
            "0190b5a1-7c3e-7d2a-9f00-000000000001",
            "push-notify",
            payload,
            1,
            "2025-01-01T00:00:00Z",
        )
    }

    fn parse(payload: &str) -> Notification {
        Notification::from_message(&message_with_payload(payload)).unwrap()
    }

    /// Returns the reason of the fail outcome that parsing `payload` gives.
    fn fail_reason(payload: &str) -> String {
        let error = Notification::from_message(&message_with_payload(payload)).unwrap_err();
        match Outcome::from(error) {
            Outcome::Fail(reason) => reason,
            other => panic!("expected a fail outcome, got {other:?}"),
        }
    }

    #[test]
    fn full_payload_parses() {
        let notification = parse(
            r#"{"token": "device-1", "title": "Order shipped", "body": "On its way",
                "data": {"screen": "orders", "order_id": "1042"}}"#,
        );

        assert_eq!(notification.token, "device-1");
        assert_eq!(notification.title.as_deref(), Some("Order shipped"));
        assert_eq!(notification.body.as_deref(), Some("On its way"));
        assert_eq!(
            notification.data,
            [
                ("order_id".to_string(), "1042".to_string()),
                ("screen".to_string(), "orders".to_string()),
            ]
        );
    }

    #[test]
    fn any_one_part_is_enough() {
        let cases = [
            r#"{"token": "device-1", "title": "Hi"}"#,
            r#"{"token": "device-1", "body": "Hi"}"#,
            r#"{"token": "device-1", "data": {"sync": "inbox"}}"#,
        ];

        for payload in cases {
            assert!(
                Notification::from_message(&message_with_payload(payload)).is_ok(),
                "{payload}"
            );
        }
    }

    #[test]
    fn scalar_data_becomes_text() {
        let notification =
            parse(r#"{"token": "device-1", "data": {"count": 3, "ratio": 0.5, "urgent": true}}"#);

        assert_eq!(
            notification.data,
            [
                ("count".to_string(), "3".to_string()),
                ("ratio".to_string(), "0.5".to_string()),
                ("urgent".to_string(), "true".to_string()),
            ]
        );
    }

    #[test]
    fn nested_data_fails_naming_key() {
        let cases = [
            (
                r#"{"token": "d", "data": {"order": {"id": 1}}}"#,
                "`data.order`",
            ),
            (r#"{"token": "d", "data": {"ids": [1, 2]}}"#, "`data.ids`"),
            (r#"{"token": "d", "data": {"note": null}}"#, "`data.note`"),
        ];

        for (payload, field) in cases {
            let reason = fail_reason(payload);
            assert!(reason.contains(field), "{payload}: {reason}");
            assert!(reason.contains("expected a string"), "{payload}: {reason}");
        }
    }

    #[test]
    fn empty_notification_fails() {
        let reason = fail_reason(r#"{"token": "device-1"}"#);

        assert!(reason.contains("the notification is empty"), "{reason}");
    }

    #[test]
    fn empty_title_or_body_fails() {
        let cases = [
            (
                r#"{"token": "d", "title": "", "body": "Hi"}"#,
                "`title` is empty",
            ),
            (
                r#"{"token": "d", "title": "Hi", "body": " "}"#,
                "`body` is empty",
            ),
        ];

        for (payload, expected) in cases {
            let reason = fail_reason(payload);
            assert!(reason.contains(expected), "{payload}: {reason}");
        }
    }

    #[test]
    fn missing_or_empty_token_fails() {
        let missing = fail_reason(r#"{"title": "Hi"}"#);
        let empty = fail_reason(r#"{"token": "", "title": "Hi"}"#);

        assert!(missing.contains("missing field `token`"), "{missing}");
        assert!(empty.contains("`token` is empty"), "{empty}");
    }

    #[test]
    fn token_with_whitespace_fails() {
        let reason = fail_reason(r#"{"token": "device 1", "title": "Hi"}"#);

        assert!(reason.contains("contains whitespace"), "{reason}");
        assert!(reason.contains("\"device 1\""), "{reason}");
    }

    #[test]
    fn unknown_field_fails() {
        let reason = fail_reason(r#"{"token": "device-1", "titel": "Hi"}"#);

        assert!(reason.contains("unknown field `titel`"), "{reason}");
    }

    #[test]
    fn into_push_copies_fields() {
        let push = parse(r#"{"token": "device-1", "title": "Hi", "data": {"a": "1"}}"#).into_push();

        assert_eq!(push.token, "device-1");
        assert_eq!(push.title.as_deref(), Some("Hi"));
        assert_eq!(push.body, None);
        assert_eq!(push.data, [("a".to_string(), "1".to_string())]);
        assert_eq!(push.idempotency_key, None);
    }
}
