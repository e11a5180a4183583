//! The digest payload and its checks.

use herald_sdk::{Error, Message};
use serde::{Deserialize, Serialize};

/// Payload that the producer enqueues once per day.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    /// Day of the digest, as `YYYY-MM-DD`.
    pub date: String,
    pub users: Vec<User>,
}

/// One recipient of the digest and their items.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Address, such as `ada@example.com`.
    pub email: String,
    /// Name for the greeting, or empty.
    #[serde(default)]
    pub name: String,
    pub items: Vec<Item>,
}

/// One entry of a user's digest.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub title: String,
    /// Link to the item, `http://` or `https://`.
    pub url: String,
    /// Optional line under the title.
    pub summary: Option<String>,
}

impl Digest {
    /// Parses and checks the payload of `message`. Every error fails the
    /// message, because an invalid payload never becomes valid on a retry.
    pub fn from_message(message: &Message) -> Result<Self, Error> {
        let digest: Digest = message.payload()?;

        check_date(&digest.date)?;
        for (index, user) in digest.users.iter().enumerate() {
            user.check(index)?;
        }
        check_unique_emails(&digest.users)?;

        Ok(digest)
    }
}

impl User {
    /// Checks the user at `index` of `users`.
    fn check(&self, index: usize) -> Result<(), Error> {
        let email = self.email.trim();
        if email.is_empty() {
            return Err(Error::fail(format!(
                "invalid payload: `users[{index}].email` is empty, \
                 expected an address such as ada@example.com"
            )));
        }
        if !email.contains('@') || email.chars().any(char::is_whitespace) {
            return Err(Error::fail(format!(
                "invalid payload: `users[{index}].email` {email:?} is not an email address, \
                 expected an address such as ada@example.com"
            )));
        }
        // The name goes into the greeting, and a template may put it in the
        // subject line, where a line break would start a new header.
        if self.name.chars().any(char::is_control) {
            return Err(Error::fail(format!(
                "invalid payload: `users[{index}].name` {:?} contains a control character \
                 such as a line break",
                self.name
            )));
        }
        for (item_index, item) in self.items.iter().enumerate() {
            item.check(&format!("users[{index}].items[{item_index}]"))?;
        }
        Ok(())
    }
}

impl Item {
    /// Checks the item at `path`, such as `users[0].items[2]`.
    fn check(&self, path: &str) -> Result<(), Error> {
        if self.title.trim().is_empty() {
            return Err(Error::fail(format!(
                "invalid payload: `{path}.title` is empty, expected the item's title"
            )));
        }
        // The HTML part puts the URL in an `href`. HTML escaping does not
        // stop a `javascript:` URL, so only web links are accepted.
        let url = self.url.to_ascii_lowercase();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::fail(format!(
                "invalid payload: `{path}.url` {:?} is not an http or https URL, \
                 expected a link such as https://example.com/items/7",
                self.url
            )));
        }
        Ok(())
    }
}

/// Checks that `date` is a calendar date written `YYYY-MM-DD`.
fn check_date(date: &str) -> Result<(), Error> {
    let invalid = || {
        Error::fail(format!(
            "invalid payload: `date` {date:?} is not a date, expected YYYY-MM-DD such as 2026-12-04"
        ))
    };

    let bytes = date.as_bytes();
    let digits_at = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    if bytes.len() != 10
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !digits_at(0..4)
        || !digits_at(5..7)
        || !digits_at(8..10)
    {
        return Err(invalid());
    }

    // The bytes checked above are ASCII digits, so these parse.
    let year: u32 = date[0..4].parse().map_err(|_| invalid())?;
    let month: u32 = date[5..7].parse().map_err(|_| invalid())?;
    let day: u32 = date[8..10].parse().map_err(|_| invalid())?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(invalid());
    }
    Ok(())
}

/// Returns the number of days in `month` (1 to 12) of `year`, in the
/// Gregorian calendar.
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Checks that no two users share an address. Both would get the same
/// idempotency key, so the second email would be suppressed as a duplicate
/// and its items never sent.
fn check_unique_emails(users: &[User]) -> Result<(), Error> {
    let mut seen = std::collections::HashMap::new();
    for (index, user) in users.iter().enumerate() {
        let email = user.email.trim().to_lowercase();
        if let Some(first) = seen.insert(email, index) {
            return Err(Error::fail(format!(
                "invalid payload: `users[{first}]` and `users[{index}]` have the same email {:?}, \
                 merge their items into one entry",
                user.email.trim()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use herald_sdk::Outcome;

    use super::*;

    fn message_with_payload(payload: &str) -> Message {
        Message::new(
            "0190b5a1-7c3e-7d2a-9f00-000000000001",
            "daily-digest",
            payload,
            1,
            "2025-01-01T00:00:00Z",
        )
    }

    /// Returns the reason of the fail outcome that parsing `payload` gives.
    fn fail_reason(payload: &str) -> String {
        let error = Digest::from_message(&message_with_payload(payload)).unwrap_err();
        match Outcome::from(error) {
            Outcome::Fail(reason) => reason,
            other => panic!("expected a fail outcome, got {other:?}"),
        }
    }

    /// Returns a payload for 2026-12-04 with `users`, a JSON array.
    fn payload_with_users(users: &str) -> String {
        format!(r#"{{"date": "2026-12-04", "users": {users}}}"#)
    }

    #[test]
    fn valid_payload_parses() {
        let payload = payload_with_users(
            r#"[
                {"email": "ada@example.com", "name": "Ada", "items": [
                    {"title": "Build passed", "url": "https://ci.example.com/1"},
                    {"title": "Comment", "url": "http://example.com/c/7", "summary": "Nice"}
                ]},
                {"email": "grace@example.com", "items": []}
            ]"#,
        );

        let digest = Digest::from_message(&message_with_payload(&payload)).unwrap();

        assert_eq!(digest.date, "2026-12-04");
        assert_eq!(digest.users.len(), 2);
        assert_eq!(digest.users[0].name, "Ada");
        assert_eq!(digest.users[0].items.len(), 2);
        assert_eq!(digest.users[0].items[0].summary, None);
        assert_eq!(digest.users[0].items[1].summary.as_deref(), Some("Nice"));
        assert_eq!(digest.users[1].name, "");
        assert!(digest.users[1].items.is_empty());
    }

    #[test]
    fn empty_user_list_parses() {
        let digest = Digest::from_message(&message_with_payload(&payload_with_users("[]")));

        assert!(digest.unwrap().users.is_empty());
    }

    #[test]
    fn missing_fields_fail_naming_field() {
        let cases = [
            (r#"{"users": []}"#.to_string(), "date"),
            (r#"{"date": "2026-12-04"}"#.to_string(), "users"),
            (payload_with_users(r#"[{"items": []}]"#), "email"),
            (
                payload_with_users(r#"[{"email": "a@example.com"}]"#),
                "items",
            ),
            (
                payload_with_users(
                    r#"[{"email": "a@example.com", "items": [{"url": "https://x"}]}]"#,
                ),
                "title",
            ),
            (
                payload_with_users(r#"[{"email": "a@example.com", "items": [{"title": "x"}]}]"#),
                "url",
            ),
        ];

        for (payload, field) in cases {
            let reason = fail_reason(&payload);
            assert!(
                reason.contains(&format!("missing field `{field}`")),
                "{payload}: {reason}"
            );
        }
    }

    #[test]
    fn invalid_dates_fail() {
        let dates = [
            "",
            "2026-12-4",
            "04.12.2026",
            "2026/12/04",
            "2026-13-01",
            "2026-00-10",
            "2026-12-00",
            "2026-12-32",
            "2026-04-31",
            "2026-02-29",
            "1900-02-29",
            "2026-12-04T00:00:00Z",
            "２０２６-12-04",
        ];

        for date in dates {
            let reason = fail_reason(&format!(r#"{{"date": {date:?}, "users": []}}"#));
            assert!(reason.contains("`date`"), "{date}: {reason}");
            assert!(reason.contains("YYYY-MM-DD"), "{date}: {reason}");
        }
    }

    #[test]
    fn leap_days_pass() {
        for date in ["2024-02-29", "2000-02-29"] {
            let payload = format!(r#"{{"date": "{date}", "users": []}}"#);
            assert!(
                Digest::from_message(&message_with_payload(&payload)).is_ok(),
                "{date}"
            );
        }
    }

    #[test]
    fn invalid_email_fails_naming_user() {
        let cases = [
            (
                r#"[{"email": " ", "items": []}]"#,
                "`users[0].email` is empty",
            ),
            (
                r#"[{"email": "a@example.com", "items": []}, {"email": "grace", "items": []}]"#,
                "`users[1].email` \"grace\" is not an email address",
            ),
            (
                r#"[{"email": "ada @example.com", "items": []}]"#,
                "is not an email address",
            ),
        ];

        for (users, expected) in cases {
            let reason = fail_reason(&payload_with_users(users));
            assert!(reason.contains(expected), "{users}: {reason}");
        }
    }

    #[test]
    fn name_with_line_break_fails() {
        let reason = fail_reason(&payload_with_users(
            r#"[{"email": "a@example.com", "name": "Ada\r\nBcc: x@example.com", "items": []}]"#,
        ));

        assert!(reason.contains("`users[0].name`"), "{reason}");
        assert!(reason.contains("control character"), "{reason}");
    }

    #[test]
    fn empty_title_fails_naming_item() {
        let reason = fail_reason(&payload_with_users(
            r#"[{"email": "a@example.com", "items": [
                {"title": "ok", "url": "https://example.com/1"},
                {"title": " ", "url": "https://example.com/2"}
            ]}]"#,
        ));

        assert!(
            reason.contains("`users[0].items[1].title` is empty"),
            "{reason}"
        );
    }

    #[test]
    fn non_web_url_fails() {
        let urls = [
            "javascript:alert(1)",
            "ftp://example.com/x",
            "example.com/x",
            "",
        ];

        for url in urls {
            let reason = fail_reason(&payload_with_users(&format!(
                r#"[{{"email": "a@example.com", "items": [{{"title": "x", "url": {url:?}}}]}}]"#
            )));
            assert!(
                reason.contains("`users[0].items[0].url`"),
                "{url}: {reason}"
            );
            assert!(reason.contains("http or https"), "{url}: {reason}");
        }
    }

    #[test]
    fn uppercase_scheme_passes() {
        let payload = payload_with_users(
            r#"[{"email": "a@example.com", "items": [{"title": "x", "url": "HTTPS://example.com"}]}]"#,
        );

        assert!(Digest::from_message(&message_with_payload(&payload)).is_ok());
    }

    #[test]
    fn duplicate_email_fails() {
        let reason = fail_reason(&payload_with_users(
            r#"[
                {"email": "ada@example.com", "items": []},
                {"email": "grace@example.com", "items": []},
                {"email": "Ada@Example.com", "items": []}
            ]"#,
        ));

        assert!(
            reason.contains("`users[0]` and `users[2]` have the same email"),
            "{reason}"
        );
    }

    #[test]
    fn unknown_field_fails() {
        let reason = fail_reason(r#"{"date": "2026-12-04", "users": [], "day": "x"}"#);

        assert!(reason.contains("unknown field `day`"), "{reason}");
    }
}
