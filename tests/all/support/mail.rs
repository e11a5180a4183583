//! Parsing received emails with mail-parser, and the checks every test
//! applies to raw SMTP data.

use mail_parser::{MessageParser, MimeHeaders};

/// The parts of an email the tests look at.
#[derive(Debug)]
pub struct ParsedEmail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub date: Option<String>,
    pub message_id: Option<String>,
    pub mime_version: Option<String>,
    pub content_type: String,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Content types of the top-level parts, in order.
    pub part_types: Vec<String>,
}

/// Parses raw message data.
pub fn parse(data: &[u8]) -> ParsedEmail {
    let message = MessageParser::default()
        .parse(data)
        .unwrap_or_else(|| panic!("unparsable email:\n{}", String::from_utf8_lossy(data)));
    let addresses = |address: Option<&mail_parser::Address<'_>>| -> Vec<String> {
        address
            .map(|address| {
                address
                    .iter()
                    .filter_map(|addr| addr.address().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let content_type = message
        .content_type()
        .map(|content_type| match content_type.subtype() {
            Some(subtype) => format!("{}/{subtype}", content_type.ctype()),
            None => content_type.ctype().to_owned(),
        })
        .unwrap_or_default();
    let part_types = message
        .parts
        .iter()
        .skip(1)
        .filter_map(|part| {
            part.content_type().map(|content_type| {
                format!(
                    "{}/{}",
                    content_type.ctype(),
                    content_type.subtype().unwrap_or_default()
                )
            })
        })
        .collect();
    ParsedEmail {
        from: addresses(message.from())
            .into_iter()
            .next()
            .unwrap_or_default(),
        to: addresses(message.to()),
        subject: message.subject().unwrap_or_default().to_owned(),
        date: message.date().map(|date| date.to_rfc3339()),
        message_id: message.message_id().map(str::to_owned),
        mime_version: message
            .header_raw("MIME-Version")
            .map(|value| value.trim().to_owned()),
        content_type,
        text: message.body_text(0).map(|text| text.into_owned()),
        html: message.body_html(0).map(|html| html.into_owned()),
        part_types,
    }
}

/// Asserts that no raw line exceeds 998 octets before its CRLF.
pub fn assert_line_lengths(data: &[u8]) {
    for (index, line) in data.split(|byte| *byte == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(
            line.len() <= 998,
            "line {} has {} octets, over the SMTP limit of 998",
            index + 1,
            line.len()
        );
    }
}
