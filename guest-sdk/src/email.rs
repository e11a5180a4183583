//! The email that a worker builds and sends through
//! [`gateway::send_email`](crate::gateway::send_email).

use crate::bindings::herald::worker::gateway as wit;
use crate::template::{Rendered, TemplateRef};

/// An email to send.
///
/// Build it with [`Email::new`] and the chained setters. Methods that take an
/// address (`to`, `cc`, `bcc`) add one recipient per call. Addresses are
/// `local@domain` or `Name <local@domain>`, and the host rejects an email
/// without any recipient in `to`, `cc` or `bcc`.
///
/// ```
/// use herald_sdk::Email;
///
/// let email = Email::new()
///     .to("Ada Lovelace <ada@example.com>")
///     .bcc("audit@example.com")
///     .subject("Your invoice")
///     .text("Your invoice is attached.")
///     .header("List-Unsubscribe", "<https://example.com/unsubscribe>")
///     .idempotency_key("invoice-2025-001");
///
/// assert_eq!(email.to, ["Ada Lovelace <ada@example.com>"]);
/// assert_eq!(email.subject, "Your invoice");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Email {
    /// Sender. With `None` the gateway's configured `from` is used.
    pub from: Option<String>,
    /// Primary recipients.
    pub to: Vec<String>,
    /// Carbon-copy recipients.
    pub cc: Vec<String>,
    /// Blind carbon-copy recipients, left out of the headers.
    pub bcc: Vec<String>,
    /// Address that replies go to.
    pub reply_to: Option<String>,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: Option<String>,
    /// HTML body. With both bodies the email is multipart/alternative.
    pub html: Option<String>,
    /// Extra headers, in the order they were added.
    pub headers: Vec<Header>,
    /// The stored template that the email was rendered from, recorded in
    /// the delivery log.
    pub template: Option<TemplateRef>,
    /// Key that makes the send idempotent for this worker. With `None` the
    /// host derives one from the message id, the channel and the recipients,
    /// so a second email to the same recipients for the same message is
    /// suppressed as a duplicate. Give each such email its own key.
    pub idempotency_key: Option<String>,
}

/// One extra header of an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name, such as `List-Unsubscribe`.
    pub name: String,
    /// Header value. The host rejects a value that contains CR or LF.
    pub value: String,
}

impl Email {
    /// Creates an email with no recipients, an empty subject and no body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates an email with the subject, bodies and template of a stored
    /// template that [`template::render_stored`](crate::template::render_stored)
    /// rendered. A part that the template does not have stays unset, and a
    /// missing subject leaves the subject empty.
    ///
    /// ```
    /// use herald_sdk::Email;
    /// use herald_sdk::template::{Rendered, TemplateRef};
    ///
    /// let rendered = Rendered {
    ///     template: TemplateRef { name: "welcome".to_string(), version: 3 },
    ///     subject: Some("Welcome, Ada".to_string()),
    ///     text: Some("Hello, Ada!".to_string()),
    ///     html: None,
    /// };
    ///
    /// let email = Email::from_rendered(rendered).to("ada@example.com");
    ///
    /// assert_eq!(email.subject, "Welcome, Ada");
    /// assert_eq!(email.text.as_deref(), Some("Hello, Ada!"));
    /// assert_eq!(email.template.map(|template| template.version), Some(3));
    /// ```
    pub fn from_rendered(rendered: Rendered) -> Self {
        Self {
            subject: rendered.subject.unwrap_or_default(),
            text: rendered.text,
            html: rendered.html,
            template: Some(rendered.template),
            ..Self::default()
        }
    }

    /// Adds a primary recipient.
    pub fn to(mut self, address: impl Into<String>) -> Self {
        self.to.push(address.into());
        self
    }

    /// Adds a carbon-copy recipient.
    pub fn cc(mut self, address: impl Into<String>) -> Self {
        self.cc.push(address.into());
        self
    }

    /// Adds a blind carbon-copy recipient.
    pub fn bcc(mut self, address: impl Into<String>) -> Self {
        self.bcc.push(address.into());
        self
    }

    /// Sets the sender, replacing the gateway's configured `from`.
    pub fn from(mut self, address: impl Into<String>) -> Self {
        self.from = Some(address.into());
        self
    }

    /// Sets the address that replies go to.
    pub fn reply_to(mut self, address: impl Into<String>) -> Self {
        self.reply_to = Some(address.into());
        self
    }

    /// Sets the subject line.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// Sets the plain-text body.
    pub fn text(mut self, body: impl Into<String>) -> Self {
        self.text = Some(body.into());
        self
    }

    /// Sets the HTML body.
    pub fn html(mut self, body: impl Into<String>) -> Self {
        self.html = Some(body.into());
        self
    }

    /// Adds an extra header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Sets the stored template that the email was rendered from, which the
    /// host records in the delivery log.
    pub fn template(mut self, template: TemplateRef) -> Self {
        self.template = Some(template);
        self
    }

    /// Sets the key that makes the send idempotent. A second send with the
    /// same key by the same worker returns the first receipt instead of
    /// sending again, even from another message.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

impl From<&Email> for wit::Email {
    fn from(email: &Email) -> Self {
        let headers = email
            .headers
            .iter()
            .map(|header| wit::Header {
                name: header.name.clone(),
                value: header.value.clone(),
            })
            .collect();

        wit::Email {
            from: email.from.clone(),
            to: email.to.clone(),
            cc: email.cc.clone(),
            bcc: email.bcc.clone(),
            reply_to: email.reply_to.clone(),
            subject: email.subject.clone(),
            text: email.text.clone(),
            html: email.html.clone(),
            headers,
            template: email.template.as_ref().map(Into::into),
            idempotency_key: email.idempotency_key.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome_template() -> TemplateRef {
        TemplateRef {
            name: "welcome".to_string(),
            version: 3,
        }
    }

    #[test]
    fn new_email_is_empty() {
        let email = Email::new();

        assert!(email.to.is_empty());
        assert!(email.cc.is_empty());
        assert!(email.bcc.is_empty());
        assert_eq!(email.from, None);
        assert_eq!(email.reply_to, None);
        assert_eq!(email.subject, "");
        assert_eq!(email.text, None);
        assert_eq!(email.html, None);
        assert!(email.headers.is_empty());
        assert_eq!(email.template, None);
        assert_eq!(email.idempotency_key, None);
    }

    #[test]
    fn builder_sets_every_field() {
        let email = Email::new()
            .to("ada@example.com")
            .cc("grace@example.com")
            .bcc("audit@example.com")
            .from("Example <hello@example.com>")
            .reply_to("support@example.com")
            .subject("Welcome")
            .text("Hello")
            .html("<p>Hello</p>")
            .header("X-Campaign", "welcome")
            .template(welcome_template())
            .idempotency_key("welcome-ada");

        assert_eq!(email.to, ["ada@example.com"]);
        assert_eq!(email.cc, ["grace@example.com"]);
        assert_eq!(email.bcc, ["audit@example.com"]);
        assert_eq!(email.from.as_deref(), Some("Example <hello@example.com>"));
        assert_eq!(email.reply_to.as_deref(), Some("support@example.com"));
        assert_eq!(email.subject, "Welcome");
        assert_eq!(email.text.as_deref(), Some("Hello"));
        assert_eq!(email.html.as_deref(), Some("<p>Hello</p>"));
        assert_eq!(
            email.headers,
            [Header {
                name: "X-Campaign".to_string(),
                value: "welcome".to_string(),
            }]
        );
        assert_eq!(email.template, Some(welcome_template()));
        assert_eq!(email.idempotency_key.as_deref(), Some("welcome-ada"));
    }

    #[test]
    fn recipients_and_headers_accumulate() {
        let email = Email::new()
            .to("ada@example.com")
            .to("grace@example.com")
            .cc("a@example.com")
            .cc("b@example.com")
            .bcc("c@example.com")
            .bcc("d@example.com")
            .header("X-One", "1")
            .header("X-Two", "2");

        assert_eq!(email.to, ["ada@example.com", "grace@example.com"]);
        assert_eq!(email.cc, ["a@example.com", "b@example.com"]);
        assert_eq!(email.bcc, ["c@example.com", "d@example.com"]);
        let names: Vec<&str> = email.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["X-One", "X-Two"]);
    }

    #[test]
    fn single_value_setters_replace() {
        let email = Email::new()
            .subject("First")
            .subject("Second")
            .from("a@example.com")
            .from("b@example.com");

        assert_eq!(email.subject, "Second");
        assert_eq!(email.from.as_deref(), Some("b@example.com"));
    }

    #[test]
    fn into_wit_copies_fields() {
        let email = Email::new()
            .to("ada@example.com")
            .cc("grace@example.com")
            .bcc("audit@example.com")
            .from("hello@example.com")
            .reply_to("support@example.com")
            .subject("Welcome")
            .text("Hello")
            .html("<p>Hello</p>")
            .header("X-Campaign", "welcome")
            .template(welcome_template())
            .idempotency_key("welcome-ada");

        let wit_email = wit::Email::from(&email);

        assert_eq!(wit_email.to, email.to);
        assert_eq!(wit_email.cc, email.cc);
        assert_eq!(wit_email.bcc, email.bcc);
        assert_eq!(wit_email.from, email.from);
        assert_eq!(wit_email.reply_to, email.reply_to);
        assert_eq!(wit_email.subject, email.subject);
        assert_eq!(wit_email.text, email.text);
        assert_eq!(wit_email.html, email.html);
        assert_eq!(wit_email.headers.len(), 1);
        assert_eq!(wit_email.headers[0].name, "X-Campaign");
        assert_eq!(wit_email.headers[0].value, "welcome");
        let template = wit_email.template.expect("template is copied");
        assert_eq!(template.name, "welcome");
        assert_eq!(template.version, 3);
        assert_eq!(wit_email.idempotency_key, email.idempotency_key);
    }

    #[test]
    fn into_wit_without_template() {
        let wit_email = wit::Email::from(&Email::new().to("ada@example.com"));

        assert!(wit_email.template.is_none());
    }

    #[test]
    fn from_rendered_fills_parts() {
        let rendered = Rendered {
            template: welcome_template(),
            subject: Some("Welcome".to_string()),
            text: Some("Hello".to_string()),
            html: Some("<p>Hello</p>".to_string()),
        };

        let email = Email::from_rendered(rendered).to("ada@example.com");

        assert_eq!(email.to, ["ada@example.com"]);
        assert_eq!(email.subject, "Welcome");
        assert_eq!(email.text.as_deref(), Some("Hello"));
        assert_eq!(email.html.as_deref(), Some("<p>Hello</p>"));
        assert_eq!(email.template, Some(welcome_template()));
    }

    #[test]
    fn from_rendered_leaves_missing_parts_unset() {
        let rendered = Rendered {
            template: welcome_template(),
            subject: None,
            text: None,
            html: Some("<p>Hello</p>".to_string()),
        };

        let email = Email::from_rendered(rendered);

        assert_eq!(email.subject, "");
        assert_eq!(email.text, None);
        assert_eq!(email.html.as_deref(), Some("<p>Hello</p>"));
    }
}
