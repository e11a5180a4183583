//! Sample Herald worker that emails each user a digest of their items.
//!
//! It takes one payload per day with every user's items:
//!
//! ```json
//! {
//!   "date": "2026-12-04",
//!   "users": [
//!     {
//!       "email": "ada@example.com",
//!       "name": "Ada",
//!       "items": [
//!         {"title": "Build 1042 passed", "url": "https://ci.example.com/1042"},
//!         {"title": "New comment", "url": "https://example.com/c/7", "summary": "Looks good"}
//!       ]
//!     }
//!   ]
//! }
//! ```
//!
//! and sends one email per user through the gateway named `email`, rendered
//! from the stored template `daily-digest`. `name` and each item's `summary`
//! are optional. A user without items gets no email.
//!
//! # The template
//!
//! The template ships next to this crate as `template.json`, in the body
//! shape of `PUT /v1/templates/{name}`. Upload it once before the first
//! digest runs, and again after each change:
//!
//! ```sh
//! curl -X PUT http://127.0.0.1:7600/v1/templates/daily-digest \
//!   -H 'Content-Type: application/json' --data-binary @sample-workers/daily-digest/template.json
//! ```
//!
//! Each part is rendered with the context `date`, `name` (empty when the
//! payload has none), `items` (each with `title`, `url` and `summary`, which
//! is null when missing) and `item_count`. The text and HTML parts list the
//! items with `{% for item in items %}`. A variable that the context lacks
//! is a render error outside `{% if %}` tests, so a broken template fails
//! the message before any email is sent.
//!
//! # Retries
//!
//! Every user's email carries the idempotency key
//! `digest:{date}:{email}`, with the address in lower case. When a send
//! fails transiently, the message is retried, and the emails that already
//! went out are suppressed as duplicates, so each user gets one digest per
//! date. The same key also makes a second payload for the same date skip the
//! users it already reached. A send rejected for good, such as one to an
//! address the host finds invalid, is logged and skipped, so the other users
//! still get their digest.
//!
//! One message renders and sends every email of its payload within the
//! batch's deadline (`deadline_secs`, 30 seconds by default). For large user
//! lists, split the users into several payloads.

mod payload;

use herald_sdk::{Email, Error, Message, Worker, gateway, log, template};
use serde::Serialize;

use crate::payload::{Digest, Item, User};

/// Name of the gateway that sends the emails.
const GATEWAY: &str = "email";

/// Name of the stored template that renders each email.
const TEMPLATE: &str = "daily-digest";

/// Values that the template substitutes for one user.
#[derive(Debug, Serialize)]
struct DigestContext<'a> {
    date: &'a str,
    /// The user's name, or empty for a greeting without a name.
    name: &'a str,
    items: &'a [Item],
    item_count: usize,
}

impl<'a> DigestContext<'a> {
    fn new(date: &'a str, user: &'a User) -> Self {
        Self {
            date,
            name: user.name.trim(),
            items: &user.items,
            item_count: user.items.len(),
        }
    }
}

/// Returns the idempotency key of `user`'s digest for `date`.
fn idempotency_key(date: &str, user: &User) -> String {
    format!("digest:{date}:{}", user.email.trim().to_lowercase())
}

/// Worker that sends the digests.
struct DailyDigest;

impl Worker for DailyDigest {
    fn handle(message: &Message) -> Result<(), Error> {
        let digest = Digest::from_message(message)?;
        let logger = log::for_message(message);

        // Render every email before sending any, so that a template error
        // fails the message while no user has been sent anything.
        let mut emails = Vec::new();
        for user in digest.users.iter().filter(|user| !user.items.is_empty()) {
            let context = DigestContext::new(&digest.date, user);
            let rendered = template::render_stored(TEMPLATE, &context)?;
            let email = Email::from_rendered(rendered)
                .to(user.email.trim())
                .idempotency_key(idempotency_key(&digest.date, user));
            emails.push(email);
        }

        let mut sent = 0;
        let mut duplicates = 0;
        let mut rejected = 0;
        for email in &emails {
            match gateway::send_email(GATEWAY, message, email) {
                Ok(receipt) if receipt.duplicate => duplicates += 1,
                Ok(_) => sent += 1,
                // A transient error retries the whole message. The emails
                // sent before it come back as duplicates on the retry.
                Err(error) if error.is_retryable() => return Err(error.into()),
                // One rejected address, such as an invalid one or a 550 from
                // the server, must not cost the other users their digest.
                // The delivery log keeps the failed send.
                Err(error) => {
                    rejected += 1;
                    logger.warn(&format!("digest to {:?} not sent: {error}", email.to));
                }
            }
        }

        let skipped = digest.users.len() - emails.len();
        logger.info(&format!(
            "digest {}: {sent} sent, {duplicates} already sent, {rejected} rejected, \
             {skipped} users without items",
            digest.date
        ));
        Ok(())
    }
}

herald_sdk::export_worker!(DailyDigest);

#[cfg(test)]
mod tests {
    use minijinja::{AutoEscape, Environment, UndefinedBehavior};
    use serde::Deserialize;
    use serde_json::{Value, json};

    use super::*;

    /// The body of `PUT /v1/templates/daily-digest`.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TemplateFile {
        subject: String,
        text: String,
        html: String,
    }

    fn template_file() -> TemplateFile {
        serde_json::from_str(include_str!("../template.json")).expect("template.json parses")
    }

    /// Renders `source` with `context` the way the host renders a stored
    /// template part: undefined values are errors outside `if` tests, only
    /// the HTML part is escaped, and a final newline is dropped.
    fn render(source: &str, context: &Value, html: bool) -> Result<String, minijinja::Error> {
        let mut environment = Environment::new();
        environment.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        environment.set_auto_escape_callback(move |_| {
            if html {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        let output = environment.render_str(source, context)?;

        // MiniJinja's HTML escaping writes `/` as `&#x2f;`, which the host
        // leaves out. Both are the same character to an HTML reader.
        Ok(output.replace("&#x2f;", "/"))
    }

    fn user(payload: Value) -> User {
        serde_json::from_value(payload).expect("user parses")
    }

    fn two_item_user() -> User {
        user(json!({
            "email": "Ada@Example.com",
            "name": "Ada",
            "items": [
                {"title": "Build 1042 passed", "url": "https://ci.example.com/1042"},
                {"title": "New comment", "url": "https://example.com/c/7", "summary": "Looks good"}
            ]
        }))
    }

    fn context_value(user: &User) -> Value {
        serde_json::to_value(DigestContext::new("2026-12-04", user)).unwrap()
    }

    #[test]
    fn key_uses_date_and_lowercase_email() {
        assert_eq!(
            idempotency_key("2026-12-04", &two_item_user()),
            "digest:2026-12-04:ada@example.com"
        );
    }

    #[test]
    fn context_has_template_fields() {
        let context = context_value(&two_item_user());

        assert_eq!(context["date"], "2026-12-04");
        assert_eq!(context["name"], "Ada");
        assert_eq!(context["item_count"], 2);
        assert_eq!(context["items"][0]["title"], "Build 1042 passed");
        assert_eq!(context["items"][0]["summary"], Value::Null);
        assert_eq!(context["items"][1]["summary"], "Looks good");
    }

    #[test]
    fn template_subject_counts_items() {
        let template = template_file();
        let one_item = user(json!({
            "email": "grace@example.com",
            "items": [{"title": "Only one", "url": "https://example.com/1"}]
        }));

        let plural = render(&template.subject, &context_value(&two_item_user()), false).unwrap();
        let singular = render(&template.subject, &context_value(&one_item), false).unwrap();

        assert_eq!(plural, "Your digest for 2026-12-04: 2 new items");
        assert_eq!(singular, "Your digest for 2026-12-04: 1 new item");
    }

    #[test]
    fn template_text_lists_items() {
        let template = template_file();

        let text = render(&template.text, &context_value(&two_item_user()), false).unwrap();

        assert_eq!(
            text,
            "Hi Ada,\n\
             \n\
             Here are the 2 new items for 2026-12-04:\n\
             \n\
             1. Build 1042 passed\n   https://ci.example.com/1042\n\
             \n\
             2. New comment\n   https://example.com/c/7\n   Looks good\n\
             \n\
             You get this digest once a day."
        );
    }

    #[test]
    fn template_html_escapes_items() {
        let template = template_file();
        let user = user(json!({
            "email": "ada@example.com",
            "items": [{"title": "<script>x</script> & more", "url": "https://example.com/?a=1&b=2"}]
        }));

        let html = render(&template.html, &context_value(&user), true).unwrap();

        assert!(html.contains("<p>Hi,</p>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;x&lt;/script&gt; &amp; more"),
            "{html}"
        );
        assert!(html.contains("a=1&amp;b=2"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert_eq!(html.matches("<li>").count(), 1, "{html}");
    }

    #[test]
    fn template_html_links_each_item() {
        let template = template_file();

        let html = render(&template.html, &context_value(&two_item_user()), true).unwrap();

        assert!(
            html.contains(
                r#"<li><a href="https://ci.example.com/1042">Build 1042 passed</a></li>"#
            ),
            "{html}"
        );
        assert!(
            html.contains(
                r#"<li><a href="https://example.com/c/7">New comment</a><br>Looks good</li>"#
            ),
            "{html}"
        );
    }

    #[test]
    fn template_fails_without_items() {
        let template = template_file();
        let context = json!({"date": "2026-12-04", "name": "Ada", "item_count": 0});

        for (part, source) in [("text", &template.text), ("html", &template.html)] {
            let result = render(source, &context, part == "html");
            assert!(result.is_err(), "{part} rendered without `items`");
        }
    }
}
