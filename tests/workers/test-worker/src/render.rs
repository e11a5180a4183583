//! Actions that render a stored template or a template string and send the
//! result, so that the tests can check rendering, the template reference in
//! the delivery log, and that a template error calls no gateway.

use herald_sdk::template::{self, Escape, Rendered};
use herald_sdk::{Email, Error, Message, Push, Sms, gateway};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Subject of the email that `render_string` sends.
const RENDER_STRING_SUBJECT: &str = "render_string";

/// Channel that a `render_stored` payload sends the rendered template
/// through.
#[derive(Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// An email with the rendered subject, text and HTML.
    #[default]
    Email,
    /// A text message whose body is the rendered text part.
    Sms,
    /// A push notification whose title is the rendered subject and whose
    /// body is the rendered text part.
    Push,
}

impl Channel {
    fn default_gateway(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
        }
    }
}

/// Fields of `render_stored`.
#[derive(Deserialize)]
pub struct StoredFields {
    /// Name of the stored template.
    template: String,
    /// Context of the render. Any JSON value is passed on, so a test can
    /// check how a context that is not an object fails.
    #[serde(default = "empty_object")]
    context: Value,
    #[serde(default)]
    channel: Channel,
    /// Recipient: an address, a phone number or a device token, by channel.
    to: String,
    gateway: Option<String>,
    key: Option<String>,
}

/// Renders the stored template and sends it through the payload's channel
/// with the template reference. A template error fails the message before
/// any gateway is called.
pub fn render_stored(message: &Message, fields: StoredFields) -> Result<(), Error> {
    let rendered = template::render_stored(&fields.template, &fields.context)?;
    let gateway_name = fields
        .gateway
        .unwrap_or_else(|| fields.channel.default_gateway().to_string());

    match fields.channel {
        Channel::Email => {
            let mut email = Email::from_rendered(rendered).to(fields.to);
            email.idempotency_key = fields.key;
            gateway::send_email(&gateway_name, message, &email)?;
        }
        Channel::Sms => {
            let text = required_text(&rendered)?;
            let mut sms = Sms::new()
                .to(fields.to)
                .body(text)
                .template(rendered.template);
            sms.idempotency_key = fields.key;
            gateway::send_sms(&gateway_name, message, &sms)?;
        }
        Channel::Push => {
            let text = required_text(&rendered)?;
            let mut push = Push::new()
                .token(fields.to)
                .body(text)
                .template(rendered.template);
            push.title = rendered.subject;
            push.idempotency_key = fields.key;
            gateway::send_push(&gateway_name, message, &push)?;
        }
    }
    Ok(())
}

/// Returns the rendered text part, which the SMS and push channels need.
fn required_text(rendered: &Rendered) -> Result<String, Error> {
    rendered.text.clone().ok_or_else(|| {
        Error::fail(format!(
            "stored template `{name}` version {} has no text part, which a text message or \
             push notification needs. Add one with PUT /v1/templates/{name}",
            rendered.template.version,
            name = rendered.template.name,
        ))
    })
}

/// Escaping named in a `render_string` payload.
#[derive(Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EscapeField {
    /// No escaping.
    #[default]
    None,
    /// HTML escaping.
    Html,
}

/// Fields of `render_string`.
#[derive(Deserialize)]
pub struct StringFields {
    /// Template source.
    template: String,
    /// Context of the render. Any JSON value is passed on, so a test can
    /// check how a context that is not an object fails.
    #[serde(default = "empty_object")]
    context: Value,
    #[serde(default)]
    escape: EscapeField,
    to: String,
    #[serde(default = "email_gateway")]
    gateway: String,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn email_gateway() -> String {
    "email".to_string()
}

/// Renders the template string and emails the output as the text body.
pub fn render_string(message: &Message, fields: StringFields) -> Result<(), Error> {
    let escape = match fields.escape {
        EscapeField::None => Escape::None,
        EscapeField::Html => Escape::Html,
    };
    let output = template::render(&fields.template, &fields.context, escape)?;

    let email = Email::new()
        .to(fields.to)
        .subject(RENDER_STRING_SUBJECT)
        .text(output);
    gateway::send_email(&fields.gateway, message, &email)?;
    Ok(())
}
