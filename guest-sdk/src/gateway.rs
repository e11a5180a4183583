//! Sending notifications through the gateways that the operator configures.
//! A worker names a gateway and has no access to its address or credentials.
//!
//! Each channel has its own call: [`send_email`], [`send_sms`],
//! [`send_push`] and [`send_webhook`]. The operator's configuration decides
//! which gateway names exist and which channel each one serves.

use std::fmt;

use crate::bindings::herald::worker::gateway as wit;
use crate::email::Email;
use crate::message::Message;
use crate::push::Push;
use crate::sms::Sms;
use crate::webhook::WebhookEvent;

/// Sends `email` through the gateway named `gateway` on behalf of `message`.
///
/// `message` must belong to the batch being handled. The host records the
/// attempt in its delivery log. Without an
/// [`idempotency_key`](Email::idempotency_key) the host derives one from the
/// message id, the channel and the recipients. A retry of the same message to
/// the same recipients then returns the earlier receipt instead of sending
/// again.
///
/// # Errors
///
/// Returns [`SendError`] when the gateway does not take the email. With `?`
/// in [`Worker::handle`](crate::Worker::handle), transient and rate-limited
/// errors retry the message and the others fail it.
pub fn send_email(gateway: &str, message: &Message, email: &Email) -> Result<Receipt, SendError> {
    let email = wit::Email::from(email);
    wit::send_email(message.id(), gateway, &email)
        .map(Receipt::from)
        .map_err(SendError::from)
}

/// Sends the text message `sms` through the SMS gateway named `gateway` on
/// behalf of `message`, as [`send_email`] does.
///
/// Without an [`idempotency_key`](Sms::idempotency_key) the host derives one
/// from the message id and the recipient, which covers one text per number
/// and message.
///
/// ```no_run
/// use herald_sdk::{gateway, Error, Message, Sms};
///
/// fn send_code(message: &Message) -> Result<(), Error> {
///     let sms = Sms::new().to("+14155550123").body("Your code is 481516");
///     gateway::send_sms("sms", message, &sms)?;
///     Ok(())
/// }
/// ```
///
/// # Errors
///
/// Returns [`SendError`] when the gateway does not take the text, and
/// [`SendError::InvalidInput`] when `to` is not an E.164 number.
pub fn send_sms(gateway: &str, message: &Message, sms: &Sms) -> Result<Receipt, SendError> {
    let sms = wit::Sms::from(sms);
    wit::send_sms(message.id(), gateway, &sms)
        .map(Receipt::from)
        .map_err(SendError::from)
}

/// Sends the push notification `push` through the push gateway named
/// `gateway` on behalf of `message`, as [`send_email`] does.
///
/// Without an [`idempotency_key`](Push::idempotency_key) the host derives one
/// from the message id and the device token, which covers one notification
/// per device and message.
///
/// # Errors
///
/// Returns [`SendError`] when the gateway does not take the notification.
pub fn send_push(gateway: &str, message: &Message, push: &Push) -> Result<Receipt, SendError> {
    let push = wit::Push::from(push);
    wit::send_push(message.id(), gateway, &push)
        .map(Receipt::from)
        .map_err(SendError::from)
}

/// POSTs `event` as signed JSON through the webhook gateway named `gateway`
/// on behalf of `message`, as [`send_email`] does.
///
/// Without an [`idempotency_key`](WebhookEvent::idempotency_key) the host
/// derives one from the message id and the event type, which covers one
/// event per type and message.
///
/// ```no_run
/// use herald_sdk::{gateway, Error, Message, WebhookEvent};
/// use serde_json::json;
///
/// fn relay(message: &Message) -> Result<(), Error> {
///     let event = WebhookEvent::new("invoice.paid", &json!({"invoice_id": "in_1042"}))?;
///     gateway::send_webhook("webhook", message, &event)?;
///     Ok(())
/// }
/// ```
///
/// # Errors
///
/// Returns [`SendError`] when the receiver does not accept the event.
pub fn send_webhook(
    gateway: &str,
    message: &Message,
    event: &WebhookEvent,
) -> Result<Receipt, SendError> {
    let event = wit::WebhookEvent::from(event);
    wit::send_webhook(message.id(), gateway, &event)
        .map(Receipt::from)
        .map_err(SendError::from)
}

/// Proof that a gateway accepted a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Id of the row in the host's delivery log.
    pub delivery_id: String,
    /// Name of the gateway that took the notification.
    pub gateway: String,
    /// The provider's id for the notification: the Message-ID for SMTP, or
    /// the id in the provider's response for an HTTP provider.
    pub provider_id: String,
    /// True when the idempotency key had already been sent. The host did not
    /// send again and this receipt is the earlier one.
    pub duplicate: bool,
}

impl From<wit::Receipt> for Receipt {
    fn from(receipt: wit::Receipt) -> Self {
        Self {
            delivery_id: receipt.delivery_id,
            gateway: receipt.gateway,
            provider_id: receipt.provider_id,
            duplicate: receipt.duplicate,
        }
    }
}

/// Reason a send failed, classified by whether a retry can help. Each variant
/// carries the gateway's own message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// A temporary failure, such as an SMTP 4xx reply or a lost connection.
    /// A retry may succeed.
    Transient(String),
    /// The gateway rejected the notification for good, such as with an SMTP
    /// 5xx reply, or the gateway named is not configured. A retry fails too.
    Permanent(String),
    /// The gateway requested a slowdown.
    RateLimited {
        /// Message that the gateway returned.
        message: String,
        /// Seconds to wait before trying again.
        retry_after_seconds: u32,
    },
    /// The notification is malformed, such as an invalid address or phone
    /// number, or a header that contains CR or LF. It was not sent.
    InvalidInput(String),
}

impl SendError {
    /// Returns true when a later attempt may succeed, which is the case for
    /// [`SendError::Transient`] and [`SendError::RateLimited`].
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SendError::Transient(_) | SendError::RateLimited { .. }
        )
    }

    /// Returns the delay in seconds that a rate-limited gateway requested, or
    /// `None` for the other variants.
    pub fn retry_after_seconds(&self) -> Option<u32> {
        match self {
            SendError::RateLimited {
                retry_after_seconds,
                ..
            } => Some(*retry_after_seconds),
            _ => None,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Transient(message) => write!(f, "send failed temporarily: {message}"),
            SendError::Permanent(message) => write!(f, "send rejected permanently: {message}"),
            SendError::RateLimited {
                message,
                retry_after_seconds,
            } => write!(
                f,
                "send rate-limited, retry after {retry_after_seconds} s: {message}"
            ),
            SendError::InvalidInput(message) => {
                write!(f, "send rejected as invalid input: {message}")
            }
        }
    }
}

impl std::error::Error for SendError {}

impl From<wit::SendError> for SendError {
    fn from(error: wit::SendError) -> Self {
        match error {
            wit::SendError::Transient(message) => SendError::Transient(message),
            wit::SendError::Permanent(message) => SendError::Permanent(message),
            wit::SendError::RateLimited(limit) => SendError::RateLimited {
                message: limit.message,
                retry_after_seconds: limit.retry_after_seconds,
            },
            wit::SendError::InvalidInput(message) => SendError::InvalidInput(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_from_wit_copies_fields() {
        let receipt = Receipt::from(wit::Receipt {
            delivery_id: "delivery-1".to_string(),
            gateway: "email".to_string(),
            provider_id: "<abc@example.com>".to_string(),
            duplicate: true,
        });

        assert_eq!(receipt.delivery_id, "delivery-1");
        assert_eq!(receipt.gateway, "email");
        assert_eq!(receipt.provider_id, "<abc@example.com>");
        assert!(receipt.duplicate);
    }

    #[test]
    fn send_error_from_wit_keeps_variant() {
        assert_eq!(
            SendError::from(wit::SendError::Transient("timed out".to_string())),
            SendError::Transient("timed out".to_string())
        );
        assert_eq!(
            SendError::from(wit::SendError::Permanent("550".to_string())),
            SendError::Permanent("550".to_string())
        );
        assert_eq!(
            SendError::from(wit::SendError::RateLimited(wit::RateLimited {
                message: "slow down".to_string(),
                retry_after_seconds: 30,
            })),
            SendError::RateLimited {
                message: "slow down".to_string(),
                retry_after_seconds: 30,
            }
        );
        assert_eq!(
            SendError::from(wit::SendError::InvalidInput("bad address".to_string())),
            SendError::InvalidInput("bad address".to_string())
        );
    }

    #[test]
    fn send_error_classifies_retryable() {
        let rate_limited = SendError::RateLimited {
            message: "slow down".to_string(),
            retry_after_seconds: 30,
        };

        assert!(SendError::Transient("timed out".to_string()).is_retryable());
        assert!(rate_limited.is_retryable());
        assert!(!SendError::Permanent("550".to_string()).is_retryable());
        assert!(!SendError::InvalidInput("bad address".to_string()).is_retryable());
    }

    #[test]
    fn retry_after_only_for_rate_limited() {
        let rate_limited = SendError::RateLimited {
            message: "slow down".to_string(),
            retry_after_seconds: 30,
        };

        assert_eq!(rate_limited.retry_after_seconds(), Some(30));
        assert_eq!(
            SendError::Transient("timed out".to_string()).retry_after_seconds(),
            None
        );
        assert_eq!(
            SendError::Permanent("550".to_string()).retry_after_seconds(),
            None
        );
    }

    #[test]
    fn send_error_display_names_kind() {
        assert_eq!(
            SendError::Transient("connection reset".to_string()).to_string(),
            "send failed temporarily: connection reset"
        );
        assert_eq!(
            SendError::Permanent("gateway `sms` is not configured".to_string()).to_string(),
            "send rejected permanently: gateway `sms` is not configured"
        );
        assert_eq!(
            SendError::InvalidInput("invalid phone number `555`".to_string()).to_string(),
            "send rejected as invalid input: invalid phone number `555`"
        );
    }
}
