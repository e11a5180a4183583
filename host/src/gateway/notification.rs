//! The channels and what a worker sends on each: the SMS, push and webhook
//! notifications, and the checks they pass before any gateway receives them.
//! Email has its own module, [`super::email`], because it is formatted too.

use std::fmt;

use super::SendError;

/// Maximum length of an SMS body, in characters. Providers split long texts into
/// segments and refuse beyond about ten of them.
const SMS_MAX_CHARS: usize = 1_600;

/// Largest push data, in bytes of keys and values together.
const PUSH_DATA_MAX_BYTES: usize = 4_096;

/// Maximum length of a device token, in bytes.
const PUSH_TOKEN_MAX_BYTES: usize = 4_096;

/// Maximum length of a webhook event type, in bytes.
const EVENT_TYPE_MAX_BYTES: usize = 256;

/// A delivery channel. Each gateway kind delivers on exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Email: `smtp`, `outbox` and `sendgrid` gateways.
    Email,
    /// Text messages: `twilio` gateways.
    Sms,
    /// Push notifications: `fcm` gateways.
    Push,
    /// Signed HTTP callbacks: `webhook` gateways.
    Webhook,
}

impl Channel {
    /// Returns the name used in the delivery log and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Push => "push",
            Self::Webhook => "webhook",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sms {
    /// Recipient in E.164 form.
    pub to: String,
    /// Sender number or alphanumeric id; the gateway's `from` when `None`.
    pub from: Option<String>,
    /// Message text.
    pub body: String,
}

/// A push notification to one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The device's registration token.
    pub token: String,
    /// Title shown in the notification.
    pub title: Option<String>,
    /// Text shown in the notification.
    pub body: Option<String>,
    /// Key-value data for the app, in the worker's order.
    pub data: Vec<(String, String)>,
}

/// An event for a webhook gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// Event type, such as `invoice.paid`.
    pub event_type: String,
    /// Event data.
    pub data: serde_json::Value,
}

impl Sms {
    /// Checks the numbers and the text.
    pub fn validate(&self) -> Result<(), SendError> {
        check_phone("to", &self.to)?;
        if let Some(from) = &self.from
            && !is_valid_sms_sender(from)
        {
            return Err(SendError::InvalidInput(format!(
                "invalid sender \"{from}\" in from; use an E.164 number such as +14155550123 \
                 or an alphanumeric sender id of 1 to 11 letters, digits and spaces"
            )));
        }
        if self.body.trim().is_empty() {
            return Err(SendError::InvalidInput(
                "sms body is empty; set the text to send".into(),
            ));
        }
        let length = self.body.chars().count();
        if length > SMS_MAX_CHARS {
            return Err(SendError::InvalidInput(format!(
                "sms body has {length} characters; shorten it to at most {SMS_MAX_CHARS}"
            )));
        }
        Ok(())
    }
}

impl Push {
    /// Checks the token, the text and the data.
    pub fn validate(&self) -> Result<(), SendError> {
        let token_ok = !self.token.is_empty()
            && self.token.len() <= PUSH_TOKEN_MAX_BYTES
            && self.token.bytes().all(|byte| byte.is_ascii_graphic());
        if !token_ok {
            return Err(SendError::InvalidInput(format!(
                "invalid device token \"{}\"; pass the registration token the app reported, \
                 printable ASCII of at most {PUSH_TOKEN_MAX_BYTES} bytes",
                abbreviate(&self.token)
            )));
        }
        if self.title.is_none() && self.body.is_none() && self.data.is_empty() {
            return Err(SendError::InvalidInput(
                "push notification is empty; set a title, a body or data".into(),
            ));
        }
        let mut size = 0;
        for (key, value) in &self.data {
            let lower = key.to_ascii_lowercase();
            let reserved = key.is_empty()
                || matches!(lower.as_str(), "from" | "notification" | "message_type")
                || lower.starts_with("google")
                || lower.starts_with("gcm");
            if reserved {
                return Err(SendError::InvalidInput(format!(
                    "push data key \"{key}\" is empty or reserved by the push service; \
                     rename it"
                )));
            }
            size += key.len() + value.len();
        }
        if size > PUSH_DATA_MAX_BYTES {
            return Err(SendError::InvalidInput(format!(
                "push data is {size} bytes; keep keys and values under \
                 {PUSH_DATA_MAX_BYTES} bytes in total"
            )));
        }
        Ok(())
    }
}

impl WebhookEvent {
    /// Parses the worker's JSON data and checks the event type.
    pub fn new(event_type: String, data: &str) -> Result<Self, SendError> {
        let type_ok = !event_type.is_empty()
            && event_type.len() <= EVENT_TYPE_MAX_BYTES
            && event_type.bytes().all(|byte| byte.is_ascii_graphic());
        if !type_ok {
            return Err(SendError::InvalidInput(format!(
                "invalid event type \"{}\"; use printable ASCII without spaces, \
                 at most {EVENT_TYPE_MAX_BYTES} bytes, such as invoice.paid",
                abbreviate(&event_type)
            )));
        }
        let data = serde_json::from_str(data).map_err(|error| {
            SendError::InvalidInput(format!(
                "webhook data for \"{event_type}\" is not valid JSON: {error}"
            ))
        })?;
        Ok(Self { event_type, data })
    }
}

/// Returns true for a sender an SMS provider accepts: an E.164 number or an
/// alphanumeric sender id.
pub fn is_valid_sms_sender(text: &str) -> bool {
    check_phone("from", text).is_ok() || is_sender_id(text)
}

/// Checks that `number` is in E.164 form: `+`, then 7 to 15 digits that do
/// not start with 0.
fn check_phone(field: &str, number: &str) -> Result<(), SendError> {
    let digits = number.strip_prefix('+').unwrap_or("");
    let valid = (7..=15).contains(&digits.len())
        && digits.bytes().all(|byte| byte.is_ascii_digit())
        && !digits.starts_with('0');
    if valid {
        Ok(())
    } else {
        Err(SendError::InvalidInput(format!(
            "invalid phone number \"{}\" in {field}; use E.164 form: + and the country code, \
             then the number, digits only, such as +14155550123",
            abbreviate(number)
        )))
    }
}

/// Returns true for an alphanumeric sender id: 1 to 11 ASCII letters, digits
/// and spaces, with at least one letter.
fn is_sender_id(text: &str) -> bool {
    (1..=11).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b' ')
        && text.bytes().any(|byte| byte.is_ascii_alphabetic())
}

/// Shortens untrusted text for an error message.
fn abbreviate(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    if text.chars().count() <= MAX_CHARS {
        return text.escape_debug().to_string();
    }
    let head: String = text.chars().take(MAX_CHARS).collect();
    format!("{}…", head.escape_debug())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(to: &str) -> Sms {
        Sms {
            to: to.into(),
            from: None,
            body: "Your code is 123456".into(),
        }
    }

    #[test]
    fn e164_numbers_pass() {
        for number in ["+14155550123", "+447911123456", "+6834002"] {
            assert_eq!(sms(number).validate(), Ok(()), "{number}");
        }
    }

    #[test]
    fn malformed_numbers_are_invalid_input() {
        for number in [
            "4155550123",
            "+1 415 555 0123",
            "+0123456789",
            "+123",
            "+1234567890123456",
            "+1415555012a",
            "",
            "+1415\r\n5550123",
        ] {
            let error = sms(number).validate().unwrap_err();
            let SendError::InvalidInput(message) = error else {
                panic!("{number}: expected invalid-input, got {error:?}");
            };
            assert!(message.contains("E.164"), "{message}");
        }
    }

    #[test]
    fn sender_may_be_a_number_or_an_id() {
        let mut message = sms("+14155550123");
        for from in ["+15005550006", "Herald", "ACME 2"] {
            message.from = Some(from.into());
            assert_eq!(message.validate(), Ok(()), "{from}");
        }
        for from in ["", "A very long sender", "Bad\nid"] {
            message.from = Some(from.into());
            assert!(message.validate().is_err(), "{from:?}");
        }
    }

    #[test]
    fn empty_and_long_bodies_are_invalid() {
        let mut message = sms("+14155550123");
        message.body = "  ".into();
        assert!(message.validate().is_err());
        message.body = "x".repeat(SMS_MAX_CHARS + 1);
        assert!(message.validate().is_err());
    }

    #[test]
    fn push_checks_token_content_and_reserved_keys() {
        let push = Push {
            token: "device-token-1".into(),
            title: Some("Build finished".into()),
            body: None,
            data: vec![("build".into(), "42".into())],
        };
        assert_eq!(push.validate(), Ok(()));
        let bad_token = Push {
            token: "has space".into(),
            ..push.clone()
        };
        assert!(bad_token.validate().is_err());
        let empty = Push {
            title: None,
            data: Vec::new(),
            ..push.clone()
        };
        assert!(empty.validate().is_err());
        let reserved = Push {
            data: vec![("google.priority".into(), "high".into())],
            ..push
        };
        assert!(reserved.validate().is_err());
    }

    #[test]
    fn webhook_event_needs_a_type_and_json() {
        let event = WebhookEvent::new("invoice.paid".into(), r#"{"id": 7}"#).unwrap();
        assert_eq!(event.data["id"], 7);
        assert!(WebhookEvent::new("invoice paid".into(), "{}").is_err());
        assert!(WebhookEvent::new("invoice.paid".into(), "{not json").is_err());
    }
}
