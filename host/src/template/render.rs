//! Rendering one template source with a JSON context: the shared MiniJinja
//! environments, their limits, the escaping of values and the error text.
//!
//! Templates come from untrusted workers, so each render runs with a fuel
//! budget (a loop over a huge range fails instead of hanging a runtime
//! thread) and a recursion limit.

use std::sync::LazyLock;

use minijinja::{AutoEscape, Environment, ErrorKind, Template, UndefinedBehavior, Value};

use super::{filters, undefined};

/// Instruction budget of one render. A template that loops over its context
/// uses a few units per iteration, so this allows loops over tens of
/// thousands of items.
const FUEL: u64 = 1_000_000;

/// Maximum size of one rendered template, in bytes. Fuel counts
/// instructions, not bytes, so without this cap a short loop that prints a
/// long string could build gigabytes of output in the host.
const MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// Maximum nesting of includes, macros and blocks.
const RECURSION_LIMIT: usize = 64;

/// Escaping applied to substituted values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Insert values as they are.
    None,
    /// Escape `<`, `>`, `&`, `"` and `'` as HTML entities.
    Html,
}

/// Failure of a render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template does not parse.
    #[error("invalid template: {0}")]
    InvalidTemplate(String),
    /// The context is not a JSON object.
    #[error("invalid context: {0}")]
    InvalidContext(String),
    /// Rendering failed.
    #[error("render failed: {0}")]
    RenderFailed(String),
}

/// A template source that does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Line of the error, counting from 1, when MiniJinja reports it.
    pub line: Option<usize>,
    /// Reason, without the line.
    pub reason: String,
}

/// Environment for values inserted as they are.
static PLAIN: LazyLock<Environment<'static>> = LazyLock::new(|| environment(Escape::None));

/// Environment that escapes values for HTML.
static HTML: LazyLock<Environment<'static>> = LazyLock::new(|| environment(Escape::Html));

/// Environment of the trial render in [`check_syntax`], where an undefined
/// value is empty instead of an error.
static TRIAL: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut environment = environment(Escape::None);
    environment.set_undefined_behavior(UndefinedBehavior::Chainable);
    environment
});

/// Renders template source with a context given as JSON text.
pub fn render(source: &str, context_json: &str, escape: Escape) -> Result<String, RenderError> {
    let context = parse_context(context_json)?;
    render_value(source, &context, escape)
}

/// Parses a render context, which must be a JSON object.
pub(super) fn parse_context(context_json: &str) -> Result<Value, RenderError> {
    let context: serde_json::Value = serde_json::from_str(context_json).map_err(|error| {
        RenderError::InvalidContext(format!("context is not valid JSON: {error}"))
    })?;
    if !context.is_object() {
        return Err(RenderError::InvalidContext(format!(
            "context must be a JSON object, got {}",
            json_kind(&context)
        )));
    }
    Ok(Value::from_serialize(&context))
}

/// Renders template source with a context parsed by [`parse_context`].
pub(super) fn render_value(
    source: &str,
    context: &Value,
    escape: Escape,
) -> Result<String, RenderError> {
    let environment = match escape {
        Escape::None => &*PLAIN,
        Escape::Html => &*HTML,
    };
    let template = environment
        .template_from_str(source)
        .map_err(|error| RenderError::InvalidTemplate(describe(&error)))?;
    let mut output = CappedOutput::default();
    match template.render_captured_to(context, &mut output) {
        Ok(_) => Ok(String::from_utf8(output.bytes).expect("MiniJinja writes whole UTF-8 strings")),
        Err(_) if output.exceeded => Err(RenderError::RenderFailed(format!(
            "rendered output exceeds {MAX_OUTPUT_BYTES} bytes; shorten the template or its context"
        ))),
        Err(error) => Err(render_failed(environment, &template, context, &error)),
    }
}

/// A render's output, which fails a write that would take it past
/// [`MAX_OUTPUT_BYTES`].
#[derive(Default)]
struct CappedOutput {
    bytes: Vec<u8>,
    exceeded: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buffer.len() > MAX_OUTPUT_BYTES {
            self.exceeded = true;
            return Err(std::io::Error::other("rendered output is too large"));
        }
        self.bytes.extend_from_slice(buffer);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks `source` before it is stored: it must parse, and a trial render
/// with an empty context must not reach an unknown filter, test or function
/// or an `include`, which every later render would fail on too.
///
/// The trial render treats undefined values as empty, so it only checks the
/// code that an empty context reaches. A filter inside a loop over a context
/// list, or in a branch on a context value, is checked at render time.
pub fn check_syntax(source: &str) -> Result<(), SyntaxError> {
    let syntax_error = |error: &minijinja::Error| SyntaxError {
        line: error.line(),
        reason: describe_without_line(error),
    };
    PLAIN
        .template_from_str(source)
        .map_err(|error| syntax_error(&error))?;
    let template = TRIAL
        .template_from_str(source)
        .map_err(|error| syntax_error(&error))?;
    let mut output = CappedOutput::default();
    match template.render_captured_to(Value::from(()), &mut output) {
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::UnknownFilter
                    | ErrorKind::UnknownTest
                    | ErrorKind::UnknownFunction
                    | ErrorKind::TemplateNotFound
            ) =>
        {
            Err(syntax_error(&error))
        }
        _ => Ok(()),
    }
}

/// Creates an environment with the limits, filters and undefined behaviour
/// of every render, escaping values with `escape`.
fn environment(escape: Escape) -> Environment<'static> {
    let mut environment = Environment::new();
    // NOTE: the output is capped, but a single value is not: `'x' * N` or
    // repeated `~` can still allocate a large string before it is printed.
    environment.set_fuel(Some(FUEL));
    environment.set_recursion_limit(RECURSION_LIMIT);
    // Printing, iterating, filtering or reading an attribute of an undefined
    // value fails. Only a truth test (`{% if coupon %}`) treats it as false,
    // so an optional field can be left out of the context.
    environment.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    environment.set_auto_escape_callback(move |_| match escape {
        Escape::None => AutoEscape::None,
        Escape::Html => AutoEscape::Html,
    });
    // MiniJinja's own HTML escaping also turns `/` into `&#x2f;`, which is
    // valid but makes links in the source hard to read and to check. Escape
    // exactly the five characters that matter in HTML text and attributes.
    environment.set_formatter(|output, state, value| {
        let plain = !value.is_safe() && !value.is_none() && !value.is_undefined();
        if state.auto_escape() == AutoEscape::Html && plain {
            let text = value.to_string();
            output.write_str(&escape_html(&text))?;
            Ok(())
        } else {
            minijinja::escape_formatter(output, state, value)
        }
    });
    filters::register(&mut environment);
    environment
}

/// Converts a failed render into [`RenderError::RenderFailed`], naming the
/// undefined variables behind an undefined-value error.
fn render_failed(
    environment: &Environment<'_>,
    template: &Template<'_, '_>,
    context: &Value,
    error: &minijinja::Error,
) -> RenderError {
    let message = match undefined::describe(environment, template, context, error) {
        Some(message) => message,
        None => describe(error),
    };
    RenderError::RenderFailed(message)
}

/// Escapes `<`, `>`, `&`, `"` and `'` as HTML entities.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Describes `error` as its kind, detail and cause, then the line.
fn describe(error: &minijinja::Error) -> String {
    let mut text = describe_without_line(error);
    if let Some(line) = error.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}

/// Describes `error` as its kind, its detail and the error that caused it,
/// such as the reason a date format string is invalid.
fn describe_without_line(error: &minijinja::Error) -> String {
    let mut text = error.kind().to_string();
    if let Some(detail) = error.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    if let Some(cause) = std::error::Error::source(error) {
        text.push_str(&format!(" ({cause})"));
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_output_fails() {
        let source = "{% set a = 'x' * 1000000 %}{% for i in range(10) %}{{ a }}{% endfor %}";
        let error = render(source, "{}", Escape::None).unwrap_err();
        let RenderError::RenderFailed(message) = error else {
            panic!("expected render-failed, got {error:?}");
        };
        assert!(message.contains("exceeds"), "{message}");
    }

    #[test]
    fn html_escape_escapes_values() {
        let html = render(
            "<p>Hello {{ name }}</p>",
            r#"{"name": "<Ada & \"Bob\">"}"#,
            Escape::Html,
        )
        .unwrap();
        assert_eq!(html, "<p>Hello &lt;Ada &amp; &quot;Bob&quot;&gt;</p>");
    }

    #[test]
    fn html_escape_keeps_slashes_in_links() {
        let html = render(
            r#"<a href="{{ url }}">x</a>"#,
            r#"{"url": "https://example.com/verify?token=a&b='c'"}"#,
            Escape::Html,
        )
        .unwrap();
        assert_eq!(
            html,
            r#"<a href="https://example.com/verify?token=a&amp;b=&#39;c&#39;">x</a>"#
        );
    }

    #[test]
    fn html_escape_renders_numbers_and_safe_values() {
        let html = render(
            "{{ count }} {{ markup | safe }}",
            r#"{"count": 3, "markup": "<b>ok</b>"}"#,
            Escape::Html,
        )
        .unwrap();
        assert_eq!(html, "3 <b>ok</b>");
    }

    #[test]
    fn no_escape_keeps_values() {
        let text = render("Hello {{ name }}", r#"{"name": "<Ada>"}"#, Escape::None).unwrap();
        assert_eq!(text, "Hello <Ada>");
    }

    #[test]
    fn name_with_quotes_and_markup() {
        let context = r#"{"name": "O'Brien \"Bo\" <x&y>"}"#;

        let text = render("Hi {{ name }}", context, Escape::None).unwrap();
        assert_eq!(text, r#"Hi O'Brien "Bo" <x&y>"#);

        let html = render("<p>Hi {{ name }}</p>", context, Escape::Html).unwrap();
        assert_eq!(html, "<p>Hi O&#39;Brien &quot;Bo&quot; &lt;x&amp;y&gt;</p>");
    }

    #[test]
    fn syntax_error_names_line() {
        let error = render("line one\n{{ name ", "{}", Escape::None).unwrap_err();
        let RenderError::InvalidTemplate(message) = error else {
            panic!("expected invalid-template, got {error:?}");
        };
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn check_syntax_returns_line_and_reason() {
        assert_eq!(check_syntax("Hello {{ name }}"), Ok(()));

        let error = check_syntax("line one\nline two {% if x %}").unwrap_err();
        assert_eq!(error.line, Some(2));
        assert!(error.reason.starts_with("syntax error"), "{}", error.reason);
        assert!(!error.reason.contains("line"), "{}", error.reason);
    }

    #[test]
    fn check_syntax_rejects_unknown_names() {
        let cases = [
            ("{{ name | shout }}", "unknown filter"),
            ("{% if name is shouty %}x{% endif %}", "unknown test"),
            ("{{ shout(name) }}", "unknown function"),
            ("{% include \"footer\" %}", "template not found"),
        ];
        for (source, reason) in cases {
            let error = check_syntax(source).unwrap_err();
            assert!(error.reason.contains(reason), "{source}: {}", error.reason);
            assert_eq!(error.line, Some(1), "{source}");
        }
    }

    #[test]
    fn check_syntax_accepts_context_use() {
        let source = "{{ user.name | upper }} {% for item in items %}{{ item.title }}{% endfor %} \
                      {{ when | datetimeformat(tz=\"Europe/Paris\") }}";
        assert_eq!(check_syntax(source), Ok(()));
    }

    #[test]
    fn undefined_variable_fails() {
        let error = render("Hello {{ nmae }}", r#"{"name": "Ada"}"#, Escape::None).unwrap_err();
        assert!(matches!(error, RenderError::RenderFailed(_)), "{error:?}");
    }

    #[test]
    fn undefined_variable_in_if_is_false() {
        let text = render("{% if coupon %}x{% endif %}ok", "{}", Escape::None).unwrap();
        assert_eq!(text, "ok");
    }

    #[test]
    fn context_must_be_an_object() {
        let error = render("x", "[1, 2]", Escape::None).unwrap_err();
        assert_eq!(
            error,
            RenderError::InvalidContext("context must be a JSON object, got an array".into())
        );
        let error = render("x", "{not json", Escape::None).unwrap_err();
        assert!(matches!(error, RenderError::InvalidContext(_)), "{error:?}");
    }

    #[test]
    fn endless_loop_runs_out_of_fuel() {
        let source =
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        let error = render(source, "{}", Escape::None).unwrap_err();
        let RenderError::RenderFailed(message) = error else {
            panic!("expected render-failed, got {error:?}");
        };
        assert!(message.contains("fuel"), "{message}");
    }
}
