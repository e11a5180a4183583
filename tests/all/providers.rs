//! HTTP provider gateways through the real binary. The test worker sends
//! through `sendgrid`, `twilio`, `fcm` and `webhook` gateways that point at
//! the fake providers. Each test checks what the fake received (method,
//! path, headers, auth, body and signature) and how the message ended.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::providers::{
    self, FCM_TOKEN, Providers, Reply, SENDGRID_KEY, SENDGRID_PATH, TWILIO_FROM, TWILIO_SID,
    TWILIO_TOKEN, WEBHOOK_PATH,
};
use crate::support::{Herald, wait_until, workers};

/// Worker settings: one message per batch, quick retries, and enough
/// attempts for every test that retries.
const QUICK_RETRIES: &str = r#"
[workers.test-worker]
batch_size = 1
concurrency = 1
max_attempts = 5
backoff_base_secs = 0.05
backoff_cap_secs = 0.2
"#;

/// Worker settings that leave a retried message waiting for a minute, so a
/// test can look at it after exactly one attempt.
const SLOW_RETRIES: &str = r#"
[workers.test-worker]
batch_size = 1
concurrency = 1
max_attempts = 5
backoff_base_secs = 60
backoff_cap_secs = 60
"#;

/// Starts herald with `config` and the fake's secrets, and deploys the test
/// worker.
async fn start(config: &str) -> Herald {
    let herald = Herald::start_with_env(config, &providers::secrets_env());
    herald.deploy("test-worker", workers::test_worker()).await;
    herald
}

/// Asserts that no secret of the fake appears in herald's log.
fn assert_no_secrets_logged(herald: &Herald) {
    let logs = herald.logs();
    for (variable, secret) in providers::secrets_env() {
        assert!(
            !logs.contains(secret),
            "the value of {variable} is in the log"
        );
    }
}

async fn enqueue_one(herald: &Herald, payload: Value) -> String {
    herald.enqueue("test-worker", &[payload]).await.remove(0)
}

async fn deliveries_of(herald: &Herald, id: &str) -> Vec<Value> {
    herald.deliveries(&format!("message_id={id}")).await
}

fn sms(to: &str) -> Value {
    json!({"action": "send_sms", "to": to, "body": "Your code is 123456"})
}

fn email() -> Value {
    json!({"action": "send", "email": {
        "to": ["Ada Lovelace <ada@example.com>"],
        "cc": ["carol@example.com"],
        "bcc": ["audit@example.com"],
        "reply_to": "Support <help@example.com>",
        "subject": "Welcome, Ada",
        "text": "Hello Ada",
        "html": "<p>Hello Ada</p>",
        "headers": [["X-Campaign", "welcome"]]
    }})
}

fn push() -> Value {
    json!({
        "action": "send_push",
        "token": "bk3RNwTe3H0:CI2k_HHwgIpoDKCIZvvDMExUdFQ3P1",
        "title": "Build finished",
        "body": "main is green",
        "data": {"build": "42"}
    })
}

fn webhook_event() -> Value {
    json!({"action": "send_webhook", "event_type": "invoice.paid", "data": {"invoice": "in_42"}})
}

#[tokio::test]
async fn sendgrid_sends_mail_send_request() {
    let providers = Providers::start();
    let herald = start(&format!("{}{QUICK_RETRIES}", providers.gateways())).await;

    let id = enqueue_one(&herald, email()).await;
    herald
        .wait_for_state(
            std::slice::from_ref(&id),
            "completed",
            Duration::from_secs(30),
        )
        .await;

    let requests = providers.requests(SENDGRID_PATH);
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.status, Some(202), "the fake rejected the request");
    let authorization = format!("Bearer {SENDGRID_KEY}");
    assert_eq!(
        request.header("authorization"),
        Some(authorization.as_str())
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body = request.json();
    assert_eq!(
        body["personalizations"],
        json!([{
            "to": [{"email": "ada@example.com", "name": "Ada Lovelace"}],
            "cc": [{"email": "carol@example.com"}],
            "bcc": [{"email": "audit@example.com"}]
        }])
    );
    assert_eq!(
        body["from"],
        json!({"email": "noreply@example.com", "name": "Example"})
    );
    assert_eq!(
        body["reply_to"],
        json!({"email": "help@example.com", "name": "Support"})
    );
    assert_eq!(body["subject"], "Welcome, Ada");
    assert_eq!(
        body["content"],
        json!([
            {"type": "text/plain", "value": "Hello Ada"},
            {"type": "text/html", "value": "<p>Hello Ada</p>"}
        ])
    );
    assert_eq!(body["headers"]["X-Campaign"], "welcome");
    let message_id = body["headers"]["Message-ID"].as_str().unwrap();
    assert!(message_id.ends_with("@example.com>"), "{message_id}");

    let rows = deliveries_of(&herald, &id).await;
    assert_eq!(rows.len(), 3, "one row per recipient: {rows:?}");
    for row in &rows {
        assert_eq!(row["status"], "sent", "{row}");
        assert_eq!(
            row["provider_id"].as_str(),
            request.provider_id.as_deref(),
            "{row}"
        );
    }
    assert_no_secrets_logged(&herald);
}

#[tokio::test]
async fn twilio_posts_form_with_basic_auth() {
    let providers = Providers::start();
    let herald = start(&format!("{}{QUICK_RETRIES}", providers.gateways())).await;

    let id = enqueue_one(&herald, sms("+14155550123")).await;
    herald
        .wait_for_state(
            std::slice::from_ref(&id),
            "completed",
            Duration::from_secs(30),
        )
        .await;

    let requests = providers.requests(&providers::twilio_path());
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.status, Some(201), "the fake rejected the request");
    assert_eq!(request.query, None, "parameters belong in the form body");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let credentials = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Basic "))
        .expect("basic auth");
    let credentials =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, credentials).unwrap();
    assert_eq!(
        credentials,
        format!("{TWILIO_SID}:{TWILIO_TOKEN}").as_bytes()
    );
    let form = request.form();
    let expected = [
        ("To", "+14155550123"),
        ("From", TWILIO_FROM),
        ("Body", "Your code is 123456"),
    ]
    .map(|(key, value)| (key.to_owned(), value.to_owned()));
    assert_eq!(form, expected);

    let rows = deliveries_of(&herald, &id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "sent");
    assert_eq!(rows[0]["channel"], "sms");
    assert_eq!(rows[0]["recipient"], "+14155550123");
    let sid = request.provider_id.as_deref().unwrap();
    assert!(sid.starts_with("SM"), "{sid}");
    assert_eq!(rows[0]["provider_id"], sid);
    assert_no_secrets_logged(&herald);
}

#[tokio::test]
async fn fcm_posts_message_with_bearer_token() {
    let providers = Providers::start();
    let herald = start(&format!("{}{QUICK_RETRIES}", providers.gateways())).await;

    let id = enqueue_one(&herald, push()).await;
    herald
        .wait_for_state(
            std::slice::from_ref(&id),
            "completed",
            Duration::from_secs(30),
        )
        .await;

    let requests = providers.requests(&providers::fcm_path());
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.status, Some(200), "the fake rejected the request");
    let authorization = format!("Bearer {FCM_TOKEN}");
    assert_eq!(
        request.header("authorization"),
        Some(authorization.as_str())
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.json(),
        json!({"message": {
            "token": "bk3RNwTe3H0:CI2k_HHwgIpoDKCIZvvDMExUdFQ3P1",
            "notification": {"title": "Build finished", "body": "main is green"},
            "data": {"build": "42"}
        }})
    );

    let rows = deliveries_of(&herald, &id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "sent");
    let name = request.provider_id.as_deref().unwrap();
    assert!(name.starts_with("projects/herald-test/messages/"), "{name}");
    assert_eq!(rows[0]["provider_id"], name);
    assert_no_secrets_logged(&herald);
}

#[tokio::test]
async fn webhook_posts_signed_event() {
    let providers = Providers::start();
    let herald = start(&format!("{}{QUICK_RETRIES}", providers.gateways())).await;

    let id = enqueue_one(&herald, webhook_event()).await;
    herald
        .wait_for_state(
            std::slice::from_ref(&id),
            "completed",
            Duration::from_secs(30),
        )
        .await;

    let requests = providers.requests(WEBHOOK_PATH);
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.status,
        Some(204),
        "the receiver rejected the request"
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    let webhook_id = request.header("webhook-id").expect("webhook-id header");
    let timestamp = request
        .header("webhook-timestamp")
        .expect("webhook-timestamp header");
    let expected = providers::webhook_signature(webhook_id, timestamp, &request.body);
    assert_eq!(request.header("webhook-signature"), Some(expected.as_str()));
    let body = request.json();
    assert_eq!(body["type"], "invoice.paid");
    assert_eq!(body["data"], json!({"invoice": "in_42"}));
    let sent_at = crate::support::parse_time(body["timestamp"].as_str().unwrap());
    assert_eq!(sent_at.unix_timestamp().to_string(), timestamp);

    let rows = deliveries_of(&herald, &id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "sent");
    assert_eq!(rows[0]["recipient"], providers.webhook_url());
    assert_eq!(rows[0]["provider_id"], webhook_id);
    assert_no_secrets_logged(&herald);
}

#[tokio::test]
async fn client_errors_dead_letter_after_one_attempt() {
    let providers = Providers::start();
    providers.script(
        SENDGRID_PATH,
        vec![Reply::json(
            400,
            providers::sendgrid_error(
                "The from address does not match a verified Sender Identity.",
                Some("from"),
            ),
        )],
    );
    providers.script(
        &providers::fcm_path(),
        vec![Reply::json(
            404,
            providers::fcm_error(
                404,
                "NOT_FOUND",
                "Requested entity was not found.",
                Some("UNREGISTERED"),
            ),
        )],
    );
    let herald = start(&format!("{}{QUICK_RETRIES}", providers.gateways())).await;

    let email_id = enqueue_one(&herald, email()).await;
    let push_id = enqueue_one(&herald, push()).await;
    let ids = [email_id.clone(), push_id.clone()];
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;

    let cases = [
        (
            &email_id,
            SENDGRID_PATH.to_owned(),
            "verified Sender Identity. (field from)",
        ),
        (&push_id, providers::fcm_path(), "NOT_FOUND (UNREGISTERED)"),
    ];
    for (id, path, detail) in cases {
        let message = herald.message(id).await;
        assert_eq!(message["attempts"], 1, "{message}");
        let error = message["last_error"].as_str().unwrap();
        assert!(error.contains("rejected permanently"), "{error}");
        assert!(error.contains(detail), "{error}");
        assert_eq!(providers.requests(&path).len(), 1, "{path}");
        for row in deliveries_of(&herald, id).await {
            assert_eq!(row["status"], "dead", "{row}");
        }
    }
    assert_no_secrets_logged(&herald);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let providers = Providers::start();
    providers.script(
        &providers::twilio_path(),
        vec![Reply::json(
            503,
            providers::twilio_error(503, 20503, "Service unavailable"),
        )],
    );
    providers.script(WEBHOOK_PATH, vec![Reply::empty(500)]);
    let herald = start(&format!("{}{QUICK_RETRIES}", providers.gateways())).await;

    let sms_id = enqueue_one(&herald, sms("+14155550123")).await;
    let webhook_id = enqueue_one(&herald, webhook_event()).await;
    let ids = [sms_id.clone(), webhook_id.clone()];
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;

    for id in &ids {
        let message = herald.message(id).await;
        assert_eq!(message["attempts"], 2, "{message}");
        let statuses: Vec<Value> = deliveries_of(&herald, id)
            .await
            .iter()
            .map(|row| row["status"].clone())
            .collect();
        assert!(statuses.contains(&json!("retrying")), "{statuses:?}");
        assert!(statuses.contains(&json!("sent")), "{statuses:?}");
    }
    let sms_requests = providers.requests(&providers::twilio_path());
    let statuses: Vec<Option<u16>> = sms_requests.iter().map(|request| request.status).collect();
    assert_eq!(statuses, [Some(503), Some(201)]);

    // A retried event keeps its webhook-id, so the receiver can drop a
    // duplicate, and each attempt is signed afresh.
    let hooks = providers.requests(WEBHOOK_PATH);
    let statuses: Vec<Option<u16>> = hooks.iter().map(|request| request.status).collect();
    assert_eq!(statuses, [Some(500), Some(204)]);
    assert_eq!(hooks[0].header("webhook-id"), hooks[1].header("webhook-id"));
}

#[tokio::test]
async fn retry_after_both_forms_then_sent() {
    let providers = Providers::start();
    let too_many = providers::sendgrid_error("too many requests", None);
    providers.script(
        SENDGRID_PATH,
        vec![
            Reply::json(429, too_many.clone()).header("retry-after", "7"),
            Reply::json(429, too_many).retry_after_date_in(Duration::from_secs(5)),
        ],
    );
    let herald = start(&format!("{}{QUICK_RETRIES}", providers.gateways())).await;

    let id = enqueue_one(&herald, email()).await;
    herald
        .wait_for_state(
            std::slice::from_ref(&id),
            "completed",
            Duration::from_secs(60),
        )
        .await;

    let requests = providers.requests(SENDGRID_PATH);
    let statuses: Vec<Option<u16>> = requests.iter().map(|request| request.status).collect();
    assert_eq!(statuses, [Some(429), Some(429), Some(202)]);
    let first_gap = requests[1].at - requests[0].at;
    assert!(
        first_gap >= Duration::from_secs(7),
        "{first_gap:?} after Retry-After: 7"
    );
    let date = requests[1].reply_header("retry-after").unwrap();
    let date = httpdate::parse_http_date(date).unwrap();
    assert!(
        requests[2].at_wall >= date,
        "third request came before the Retry-After date"
    );
    let second_gap = requests[2].at - requests[1].at;
    assert!(
        second_gap >= Duration::from_secs(5),
        "{second_gap:?} after a date 5 s ahead"
    );

    let message = herald.message(&id).await;
    assert_eq!(message["attempts"], 3, "{message}");
    let (status, dead) = herald.get("/v1/queues/test-worker/dead").await;
    assert_eq!(status, 200, "{dead}");
    assert_eq!(dead["dead"], json!([]), "{dead}");
    let rows = deliveries_of(&herald, &id).await;
    let sent = rows.iter().filter(|row| row["status"] == "sent").count();
    assert_eq!(sent, 3, "one sent row per recipient: {rows:?}");
    assert!(rows.iter().all(|row| row["status"] != "dead"), "{rows:?}");
}

#[tokio::test]
async fn hanging_webhook_costs_one_timeout() {
    let providers = Providers::start();
    providers.script(WEBHOOK_PATH, vec![Reply::Hang]);
    let config = format!(
        "{}timeout_secs = 1\n{SLOW_RETRIES}",
        providers::webhook_table("webhook", &providers.webhook_url())
    );
    let herald = start(&config).await;

    let id = enqueue_one(&herald, webhook_event()).await;
    let request = providers
        .wait_for_requests(WEBHOOK_PATH, 1, Duration::from_secs(30))
        .await
        .remove(0);
    herald
        .wait_for_state(
            std::slice::from_ref(&id),
            "retryable",
            Duration::from_secs(10),
        )
        .await;
    let until_retryable = request.at.elapsed();

    // The attempt ends at the 1 s timeout, or at most 1 s of grace later.
    // The third second covers recording the outcome and polling for it.
    assert!(
        until_retryable >= Duration::from_secs(1),
        "{until_retryable:?}"
    );
    assert!(
        until_retryable < Duration::from_secs(3),
        "{until_retryable:?}"
    );
    let message = herald.message(&id).await;
    assert_eq!(message["attempts"], 1, "{message}");
    let error = message["last_error"].as_str().unwrap();
    assert!(error.contains("send failed temporarily"), "{error}");
    let timed_out = format!("POST {} timed out after 1s", providers.webhook_url());
    assert!(error.contains(&timed_out), "{error}");
    assert_eq!(providers.requests(WEBHOOK_PATH).len(), 1);
    assert_no_secrets_logged(&herald);
}

#[tokio::test]
async fn closed_connection_is_transient() {
    let providers = Providers::start();
    let config = format!(
        "{}{SLOW_RETRIES}",
        providers::twilio_table("sms", &providers.closing_url)
    );
    let herald = start(&config).await;

    let id = enqueue_one(&herald, sms("+14155550123")).await;
    herald
        .wait_for_state(
            std::slice::from_ref(&id),
            "retryable",
            Duration::from_secs(30),
        )
        .await;

    let message = herald.message(&id).await;
    assert_eq!(message["attempts"], 1, "{message}");
    let error = message["last_error"].as_str().unwrap();
    assert!(error.contains("send failed temporarily"), "{error}");
    assert!(
        error.contains(&format!("POST {}", providers.closing_url)),
        "{error}"
    );
    assert!(!error.contains(TWILIO_TOKEN), "{error}");
    assert_eq!(providers.closed_connections(), 1);
    assert_no_secrets_logged(&herald);
}

#[tokio::test]
async fn invalid_number_never_reaches_twilio() {
    let providers = Providers::start();
    let herald = start(&format!("{}{QUICK_RETRIES}", providers.gateways())).await;

    let id = enqueue_one(&herald, sms("555-0100")).await;
    herald
        .wait_for_state(std::slice::from_ref(&id), "dead", Duration::from_secs(30))
        .await;

    let message = herald.message(&id).await;
    assert_eq!(message["attempts"], 1, "{message}");
    let error = message["last_error"].as_str().unwrap();
    assert!(error.contains("invalid input"), "{error}");
    assert!(error.contains("E.164"), "{error}");
    assert!(providers.all_requests().is_empty());
    let rows = deliveries_of(&herald, &id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["recipient"], "555-0100");
}

#[tokio::test]
async fn open_circuit_stops_provider_calls() {
    let providers = Providers::start();
    let unavailable = providers::fcm_error(
        503,
        "UNAVAILABLE",
        "The service is currently unavailable.",
        None,
    );
    providers.script(
        &providers::fcm_path(),
        vec![
            Reply::json(503, unavailable.clone()),
            Reply::json(503, unavailable),
        ],
    );
    let config = format!(
        "{}circuit_failures = 2\ncircuit_cooldown_secs = 3600\n{QUICK_RETRIES}",
        providers::fcm_table("push", &providers.url)
    );
    let herald = start(&config).await;

    let id = enqueue_one(&herald, push()).await;
    wait_until("four attempts", Duration::from_secs(30), || async {
        let message = herald.message(&id).await;
        (message["attempts"].as_u64().unwrap_or(0) >= 4).then_some(())
    })
    .await;

    assert_eq!(providers.requests(&providers::fcm_path()).len(), 2);
    let message = herald.message(&id).await;
    let error = message["last_error"].as_str().unwrap();
    assert!(error.contains("circuit"), "{error}");
}

#[tokio::test]
async fn fake_rejects_wrong_credentials() {
    // The fake's own auth checks are what make the happy-path tests prove
    // that herald authenticates, so they are checked here too.
    let providers = Providers::start();
    let client = reqwest::Client::new();
    let cases = [
        (SENDGRID_PATH.to_owned(), 401),
        (providers::twilio_path(), 401),
        (providers::fcm_path(), 401),
        (WEBHOOK_PATH.to_owned(), 400),
    ];
    for (path, expected) in cases {
        let response = client
            .post(format!("{}{path}", providers.url))
            .header("authorization", "Bearer wrong")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{path}");
    }
    let response = client
        .post(providers.webhook_url())
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", unix_now())
        .header("webhook-signature", "v1,AAAA")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

/// Returns the current Unix time in seconds, as text.
fn unix_now() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}
