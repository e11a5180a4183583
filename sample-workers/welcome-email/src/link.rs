//! The verification link and the percent-encoding of its token.

/// Returns `base_url` with `token` appended as the `token` query parameter.
/// `base_url` must not contain a fragment (`#`), which would swallow the token.
pub fn verification_link(base_url: &str, token: &str) -> String {
    let separator = if base_url.ends_with('?') || base_url.ends_with('&') {
        ""
    } else if base_url.contains('?') {
        "&"
    } else {
        "?"
    };
    format!("{base_url}{separator}token={}", percent_encode(token))
}

/// Percent-encodes every byte of `value` except the RFC 3986 unreserved
/// characters (`A-Z`, `a-z`, `0-9`, `-`, `.`, `_`, `~`), so the result is
/// safe in any part of a URL.
pub fn percent_encode(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";

    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push('%');
            encoded.push(char::from(HEX[usize::from(byte >> 4)]));
            encoded.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_keeps_unreserved() {
        let unreserved = "ABCXYZabcxyz0189-._~";

        assert_eq!(percent_encode(unreserved), unreserved);
    }

    #[test]
    fn encode_escapes_reserved_and_space() {
        let cases = [
            (" ", "%20"),
            ("+", "%2B"),
            ("&", "%26"),
            ("=", "%3D"),
            ("?", "%3F"),
            ("/", "%2F"),
            ("#", "%23"),
            ("%", "%25"),
            ("<", "%3C"),
            ("a b&c", "a%20b%26c"),
        ];

        for (input, expected) in cases {
            assert_eq!(percent_encode(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn encode_escapes_utf8_bytes() {
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode("€"), "%E2%82%AC");
    }

    #[test]
    fn encode_empty_is_empty() {
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn link_appends_query() {
        assert_eq!(
            verification_link("https://example.com/verify", "abc123"),
            "https://example.com/verify?token=abc123"
        );
    }

    #[test]
    fn link_extends_existing_query() {
        assert_eq!(
            verification_link("https://example.com/verify?lang=en", "abc123"),
            "https://example.com/verify?lang=en&token=abc123"
        );
        assert_eq!(
            verification_link("https://example.com/verify?", "abc123"),
            "https://example.com/verify?token=abc123"
        );
    }

    #[test]
    fn link_encodes_token() {
        assert_eq!(
            verification_link("https://example.com/verify", "a+b/c=="),
            "https://example.com/verify?token=a%2Bb%2Fc%3D%3D"
        );
    }
}
