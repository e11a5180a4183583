//! The text message that a worker builds and sends through
//! [`gateway::send_sms`](crate::gateway::send_sms).

use crate::bindings::herald::worker::gateway as wit;
use crate::template::TemplateRef;

/// A text message to send through an SMS gateway.
///
/// Build it with [`Sms::new`] and the chained setters. The recipient is a
/// phone number in E.164 form: `+`, the country code and the subscriber
/// number, at most 15 digits in all, such as `+14155550123`. The host
/// rejects any other form as invalid input, and the message is not sent.
///
/// ```
/// use herald_sdk::Sms;
///
/// let sms = Sms::new()
///     .to("+14155550123")
///     .body("Your code is 481516")
///     .idempotency_key("login-code-42");
///
/// assert_eq!(sms.to, "+14155550123");
/// assert_eq!(sms.body, "Your code is 481516");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sms {
    /// Recipient phone number in E.164 form, such as `+14155550123`.
    pub to: String,
    /// Sender number or id. With `None` the gateway's configured `from` is
    /// used.
    pub from: Option<String>,
    /// Message text.
    pub body: String,
    /// The stored template that the text was rendered from, recorded in the
    /// delivery log.
    pub template: Option<TemplateRef>,
    /// Key that makes the send idempotent for this worker. With `None` the
    /// host derives one from the message id, the channel and the recipient,
    /// so a second text to the same number for the same message is
    /// suppressed as a duplicate. Give each such text its own key.
    pub idempotency_key: Option<String>,
}

impl Sms {
    /// Creates a text message with no recipient and an empty body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the recipient's phone number, in E.164 form.
    pub fn to(mut self, number: impl Into<String>) -> Self {
        self.to = number.into();
        self
    }

    /// Sets the sender number or id, replacing the gateway's configured
    /// `from`.
    pub fn from(mut self, sender: impl Into<String>) -> Self {
        self.from = Some(sender.into());
        self
    }

    /// Sets the message text.
    pub fn body(mut self, text: impl Into<String>) -> Self {
        self.body = text.into();
        self
    }

    /// Sets the stored template that the text was rendered from, which the
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

impl From<&Sms> for wit::Sms {
    fn from(sms: &Sms) -> Self {
        wit::Sms {
            to: sms.to.clone(),
            from: sms.from.clone(),
            body: sms.body.clone(),
            template: sms.template.as_ref().map(Into::into),
            idempotency_key: sms.idempotency_key.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert_template() -> TemplateRef {
        TemplateRef {
            name: "disk-alert".to_string(),
            version: 2,
        }
    }

    #[test]
    fn new_sms_is_empty() {
        let sms = Sms::new();

        assert_eq!(sms.to, "");
        assert_eq!(sms.from, None);
        assert_eq!(sms.body, "");
        assert_eq!(sms.template, None);
        assert_eq!(sms.idempotency_key, None);
    }

    #[test]
    fn builder_sets_every_field() {
        let sms = Sms::new()
            .to("+14155550123")
            .from("+14155550100")
            .body("Disk almost full")
            .template(alert_template())
            .idempotency_key("alert-7");

        assert_eq!(sms.to, "+14155550123");
        assert_eq!(sms.from.as_deref(), Some("+14155550100"));
        assert_eq!(sms.body, "Disk almost full");
        assert_eq!(sms.template, Some(alert_template()));
        assert_eq!(sms.idempotency_key.as_deref(), Some("alert-7"));
    }

    #[test]
    fn setters_replace() {
        let sms = Sms::new()
            .to("+14155550123")
            .to("+447700900123")
            .body("first")
            .body("second");

        assert_eq!(sms.to, "+447700900123");
        assert_eq!(sms.body, "second");
    }

    #[test]
    fn into_wit_copies_fields() {
        let sms = Sms::new()
            .to("+14155550123")
            .from("Example")
            .body("Disk almost full")
            .template(alert_template())
            .idempotency_key("alert-7");

        let wit_sms = wit::Sms::from(&sms);

        assert_eq!(wit_sms.to, sms.to);
        assert_eq!(wit_sms.from, sms.from);
        assert_eq!(wit_sms.body, sms.body);
        let template = wit_sms.template.expect("template is copied");
        assert_eq!(template.name, "disk-alert");
        assert_eq!(template.version, 2);
        assert_eq!(wit_sms.idempotency_key, sms.idempotency_key);
    }
}
