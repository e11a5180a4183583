//! Stored templates: the `/v1/templates` API through the real binary, and
//! rendering them by name from a worker into emails on a real SMTP server.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Herald, SmtpServer, mail, smtp_gateway, workers};

/// A name with quotes, angle brackets and an ampersand, which only the HTML
/// part may escape.
const AWKWARD_NAME: &str = r#"O'Brien "Bo" <x&y>"#;

/// `PUT /v1/templates/{name}` with a JSON body.
async fn put(herald: &Herald, name: &str, body: Value) -> (StatusCode, Value) {
    let builder = herald
        .builder(Method::PUT, &format!("/v1/templates/{name}"))
        .json(&body);
    herald.send(builder).await
}

/// Stores a template and asserts that the server accepted it.
async fn store(herald: &Herald, name: &str, body: Value) {
    let (status, response) = put(herald, name, body).await;
    assert!(
        status.is_success(),
        "PUT /v1/templates/{name} failed: {status} {response}"
    );
}

/// `DELETE /v1/templates/{name}`.
async fn delete(herald: &Herald, name: &str) -> (StatusCode, Value) {
    let builder = herald.builder(Method::DELETE, &format!("/v1/templates/{name}"));
    herald.send(builder).await
}

fn welcome() -> Value {
    json!({
        "subject": "Welcome, {{ name }}",
        "text": "Hi {{ name }},\nyour code is {{ code }}.",
        "html": "<p>Hi {{ name }}</p>",
    })
}

#[tokio::test]
async fn put_get_list_delete() {
    let herald = Herald::start("");

    let (status, created) = put(&herald, "welcome", welcome()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "welcome");
    assert_eq!(created["version"], 1);
    assert_eq!(created["subject"], welcome()["subject"]);
    assert_eq!(created["text"], welcome()["text"]);
    assert_eq!(created["html"], welcome()["html"]);
    crate::support::parse_time(created["created_at"].as_str().unwrap());

    let (status, fetched) = herald.get("/v1/templates/welcome").await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    assert_eq!(fetched, created);

    let (status, list) = herald.get("/v1/templates").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        list["templates"],
        json!([{"name": "welcome", "version": 1, "created_at": created["created_at"]}])
    );

    let (status, body) = delete(&herald, "welcome").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = herald.get("/v1/templates/welcome").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("PUT /v1/templates/welcome"), "{message}");
    let (status, body) = delete(&herald, "welcome").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, list) = herald.get("/v1/templates").await;
    assert_eq!(list["templates"], json!([]));

    // A deleted version stays readable by number, and a new template of the
    // same name continues the count.
    let (status, old) = herald.get("/v1/templates/welcome?version=1").await;
    assert_eq!(status, StatusCode::OK, "{old}");
    assert!(old["deleted_at"].is_string(), "{old}");
    let (status, again) = put(&herald, "welcome", welcome()).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["version"], 2);
}

#[tokio::test]
async fn same_parts_keep_version() {
    let herald = Herald::start("");
    let (_, first) = put(&herald, "receipt", welcome()).await;

    let (status, same) = put(&herald, "receipt", welcome()).await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same, first);

    let changed = json!({"text": "Thanks, {{ name }}."});
    let (status, second) = put(&herald, "receipt", changed).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["version"], 2);
    assert_eq!(second["subject"], Value::Null);
    assert_eq!(second["html"], Value::Null);

    let (status, latest) = herald.get("/v1/templates/receipt").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest["version"], 2);
    let (status, old) = herald.get("/v1/templates/receipt?version=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(old["subject"], welcome()["subject"]);
    assert_eq!(old.get("deleted_at"), None, "{old}");
    let (status, body) = herald.get("/v1/templates/receipt?version=7").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = herald.get("/v1/templates/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn syntax_error_names_part_and_line() {
    let herald = Herald::start("");
    let broken = json!({
        "subject": "Hello {{ name }}",
        "html": "<p>\nHi {{ name </p>",
    });

    let (status, body) = put(&herald, "broken", broken).await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], "invalid_template");
    assert_eq!(error["part"], "html");
    assert_eq!(error["line"], 2);
    assert!(
        error["reason"].as_str().unwrap().contains("syntax error"),
        "{body}"
    );
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("\"html\""), "{message}");
    assert!(message.contains("line 2"), "{message}");

    let (status, body) = herald.get("/v1/templates/broken").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "stored after a 422: {body}");
}

#[tokio::test]
async fn unknown_filter_is_rejected_at_put() {
    let herald = Herald::start("");
    let template = json!({"text": "Hello\n{{ name | shout }}"});

    let (status, body) = put(&herald, "loud", template).await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let error = &body["error"];
    assert_eq!(error["part"], "text");
    assert_eq!(error["line"], 2);
    let reason = error["reason"].as_str().unwrap();
    assert!(reason.contains("unknown filter"), "{reason}");
}

#[tokio::test]
async fn bad_requests_are_rejected() {
    let herald = Herald::start("[api]\nmax_body_bytes = 4096\n");
    let cases = [
        (
            "bad%20name",
            json!({"text": "x"}),
            StatusCode::BAD_REQUEST,
            "invalid_name",
            "\"bad name\"",
        ),
        (
            "empty",
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_template",
            "no parts",
        ),
        (
            "empty",
            json!({"subject": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_template",
            "\"subject\" is empty",
        ),
        (
            "typo",
            json!({"body": "x"}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "unknown field `body`",
        ),
        (
            "large",
            json!({"text": "x".repeat(8192)}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "max_body_bytes",
        ),
    ];
    for (name, body, status, code, expected) in cases {
        let (actual, response) = put(&herald, name, body).await;
        assert_eq!(actual, status, "{name}: {response}");
        assert_eq!(response["error"]["code"], code, "{name}: {response}");
        let message = response["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{name}: {message}");
    }

    let long_name = "x".repeat(129);
    let (status, body) = herald.get(&format!("/v1/templates/{long_name}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, list) = herald.get("/v1/templates").await;
    assert_eq!(list["templates"], json!([]), "a rejected put was stored");
}

#[tokio::test]
async fn templates_need_token() {
    let herald = Herald::start_with_env("", &[("HERALD_API_TOKEN", "secret-token")]);
    let url = format!("{}/v1/templates/welcome", herald.base_url);

    let response = reqwest::Client::new()
        .put(&url)
        .json(&welcome())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let (status, body) = put(&herald, "welcome", welcome()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Enqueues one `render_stored` message for the test worker and returns its
/// id.
async fn enqueue_render(herald: &Herald, template: &str, context: Value, to: &str) -> String {
    let payload = json!({
        "action": "render_stored",
        "template": template,
        "context": context,
        "to": to,
        "gateway": "email",
    });
    herald.enqueue("test-worker", &[payload]).await.remove(0)
}

#[tokio::test]
async fn stored_template_renders_email() {
    let smtp = SmtpServer::start();
    let herald = Herald::start(&smtp_gateway(&smtp));
    herald.deploy("test-worker", workers::test_worker()).await;
    let template = json!({
        "subject": "Welcome, {{ name }}",
        "text": "Hi {{ name }},\nyour code is {{ code }}.\n\
                 Sent {{ sent_at | datetimeformat(format=\"%d.%m.%Y %H:%M\", tz=\"Europe/Paris\") }}.",
        "html": "<p>Hi {{ name }}</p><p>{{ missing_field | default(\"no extra\") }}</p>",
    });
    store(&herald, "welcome", template).await;
    let context = json!({"name": AWKWARD_NAME, "code": 42, "sent_at": "2025-06-01T12:00:00Z"});

    let id = enqueue_render(&herald, "welcome", context.clone(), "ada@example.com").await;
    let received = smtp.wait_for(1, Duration::from_secs(60));
    herald
        .wait_for_state(
            std::slice::from_ref(&id),
            "completed",
            Duration::from_secs(30),
        )
        .await;

    let email = mail::parse(&received[0].data);
    assert_eq!(email.to, ["ada@example.com"]);
    assert_eq!(email.subject, format!("Welcome, {AWKWARD_NAME}"));
    let text = email.text.unwrap_or_default();
    assert!(
        text.contains(&format!("Hi {AWKWARD_NAME},\r\nyour code is 42."))
            || text.contains(&format!("Hi {AWKWARD_NAME},\nyour code is 42.")),
        "{text}"
    );
    assert!(text.contains("Sent 01.06.2025 14:00."), "{text}");
    let html = email.html.unwrap_or_default();
    assert!(
        html.contains("<p>Hi O&#39;Brien &quot;Bo&quot; &lt;x&amp;y&gt;</p>"),
        "{html}"
    );
    assert!(html.contains("<p>no extra</p>"), "{html}");
    assert!(!html.contains("<x&y>"), "{html}");

    let rows = herald.deliveries(&format!("message_id={id}")).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "sent");
    assert_eq!(rows[0]["template"], "welcome");
    assert_eq!(rows[0]["template_version"], 1);

    // A new version renders the next message and is recorded with it.
    let second = json!({"subject": "Hello again, {{ name }}", "text": "v2"});
    store(&herald, "welcome", second).await;
    let id = enqueue_render(&herald, "welcome", context, "bob@example.com").await;
    let received = smtp.wait_for(2, Duration::from_secs(60));
    let email = mail::parse(&received[1].data);
    assert_eq!(email.subject, format!("Hello again, {AWKWARD_NAME}"));
    assert_eq!(
        email.content_type, "text/plain",
        "the email has an HTML part"
    );
    assert_eq!(email.text.as_deref().map(str::trim_end), Some("v2"));
    herald
        .wait_for_state(
            std::slice::from_ref(&id),
            "completed",
            Duration::from_secs(30),
        )
        .await;
    let rows = herald.deliveries(&format!("message_id={id}")).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["template_version"], 2);
}

#[tokio::test]
async fn undefined_variable_dead_letters_once() {
    let smtp = SmtpServer::start();
    let herald = Herald::start(&smtp_gateway(&smtp));
    herald.deploy("test-worker", workers::test_worker()).await;
    let template = json!({
        "subject": "Hi {{ first_name | upper }}",
        "text": "Hello",
    });
    store(&herald, "shout", template).await;

    let id = enqueue_render(&herald, "shout", json!({"name": "Ada"}), "ada@example.com").await;
    herald
        .wait_for_state(std::slice::from_ref(&id), "dead", Duration::from_secs(30))
        .await;

    let message = herald.message(&id).await;
    assert_eq!(message["attempts"], 1, "{message}");
    let error = message["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("\"first_name\""), "{error}");
    assert!(error.contains("shout"), "{error}");
    assert!(error.contains("subject"), "{error}");
    let rows = herald.deliveries(&format!("message_id={id}")).await;
    assert_eq!(rows, Vec::<Value>::new(), "a gateway was called");
    assert_eq!(smtp.count(), 0, "the SMTP server received an email");
}

#[tokio::test]
async fn missing_template_retries_then_dead_letters() {
    let smtp = SmtpServer::start();
    let config = format!(
        "{}\n[worker_defaults]\nmax_attempts = 2\nbackoff_base_secs = 0.05\nbackoff_cap_secs = 0.1\n",
        smtp_gateway(&smtp)
    );
    let herald = Herald::start(&config);
    herald.deploy("test-worker", workers::test_worker()).await;
    store(&herald, "retired", welcome()).await;
    let (status, body) = delete(&herald, "retired").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let never = enqueue_render(&herald, "never-stored", json!({}), "ada@example.com").await;
    let retired = enqueue_render(&herald, "retired", json!({}), "ada@example.com").await;
    let ids = [never, retired];
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;

    for (id, name) in ids.iter().zip(["never-stored", "retired"]) {
        let message = herald.message(id).await;
        assert_eq!(message["attempts"], 2, "{message}");
        let error = message["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("not found"), "{error}");
        assert!(
            error.contains(&format!("PUT /v1/templates/{name}")),
            "{error}"
        );
    }
    assert_eq!(smtp.count(), 0, "the SMTP server received an email");
}
