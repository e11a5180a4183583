//! Template rendering through the host, with MiniJinja syntax
//! (`{{ name }}`, `{% if %}`, filters).

use std::fmt;

use serde::Serialize;

use crate::bindings::herald::worker::template as wit;

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
    /// Rendering failed, for example on an unknown filter or when the
    /// template exceeded the host's step budget.
    RenderFailed(String),
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
    }

    #[test]
    fn template_error_display_names_kind() {
        assert_eq!(
            TemplateError::RenderFailed("unknown filter `shout`".to_string()).to_string(),
            "template rendering failed: unknown filter `shout`"
        );
    }
}
