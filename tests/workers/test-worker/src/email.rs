//! The `email` object of a `send` payload, and its conversion into the SDK's
//! [`Email`] without any change.

use herald_sdk::Email;
use herald_sdk::email::Header;
use serde::{Deserialize, Deserializer};

/// An email exactly as the test wrote it. Unknown fields are rejected, so a
/// misspelled field fails the message instead of being dropped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    #[serde(default, deserialize_with = "deserialize_recipients")]
    to: Vec<String>,
    #[serde(default, deserialize_with = "deserialize_recipients")]
    cc: Vec<String>,
    #[serde(default, deserialize_with = "deserialize_recipients")]
    bcc: Vec<String>,
    from: Option<String>,
    reply_to: Option<String>,
    #[serde(default)]
    subject: String,
    text: Option<String>,
    html: Option<String>,
    /// Extra headers as `[name, value]` pairs.
    #[serde(default)]
    headers: Vec<(String, String)>,
    idempotency_key: Option<String>,
}

impl EmailSpec {
    /// Converts the spec into the SDK's [`Email`], field by field.
    ///
    /// This is a method rather than `From<EmailSpec> for Email`, because
    /// `Email::from` is the builder's sender setter and would shadow
    /// `From::from` at the call site.
    pub fn into_email(self) -> Email {
        // `Email` is non-exhaustive, so it is built from `Email::new` and its
        // public fields are set one by one.
        let mut email = Email::new();
        email.to = self.to;
        email.cc = self.cc;
        email.bcc = self.bcc;
        email.from = self.from;
        email.reply_to = self.reply_to;
        email.subject = self.subject;
        email.text = self.text;
        email.html = self.html;
        email.headers = self
            .headers
            .into_iter()
            .map(|(name, value)| Header { name, value })
            .collect();
        email.idempotency_key = self.idempotency_key;
        email
    }
}

/// Recipients written as one address or as a list of addresses.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Deserializes recipients written as `"a@example.com"` or as
/// `["a@example.com", "b@example.com"]`.
fn deserialize_recipients<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(address) => vec![address],
        OneOrMany::Many(addresses) => addresses,
    })
}
