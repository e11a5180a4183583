//! Body encoding for email parts.
//!
//! SMTP limits a line to 998 octets plus CRLF (RFC 5321, section 4.5.3.1.6).
//! A body that is 7-bit ASCII with short enough lines goes out as it is.
//! Anything else is quoted-printable with soft line breaks placed between
//! characters, never inside one, so every physical line decodes to valid UTF-8
//! on its own.

use lettre::message::Body;
use lettre::message::header::ContentTransferEncoding;

/// Maximum length of a quoted-printable output line, excluding CRLF
/// (RFC 2045, section 6.7, rule 5).
const QP_LINE_MAX: usize = 76;

/// Maximum length of a line sent unencoded, excluding CRLF.
const SEVEN_BIT_LINE_MAX: usize = 998;

/// Encodes `text` as a body part, choosing 7bit or quoted-printable.
pub fn text_body(text: &str) -> Body {
    let normalized = normalize_newlines(text);
    let seven_bit = normalized.is_ascii()
        && !normalized.contains('\0')
        && normalized
            .split('\n')
            .all(|line| line.len() <= SEVEN_BIT_LINE_MAX);
    if seven_bit {
        Body::new_with_encoding(normalized, ContentTransferEncoding::SevenBit)
            .unwrap_or_else(|buf| quoted_printable_body(&String::from_utf8_lossy(&buf)))
    } else {
        quoted_printable_body(&normalized)
    }
}

fn quoted_printable_body(text: &str) -> Body {
    Body::dangerous_pre_encoded(
        encode_quoted_printable(text).into_bytes(),
        ContentTransferEncoding::QuotedPrintable,
    )
}

/// Turns CRLF and lone CR into LF, so that `\n` is the only line break.
fn normalize_newlines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Encodes `text`, whose only line break is `\n`, as quoted-printable with
/// CRLF line breaks. Soft breaks fall between characters.
pub fn encode_quoted_printable(text: &str) -> String {
    let mut output = String::with_capacity(text.len() + text.len() / 8);
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        encode_line(line, &mut output);
        if lines.peek().is_some() {
            output.push_str("\r\n");
        }
    }
    output
}

fn encode_line(line: &str, output: &mut String) {
    let mut width = 0;
    let mut characters = line.chars().peekable();
    let mut token = String::with_capacity(12);
    while let Some(character) = characters.next() {
        let at_line_end = characters.peek().is_none();
        token.clear();
        encode_char(character, at_line_end, &mut token);

        // A soft break costs one column ("="), so content may use 75.
        let limit = if at_line_end {
            QP_LINE_MAX
        } else {
            QP_LINE_MAX - 1
        };
        if width + token.len() > limit {
            output.push_str("=\r\n");
            width = 0;
        }
        output.push_str(&token);
        width += token.len();
    }
}

fn encode_char(character: char, at_line_end: bool, token: &mut String) {
    let literal = match character {
        ' ' | '\t' => !at_line_end,
        '=' => false,
        '!'..='~' => true,
        _ => false,
    };
    if literal {
        token.push(character);
        return;
    }
    let mut buffer = [0u8; 4];
    for byte in character.encode_utf8(&mut buffer).bytes() {
        token.push('=');
        token.push(hex_digit(byte >> 4));
        token.push(hex_digit(byte & 0x0f));
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(nibble)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes quoted-printable the way a mail reader does.
    fn decode(encoded: &str) -> Vec<u8> {
        let mut output = Vec::new();
        let bytes = encoded.as_bytes();
        let mut index = 0;
        while index < bytes.len() {
            match bytes[index] {
                b'=' if bytes[index + 1..].starts_with(b"\r\n") => index += 3,
                b'=' => {
                    let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap();
                    output.push(u8::from_str_radix(hex, 16).unwrap());
                    index += 3;
                }
                b'\r' if bytes.get(index + 1) == Some(&b'\n') => {
                    output.push(b'\n');
                    index += 2;
                }
                byte => {
                    output.push(byte);
                    index += 1;
                }
            }
        }
        output
    }

    #[test]
    fn quoted_printable_round_trips() {
        let cases = [
            "plain",
            "a=b",
            "trailing space \nnext",
            "tab\t",
            "Zoë says “hi” 👋",
            "",
            "\n\n",
        ];
        for case in cases {
            let encoded = encode_quoted_printable(case);
            assert_eq!(decode(&encoded), case.as_bytes(), "{case:?} -> {encoded:?}");
        }
    }

    #[test]
    fn quoted_printable_lines_fit() {
        let text = format!("{}€{}", "a".repeat(996), "é".repeat(300));
        let encoded = encode_quoted_printable(&text);
        for line in encoded.split("\r\n") {
            assert!(line.len() <= QP_LINE_MAX, "{} octets: {line}", line.len());
        }
        assert_eq!(decode(&encoded), text.as_bytes());
    }

    #[test]
    fn soft_breaks_never_split_a_character() {
        let text = "€".repeat(200);
        let encoded = encode_quoted_printable(&text);
        for line in encoded.split("\r\n") {
            let content = line.strip_suffix('=').unwrap_or(line);
            let decoded = decode(content);
            assert!(
                std::str::from_utf8(&decoded).is_ok(),
                "line splits a character: {line}"
            );
        }
    }

    #[test]
    fn ascii_body_stays_seven_bit() {
        let body = text_body("Hello Ada\nWelcome");
        assert_eq!(body.encoding(), ContentTransferEncoding::SevenBit);
        assert_eq!(body.into_vec(), b"Hello Ada\r\nWelcome");
    }

    #[test]
    fn long_line_becomes_quoted_printable() {
        let body = text_body(&"a".repeat(999));
        assert_eq!(body.encoding(), ContentTransferEncoding::QuotedPrintable);
    }

    #[test]
    fn utf8_body_becomes_quoted_printable() {
        let body = text_body("Grüße");
        assert_eq!(body.encoding(), ContentTransferEncoding::QuotedPrintable);
        assert_eq!(body.into_vec(), b"Gr=C3=BC=C3=9Fe");
    }
}
