//! Validating a worker's email and turning it into an RFC 5322 message.
//!
//! Everything a worker controls is checked here, before it reaches a gateway:
//! addresses must parse, header values must not contain CR or LF (which could
//! inject headers), and headers the host sets itself cannot be overridden.

use std::str::FromStr;
use std::time::SystemTime;

use base64::Engine as _;
use lettre::Address;
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

/// A validated email, formatted and ready for any gateway: SMTP and the
/// outbox take the formatted bytes, an HTTP mail API the parsed fields.
#[derive(Debug, Clone)]
pub struct PreparedEmail {
    /// The Message-ID header value, with angle brackets.
    pub message_id: String,
    /// Sender.
    pub from: Mailbox,
    /// Primary recipients.
    pub to: Vec<Mailbox>,
    /// Carbon-copy recipients.
    pub cc: Vec<Mailbox>,
    /// Blind carbon-copy recipients.
    pub bcc: Vec<Mailbox>,
    /// Reply address.
    pub reply_to: Option<Mailbox>,
    /// Subject line, free of line breaks.
    pub subject: String,
    /// Plain-text body.
    pub text: Option<String>,
    /// HTML body.
    pub html: Option<String>,
    /// Extra headers, checked: names are not reserved and values have no
    /// line breaks.
    pub headers: Vec<(String, String)>,
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
    // Trace and authentication headers belong to the servers that relay
    // the message; a worker setting them could forge a delivery path.
    "received",
    "dkim-signature",
    "authentication-results",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
];

/// Prefixes of header names that are reserved as a group: resent headers
/// (RFC 5322, section 3.6.6).
const RESERVED_PREFIXES: &[&str] = &["resent-"];

/// Maximum length of a header line before folding, excluding CRLF
/// (RFC 5322, section 2.1.1 recommends 78).
const HEADER_LINE_MAX: usize = 78;

/// Raw bytes per RFC 2047 encoded word. 42 bytes become 56 base64
/// characters, so `=?utf-8?b?…?=` is 68 characters: within the 75 that
/// RFC 2047, section 2, allows, and within 78 after `Subject: `.
const ENCODED_WORD_BYTES: usize = 42;

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
    let sender = from.email.clone();
    let mut fields = PreparedFields {
        from: from.clone(),
        ..PreparedFields::default()
    };
    let mut builder = lettre::Message::builder()
        .from(from)
        .raw_header(subject_header(&email.subject))
        .date(SystemTime::now())
        .message_id(Some(message_id.clone()));

    // Envelope recipients without duplicates, compared without regard to
    // case, so each address gets one RCPT TO and one delivery row.
    let mut envelope_to: Vec<Address> = Vec::new();
    let mut add_recipient = |mailbox: &Mailbox| {
        let known = envelope_to.iter().any(|address| {
            AsRef::<str>::as_ref(address).eq_ignore_ascii_case(mailbox.email.as_ref())
        });
        if !known {
            envelope_to.push(mailbox.email.clone());
        }
    };
    for address in &email.to {
        let mailbox = parse_mailbox("to", address)?;
        add_recipient(&mailbox);
        fields.to.push(mailbox.clone());
        builder = builder.to(mailbox);
    }
    for address in &email.cc {
        let mailbox = parse_mailbox("cc", address)?;
        add_recipient(&mailbox);
        fields.cc.push(mailbox.clone());
        builder = builder.cc(mailbox);
    }
    for address in &email.bcc {
        let mailbox = parse_mailbox("bcc", address)?;
        add_recipient(&mailbox);
        fields.bcc.push(mailbox.clone());
        builder = builder.bcc(mailbox);
    }
    if let Some(reply_to) = &email.reply_to {
        let mailbox = parse_mailbox("reply-to", reply_to)?;
        fields.reply_to = Some(mailbox.clone());
        builder = builder.reply_to(mailbox);
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

    let recipients = envelope_to.iter().map(ToString::to_string).collect();
    let envelope = Envelope::new(Some(sender), envelope_to)
        .map_err(|error| SendError::InvalidInput(format!("invalid envelope: {error}")))?;
    Ok(PreparedEmail {
        message_id,
        from: fields.from,
        to: fields.to,
        cc: fields.cc,
        bcc: fields.bcc,
        reply_to: fields.reply_to,
        subject: email.subject.clone(),
        text: email.text.clone(),
        html: email.html.clone(),
        headers: email.headers.clone(),
        recipients,
        envelope,
        bytes: message.formatted(),
    })
}

/// The parsed addresses of an email, collected while it is formatted.
struct PreparedFields {
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    bcc: Vec<Mailbox>,
    reply_to: Option<Mailbox>,
}

impl Default for PreparedFields {
    fn default() -> Self {
        Self {
            from: Mailbox::new(
                None,
                Address::new("unset", "localhost").expect("valid address"),
            ),
            to: Vec::new(),
            cc: Vec::new(),
            bcc: Vec::new(),
            reply_to: None,
        }
    }
}

/// Builds the Subject header. A short subject of printable ASCII goes out as
/// it is, and a longer one is folded at spaces. Other subjects are sent as
/// RFC 2047 encoded words, one per line. That covers a word too long to fold,
/// non-ASCII text, and a literal `=?`, which mail readers would decode as an
/// encoded word.
fn subject_header(subject: &str) -> HeaderValue {
    let name = HeaderName::new_from_ascii_str("Subject");
    let printable = subject.bytes().all(|byte| (0x20..0x7f).contains(&byte));
    let encoded = match printable && !subject.contains("=?") {
        true => fold_at_spaces(subject).unwrap_or_else(|| encode_words(subject)),
        false => encode_words(subject),
    };
    HeaderValue::dangerous_new_pre_encoded(name, subject.to_owned(), encoded)
}

/// Folds printable ASCII at spaces so that no line of `Subject: ...` is
/// longer than [`HEADER_LINE_MAX`]. Returns `None` when a word is too long.
fn fold_at_spaces(subject: &str) -> Option<String> {
    let mut folded = String::with_capacity(subject.len() + 8);
    let mut line_length = "Subject: ".len();
    for (index, word) in subject.split(' ').enumerate() {
        if index > 0 {
            if line_length + 1 + word.len() > HEADER_LINE_MAX {
                folded.push_str("\r\n");
                line_length = 0;
            }
            folded.push(' ');
            line_length += 1;
        }
        if line_length + word.len() > HEADER_LINE_MAX {
            return None;
        }
        folded.push_str(word);
        line_length += word.len();
    }
    Some(folded)
}

/// Encodes `text` as base64 encoded words on folded lines. Each word contains
/// whole characters, as RFC 2047, section 5, requires.
fn encode_words(text: &str) -> String {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for character in text.chars() {
        if chunk.len() + character.len_utf8() > ENCODED_WORD_BYTES {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(character);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|word| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(word.as_bytes());
            format!("=?utf-8?b?{encoded}?=")
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// Parses an address, with the domain converted to its ASCII form, so that
/// `ada@bücher.example` goes out as `ada@xn--bcher-kva.example`.
fn parse_mailbox(field: &str, text: &str) -> Result<Mailbox, SendError> {
    check_no_line_breaks(field, text)?;
    let invalid = |reason: &dyn std::fmt::Display| {
        SendError::InvalidInput(format!(
            "invalid address \"{text}\" in {field}: {reason}; \
             use local@domain or Name <local@domain>"
        ))
    };
    let mut mailbox = Mailbox::from_str(text.trim()).map_err(|error| invalid(&error))?;
    let domain = mailbox.email.domain();
    if !domain.is_ascii() {
        let ascii = idna::domain_to_ascii(domain).map_err(|_| invalid(&"invalid domain"))?;
        mailbox.email =
            Address::new(mailbox.email.user(), ascii).map_err(|error| invalid(&error))?;
    }
    Ok(mailbox)
}

/// Rejects CR and LF, which could inject headers, and every other control
/// character except tab, which no header value may contain (RFC 5322,
/// section 2.2).
fn check_no_line_breaks(field: &str, value: &str) -> Result<(), SendError> {
    if value.contains(['\r', '\n']) {
        return Err(SendError::InvalidInput(format!(
            "{field} contains a line break (CR or LF), which could inject headers; remove it"
        )));
    }
    if let Some(control) = value.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(SendError::InvalidInput(format!(
            "{field} contains the control character {:?}; remove it",
            control
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
    let lower = name.to_ascii_lowercase();
    let reserved = RESERVED_HEADERS.contains(&lower.as_str())
        || RESERVED_PREFIXES
            .iter()
            .any(|prefix| lower.starts_with(prefix));
    if reserved {
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
    fn control_character_in_header_value_is_rejected() {
        let email = OutgoingEmail {
            headers: vec![("X-Campaign".into(), "a\u{0}b".into())],
            ..welcome()
        };
        let error = prepare(&email, &default_from(), "d1").unwrap_err();
        let SendError::InvalidInput(message) = error else {
            panic!("expected invalid-input, got {error:?}");
        };
        assert!(message.contains("control character"), "{message}");
    }

    #[test]
    fn tab_in_header_value_is_allowed() {
        let email = OutgoingEmail {
            headers: vec![("X-Campaign".into(), "a\tb".into())],
            ..welcome()
        };
        assert!(prepare(&email, &default_from(), "d1").is_ok());
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

    fn parsed_subject(subject: &str) -> (String, String) {
        let email = OutgoingEmail {
            subject: subject.to_owned(),
            ..welcome()
        };
        let raw = formatted(&email);
        let parsed = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .unwrap();
        (parsed.subject().unwrap_or_default().to_owned(), raw)
    }

    #[test]
    fn subjects_round_trip_and_lines_fit() {
        let cases = [
            "Welcome, Ada".to_owned(),
            "word ".repeat(60).trim_end().to_owned(),
            "N".repeat(3_000),
            "=?utf-8?b?SGFja2Vk?=".to_owned(),
            "Grüße aus Köln 👋 ".repeat(20),
            String::new(),
        ];
        for subject in cases {
            let (decoded, raw) = parsed_subject(&subject);
            assert_eq!(decoded, subject, "raw:\n{raw}");
            for line in raw.split("\r\n") {
                assert!(
                    line.len() <= HEADER_LINE_MAX,
                    "{} octets: {line}",
                    line.len()
                );
            }
        }
    }

    #[test]
    fn short_ascii_subject_stays_readable() {
        let (_, raw) = parsed_subject("Welcome to Example, Ada");
        assert!(
            raw.contains("Subject: Welcome to Example, Ada\r\n"),
            "{raw}"
        );
    }

    #[test]
    fn encoded_words_hold_whole_characters() {
        let encoded = encode_words(&"€".repeat(40));
        for word in encoded.split("\r\n ") {
            let payload = word
                .strip_prefix("=?utf-8?b?")
                .and_then(|rest| rest.strip_suffix("?="))
                .unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(payload)
                .unwrap();
            assert!(
                String::from_utf8(bytes).is_ok(),
                "{word} splits a character"
            );
            assert!(word.len() <= 75, "{word}");
        }
    }

    #[test]
    fn trace_headers_are_rejected() {
        for name in ["Received", "DKIM-Signature", "Resent-From"] {
            let email = OutgoingEmail {
                headers: vec![(name.into(), "x".into())],
                ..welcome()
            };
            let error = prepare(&email, &default_from(), "d1").unwrap_err();
            assert!(
                matches!(error, SendError::InvalidInput(_)),
                "{name}: {error:?}"
            );
        }
    }

    #[test]
    fn envelope_has_each_recipient_once() {
        let email = OutgoingEmail {
            to: vec!["a1@example.com".into(), "A1@example.com".into()],
            cc: vec!["b1@example.com".into()],
            ..welcome()
        };
        let prepared = prepare(&email, &default_from(), "d1").unwrap();
        let envelope: Vec<String> = prepared
            .envelope
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(envelope, ["a1@example.com", "b1@example.com"]);
        assert_eq!(prepared.recipients, envelope);
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
