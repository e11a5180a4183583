//! Sample Herald worker that sends an alert as a text message.
//!
//! It takes a payload with the recipient's phone number and either the text
//! itself:
//!
//! ```json
//! {"phone": "+14155550123", "text": "db-1: disk 91% full"}
//! ```
//!
//! or the name of a stored template and the context to render it with:
//!
//! ```json
//! {"phone": "+14155550123", "template": "disk-alert", "context": {"host": "db-1", "percent": 91}}
//! ```
//!
//! and sends one text message through the gateway named `sms`, such as a
//! gateway of kind `twilio`. The number must be in E.164 form: `+`, the
//! country code and the subscriber number, digits only. A stored template
//! must have a `text` part, which becomes the message body. Upload one with,
//! for example:
//!
//! ```sh
//! curl -X PUT http://127.0.0.1:7600/v1/templates/disk-alert \
//!   -H 'Content-Type: application/json' \
//!   --data '{"text": "{{ host }}: disk {{ percent }}% full"}'
//! ```
//!
//! The host derives the idempotency key from the message id and the number,
//! so a retried message does not text the same number twice.

mod phone;

use herald_sdk::{Error, Message, Sms, Worker, gateway, log, template};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Name of the gateway that sends the text message.
const GATEWAY: &str = "sms";

/// Payload that the alerting system enqueues, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertPayload {
    phone: String,
    text: Option<String>,
    template: Option<String>,
    context: Option<Map<String, Value>>,
}

/// A checked alert.
#[derive(Debug, PartialEq)]
struct Alert {
    /// Recipient in E.164 form.
    phone: String,
    content: Content,
}

/// Content of the text message.
#[derive(Debug, PartialEq)]
enum Content {
    /// The text as given.
    Text(String),
    /// A stored template and the context to render it with.
    Template {
        name: String,
        context: Map<String, Value>,
    },
}

impl Alert {
    /// Parses and checks the payload of `message`. Every error fails the
    /// message, because an invalid payload never becomes valid on a retry.
    fn from_message(message: &Message) -> Result<Self, Error> {
        let payload: AlertPayload = message.payload()?;

        phone::check_e164(&payload.phone).map_err(Error::fail)?;
        let content = match (payload.text, payload.template, payload.context) {
            (Some(_), Some(_), _) => {
                return Err(Error::fail(
                    "invalid payload: both `text` and `template` are set, \
                     set `text` for a fixed message or `template` for a stored template",
                ));
            }
            (None, None, _) => {
                return Err(Error::fail(
                    "invalid payload: missing `text` or `template`, \
                     set `text` to the message or `template` to the name of a stored template",
                ));
            }
            (Some(_), None, Some(_)) => {
                return Err(Error::fail(
                    "invalid payload: `context` is set without `template`, \
                     remove it or name the stored template to render",
                ));
            }
            (Some(text), None, None) => {
                if text.trim().is_empty() {
                    return Err(Error::fail(
                        "invalid payload: `text` is empty, expected the alert to send",
                    ));
                }
                Content::Text(text)
            }
            (None, Some(name), context) => {
                if name.trim().is_empty() {
                    return Err(Error::fail(
                        "invalid payload: `template` is empty, expected the name of a stored \
                         template such as disk-alert",
                    ));
                }
                Content::Template {
                    name,
                    context: context.unwrap_or_default(),
                }
            }
        };

        Ok(Self {
            phone: payload.phone,
            content,
        })
    }
}

/// Worker that sends the alert.
struct SmsAlert;

impl Worker for SmsAlert {
    fn handle(message: &Message) -> Result<(), Error> {
        let alert = Alert::from_message(message)?;

        let sms = match alert.content {
            Content::Text(text) => Sms::new().to(alert.phone).body(text),
            Content::Template { name, context } => {
                // A missing template or an undefined variable fails the
                // message here, before the gateway is called.
                let rendered = template::render_stored(&name, &context)?;
                let Some(text) = rendered.text else {
                    return Err(Error::fail(format!(
                        "stored template `{name}` version {} has no `text` part, which becomes \
                         the text message. Add one with PUT /v1/templates/{name}",
                        rendered.template.version
                    )));
                };
                Sms::new()
                    .to(alert.phone)
                    .body(text)
                    .template(rendered.template)
            }
        };

        // Transient and rate-limited errors retry the message. An invalid
        // number or a rejected text fails it.
        let receipt = gateway::send_sms(GATEWAY, message, &sms)?;

        let status = if receipt.duplicate {
            "already sent"
        } else {
            "sent"
        };
        log::for_message(message)
            .info(&format!("alert {status}, delivery {}", receipt.delivery_id));
        Ok(())
    }
}

herald_sdk::export_worker!(SmsAlert);

#[cfg(test)]
mod tests {
    use herald_sdk::Outcome;
    use serde_json::json;

    use super::*;

    fn message_with_payload(payload: &str) -> Message {
        Message::new(
            "0190b5a1-7c3e-7d2a-9f00-000000000001",
            "sms-alert",
            payload,
            1,
            "2025-01-01T00:00:00Z",
        )
    }

    /// Returns the reason of the fail outcome that parsing `payload` gives.
    fn fail_reason(payload: &str) -> String {
        let error = Alert::from_message(&message_with_payload(payload)).unwrap_err();
        match Outcome::from(error) {
            Outcome::Fail(reason) => reason,
            other => panic!("expected a fail outcome, got {other:?}"),
        }
    }

    #[test]
    fn text_payload_parses() {
        let message =
            message_with_payload(r#"{"phone": "+14155550123", "text": "db-1: disk 91% full"}"#);

        let alert = Alert::from_message(&message).unwrap();

        assert_eq!(alert.phone, "+14155550123");
        assert_eq!(
            alert.content,
            Content::Text("db-1: disk 91% full".to_string())
        );
    }

    #[test]
    fn template_payload_parses() {
        let message = message_with_payload(
            r#"{"phone": "+447700900123", "template": "disk-alert",
                "context": {"host": "db-1", "percent": 91}}"#,
        );

        let alert = Alert::from_message(&message).unwrap();

        let Content::Template { name, context } = alert.content else {
            panic!("expected a template, got {:?}", alert.content);
        };
        assert_eq!(name, "disk-alert");
        assert_eq!(context.get("host"), Some(&json!("db-1")));
        assert_eq!(context.get("percent"), Some(&json!(91)));
    }

    #[test]
    fn template_without_context_renders_empty() {
        let message =
            message_with_payload(r#"{"phone": "+14155550123", "template": "disk-alert"}"#);

        let alert = Alert::from_message(&message).unwrap();

        assert_eq!(
            alert.content,
            Content::Template {
                name: "disk-alert".to_string(),
                context: Map::new(),
            }
        );
    }

    #[test]
    fn invalid_phone_fails_naming_e164() {
        let reason = fail_reason(r#"{"phone": "(415) 555-0123", "text": "hi"}"#);

        assert!(reason.contains("`phone`"), "{reason}");
        assert!(reason.contains("\"(415) 555-0123\""), "{reason}");
        assert!(reason.contains("E.164"), "{reason}");
    }

    #[test]
    fn missing_phone_fails() {
        let reason = fail_reason(r#"{"text": "hi"}"#);

        assert!(reason.contains("missing field `phone`"), "{reason}");
    }

    #[test]
    fn both_text_and_template_fail() {
        let reason =
            fail_reason(r#"{"phone": "+14155550123", "text": "hi", "template": "disk-alert"}"#);

        assert!(reason.contains("both `text` and `template`"), "{reason}");
    }

    #[test]
    fn neither_text_nor_template_fails() {
        let reason = fail_reason(r#"{"phone": "+14155550123"}"#);

        assert!(reason.contains("missing `text` or `template`"), "{reason}");
    }

    #[test]
    fn context_without_template_fails() {
        let reason = fail_reason(r#"{"phone": "+14155550123", "text": "hi", "context": {"a": 1}}"#);

        assert!(
            reason.contains("`context` is set without `template`"),
            "{reason}"
        );
    }

    #[test]
    fn empty_text_fails() {
        let reason = fail_reason(r#"{"phone": "+14155550123", "text": "  "}"#);

        assert!(reason.contains("`text` is empty"), "{reason}");
    }

    #[test]
    fn empty_template_name_fails() {
        let reason = fail_reason(r#"{"phone": "+14155550123", "template": ""}"#);

        assert!(reason.contains("`template` is empty"), "{reason}");
    }

    #[test]
    fn context_must_be_object() {
        let reason =
            fail_reason(r#"{"phone": "+14155550123", "template": "disk-alert", "context": [1]}"#);

        assert!(reason.starts_with("invalid payload: "), "{reason}");
        assert!(reason.contains("expected a map"), "{reason}");
    }

    #[test]
    fn unknown_field_fails() {
        let reason = fail_reason(r#"{"phone": "+14155550123", "txt": "hi"}"#);

        assert!(reason.contains("unknown field `txt`"), "{reason}");
    }
}
