//! The sample workers end to end: built from `sample-workers/`, uploaded to
//! the real binary and run against the fake providers on 127.0.0.1.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::providers::{
    Providers, SENDGRID_PATH, WEBHOOK_PATH, fcm_path, secrets_env, twilio_path,
};
use crate::support::{Herald, workers};

const WAIT: Duration = Duration::from_secs(30);

fn start(providers: &Providers) -> Herald {
    Herald::start_with_env(&providers.gateways(), &secrets_env())
}

async fn put_template(herald: &Herald, name: &str, body: Value) {
    let (status, response) = herald
        .send(
            herald
                .builder(Method::PUT, &format!("/v1/templates/{name}"))
                .json(&body),
        )
        .await;
    assert!(
        status.is_success(),
        "PUT template {name}: {status} {response}"
    );
}

#[tokio::test]
async fn sms_alert_texts_the_number() {
    let providers = Providers::start();
    let herald = start(&providers);
    herald.deploy("sms-alert", workers::sms_alert()).await;
    put_template(
        &herald,
        "disk-alert",
        json!({"text": "{{ host }}: disk {{ percent }}% full"}),
    )
    .await;

    let ids = herald
        .enqueue(
            "sms-alert",
            &[
                json!({"phone": "+14155550123", "text": "db-1: disk 91% full"}),
                json!({
                    "phone": "+14155550124",
                    "template": "disk-alert",
                    "context": {"host": "db-2", "percent": 95},
                }),
            ],
        )
        .await;
    herald.wait_for_state(&ids, "completed", WAIT).await;

    let requests = providers.requests(&twilio_path());
    assert_eq!(requests.len(), 2);
    let mut bodies: Vec<(String, String)> = requests
        .iter()
        .map(|request| {
            let form = request.form();
            let field = |name: &str| {
                form.iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.clone())
                    .unwrap_or_default()
            };
            (field("To"), field("Body"))
        })
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [
            ("+14155550123".to_owned(), "db-1: disk 91% full".to_owned()),
            ("+14155550124".to_owned(), "db-2: disk 95% full".to_owned()),
        ]
    );
    let rows = herald.deliveries("recipient=%2B14155550124").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["channel"], "sms");
    assert_eq!(rows[0]["template"], "disk-alert");
    assert_eq!(rows[0]["template_version"], 1);
    assert!(rows[0]["provider_id"].as_str().unwrap().starts_with("SM"));
}

#[tokio::test]
async fn push_notify_reaches_the_device() {
    let providers = Providers::start();
    let herald = start(&providers);
    herald.deploy("push-notify", workers::push_notify()).await;

    let ids = herald
        .enqueue(
            "push-notify",
            &[json!({
                "token": "device-token-1",
                "title": "Build finished",
                "body": "main is green",
                "data": {"build": "42"},
            })],
        )
        .await;
    herald.wait_for_state(&ids, "completed", WAIT).await;

    let requests = providers.requests(&fcm_path());
    assert_eq!(requests.len(), 1);
    let message = &requests[0].json()["message"];
    assert_eq!(message["token"], "device-token-1");
    assert_eq!(message["notification"]["title"], "Build finished");
    assert_eq!(message["notification"]["body"], "main is green");
    assert_eq!(message["data"]["build"], "42");
    let rows = herald.deliveries("recipient=device-token-1").await;
    assert_eq!(rows[0]["status"], "sent");
    assert_eq!(rows[0]["channel"], "push");
    assert_eq!(
        rows[0]["provider_id"].as_str(),
        requests[0].provider_id.as_deref()
    );
}

#[tokio::test]
async fn webhook_relay_posts_signed_events_once() {
    let providers = Providers::start();
    let herald = start(&providers);
    herald
        .deploy("webhook-relay", workers::webhook_relay())
        .await;

    let event = json!({"type": "invoice.paid", "data": {"invoice": "in_7", "amount": 1200}, "id": "evt_81"});
    let ids = herald
        .enqueue("webhook-relay", &[event.clone(), event])
        .await;
    herald.wait_for_state(&ids, "completed", WAIT).await;

    // The second copy carries the same id, so the host suppresses it.
    let requests = providers.requests(WEBHOOK_PATH);
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        requests[0].status,
        Some(204),
        "the receiver rejected the signature"
    );
    let body = requests[0].json();
    assert_eq!(body["type"], "invoice.paid");
    assert_eq!(body["data"]["invoice"], "in_7");
    let rows = herald.deliveries("worker=webhook-relay").await;
    let statuses: Vec<&str> = rows
        .iter()
        .map(|row| row["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"sent"), "{statuses:?}");
    assert!(statuses.contains(&"duplicate-suppressed"), "{statuses:?}");
}

#[tokio::test]
async fn daily_digest_sends_one_email_per_user() {
    let providers = Providers::start();
    let herald = start(&providers);
    herald.deploy("daily-digest", workers::daily_digest()).await;
    let template: Value = serde_json::from_slice(&workers::daily_digest_template()).unwrap();
    put_template(&herald, "daily-digest", template).await;

    let payload = json!({
        "date": "2026-12-04",
        "users": [
            {"email": "ada@example.com", "name": "O'Brien \"Bo\" <x&y>", "items": [
                {"title": "Release 1.2", "url": "https://example.com/r/1.2"},
                {"title": "Outage report", "url": "https://example.com/o/7"},
            ]},
            {"email": "bob@example.com", "name": "Bob", "items": [
                {"title": "Welcome", "url": "https://example.com/w"},
            ]},
        ],
    });
    let ids = herald.enqueue("daily-digest", &[payload]).await;
    herald.wait_for_state(&ids, "completed", WAIT).await;

    let requests = providers.requests(SENDGRID_PATH);
    assert_eq!(requests.len(), 2);
    let ada = requests
        .iter()
        .map(|request| request.json())
        .find(|body| body["personalizations"][0]["to"][0]["email"] == "ada@example.com")
        .expect("an email to ada");
    assert_eq!(ada["subject"], "Your digest for 2026-12-04: 2 new items");
    let contents = ada["content"].as_array().unwrap();
    let text = contents[0]["value"].as_str().unwrap();
    let html = contents[1]["value"].as_str().unwrap();
    assert!(text.contains("Hi O'Brien \"Bo\" <x&y>,"), "{text}");
    assert!(text.contains("1. Release 1.2"), "{text}");
    assert!(text.contains("2. Outage report"), "{text}");
    assert!(
        html.contains("Hi O&#39;Brien &quot;Bo&quot; &lt;x&amp;y&gt;"),
        "{html}"
    );
    let rows = herald.deliveries("recipient=ada@example.com").await;
    assert_eq!(rows[0]["template"], "daily-digest");
    assert_eq!(rows[0]["template_version"], 1);
}

#[tokio::test]
async fn daily_digest_skips_invalid_address() {
    let providers = Providers::start();
    let herald = start(&providers);
    herald.deploy("daily-digest", workers::daily_digest()).await;
    let template: Value = serde_json::from_slice(&workers::daily_digest_template()).unwrap();
    put_template(&herald, "daily-digest", template).await;

    let item = json!({"title": "Welcome", "url": "https://example.com/w"});
    let payload = json!({
        "date": "2026-12-04",
        "users": [
            {"email": "a@b@c", "items": [item.clone()]},
            {"email": "bob@example.com", "items": [item]},
        ],
    });
    let ids = herald.enqueue("daily-digest", &[payload]).await;
    herald.wait_for_state(&ids, "completed", WAIT).await;

    let requests = providers.requests(SENDGRID_PATH);
    assert_eq!(requests.len(), 1);
    let body = requests[0].json();
    assert_eq!(
        body["personalizations"][0]["to"][0]["email"],
        "bob@example.com"
    );
    let rows = herald.deliveries("recipient=a@b@c").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "failed");
}
