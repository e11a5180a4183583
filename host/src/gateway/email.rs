//! Validating a worker's email and turning it into an RFC 5322 message.
//!
//! Everything a worker controls is checked here, before any gateway sees it:
//! addresses must parse, header values must not contain CR or LF (which could
//! inject headers), and headers the host sets itself cannot be overridden.

use std::str::FromStr;
use std::time::SystemTime;

use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use super::{SendError, mime};

/// An email as a worker asked for it, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// Sender; the gateway's default when `None`.
    pub from: Option<String>,
    /// Primary recipients.
    pub to: Vec<String>,
    /// Carbon-copy recipients.
    pub cc: Vec<String>,
    /// Blind carbon-copy recipients.
    pub bcc: Vec<String>,
    /// Reply address.
    pub reply_to: Option<String>,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: Option<String>,
    /// HTML body.
    pub html: Option<String>,
    /// Extra headers as name and value.
    pub headers: Vec<(String, String)>,
}

/// A validated email, formatted and ready for any gateway.
#[derive(Debug, Clone)]
pub struct PreparedEmail {
    /// The Message-ID header value, with angle brackets.
    pub message_id: String,
    /// Every envelope recipient's address, without display names, in the
    /// order to, cc, bcc, without duplicates.
    pub recipients: Vec<String>,
    /// SMTP envelope.
    pub envelope: Envelope,
    /// The formatted message, CRLF line endings.
    pub bytes: Vec<u8>,
}

/// Headers that the host sets from the email's fields; a worker may not add
/// them as extra headers.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "sender",
    "return-path",
];

/// Validates `email` and formats it with `default_from` as the sender unless
/// the email names one, and `<{unique}@{sender's domain}>` as its Message-ID.
pub fn prepare(
    email: &OutgoingEmail,
    default_from: &Mailbox,
    unique: &str,
) -> Result<PreparedEmail, SendError> {
    let from = match &email.from {
        Some(from) => parse_mailbox("from", from)?,
        None => default_from.clone(),
    };
    if email.to.is_empty() && email.cc.is_empty() && email.bcc.is_empty() {
        return Err(SendError::InvalidInput(
            "email has no recipients; set at least one of to, cc and bcc".into(),
        ));
    }
    check_no_line_breaks("subject", &email.subject)?;
    if email.text.is_none() && email.html.is_none() {
        return Err(SendError::InvalidInput(
            "email has no body; set text, html or both".into(),
        ));
    }

    let message_id = format!("<{unique}@{}>", from.email.domain());
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(email.subject.clone())
        .date(SystemTime::now())
        .message_id(Some(message_id.clone()));

    let mut recipients: Vec<String> = Vec::new();
    let mut add_recipient = |mailbox: &Mailbox| {
        let address = mailbox.email.to_string();
        if !recipients
            .iter()
            .any(|known| known.eq_ignore_ascii_case(&address))
        {
            recipients.push(address);
        }
    };
    for address in &email.to {
        let mailbox = parse_mailbox("to", address)?;
        add_recipient(&mailbox);
        builder = builder.to(mailbox);
    }
    for address in &email.cc {
        let mailbox = parse_mailbox("cc", address)?;
        add_recipient(&mailbox);
        builder = builder.cc(mailbox);
    }
    for address in &email.bcc {
        let mailbox = parse_mailbox("bcc", address)?;
        add_recipient(&mailbox);
        builder = builder.bcc(mailbox);
    }
    if let Some(reply_to) = &email.reply_to {
        builder = builder.reply_to(parse_mailbox("reply-to", reply_to)?);
    }
    for (name, value) in &email.headers {
        builder = builder.raw_header(extra_header(name, value)?);
    }

    let text_part = email.text.as_deref().map(|text| {
        SinglePart::builder()
            .content_type(ContentType::TEXT_PLAIN)
            .body(mime::text_body(text))
    });
    let html_part = email.html.as_deref().map(|html| {
        SinglePart::builder()
            .content_type(ContentType::TEXT_HTML)
            .body(mime::text_body(html))
    });
    let message = match (text_part, html_part) {
        (Some(text), Some(html)) => {
            builder.multipart(MultiPart::alternative().singlepart(text).singlepart(html))
        }
        (Some(part), None) | (None, Some(part)) => builder.singlepart(part),
        (None, None) => unreachable!("checked above that a body is present"),
    }
    .map_err(|error| SendError::InvalidInput(format!("invalid email: {error}")))?;

    Ok(PreparedEmail {
        message_id,
        recipients,
        envelope: message.envelope().clone(),
        bytes: message.formatted(),
    })
}

fn parse_mailbox(field: &str, text: &str) -> Result<Mailbox, SendError> {
    check_no_line_breaks(field, text)?;
    Mailbox::from_str(text.trim()).map_err(|error| {
        SendError::InvalidInput(format!(
            "invalid address \"{text}\" in {field}: {error}; \
             use local@domain or Name <local@domain>"
        ))
    })
}

fn check_no_line_breaks(field: &str, value: &str) -> Result<(), SendError> {
    if value.contains(['\r', '\n']) {
        return Err(SendError::InvalidInput(format!(
            "{field} contains a line break (CR or LF), which could inject headers; remove it"
        )));
    }
    Ok(())
}

fn extra_header(name: &str, value: &str) -> Result<HeaderValue, SendError> {
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b':');
    if !valid_name {
        return Err(SendError::InvalidInput(format!(
            "invalid header name \"{name}\"; use printable ASCII without spaces or colons"
        )));
    }
    if RESERVED_HEADERS
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
    {
        return Err(SendError::InvalidInput(format!(
            "header \"{name}\" is set by Herald from the email's fields; use the field instead"
        )));
    }
    check_no_line_breaks(&format!("header \"{name}\""), value)?;
    let header_name = HeaderName::new_from_ascii(name.to_owned()).map_err(|_| {
        SendError::InvalidInput(format!(
            "invalid header name \"{name}\"; use at most 76 ASCII characters"
        ))
    })?;
    Ok(HeaderValue::new(header_name, value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_from() -> Mailbox {
        "Example <noreply@example.com>".parse().unwrap()
    }

    fn welcome() -> OutgoingEmail {
        OutgoingEmail {
            to: vec!["Ada <ada@example.com>".into()],
            subject: "Welcome, Ada".into(),
            text: Some("Hello Ada".into()),
            html: Some("<p>Hello Ada</p>".into()),
            ..OutgoingEmail::default()
        }
    }

    fn formatted(email: &OutgoingEmail) -> String {
        let prepared = prepare(email, &default_from(), "d1").unwrap();
        String::from_utf8(prepared.bytes).unwrap()
    }

    #[test]
    fn required_headers_are_present() {
        let text = formatted(&welcome());
        for header in [
            "From: Example <noreply@example.com>",
            "To: Ada <ada@example.com>",
            "Subject: Welcome, Ada",
            "Date: ",
            "Message-ID: <d1@example.com>",
            "MIME-Version: 1.0",
            "Content-Type: multipart/alternative",
        ] {
            assert!(text.contains(header), "missing {header:?} in\n{text}");
        }
    }

    #[test]
    fn recipients_are_deduplicated_in_order() {
        let email = OutgoingEmail {
            cc: vec!["bob@example.com".into(), "ADA@example.com".into()],
            bcc: vec!["eve@example.com".into()],
            ..welcome()
        };
        let prepared = prepare(&email, &default_from(), "d1").unwrap();
        assert_eq!(
            prepared.recipients,
            ["ada@example.com", "bob@example.com", "eve@example.com"]
        );
    }

    #[test]
    fn bcc_is_left_out_of_headers() {
        let email = OutgoingEmail {
            bcc: vec!["eve@example.com".into()],
            ..welcome()
        };
        assert!(!formatted(&email).contains("eve@example.com"));
    }

    #[test]
    fn invalid_address_is_rejected() {
        let email = OutgoingEmail {
            to: vec!["not an address".into()],
            ..welcome()
        };
        let error = prepare(&email, &default_from(), "d1").unwrap_err();
        let SendError::InvalidInput(message) = error else {
            panic!("expected invalid-input, got {error:?}");
        };
        assert!(message.contains("\"not an address\""), "{message}");
    }

    #[test]
    fn line_break_in_subject_is_rejected() {
        let email = OutgoingEmail {
            subject: "Hi\r\nBcc: eve@example.com".into(),
            ..welcome()
        };
        let error = prepare(&email, &default_from(), "d1").unwrap_err();
        assert!(matches!(error, SendError::InvalidInput(_)), "{error:?}");
    }

    #[test]
    fn line_break_in_header_value_is_rejected() {
        let email = OutgoingEmail {
            headers: vec![("X-Campaign".into(), "a\nBcc: eve@example.com".into())],
            ..welcome()
        };
        let error = prepare(&email, &default_from(), "d1").unwrap_err();
        assert!(matches!(error, SendError::InvalidInput(_)), "{error:?}");
    }

    #[test]
    fn reserved_header_is_rejected() {
        let email = OutgoingEmail {
            headers: vec![("message-id".into(), "<x@y>".into())],
            ..welcome()
        };
        let error = prepare(&email, &default_from(), "d1").unwrap_err();
        assert!(matches!(error, SendError::InvalidInput(_)), "{error:?}");
    }

    #[test]
    fn extra_header_is_written() {
        let email = OutgoingEmail {
            headers: vec![("List-Unsubscribe".into(), "<https://example.com/u>".into())],
            ..welcome()
        };
        assert!(formatted(&email).contains("List-Unsubscribe: <https://example.com/u>"));
    }

    #[test]
    fn missing_recipients_and_body_are_rejected() {
        let no_recipients = OutgoingEmail {
            to: vec![],
            ..welcome()
        };
        assert!(prepare(&no_recipients, &default_from(), "d1").is_err());
        let no_body = OutgoingEmail {
            text: None,
            html: None,
            ..welcome()
        };
        assert!(prepare(&no_body, &default_from(), "d1").is_err());
    }
}
