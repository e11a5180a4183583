//! Sample Herald worker that sends a welcome email with a verification link.
//!
//! It takes a payload such as
//! `{"email": "ada@example.com", "name": "Ada", "token": "abc123"}` and sends
//! one email through the gateway named `email`. The verification link starts
//! with the `verify_url` setting, or with `https://example.com/verify` when
//! the operator did not set it.

mod link;

use herald_sdk::{Email, Error, Message, Worker, config, gateway, log, template};
use serde::{Deserialize, Serialize};

/// Name of the gateway that sends the email.
const GATEWAY: &str = "email";

/// Base of the verification link when the `verify_url` setting is not set.
const DEFAULT_VERIFY_URL: &str = "https://example.com/verify";

const SUBJECT_TEMPLATE: &str = "Welcome to Example{% if name %}, {{ name }}{% endif %}";

const TEXT_TEMPLATE: &str = "\
Hi{% if name %} {{ name }}{% endif %},

Thanks for signing up for Example. Confirm your email address by opening this link:

{{ verify_url }}

If you did not sign up, you can ignore this email.
";

const HTML_TEMPLATE: &str = r#"<!DOCTYPE html>
<html>
<body>
<p>Hi{% if name %} {{ name }}{% endif %},</p>
<p>Thanks for signing up for Example. Confirm your email address:</p>
<p><a href="{{ verify_url }}">Verify my email address</a></p>
<p>If the link does not work, paste this address into your browser:<br>{{ verify_url }}</p>
<p>If you did not sign up, you can ignore this email.</p>
</body>
</html>
"#;

/// Payload that the sign-up service enqueues.
#[derive(Debug, Deserialize)]
struct Signup {
    email: String,
    name: String,
    token: String,
}

impl Signup {
    /// Parses and checks the payload of `message`. Every error fails the
    /// message, because an invalid payload never becomes valid on a retry.
    fn from_message(message: &Message) -> Result<Self, Error> {
        let signup: Signup = message.payload()?;

        if signup.email.trim().is_empty() {
            return Err(Error::fail(
                "invalid payload: `email` is empty, expected an address such as ada@example.com",
            ));
        }
        if signup.token.is_empty() {
            return Err(Error::fail(
                "invalid payload: `token` is empty, expected the verification token",
            ));
        }
        // The name goes into the subject line, where a line break would start
        // a new header.
        if signup.name.chars().any(char::is_control) {
            return Err(Error::fail(format!(
                "invalid payload: `name` {:?} contains a control character such as a line break",
                signup.name
            )));
        }

        Ok(signup)
    }
}

/// Values that the templates substitute.
#[derive(Serialize)]
struct WelcomeContext<'a> {
    /// The user's name, or empty for a greeting without a name.
    name: &'a str,
    verify_url: &'a str,
}

/// Worker that sends the welcome email.
struct WelcomeEmail;

impl Worker for WelcomeEmail {
    fn handle(message: &Message) -> Result<(), Error> {
        let signup = Signup::from_message(message)?;

        let base_url = config::get("verify_url")
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| DEFAULT_VERIFY_URL.to_string());
        let verify_url = link::verification_link(&base_url, &signup.token);
        let context = WelcomeContext {
            name: signup.name.trim(),
            verify_url: &verify_url,
        };

        let email = Email::new()
            .to(signup.email.trim())
            .subject(template::render_text(SUBJECT_TEMPLATE, &context)?)
            .text(template::render_text(TEXT_TEMPLATE, &context)?)
            .html(template::render_html(HTML_TEMPLATE, &context)?);

        // Without an idempotency key the host derives one from the message id,
        // the channel and the recipients. A retry of this message then returns
        // the earlier receipt instead of sending again.
        let receipt = gateway::send_email(GATEWAY, message, &email)?;

        let status = if receipt.duplicate {
            "already sent"
        } else {
            "sent"
        };
        log::for_message(message).info(&format!(
            "welcome email {status}, delivery {}",
            receipt.delivery_id
        ));
        Ok(())
    }
}

herald_sdk::export_worker!(WelcomeEmail);

#[cfg(test)]
mod tests {
    use herald_sdk::Outcome;

    use super::*;

    fn message_with_payload(payload: &str) -> Message {
        Message::new(
            "0190b5a1-7c3e-7d2a-9f00-000000000001",
            "signups",
            payload,
            1,
            "2025-01-01T00:00:00Z",
        )
    }

    /// Returns the reason of the fail outcome that parsing `payload` gives.
    fn fail_reason(payload: &str) -> String {
        let error = Signup::from_message(&message_with_payload(payload)).unwrap_err();
        match Outcome::from(error) {
            Outcome::Fail(reason) => reason,
            other => panic!("expected a fail outcome, got {other:?}"),
        }
    }

    #[test]
    fn valid_payload_parses() {
        let message = message_with_payload(
            r#"{"email": "ada@example.com", "name": "Ada", "token": "abc123"}"#,
        );

        let signup = Signup::from_message(&message).unwrap();

        assert_eq!(signup.email, "ada@example.com");
        assert_eq!(signup.name, "Ada");
        assert_eq!(signup.token, "abc123");
    }

    #[test]
    fn missing_fields_fail_naming_field() {
        let cases = [
            (r#"{"name": "Ada", "token": "abc123"}"#, "email"),
            (r#"{"email": "ada@example.com", "token": "abc123"}"#, "name"),
            (r#"{"email": "ada@example.com", "name": "Ada"}"#, "token"),
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
    fn empty_email_fails() {
        let reason = fail_reason(r#"{"email": " ", "name": "Ada", "token": "abc123"}"#);

        assert!(reason.contains("`email` is empty"), "{reason}");
    }

    #[test]
    fn empty_token_fails() {
        let reason = fail_reason(r#"{"email": "ada@example.com", "name": "Ada", "token": ""}"#);

        assert!(reason.contains("`token` is empty"), "{reason}");
    }

    #[test]
    fn name_with_line_break_fails() {
        let reason = fail_reason(
            r#"{"email": "ada@example.com", "name": "Ada\r\nBcc: x@example.com", "token": "t"}"#,
        );

        assert!(reason.contains("`name`"), "{reason}");
        assert!(reason.contains("control character"), "{reason}");
    }

    #[test]
    fn empty_name_is_allowed() {
        let message =
            message_with_payload(r#"{"email": "ada@example.com", "name": "", "token": "abc123"}"#);

        assert!(Signup::from_message(&message).is_ok());
    }

    #[test]
    fn invalid_json_fails() {
        let reason = fail_reason("not json");

        assert!(reason.starts_with("invalid payload: "), "{reason}");
    }
}
