//! How SMTP replies and unsendable input are classified, against a real SMTP
//! server that replies 421 or 550 on demand.

use std::time::Duration;

use serde_json::json;

use crate::support::herald::Herald;
use crate::support::smtp::{SmtpOptions, SmtpServer};
use crate::support::workers;

fn send_to(to: &str) -> serde_json::Value {
    json!({
        "action": "send",
        "email": {"to": to, "subject": "reply test", "text": "hello"},
    })
}

fn server() -> SmtpServer {
    SmtpServer::start_with(SmtpOptions {
        replies: vec![
            ("gone".to_owned(), 550, "5.1.1 no such user".to_owned()),
            ("busy".to_owned(), 421, "4.7.0 try again later".to_owned()),
        ],
        ..SmtpOptions::default()
    })
}

/// Config for an smtp gateway with quick retries and two attempts.
fn config(smtp: &SmtpServer) -> String {
    format!(
        "{}\n[worker_defaults]\nmax_attempts = 2\nbackoff_base_secs = 0.1\nbackoff_cap_secs = 0.2\n",
        crate::support::smtp_gateway(smtp)
    )
}

#[tokio::test]
async fn reply_550_is_permanent() {
    let smtp = server();
    let herald = Herald::start(&config(&smtp));
    herald.deploy("test-worker", workers::test_worker()).await;

    let ids = herald
        .enqueue("test-worker", &[send_to("gone@example.com")])
        .await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;

    let message = herald.message(&ids[0]).await;
    assert_eq!(message["attempts"], 1, "a 550 was retried: {message}");
    let rows = herald.deliveries("recipient=gone@example.com").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "dead");
    let error = rows[0]["error"].as_str().unwrap();
    assert!(error.contains("550 5.1.1 no such user"), "{error}");
    assert_eq!(smtp.count(), 0);
}

#[tokio::test]
async fn reply_421_is_retried() {
    let smtp = server();
    let herald = Herald::start(&config(&smtp));
    herald.deploy("test-worker", workers::test_worker()).await;

    let ids = herald
        .enqueue("test-worker", &[send_to("busy@example.com")])
        .await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;

    let message = herald.message(&ids[0]).await;
    assert_eq!(message["attempts"], 2, "a 421 was not retried: {message}");
    let mut rows = herald.deliveries("recipient=busy@example.com").await;
    rows.reverse();
    let statuses: Vec<&str> = rows
        .iter()
        .map(|row| row["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["retrying", "dead"], "{rows:?}");
    for row in &rows {
        let error = row["error"].as_str().unwrap();
        assert!(error.contains("421 4.7.0 try again later"), "{error}");
    }
}

#[tokio::test]
async fn line_break_in_subject_fails_before_any_connection() {
    let smtp = server();
    let herald = Herald::start(&config(&smtp));
    herald.deploy("test-worker", workers::test_worker()).await;

    let payload = json!({
        "action": "send",
        "email": {
            "to": "ada@example.com",
            "subject": "Hi\r\nBcc: someone@example.net",
            "text": "hello",
        },
    });
    let ids = herald.enqueue("test-worker", &[payload]).await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;

    let message = herald.message(&ids[0]).await;
    assert_eq!(message["attempts"], 1, "{message}");
    let error = message["last_error"].as_str().unwrap();
    assert!(error.contains("line break"), "{error}");
    let rows = herald.deliveries("recipient=ada@example.com").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "dead");
    assert_eq!(smtp.sessions(), 0, "the SMTP server was contacted");
    assert_eq!(smtp.count(), 0);
}

#[tokio::test]
async fn internationalized_domain_goes_out_in_ascii() {
    let smtp = server();
    let herald = Herald::start(&config(&smtp));
    herald.deploy("test-worker", workers::test_worker()).await;

    let ids = herald
        .enqueue("test-worker", &[send_to("Ada <ada@bücher.example>")])
        .await;
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;

    let received = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(received[0].to, ["ada@xn--bcher-kva.example"]);
    let data = String::from_utf8_lossy(&received[0].data);
    assert!(data.contains("ada@xn--bcher-kva.example"), "{data}");
    let rows = herald
        .deliveries("recipient=ada@xn--bcher-kva.example")
        .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
}

#[tokio::test]
async fn malformed_address_is_invalid_input() {
    let smtp = server();
    let herald = Herald::start(&config(&smtp));
    herald.deploy("test-worker", workers::test_worker()).await;

    let ids = herald
        .enqueue("test-worker", &[send_to("ada@@example.com")])
        .await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;

    let message = herald.message(&ids[0]).await;
    assert_eq!(message["attempts"], 1, "{message}");
    let error = message["last_error"].as_str().unwrap();
    assert!(error.contains("ada@@example.com"), "{error}");
    assert_eq!(smtp.sessions(), 0);
}
