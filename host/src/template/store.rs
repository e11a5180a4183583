//! Stored templates: every version of each named template in the
//! `templates` table, and rendering the latest one by name.
//!
//! A template has up to three parts (subject, text and HTML). A put stores a
//! new version only when the parts differ from the latest live version. A
//! delete marks every version of the name deleted instead of removing it,
//! so a delivery can still be traced to what rendered it and a template
//! created again under the name continues the version count.

use rusqlite::{Connection, OptionalExtension, Row, named_params};
use serde::{Deserialize, Serialize};

use super::render::{self, Escape, RenderError};
use crate::clock;
use crate::store::{Db, StoreError};

/// Maximum length of a template name, in bytes.
pub const MAX_NAME_LENGTH: usize = 128;

/// One part of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The subject line.
    Subject,
    /// The plain-text body.
    Text,
    /// The HTML body.
    Html,
}

impl Part {
    /// Every part, in the order they are checked and rendered.
    pub const ALL: [Part; 3] = [Part::Subject, Part::Text, Part::Html];

    /// Returns the part's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Subject => "subject",
            Part::Text => "text",
            Part::Html => "html",
        }
    }

    /// Returns the escaping of values substituted into this part. Only the
    /// HTML part escapes, so a subject or text keeps `<`, `&` and quotes.
    pub fn escape(self) -> Escape {
        match self {
            Part::Subject | Part::Text => Escape::None,
            Part::Html => Escape::Html,
        }
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The sources of a template's parts. A part that is `None` is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateParts {
    /// Subject source.
    pub subject: Option<String>,
    /// Plain-text source.
    pub text: Option<String>,
    /// HTML source.
    pub html: Option<String>,
}

impl TemplateParts {
    /// Returns the source of `part`, if the template has it.
    pub fn get(&self, part: Part) -> Option<&str> {
        match part {
            Part::Subject => self.subject.as_deref(),
            Part::Text => self.text.as_deref(),
            Part::Html => self.html.as_deref(),
        }
    }
}

/// One version of a stored template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredTemplate {
    /// Template name.
    pub name: String,
    /// Version, counting from 1 per name.
    pub version: u32,
    /// Creation time of this version, RFC 3339 in UTC.
    pub created_at: String,
    /// Deletion time, RFC 3339 in UTC, when the template was deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// The part sources.
    #[serde(flatten)]
    pub parts: TemplateParts,
}

/// The latest live version of a template, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateSummary {
    /// Template name.
    pub name: String,
    /// Latest live version.
    pub version: u32,
    /// Creation time of that version, RFC 3339 in UTC.
    pub created_at: String,
}

/// Result of [`TemplateStore::put`].
#[derive(Debug, Clone)]
pub struct Put {
    /// The latest live version after the call.
    pub template: StoredTemplate,
    /// False when the parts equal the latest live version, so nothing was
    /// stored.
    pub created: bool,
}

/// A stored template rendered with one context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedTemplate {
    /// Template name.
    pub name: String,
    /// Version that rendered.
    pub version: u32,
    /// Rendered subject, without escaping.
    pub subject: Option<String>,
    /// Rendered plain text, without escaping.
    pub text: Option<String>,
    /// Rendered HTML, with values escaped.
    pub html: Option<String>,
}

/// A part that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct InvalidPart {
    /// The part.
    pub part: Part,
    /// Line of the error within the part, counting from 1.
    pub line: Option<usize>,
    /// Reason the part does not compile.
    pub reason: String,
}

impl InvalidPart {
    fn message(&self) -> String {
        match self.line {
            Some(line) => format!(
                "template part \"{}\" is invalid at line {line}: {}",
                self.part, self.reason
            ),
            None => format!(
                "template part \"{}\" is invalid: {}",
                self.part, self.reason
            ),
        }
    }
}

/// Failure of [`TemplateStore::put`].
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The name has characters or a length the store does not accept.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// The request has no part.
    #[error("the template has no parts, send at least one of \"subject\", \"text\" and \"html\"")]
    NoParts,
    /// A part is an empty string.
    #[error("template part \"{0}\" is empty, leave it out or give it content")]
    EmptyPart(Part),
    /// A part does not compile.
    #[error(transparent)]
    InvalidPart(#[from] InvalidPart),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A template name outside `[A-Za-z0-9._-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid template name \"{0}\", use 1 to 128 ASCII letters, digits, '.', '_' or '-', \
     such as \"welcome-email\""
)]
pub struct InvalidName(pub String);

/// Failure of [`TemplateStore::render`].
#[derive(Debug, thiserror::Error)]
pub enum RenderStoredError {
    /// No live template has the name.
    #[error("template \"{0}\" not found, store it with PUT /v1/templates/{0} before rendering it")]
    NotFound(String),
    /// The context is not a JSON object.
    #[error("{0}")]
    InvalidContext(String),
    /// A stored part does not compile. Parts are checked when stored, so
    /// this means a newer Herald parses differently.
    #[error("template \"{name}\" version {version}, part \"{part}\": {message}")]
    InvalidTemplate {
        /// Template name.
        name: String,
        /// Version.
        version: u32,
        /// The part.
        part: Part,
        /// MiniJinja's error text.
        message: String,
    },
    /// A part failed to render, for example on an undefined variable.
    #[error("template \"{name}\" version {version}, part \"{part}\": {message}")]
    RenderFailed {
        /// Template name.
        name: String,
        /// Version.
        version: u32,
        /// The part.
        part: Part,
        /// Error text, naming any undefined variable.
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks that `name` is 1 to [`MAX_NAME_LENGTH`] ASCII letters, digits,
/// `.`, `_` or `-`.
pub fn validate_name(name: &str) -> Result<(), InvalidName> {
    let valid_character =
        |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-');
    if name.is_empty() || name.len() > MAX_NAME_LENGTH || !name.bytes().all(valid_character) {
        return Err(InvalidName(name.to_owned()));
    }
    Ok(())
}

/// Checks that `parts` has at least one part, that none is empty, and that
/// each compiles.
pub fn validate_parts(parts: &TemplateParts) -> Result<(), PutError> {
    if Part::ALL.iter().all(|part| parts.get(*part).is_none()) {
        return Err(PutError::NoParts);
    }
    for part in Part::ALL {
        let Some(source) = parts.get(part) else {
            continue;
        };
        if source.is_empty() {
            return Err(PutError::EmptyPart(part));
        }
        render::check_syntax(source).map_err(|error| InvalidPart {
            part,
            line: error.line,
            reason: error.reason,
        })?;
    }
    Ok(())
}

/// Stored templates over the embedded database.
#[derive(Clone)]
pub struct TemplateStore {
    db: Db,
}

impl TemplateStore {
    /// Creates the store over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Validates `parts` and stores them as the next version of `name`.
    /// When they equal the latest live version, nothing is stored and that
    /// version is returned with `created: false`.
    pub async fn put(&self, name: String, parts: TemplateParts) -> Result<Put, PutError> {
        validate_name(&name)?;
        validate_parts(&parts)?;
        let put = self
            .db
            .write(move |transaction| {
                if let Some(latest) = select_latest_live(transaction, &name)?
                    && latest.parts == parts
                {
                    return Ok(Put {
                        template: latest,
                        created: false,
                    });
                }

                let next: u32 = transaction
                    .prepare_cached(
                        "SELECT COALESCE(MAX(version), 0) + 1 FROM templates WHERE name = ?1",
                    )?
                    .query_row([&name], |row| row.get(0))?;
                transaction
                    .prepare_cached(
                        "INSERT INTO templates (name, version, subject, text, html, created_at)
                         VALUES (:name, :version, :subject, :text, :html, :now)",
                    )?
                    .execute(named_params! {
                        ":name": name,
                        ":version": next,
                        ":subject": parts.subject,
                        ":text": parts.text,
                        ":html": parts.html,
                        ":now": clock::now_ms(),
                    })?;
                let template = select_version(transaction, &name, next)?
                    .ok_or_else(|| StoreError::Corrupt(format!("template \"{name}\" vanished")))?;
                Ok(Put {
                    template,
                    created: true,
                })
            })
            .await?;
        if put.created {
            tracing::info!(
                template = %put.template.name,
                version = put.template.version,
                "stored template"
            );
        }
        Ok(put)
    }

    /// Returns the latest live version of `name`, or `None` when there is
    /// none.
    pub async fn latest(&self, name: String) -> Result<Option<StoredTemplate>, StoreError> {
        self.db
            .read(move |connection| select_latest_live(connection, &name))
            .await
    }

    /// Returns version `number` of `name`, deleted or not, or `None` when it
    /// was never stored.
    pub async fn version(
        &self,
        name: String,
        number: u32,
    ) -> Result<Option<StoredTemplate>, StoreError> {
        self.db
            .read(move |connection| select_version(connection, &name, number))
            .await
    }

    /// Returns the latest live version of every template, by name.
    pub async fn list(&self) -> Result<Vec<TemplateSummary>, StoreError> {
        self.db
            .read(|connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT name, MAX(version), created_at FROM templates
                     WHERE deleted_at IS NULL
                     GROUP BY name
                     ORDER BY name",
                )?;
                let rows = statement.query_map([], |row| {
                    Ok(TemplateSummary {
                        name: row.get(0)?,
                        version: row.get(1)?,
                        created_at: clock::to_rfc3339(row.get(2)?),
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// Marks every version of `name` deleted. Returns false when `name` has
    /// no live version.
    pub async fn delete(&self, name: String) -> Result<bool, StoreError> {
        let deleted = self
            .db
            .write(move |transaction| {
                let changed = transaction
                    .prepare_cached(
                        "UPDATE templates SET deleted_at = ?2
                         WHERE name = ?1 AND deleted_at IS NULL",
                    )?
                    .execute(rusqlite::params![name, clock::now_ms()])?;
                Ok(changed > 0)
            })
            .await?;
        Ok(deleted)
    }

    /// Renders every part of the latest live version of `name` with
    /// `context_json`, which must be a JSON object. The subject and text
    /// insert values as they are, and the HTML part escapes them.
    pub async fn render(
        &self,
        name: String,
        context_json: &str,
    ) -> Result<RenderedTemplate, RenderStoredError> {
        let context = render::parse_context(context_json)
            .map_err(|error| RenderStoredError::InvalidContext(error.to_string()))?;
        let Some(template) = self.latest(name.clone()).await? else {
            return Err(RenderStoredError::NotFound(name));
        };

        let mut rendered = RenderedTemplate {
            name: template.name.clone(),
            version: template.version,
            subject: None,
            text: None,
            html: None,
        };
        for part in Part::ALL {
            let Some(source) = template.parts.get(part) else {
                continue;
            };
            let output = render::render_value(source, &context, part.escape())
                .map_err(|error| part_error(&template, part, error))?;
            match part {
                Part::Subject => rendered.subject = Some(output),
                Part::Text => rendered.text = Some(output),
                Part::Html => rendered.html = Some(output),
            }
        }
        Ok(rendered)
    }
}

/// Converts the render error of one part into a [`RenderStoredError`] that
/// names the template, its version and the part.
fn part_error(template: &StoredTemplate, part: Part, error: RenderError) -> RenderStoredError {
    let (name, version) = (template.name.clone(), template.version);
    match error {
        RenderError::InvalidTemplate(message) => RenderStoredError::InvalidTemplate {
            name,
            version,
            part,
            message,
        },
        RenderError::InvalidContext(message) => RenderStoredError::InvalidContext(message),
        RenderError::RenderFailed(message) => RenderStoredError::RenderFailed {
            name,
            version,
            part,
            message,
        },
    }
}

const COLUMNS: &str = "name, version, subject, text, html, created_at, deleted_at";

fn select_latest_live(
    connection: &Connection,
    name: &str,
) -> Result<Option<StoredTemplate>, StoreError> {
    let found = connection
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM templates
             WHERE name = ?1 AND deleted_at IS NULL
             ORDER BY version DESC LIMIT 1"
        ))?
        .query_row([name], read_template)
        .optional()?;
    Ok(found)
}

fn select_version(
    connection: &Connection,
    name: &str,
    number: u32,
) -> Result<Option<StoredTemplate>, StoreError> {
    let found = connection
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM templates WHERE name = ?1 AND version = ?2"
        ))?
        .query_row(rusqlite::params![name, number], read_template)
        .optional()?;
    Ok(found)
}

fn read_template(row: &Row<'_>) -> rusqlite::Result<StoredTemplate> {
    Ok(StoredTemplate {
        name: row.get(0)?,
        version: row.get(1)?,
        parts: TemplateParts {
            subject: row.get(2)?,
            text: row.get(3)?,
            html: row.get(4)?,
        },
        created_at: clock::to_rfc3339(row.get(5)?),
        deleted_at: row.get::<_, Option<i64>>(6)?.map(clock::to_rfc3339),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> TemplateStore {
        TemplateStore::new(Db::open_in_memory().unwrap())
    }

    fn parts(subject: &str, text: &str, html: &str) -> TemplateParts {
        TemplateParts {
            subject: Some(subject.to_owned()),
            text: Some(text.to_owned()),
            html: Some(html.to_owned()),
        }
    }

    fn welcome() -> TemplateParts {
        parts(
            "Welcome, {{ name }}",
            "Hi {{ name }},\nwelcome.",
            "<p>Hi {{ name }}</p>",
        )
    }

    #[tokio::test]
    async fn put_stores_versions_only_on_change() {
        let store = store();

        let first = store.put("welcome".into(), welcome()).await.unwrap();
        assert!(first.created);
        assert_eq!(first.template.version, 1);
        assert_eq!(first.template.parts, welcome());
        assert_eq!(first.template.deleted_at, None);

        let same = store.put("welcome".into(), welcome()).await.unwrap();
        assert!(!same.created);
        assert_eq!(same.template.version, 1);
        assert_eq!(same.template.created_at, first.template.created_at);

        let mut changed = welcome();
        changed.html = None;
        let second = store.put("welcome".into(), changed.clone()).await.unwrap();
        assert!(second.created);
        assert_eq!(second.template.version, 2);

        let latest = store.latest("welcome".into()).await.unwrap().unwrap();
        assert_eq!(latest.version, 2);
        assert_eq!(latest.parts, changed);
        let old = store.version("welcome".into(), 1).await.unwrap().unwrap();
        assert_eq!(old.parts, welcome());
        assert_eq!(store.version("welcome".into(), 3).await.unwrap(), None);
        assert_eq!(store.latest("other".into()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn delete_keeps_versions_and_count() {
        let store = store();
        store.put("welcome".into(), welcome()).await.unwrap();
        store.put("digest".into(), welcome()).await.unwrap();

        assert!(store.delete("welcome".into()).await.unwrap());
        assert!(!store.delete("welcome".into()).await.unwrap());
        assert!(!store.delete("never".into()).await.unwrap());
        assert_eq!(store.latest("welcome".into()).await.unwrap(), None);
        let names: Vec<String> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|summary| summary.name)
            .collect();
        assert_eq!(names, ["digest"]);

        let deleted = store.version("welcome".into(), 1).await.unwrap().unwrap();
        assert!(deleted.deleted_at.is_some());

        let again = store.put("welcome".into(), welcome()).await.unwrap();
        assert!(again.created);
        assert_eq!(again.template.version, 2);
    }

    #[tokio::test]
    async fn list_shows_latest_live_versions() {
        let store = store();
        store.put("b".into(), welcome()).await.unwrap();
        store.put("a".into(), welcome()).await.unwrap();
        store.put("a".into(), parts("x", "y", "z")).await.unwrap();

        let listed = store.list().await.unwrap();
        let summary: Vec<(&str, u32)> = listed
            .iter()
            .map(|entry| (entry.name.as_str(), entry.version))
            .collect();
        assert_eq!(summary, [("a", 2), ("b", 1)]);
    }

    #[tokio::test]
    async fn put_rejects_bad_names_and_parts() {
        let store = store();
        for name in ["", "has space", "slash/name", "ünicode", &"x".repeat(129)] {
            let error = store.put(name.to_owned(), welcome()).await.unwrap_err();
            assert!(
                matches!(error, PutError::InvalidName(_)),
                "{name:?}: {error}"
            );
        }
        assert!(validate_name(&"x".repeat(128)).is_ok());
        assert!(validate_name("Welcome_v2.en-GB").is_ok());

        let error = store
            .put("t".into(), TemplateParts::default())
            .await
            .unwrap_err();
        assert!(matches!(error, PutError::NoParts), "{error}");

        let empty = TemplateParts {
            subject: Some(String::new()),
            ..TemplateParts::default()
        };
        let error = store.put("t".into(), empty).await.unwrap_err();
        assert!(
            matches!(error, PutError::EmptyPart(Part::Subject)),
            "{error}"
        );

        let broken = parts("ok", "fine", "<p>\n{{ name </p>");
        let error = store.put("t".into(), broken).await.unwrap_err();
        let PutError::InvalidPart(invalid) = error else {
            panic!("expected an invalid part, got {error}");
        };
        assert_eq!(invalid.part, Part::Html);
        assert_eq!(invalid.line, Some(2));
        assert!(
            invalid.reason.contains("syntax error"),
            "{}",
            invalid.reason
        );
        assert!(invalid.to_string().contains("\"html\""), "{invalid}");
        assert!(invalid.to_string().contains("line 2"), "{invalid}");

        assert_eq!(store.list().await.unwrap(), []);
    }

    #[tokio::test]
    async fn render_escapes_only_html() {
        let store = store();
        store.put("welcome".into(), welcome()).await.unwrap();

        let context = r#"{"name": "O'Brien \"Bo\" <x&y>"}"#;
        let rendered = store.render("welcome".into(), context).await.unwrap();
        assert_eq!(rendered.name, "welcome");
        assert_eq!(rendered.version, 1);
        assert_eq!(
            rendered.subject.as_deref(),
            Some(r#"Welcome, O'Brien "Bo" <x&y>"#)
        );
        assert_eq!(
            rendered.text.as_deref(),
            Some("Hi O'Brien \"Bo\" <x&y>,\nwelcome.")
        );
        assert_eq!(
            rendered.html.as_deref(),
            Some("<p>Hi O&#39;Brien &quot;Bo&quot; &lt;x&amp;y&gt;</p>")
        );
    }

    #[tokio::test]
    async fn render_leaves_absent_parts_out() {
        let store = store();
        let text_only = TemplateParts {
            text: Some("Hello {{ name }}".into()),
            ..TemplateParts::default()
        };
        store.put("note".into(), text_only).await.unwrap();

        let rendered = store
            .render("note".into(), r#"{"name": "Ada"}"#)
            .await
            .unwrap();
        assert_eq!(rendered.subject, None);
        assert_eq!(rendered.text.as_deref(), Some("Hello Ada"));
        assert_eq!(rendered.html, None);
    }

    #[tokio::test]
    async fn render_names_undefined_variable_and_part() {
        let store = store();
        let source = parts("Hi {{ first_name | upper }}", "text", "<p>html</p>");
        store.put("shout".into(), source).await.unwrap();

        let error = store.render("shout".into(), "{}").await.unwrap_err();
        let RenderStoredError::RenderFailed { part, message, .. } = &error else {
            panic!("expected render-failed, got {error}");
        };
        assert_eq!(*part, Part::Subject);
        assert!(message.contains("\"first_name\""), "{message}");
        let text = error.to_string();
        assert!(text.contains("template \"shout\" version 1"), "{text}");
        assert!(text.contains("\"subject\""), "{text}");
    }

    #[tokio::test]
    async fn render_missing_or_deleted_is_not_found() {
        let store = store();
        let error = store.render("nope".into(), "{}").await.unwrap_err();
        assert!(matches!(error, RenderStoredError::NotFound(_)), "{error}");
        assert!(
            error.to_string().contains("PUT /v1/templates/nope"),
            "{error}"
        );

        store.put("gone".into(), welcome()).await.unwrap();
        store.delete("gone".into()).await.unwrap();
        let error = store.render("gone".into(), "{}").await.unwrap_err();
        assert!(matches!(error, RenderStoredError::NotFound(_)), "{error}");
    }

    #[tokio::test]
    async fn render_rejects_non_object_context() {
        let store = store();
        store.put("welcome".into(), welcome()).await.unwrap();
        let error = store.render("welcome".into(), "[1]").await.unwrap_err();
        assert!(
            matches!(error, RenderStoredError::InvalidContext(_)),
            "{error}"
        );
    }
}
