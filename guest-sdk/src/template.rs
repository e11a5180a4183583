//! Template rendering through the host, with MiniJinja syntax
//! (`{{ name }}`, `{% if %}`, `{% for %}`, filters).
//!
//! [`render`] and its shortcuts render a template string that the worker
//! carries. [`render_stored`] renders a template that the operator stored
//! with `PUT /v1/templates/{name}`, so its wording can change without a new
//! upload of the worker. An undefined variable is a render error, except
//! inside an `{% if %}` test, so a missing value never renders as an empty
//! string.
//!
//! ```no_run
//! use herald_sdk::{gateway, template, Email, Error, Message};
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct Reminder<'a> {
//!     name: &'a str,
//!     due: &'a str,
//! }
//!
//! fn remind(message: &Message) -> Result<(), Error> {
//!     let context = Reminder { name: "Ada", due: "2026-12-31" };
//!     // A template error, such as a missing template or an undefined
//!     // variable, fails the message through `?` before anything is sent.
//!     let rendered = template::render_stored("payment-reminder", &context)?;
//!     let email = Email::from_rendered(rendered).to("ada@example.com");
//!     gateway::send_email("email", message, &email)?;
//!     Ok(())
//! }
//! ```

use std::fmt;

use serde::Serialize;

use crate::bindings::herald::worker::template as wit;
use crate::bindings::herald::worker::types as wit_types;

/// Escaping applied to substituted values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Values are inserted unchanged. Use it for subjects and plain text.
    None,
    /// `<`, `>`, `&`, `"` and `'` in values become HTML entities.
    Html,
}

/// Renders `template` with the fields of `context`, escaping substituted
/// values as `escape` sets.
///
/// # Errors
///
/// Returns [`TemplateError::InvalidContext`] without calling the host when
/// `context` does not serialize to a JSON object. Returns the host's
/// [`TemplateError`] when the template does not parse or rendering fails.
pub fn render(
    template: &str,
    context: &impl Serialize,
    escape: Escape,
) -> Result<String, TemplateError> {
    let context = context_json(context)?;
    let escape = match escape {
        Escape::None => wit::Escape::None,
        Escape::Html => wit::Escape::Html,
    };
    wit::render(template, &context, escape).map_err(TemplateError::from)
}

/// Renders `template` with values inserted unchanged, for subjects and
/// plain-text bodies.
///
/// # Errors
///
/// Returns [`TemplateError`] as [`render`] does.
pub fn render_text(template: &str, context: &impl Serialize) -> Result<String, TemplateError> {
    render(template, context, Escape::None)
}

/// Renders `template` with HTML escaping of every substituted value, for HTML
/// bodies.
///
/// # Errors
///
/// Returns [`TemplateError`] as [`render`] does.
pub fn render_html(template: &str, context: &impl Serialize) -> Result<String, TemplateError> {
    render(template, context, Escape::Html)
}

/// Renders the latest version of the stored template `name` with the fields
/// of `context`.
///
/// The subject and the plain-text part are rendered without escaping and the
/// HTML part with HTML escaping. A part that the template does not have is
/// `None` in the result. Pass [`Rendered::template`] on to the send, for
/// example through [`Email::from_rendered`](crate::Email::from_rendered), so
/// that the delivery log records the template and version that rendered it.
///
/// # Errors
///
/// Returns [`TemplateError::InvalidContext`] without calling the host when
/// `context` does not serialize to a JSON object, and
/// [`TemplateError::NotFound`] when no template named `name` is stored.
/// Returns the host's other [`TemplateError`]s when a part does not parse or
/// rendering fails, for example on an undefined variable.
pub fn render_stored(name: &str, context: &impl Serialize) -> Result<Rendered, TemplateError> {
    let context = context_json(context)?;
    wit::render_stored(name, &context)
        .map(Rendered::from)
        .map_err(|error| stored_error(name, error))
}

/// Converts the host's error for the stored template `name`, so that the
/// reason of a failed message names the template to fix.
fn stored_error(name: &str, error: wit::TemplateError) -> TemplateError {
    // The host's message usually names the template, its version and the
    // part already.
    let name_message = |message: String| {
        if message.contains(name) {
            message
        } else {
            format!("stored template `{name}`: {message}")
        }
    };

    match error {
        // The requested name is reliable, whatever text the host put in
        // `not-found`.
        wit::TemplateError::NotFound(_) => TemplateError::NotFound(name.to_string()),
        wit::TemplateError::InvalidTemplate(message) => {
            TemplateError::InvalidTemplate(name_message(message))
        }
        wit::TemplateError::InvalidContext(message) => {
            TemplateError::InvalidContext(name_message(message))
        }
        wit::TemplateError::RenderFailed(message) => {
            TemplateError::RenderFailed(name_message(message))
        }
    }
}

/// A stored template at one version. A send that carries it gets it
/// recorded in the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TemplateRef {
    /// Template name, as in `PUT /v1/templates/{name}`.
    pub name: String,
    /// Version, starting at 1 and growing with every change of the template.
    pub version: u32,
}

impl From<wit_types::TemplateRef> for TemplateRef {
    fn from(template: wit_types::TemplateRef) -> Self {
        Self {
            name: template.name,
            version: template.version,
        }
    }
}

impl From<&TemplateRef> for wit_types::TemplateRef {
    fn from(template: &TemplateRef) -> Self {
        Self {
            name: template.name.clone(),
            version: template.version,
        }
    }
}

/// The parts of a stored template, rendered by [`render_stored`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The template and the version that rendered.
    pub template: TemplateRef,
    /// Subject, rendered without escaping, or `None` when the template has
    /// no subject.
    pub subject: Option<String>,
    /// Plain-text part, rendered without escaping, or `None` when the
    /// template has no text part.
    pub text: Option<String>,
    /// HTML part, rendered with HTML escaping, or `None` when the template
    /// has no HTML part.
    pub html: Option<String>,
}

impl From<wit::Rendered> for Rendered {
    fn from(rendered: wit::Rendered) -> Self {
        Self {
            template: TemplateRef::from(rendered.template),
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
        }
    }
}

/// Serializes `context` to JSON text and checks that it is an object, which
/// the host requires.
fn context_json(context: &impl Serialize) -> Result<String, TemplateError> {
    let value = serde_json::to_value(context).map_err(|error| {
        TemplateError::InvalidContext(format!("context does not serialize to JSON: {error}"))
    })?;

    if !value.is_object() {
        let kind = json_kind(&value);
        return Err(TemplateError::InvalidContext(format!(
            "expected a JSON object such as a struct or map, got {kind}"
        )));
    }

    Ok(value.to_string())
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Reason rendering failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// The template does not parse. The text names the line.
    InvalidTemplate(String),
    /// The context is not a JSON object.
    InvalidContext(String),
    /// Rendering failed, for example on an undefined variable, an unknown
    /// filter, or when the template exceeded the host's step budget.
    RenderFailed(String),
    /// No stored template has this name. The value is the name.
    NotFound(String),
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::InvalidTemplate(message) => write!(f, "invalid template: {message}"),
            TemplateError::InvalidContext(message) => {
                write!(f, "invalid template context: {message}")
            }
            TemplateError::RenderFailed(message) => {
                write!(f, "template rendering failed: {message}")
            }
            TemplateError::NotFound(name) => write!(
                f,
                "stored template `{name}` not found: upload it with PUT /v1/templates/{name}"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

impl From<wit::TemplateError> for TemplateError {
    fn from(error: wit::TemplateError) -> Self {
        match error {
            wit::TemplateError::InvalidTemplate(message) => TemplateError::InvalidTemplate(message),
            wit::TemplateError::InvalidContext(message) => TemplateError::InvalidContext(message),
            wit::TemplateError::RenderFailed(message) => TemplateError::RenderFailed(message),
            wit::TemplateError::NotFound(name) => TemplateError::NotFound(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serializer;

    use super::*;

    #[derive(Serialize)]
    struct Context<'a> {
        name: &'a str,
    }

    struct Unserializable;

    impl Serialize for Unserializable {
        fn serialize<S: Serializer>(&self, _serializer: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom(
                "field `secret` cannot be serialized",
            ))
        }
    }

    #[test]
    fn context_struct_becomes_object() {
        let json = context_json(&Context { name: "Ada" }).unwrap();

        assert_eq!(json, r#"{"name":"Ada"}"#);
    }

    #[test]
    fn context_map_becomes_object() {
        let context = BTreeMap::from([("name", "Ada")]);

        let json = context_json(&context).unwrap();

        assert_eq!(json, r#"{"name":"Ada"}"#);
    }

    #[test]
    fn render_rejects_non_object_context() {
        // These return before the host import, so they run natively.
        let cases = [
            (render_text("{{ x }}", &"Ada"), "a string"),
            (render_text("{{ x }}", &[1, 2]), "an array"),
            (render_html("{{ x }}", &42), "a number"),
            (render("{{ x }}", &(), Escape::None), "null"),
        ];

        for (result, kind) in cases {
            let error = result.unwrap_err();
            assert!(
                matches!(error, TemplateError::InvalidContext(_)),
                "{error:?}"
            );
            assert!(
                error.to_string().ends_with(&format!("got {kind}")),
                "{error}"
            );
        }
    }

    #[test]
    fn render_rejects_unserializable_context() {
        let error = render_text("{{ x }}", &Unserializable).unwrap_err();

        assert_eq!(
            error.to_string(),
            "invalid template context: context does not serialize to JSON: \
             field `secret` cannot be serialized"
        );
    }

    #[test]
    fn template_error_from_wit_keeps_variant() {
        assert_eq!(
            TemplateError::from(wit::TemplateError::InvalidTemplate("line 3".to_string())),
            TemplateError::InvalidTemplate("line 3".to_string())
        );
        assert_eq!(
            TemplateError::from(wit::TemplateError::InvalidContext(
                "not an object".to_string()
            )),
            TemplateError::InvalidContext("not an object".to_string())
        );
        assert_eq!(
            TemplateError::from(wit::TemplateError::RenderFailed(
                "unknown filter".to_string()
            )),
            TemplateError::RenderFailed("unknown filter".to_string())
        );
        assert_eq!(
            TemplateError::from(wit::TemplateError::NotFound("digest".to_string())),
            TemplateError::NotFound("digest".to_string())
        );
    }

    #[test]
    fn template_error_display_names_kind() {
        assert_eq!(
            TemplateError::RenderFailed("unknown filter `shout`".to_string()).to_string(),
            "template rendering failed: unknown filter `shout`"
        );
    }

    #[test]
    fn not_found_display_names_upload() {
        assert_eq!(
            TemplateError::NotFound("daily-digest".to_string()).to_string(),
            "stored template `daily-digest` not found: \
             upload it with PUT /v1/templates/daily-digest"
        );
    }

    #[test]
    fn stored_not_found_uses_requested_name() {
        let error = stored_error(
            "daily-digest",
            wit::TemplateError::NotFound("no such template".to_string()),
        );

        assert_eq!(error, TemplateError::NotFound("daily-digest".to_string()));
    }

    #[test]
    fn stored_error_names_template() {
        let error = stored_error(
            "daily-digest",
            wit::TemplateError::RenderFailed("undefined value (line 3)".to_string()),
        );

        assert_eq!(
            error,
            TemplateError::RenderFailed(
                "stored template `daily-digest`: undefined value (line 3)".to_string()
            )
        );
    }

    #[test]
    fn stored_error_keeps_host_naming() {
        let message = r#"template "daily-digest" version 2, part "text": undefined value"#;

        let error = stored_error(
            "daily-digest",
            wit::TemplateError::InvalidTemplate(message.to_string()),
        );

        assert_eq!(error, TemplateError::InvalidTemplate(message.to_string()));
    }

    #[test]
    fn render_stored_rejects_non_object_context() {
        // This returns before the host import, so it runs natively.
        let error = render_stored("daily-digest", &[1, 2]).unwrap_err();

        assert!(
            matches!(error, TemplateError::InvalidContext(_)),
            "{error:?}"
        );
    }

    #[test]
    fn rendered_from_wit_copies_fields() {
        let rendered = Rendered::from(wit::Rendered {
            template: wit_types::TemplateRef {
                name: "daily-digest".to_string(),
                version: 4,
            },
            subject: Some("Your digest".to_string()),
            text: Some("Hello".to_string()),
            html: None,
        });

        assert_eq!(
            rendered.template,
            TemplateRef {
                name: "daily-digest".to_string(),
                version: 4,
            }
        );
        assert_eq!(rendered.subject.as_deref(), Some("Your digest"));
        assert_eq!(rendered.text.as_deref(), Some("Hello"));
        assert_eq!(rendered.html, None);
    }

    #[test]
    fn template_ref_into_wit_copies_fields() {
        let template = TemplateRef {
            name: "sms-alert".to_string(),
            version: 2,
        };

        let wit_template = wit_types::TemplateRef::from(&template);

        assert_eq!(wit_template.name, "sms-alert");
        assert_eq!(wit_template.version, 2);
    }
}
