//! Naming the variables behind an undefined-value error.
//!
//! MiniJinja reports "undefined value" with the span of the instruction that
//! failed (for `{{ first_name | upper }}`, only the filter name) but not the
//! variable. This module lists the variables that the template reads without
//! setting them, keeps those missing from the context, and names the ones
//! that appear in the tag that failed.

use minijinja::{Environment, ErrorKind, Template, Value};

/// Returns a message that names the undefined variables behind `error`, or
/// `None` when `error` is not about an undefined value or no variable of the
/// failing tag is missing from the context.
pub(super) fn describe(
    environment: &Environment<'_>,
    template: &Template<'_, '_>,
    context: &Value,
    error: &minijinja::Error,
) -> Option<String> {
    if !is_undefined_error(error) {
        return None;
    }
    let tag = failing_tag(template.source(), error)?;
    let missing = missing_variables(environment, template, context);
    let named: Vec<&str> = missing
        .iter()
        .map(String::as_str)
        .filter(|name| mentions(tag, name))
        .collect();
    let line = error
        .line()
        .map(|line| format!(" (line {line})"))
        .unwrap_or_default();

    let message = match named.as_slice() {
        [] if error.kind() == ErrorKind::UndefinedError => format!(
            "undefined value in {}{line}, check that every name it reads is set",
            tag.trim()
        ),
        [] => return None,
        [name] => format!(
            "undefined variable \"{name}\"{line}, pass it in the context or give it a default \
             as in {{{{ {name} | default(\"\") }}}}"
        ),
        [first, ..] => format!(
            "undefined variables {}{line}, pass them in the context or give them defaults \
             as in {{{{ {first} | default(\"\") }}}}",
            quote_all(&named)
        ),
    };
    Some(message)
}

/// Returns whether `error` comes from using an undefined value: printing it,
/// passing it to a filter, reading its attributes, or applying an operator
/// to it.
fn is_undefined_error(error: &minijinja::Error) -> bool {
    match error.kind() {
        ErrorKind::UndefinedError => true,
        ErrorKind::InvalidOperation => error
            .detail()
            .is_some_and(|detail| detail.contains("undefined")),
        _ => false,
    }
}

/// Returns the source of the `{{ … }}` or `{% … %}` tag around the span of
/// `error`, or the whole line when MiniJinja gave no span.
fn failing_tag<'a>(source: &'a str, error: &minijinja::Error) -> Option<&'a str> {
    let Some(range) = error.range() else {
        let line = error.line()?;
        return source.lines().nth(line.checked_sub(1)?);
    };
    let before = source.get(..range.start)?;
    let after = source.get(range.end..)?;
    let start = ["{{", "{%"]
        .iter()
        .filter_map(|open| before.rfind(open))
        .max()
        .unwrap_or(0);
    let end = ["}}", "%}"]
        .iter()
        .filter_map(|close| after.find(close).map(|offset| range.end + offset + 2))
        .min()
        .unwrap_or(source.len());
    source.get(start..end)
}

/// Returns the variables and attribute paths that `template` reads without
/// setting them and that neither the context nor the environment's globals
/// provide, each cut at its first missing part and sorted.
///
/// For `{{ user.first_name }}` this is `user` when the context has no
/// `user`, and `user.first_name` when `user` has no `first_name`.
fn missing_variables(
    environment: &Environment<'_>,
    template: &Template<'_, '_>,
    context: &Value,
) -> Vec<String> {
    let mut missing: Vec<String> = template
        .undeclared_variables(true)
        .iter()
        .filter_map(|path| first_missing(environment, context, path))
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// Returns the prefix of the dotted `path` up to its first part that
/// resolves to an undefined value, or `None` when the whole path resolves.
fn first_missing(environment: &Environment<'_>, context: &Value, path: &str) -> Option<String> {
    let mut parts = path.split('.');
    let root = parts.next()?;
    let is_global = environment.globals().any(|(name, _)| name == root);
    let mut value = context.get_attr(root).unwrap_or(Value::UNDEFINED);
    if value.is_undefined() && is_global {
        return None;
    }
    let mut length = root.len();
    if value.is_undefined() {
        return Some(path[..length].to_owned());
    }
    for part in parts {
        length += 1 + part.len();
        value = value.get_attr(part).unwrap_or(Value::UNDEFINED);
        if value.is_undefined() {
            return Some(path[..length].to_owned());
        }
    }
    None
}

/// Returns whether `text` contains the dotted `name` as a whole name: not
/// as part of a longer identifier nor as an attribute of something else.
fn mentions(text: &str, name: &str) -> bool {
    let is_name_character = |character: char| character.is_alphanumeric() || character == '_';
    text.match_indices(name).any(|(start, _)| {
        let before = text[..start].chars().next_back();
        let after = text[start + name.len()..].chars().next();
        let starts_a_name = !before.is_some_and(|c| is_name_character(c) || c == '.');
        let ends_a_name = !after.is_some_and(is_name_character);
        starts_a_name && ends_a_name
    })
}

/// Formats names as `"a"`, `"a" and "b"`, or `"a", "b" and "c"`.
fn quote_all(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("\"{name}\"")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::render::{Escape, RenderError, render};
    use super::*;

    /// Renders `source` without escaping and returns the render-failed
    /// message.
    fn failure(source: &str, context: &str) -> String {
        match render(source, context, Escape::None) {
            Err(RenderError::RenderFailed(message)) => message,
            other => panic!("expected render-failed for {source:?}, got {other:?}"),
        }
    }

    #[test]
    fn filter_on_missing_variable_names_it() {
        let message = failure("Hello {{ first_name | upper }}!", r#"{"name": "Ada"}"#);
        assert!(message.contains("\"first_name\""), "{message}");
        assert!(message.contains("line 1"), "{message}");
        assert!(message.contains("default"), "{message}");
    }

    #[test]
    fn printing_missing_variable_names_it() {
        let message = failure("one\ntwo {{ nmae }}", r#"{"name": "Ada"}"#);
        assert!(
            message.starts_with("undefined variable \"nmae\""),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn missing_attribute_names_dotted_path() {
        let message = failure("{{ user.first_name | upper }}", r#"{"user": {"id": 1}}"#);
        assert!(message.contains("\"user.first_name\""), "{message}");

        let message = failure("{{ user.first_name }}", "{}");
        assert!(message.contains("\"user\""), "{message}");
        assert!(!message.contains("user.first_name\""), "{message}");
    }

    #[test]
    fn only_failing_tag_is_named() {
        let source = r#"Hi {{ nickname | default("there") }}, {{ first_name | upper }}"#;
        let message = failure(source, "{}");
        assert!(message.contains("\"first_name\""), "{message}");
        assert!(!message.contains("nickname"), "{message}");
    }

    #[test]
    fn operator_on_missing_variable_names_it() {
        let message = failure("{{ count + 1 }}", "{}");
        assert!(message.contains("\"count\""), "{message}");
    }

    #[test]
    fn missing_loop_attribute_quotes_tag() {
        let message = failure(
            "{% for item in items %}{{ item.name }}{% endfor %}",
            r#"{"items": [{"id": 1}]}"#,
        );
        assert!(message.contains("{{ item.name }}"), "{message}");
    }

    #[test]
    fn default_and_defined_tests_still_work() {
        let source = concat!(
            r#"Hi {{ first_name | default("there") }}"#,
            "{% if coupon is defined %} {{ coupon }}{% endif %}",
            "{% if vip %} VIP{% endif %}",
            "{% if user is defined and user.name is defined %} {{ user.name }}{% endif %}",
        );
        let text = render(source, "{}", Escape::None).unwrap();
        assert_eq!(text, "Hi there");
    }

    #[test]
    fn globals_are_not_missing() {
        let text = render("{{ range(3) | join(',') }}", "{}", Escape::None).unwrap();
        assert_eq!(text, "0,1,2");
    }

    #[test]
    fn mentions_matches_whole_names() {
        assert!(mentions("{{ first_name | upper }}", "first_name"));
        assert!(mentions("{{ user.first_name }}", "user"));
        assert!(mentions("{{ user.first_name }}", "user.first_name"));
        assert!(!mentions("{{ first_names }}", "first_name"));
        assert!(!mentions("{{ my_first_name }}", "first_name"));
        assert!(!mentions("{{ user.first_name }}", "first_name"));
    }

    #[test]
    fn quote_all_joins_names() {
        assert_eq!(quote_all(&["a"]), "\"a\"");
        assert_eq!(quote_all(&["a", "b"]), "\"a\" and \"b\"");
        assert_eq!(quote_all(&["a", "b", "c"]), "\"a\", \"b\" and \"c\"");
    }
}
