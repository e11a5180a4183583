//! Email delivery end to end: queued messages through the real binary and a
//! real worker to a real SMTP server, and the delivery log that records them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Herald, SmtpServer, mail, smtp_gateway, workers};

const CONFIG_LIMITS: &str = "[runtime]\nmax_instances = 32\n";

fn signup(index: usize) -> Value {
    json!({
        "email": format!("user{index}@example.com"),
        "name": format!("User {index}"),
        "token": format!("tok{index}"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_messages_become_thousand_emails() {
    const COUNT: usize = 1_000;
    let smtp = SmtpServer::start();
    let herald = Herald::start(&format!("{}{CONFIG_LIMITS}", smtp_gateway(&smtp)));
    herald
        .deploy("welcome-email", workers::welcome_email())
        .await;
    let payloads: Vec<Value> = (0..COUNT).map(signup).collect();

    let started = Instant::now();
    let ids = herald.enqueue("welcome-email", &payloads).await;
    let received =
        tokio::task::spawn_blocking(move || smtp.wait_for(COUNT, Duration::from_secs(120)))
            .await
            .unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "{COUNT} messages delivered over SMTP in {elapsed:.2?}: {:.0} messages/s",
        COUNT as f64 / elapsed.as_secs_f64()
    );

    assert_eq!(ids.len(), COUNT);
    assert_eq!(received.len(), COUNT, "the server got extra emails");
    let mut recipients: Vec<String> = Vec::with_capacity(COUNT);
    for message in &received {
        mail::assert_line_lengths(&message.data);
        let email = mail::parse(&message.data);
        let index: usize = email.to[0]
            .trim_start_matches("user")
            .trim_end_matches("@example.com")
            .parse()
            .expect("recipient index");
        assert_eq!(email.from, "noreply@example.com");
        assert_eq!(message.from, "noreply@example.com");
        assert_eq!(message.to, [format!("user{index}@example.com")]);
        assert_eq!(email.subject, format!("Welcome to Example, User {index}"));
        assert!(email.date.is_some(), "no Date header");
        assert!(email.message_id.is_some(), "no Message-ID header");
        assert_eq!(email.mime_version.as_deref(), Some("1.0"));
        assert_eq!(email.content_type, "multipart/alternative");
        assert_eq!(email.part_types, ["text/plain", "text/html"]);
        let link = format!("https://example.com/verify?token=tok{index}");
        let text = email.text.as_deref().unwrap_or_default();
        let html = email.html.as_deref().unwrap_or_default();
        assert!(text.contains(&link), "text part lacks {link}: {text}");
        assert!(html.contains(&link), "html part lacks {link}: {html}");
        recipients.push(email.to[0].clone());
    }
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), COUNT, "some recipient got two emails");

    let sent = herald
        .deliveries("status=sent&worker=welcome-email&limit=10000")
        .await;
    assert_eq!(sent.len(), COUNT);
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;
}

#[tokio::test]
async fn html_part_escapes_name() {
    let smtp = SmtpServer::start();
    let herald = Herald::start(&smtp_gateway(&smtp));
    herald
        .deploy("welcome-email", workers::welcome_email())
        .await;

    herald
        .enqueue(
            "welcome-email",
            &[json!({"email": "ada@example.com", "name": "<Ada & Co>", "token": "abc123"})],
        )
        .await;
    let received = smtp.wait_for(1, Duration::from_secs(30));
    let email = mail::parse(&received[0].data);

    let html = email.html.unwrap();
    let text = email.text.unwrap();
    assert!(html.contains("Hi &lt;Ada &amp; Co&gt;,"), "{html}");
    assert!(!html.contains("<Ada"), "{html}");
    assert!(text.contains("Hi <Ada & Co>,"), "{text}");
    assert_eq!(email.subject, "Welcome to Example, <Ada & Co>");
}

/// Decodes one raw line as quoted-printable, leaving anything that is not a
/// valid escape as it is.
fn decode_qp_line(line: &[u8]) -> Vec<u8> {
    let line = line.strip_suffix(b"=").unwrap_or(line);
    let mut decoded = Vec::with_capacity(line.len());
    let mut index = 0;
    while index < line.len() {
        let escape = match line[index] {
            b'=' => line
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()),
            _ => None,
        };
        match escape {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(line[index]);
                index += 1;
            }
        }
    }
    decoded
}

#[tokio::test]
async fn long_utf8_line_arrives_intact() {
    let smtp = SmtpServer::start();
    let herald = Herald::start(&smtp_gateway(&smtp));
    herald.deploy("test-worker", workers::test_worker()).await;
    let line = format!("{}€", "a".repeat(996));
    let text = format!("{line}\nsecond line ü\n{line}");

    herald
        .enqueue(
            "test-worker",
            &[json!({
                "action": "send",
                "email": {"to": "ada@example.com", "subject": "long line", "text": text},
            })],
        )
        .await;
    let received = smtp.wait_for(1, Duration::from_secs(30));
    let data = &received[0].data;

    mail::assert_line_lengths(data);
    for raw_line in data.split(|byte| *byte == b'\n') {
        let raw_line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        let decoded = decode_qp_line(raw_line);
        assert!(
            std::str::from_utf8(&decoded).is_ok(),
            "a line splits a UTF-8 character: {}",
            String::from_utf8_lossy(raw_line)
        );
    }
    let email = mail::parse(data);
    let arrived = email.text.unwrap().replace("\r\n", "\n");
    // The line break that ends the part belongs to the MIME and SMTP framing.
    let arrived = arrived.trim_end_matches('\n');
    assert_eq!(arrived.as_bytes(), text.as_bytes());
}

#[tokio::test]
async fn delivery_log_rows_have_every_field() {
    let smtp = SmtpServer::start();
    let herald = Herald::start(&smtp_gateway(&smtp));
    herald
        .deploy("welcome-email", workers::welcome_email())
        .await;
    let ids = herald
        .enqueue("welcome-email", &[signup(1), signup(2)])
        .await;
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;

    let rows = herald.deliveries("recipient=user1@example.com").await;

    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    for field in [
        "id",
        "message_id",
        "worker",
        "worker_version",
        "channel",
        "gateway",
        "recipient",
        "status",
        "provider_id",
        "attempt",
        "error",
        "created_at",
    ] {
        assert!(row.get(field).is_some(), "row lacks {field}: {row}");
    }
    assert_eq!(row["message_id"], ids[0].as_str());
    assert_eq!(row["worker"], "welcome-email");
    assert_eq!(row["worker_version"], 1);
    assert_eq!(row["channel"], "email");
    assert_eq!(row["gateway"], "email");
    assert_eq!(row["recipient"], "user1@example.com");
    assert_eq!(row["status"], "sent");
    assert_eq!(row["attempt"], 1);
    assert_eq!(row["error"], Value::Null);
    let provider_id = row["provider_id"].as_str().unwrap();
    assert!(
        provider_id.starts_with('<') && provider_id.ends_with("@example.com>"),
        "{provider_id}"
    );
    let created_at = row["created_at"].as_str().unwrap();
    assert!(created_at.ends_with('Z'), "not UTC: {created_at}");
    assert!(
        time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "not RFC 3339: {created_at}"
    );

    let received = smtp.wait_for(2, Duration::from_secs(5));
    let email = received
        .iter()
        .map(|message| mail::parse(&message.data))
        .find(|email| email.to == ["user1@example.com"])
        .unwrap();
    assert_eq!(
        email.message_id.map(|id| format!("<{id}>")).as_deref(),
        Some(provider_id)
    );

    assert_eq!(herald.deliveries("worker=welcome-email").await.len(), 2);
    assert_eq!(herald.deliveries("worker=other").await.len(), 0);
    assert_eq!(herald.deliveries("status=failed").await.len(), 0);
    assert_eq!(herald.deliveries("limit=1").await.len(), 1);
    let (status, body) = herald.get("/v1/deliveries?status=bogus").await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"bogus\"")
    );
}

#[tokio::test]
async fn message_lookup_shows_state_and_attempts() {
    let herald = Herald::start("");
    herald
        .deploy("welcome-email", workers::welcome_email())
        .await;
    let ids = herald
        .enqueue(
            "welcome-email",
            &[json!({"email": "ada@example.com", "name": "Ada"})],
        )
        .await;

    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;
    let message = herald.message(&ids[0]).await;

    assert_eq!(message["attempts"], 1);
    let error = message["last_error"].as_str().unwrap();
    assert!(error.contains("missing field `token`"), "{error}");
    let (status, body) = herald.get("/v1/messages/no-such-id").await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn default_outbox_writes_eml_files() {
    let herald = Herald::start("");
    herald
        .deploy("welcome-email", workers::welcome_email())
        .await;
    let ids = herald.enqueue("welcome-email", &[signup(7)]).await;
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;

    let outbox = herald.data_dir().join("outbox");
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "eml"))
        .collect();

    assert_eq!(files.len(), 1, "{files:?}");
    let email = mail::parse(&std::fs::read(&files[0]).unwrap());
    assert_eq!(email.to, ["user7@example.com"]);
    assert_eq!(email.subject, "Welcome to Example, User 7");
    let rows = herald.deliveries("status=sent").await;
    assert_eq!(rows[0]["gateway"], "email");
}

#[tokio::test]
async fn invalid_enqueue_requests_are_rejected() {
    let herald = Herald::start("");
    let cases = [
        (json!({}), "missing field `messages`"),
        (json!({"messages": []}), "1 to 10000"),
        (
            json!({"messages": [{"payload": 1, "delay_seconds": 1, "run_at": "2030-01-01T00:00:00Z"}]}),
            "not both",
        ),
        (
            json!({"messages": [{"payload": 1, "run_at": "tomorrow"}]}),
            "\"tomorrow\"",
        ),
        (
            json!({"messages": [{"payload": 1, "colour": "red"}]}),
            "unknown field `colour`",
        ),
        (
            json!({"messages": [{"delay_seconds": 1}]}),
            "missing field `payload`",
        ),
    ];
    for (body, expected) in cases {
        let builder = herald
            .builder(reqwest::Method::POST, "/v1/queues/q/messages")
            .json(&body);
        let (status, response) = herald.send(builder).await;
        assert_eq!(
            status,
            reqwest::StatusCode::BAD_REQUEST,
            "{body}: {response}"
        );
        let message = response["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{body}: {message}");
    }
    let builder = herald
        .builder(reqwest::Method::POST, "/v1/queues/q/messages")
        .body("{not json");
    let (status, response) = herald.send(builder).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(response["error"]["code"], "invalid_json");
}

#[tokio::test]
async fn framework_errors_are_json() {
    let herald = Herald::start("");

    let (status, body) = herald.get("/v1/queues/q/messages").await;
    assert_eq!(status, reqwest::StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("method GET is not allowed on /v1/queues/q/messages"),
        "{body}"
    );

    let (status, body) = herald.get("/v1/messages/%FF").await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request", "{body}");

    let (status, body) = herald.get("/nowhere").await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found", "{body}");
}

#[tokio::test]
async fn long_subject_is_folded() {
    let smtp = SmtpServer::start();
    let herald = Herald::start(&smtp_gateway(&smtp));
    herald
        .deploy("welcome-email", workers::welcome_email())
        .await;
    let name = "N".repeat(3_000);

    herald
        .enqueue(
            "welcome-email",
            &[json!({"email": "ada@example.com", "name": name, "token": "t"})],
        )
        .await;
    let received = tokio::task::spawn_blocking(move || smtp.wait_for(1, Duration::from_secs(30)))
        .await
        .unwrap();

    mail::assert_line_lengths(&received[0].data);
    let email = mail::parse(&received[0].data);
    assert_eq!(email.subject, format!("Welcome to Example, {name}"));
}
