//! Queue semantics through the real binary: retries with backoff, dead
//! letters and their endpoints, failure webhooks and error queues, delays and
//! priority, and idempotency of enqueues and of sends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::smtp::SmtpOptions;
use crate::support::{Herald, SmtpServer, parse_time, smtp_gateway, wait_until, workers};

const FAST_RETRIES: &str = r#"
[workers.test-worker]
max_attempts = 3
max_deferrals = 3
backoff_base_secs = 0.05
backoff_cap_secs = 0.2
"#;

async fn start(config: &str) -> Herald {
    let herald = Herald::start(config);
    herald.deploy("test-worker", workers::test_worker()).await;
    herald
}

fn send(to: &str) -> Value {
    json!({"action": "send", "email": {"to": to, "subject": "hello", "text": "hello"}})
}

#[tokio::test]
async fn retry_shows_error_attempts_and_next_run() {
    let herald = start("[workers.test-worker]\nbackoff_base_secs = 30\n").await;

    let ids = herald
        .enqueue(
            "test-worker",
            &[json!({"action": "retry", "error": "upstream busy"})],
        )
        .await;
    herald
        .wait_for_state(&ids, "retryable", Duration::from_secs(30))
        .await;

    let message = herald.message(&ids[0]).await;
    assert_eq!(message["attempts"], 1);
    assert_eq!(message["last_error"], "upstream busy");
    let run_at = message["run_at"]
        .as_str()
        .expect("run_at of a retryable message");
    let run_at = parse_time(run_at);
    let now = time::OffsetDateTime::now_utc();
    assert!(
        run_at <= now + time::Duration::seconds(31),
        "backoff above its ceiling: {run_at}"
    );
}

#[tokio::test]
async fn worker_delay_overrides_backoff() {
    let herald = start("").await;

    let ids = herald
        .enqueue(
            "test-worker",
            &[json!({"action": "retry", "error": "later", "delay_seconds": 600})],
        )
        .await;
    herald
        .wait_for_state(&ids, "retryable", Duration::from_secs(30))
        .await;

    let message = herald.message(&ids[0]).await;
    let run_at = message["run_at"].as_str().unwrap();
    let run_at = parse_time(run_at);
    let now = time::OffsetDateTime::now_utc();
    assert!(run_at > now + time::Duration::seconds(590), "{run_at}");
}

#[tokio::test]
async fn retries_end_in_dead_letter() {
    let herald = start(FAST_RETRIES).await;

    let ids = herald
        .enqueue(
            "test-worker",
            &[json!({"action": "retry", "error": "boom"})],
        )
        .await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;

    let message = herald.message(&ids[0]).await;
    assert_eq!(message["attempts"], 3);
    assert_eq!(message["last_error"], "gave up after 3 attempts: boom");
}

#[tokio::test]
async fn fail_dead_letters_at_once() {
    let herald = start(FAST_RETRIES).await;

    let ids = herald
        .enqueue(
            "test-worker",
            &[json!({"action": "fail", "reason": "no such user"})],
        )
        .await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;

    let message = herald.message(&ids[0]).await;
    assert_eq!(message["attempts"], 1);
    assert_eq!(message["last_error"], "no such user");
}

#[tokio::test]
async fn defer_spends_no_attempt_and_is_capped() {
    let herald = start(FAST_RETRIES).await;

    let ids = herald
        .enqueue("test-worker", &[json!({"action": "defer", "seconds": 0})])
        .await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;

    let message = herald.message(&ids[0]).await;
    assert_eq!(message["deferrals"], 3);
    assert_eq!(
        message["attempts"], 1,
        "deferrals spent attempts: {message}"
    );
    let error = message["last_error"].as_str().unwrap();
    assert!(error.contains("deferred 3 times"), "{error}");
}

#[tokio::test]
async fn dead_letters_list_replay_and_purge() {
    let smtp = SmtpServer::start_with(SmtpOptions {
        fail_once_prefix: Some("flaky".to_owned()),
        ..SmtpOptions::default()
    });
    let config = format!(
        "{}[workers.test-worker]\nmax_attempts = 1\n",
        smtp_gateway(&smtp)
    );
    let herald = start(&config).await;
    let ids = herald
        .enqueue(
            "test-worker",
            &[
                send("flaky@example.com"),
                json!({"action": "fail", "reason": "bad"}),
            ],
        )
        .await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;

    let (status, body) = herald.get("/v1/queues/test-worker/dead").await;
    assert_eq!(status, StatusCode::OK);
    let dead = body["dead"].as_array().unwrap();
    assert_eq!(dead.len(), 2, "{body}");
    let flaky = dead
        .iter()
        .find(|letter| letter["id"] == ids[0].as_str())
        .unwrap();
    assert!(flaky["error"].as_str().unwrap().contains("451"), "{flaky}");
    assert_eq!(flaky["payload"]["action"], "send");

    let replay = herald
        .builder(Method::POST, "/v1/queues/test-worker/dead/replay")
        .json(&json!({"ids": [ids[0]]}));
    let (status, body) = herald.send(replay).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["replayed"], json!([ids[0]]));
    herald
        .wait_for_state(&ids[..1], "completed", Duration::from_secs(30))
        .await;
    assert_eq!(
        herald.message(&ids[0]).await["attempts"],
        1,
        "replay did not reset attempts"
    );
    assert_eq!(smtp.count(), 1);

    let purge = herald.builder(Method::DELETE, "/v1/queues/test-worker/dead");
    let (status, body) = herald.send(purge).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["purged"], 1);
    let (_, body) = herald.get("/v1/queues/test-worker/dead").await;
    assert_eq!(body["dead"], json!([]));

    let bad_replay = herald
        .builder(Method::POST, "/v1/queues/test-worker/dead/replay")
        .json(&json!({}));
    let (status, body) = herald.send(bad_replay).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn replay_all_dead_letters() {
    let herald = start("[workers.test-worker]\nmax_attempts = 1\n").await;
    let ids = herald
        .enqueue(
            "test-worker",
            &[
                json!({"action": "fail", "reason": "a"}),
                json!({"action": "fail", "reason": "b"}),
            ],
        )
        .await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;

    let replay = herald
        .builder(Method::POST, "/v1/queues/test-worker/dead/replay")
        .json(&json!({"all": true}));
    let (status, body) = herald.send(replay).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["replayed"].as_array().unwrap().len(), 2);
}

/// Requests received by a test webhook endpoint.
type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn start_webhook_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let state = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = Arc::clone(&state);
            async move {
                state.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn dead_letter_triggers_signed_webhook_and_error_queue() {
    let (url, received) = start_webhook_receiver().await;
    let config = format!(
        "[workers.test-worker]\nmax_attempts = 1\nerror_queue = \"mail-errors\"\n\
         failure_webhook = {{ url = \"{url}\", secret_env = \"TEST_WEBHOOK_SECRET\" }}\n"
    );
    let herald = Herald::start_with_env(&config, &[("TEST_WEBHOOK_SECRET", "whsec-test")]);
    herald.deploy("test-worker", workers::test_worker()).await;

    let ids = herald
        .enqueue(
            "test-worker",
            &[json!({"action": "fail", "reason": "mailbox full"})],
        )
        .await;
    let (headers, body) = wait_until("the failure webhook", Duration::from_secs(30), || async {
        received.lock().unwrap().first().cloned()
    })
    .await;

    let notice: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(notice["event"], "message.dead");
    assert_eq!(notice["worker"], "test-worker");
    assert_eq!(notice["message_id"], ids[0].as_str());
    assert_eq!(notice["queue"], "test-worker");
    assert_eq!(notice["attempts"], 1);
    assert_eq!(notice["error"], "mailbox full");
    let signature = headers["herald-signature"].to_str().unwrap();
    let timestamp: u64 = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        signature,
        herald::webhook::sign(b"whsec-test", timestamp, &body)
    );
    assert!(
        !herald.logs().contains("whsec-test"),
        "the secret reached the log"
    );

    let counts = herald.counts("mail-errors").await;
    assert_eq!(counts["available"], 1, "{counts}");
    wait_until(
        "the notice to complete",
        Duration::from_secs(30),
        || async {
            let counts = herald.counts("herald.failure-notices").await;
            (counts["completed"] == 1).then_some(())
        },
    )
    .await;
    assert_eq!(received.lock().unwrap().len(), 1, "webhook sent twice");
}

#[tokio::test]
async fn delayed_message_waits() {
    let herald = start("").await;

    let ids = herald
        .enqueue_raw(
            "test-worker",
            json!({"messages": [{"payload": {"action": "done"}, "delay_seconds": 2}]}),
        )
        .await;

    let message = herald.message(&ids[0]).await;
    assert_eq!(message["state"], "scheduled");
    assert_eq!(message["attempts"], 0);
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;
    let message = herald.message(&ids[0]).await;
    let enqueued = parse_time(message["enqueued_at"].as_str().unwrap());
    let finished = parse_time(message["finished_at"].as_str().unwrap());
    assert!(
        finished - enqueued >= time::Duration::seconds(2),
        "ran before it was due"
    );
}

#[tokio::test]
async fn run_at_in_past_runs_now() {
    let herald = start("").await;

    let ids = herald
        .enqueue_raw(
            "test-worker",
            json!({"messages": [{"payload": {"action": "done"}, "run_at": "2020-01-01T00:00:00Z"}]}),
        )
        .await;

    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;
}

#[tokio::test]
async fn priority_orders_delivery() {
    let smtp = SmtpServer::start();
    let config = format!(
        "{}[workers.test-worker]\nbatch_size = 1\nconcurrency = 1\n",
        smtp_gateway(&smtp)
    );
    let herald = Herald::start(&config);
    // Enqueue before deploying, so that all messages wait together.
    let message = |to: &str, priority: i32| json!({"payload": send(to), "priority": priority});
    herald
        .enqueue_raw(
            "test-worker",
            json!({"messages": [
                message("low@example.com", -5),
                message("first-normal@example.com", 0),
                message("urgent@example.com", 10),
                message("second-normal@example.com", 0),
            ]}),
        )
        .await;
    herald.deploy("test-worker", workers::test_worker()).await;

    let received = tokio::task::spawn_blocking(move || smtp.wait_for(4, Duration::from_secs(30)))
        .await
        .unwrap();
    let order: Vec<&str> = received
        .iter()
        .map(|message| message.to[0].as_str())
        .collect();
    assert_eq!(
        order,
        [
            "urgent@example.com",
            "first-normal@example.com",
            "second-normal@example.com",
            "low@example.com"
        ]
    );
}

#[tokio::test]
async fn enqueue_idempotency_key_deduplicates() {
    let smtp = SmtpServer::start();
    let herald = start(&smtp_gateway(&smtp)).await;
    let body = json!({"messages": [{"payload": send("ada@example.com"), "idempotency_key": "signup-ada"}]});

    let first = herald
        .send(
            herald
                .builder(Method::POST, "/v1/queues/test-worker/messages")
                .json(&body),
        )
        .await;
    let second = herald
        .send(
            herald
                .builder(Method::POST, "/v1/queues/test-worker/messages")
                .json(&body),
        )
        .await;

    assert_eq!(first.0, StatusCode::ACCEPTED);
    assert_eq!(second.0, StatusCode::ACCEPTED);
    assert_eq!(first.1["messages"][0]["duplicate"], false);
    assert_eq!(second.1["messages"][0]["duplicate"], true);
    assert_eq!(second.1["ids"], first.1["ids"]);
    let id = first.1["ids"][0].as_str().unwrap().to_owned();
    herald
        .wait_for_state(&[id], "completed", Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.count(), 1);
}

#[tokio::test]
async fn retried_batch_resends_only_failed_sends() {
    let smtp = SmtpServer::start_with(SmtpOptions {
        fail_once_prefix: Some("user2@".to_owned()),
        ..SmtpOptions::default()
    });
    let herald = start(&format!("{}{FAST_RETRIES}", smtp_gateway(&smtp))).await;

    let ids = herald
        .enqueue(
            "test-worker",
            &[json!({"action": "send_many", "count": 5, "to_prefix": "user", "domain": "example.com"})],
        )
        .await;
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;

    let counts = smtp.per_recipient();
    assert_eq!(counts.len(), 5, "{counts:?}");
    for (recipient, count) in &counts {
        assert_eq!(*count, 1, "{recipient} got {count} emails");
    }
    let message = herald.message(&ids[0]).await;
    assert_eq!(message["attempts"], 2);
    let rows = herald.deliveries(&format!("message_id={}", ids[0])).await;
    let statuses = |recipient: &str| -> Vec<(String, u64)> {
        let mut statuses: Vec<(String, u64)> = rows
            .iter()
            .filter(|row| row["recipient"] == recipient)
            .map(|row| {
                (
                    row["status"].as_str().unwrap().to_owned(),
                    row["attempt"].as_u64().unwrap(),
                )
            })
            .collect();
        statuses.sort_by_key(|(_, attempt)| *attempt);
        statuses
    };
    assert_eq!(
        statuses("user0@example.com"),
        [
            ("sent".to_owned(), 1),
            ("duplicate-suppressed".to_owned(), 2)
        ]
    );
    assert_eq!(
        statuses("user2@example.com"),
        [("retrying".to_owned(), 1), ("sent".to_owned(), 2)]
    );
    assert_eq!(statuses("user4@example.com"), [("sent".to_owned(), 2)]);
}

#[tokio::test]
async fn worker_idempotency_key_suppresses_second_send() {
    let smtp = SmtpServer::start();
    let herald = start(&smtp_gateway(&smtp)).await;
    let keyed = json!({
        "action": "send",
        "email": {"to": "ada@example.com", "subject": "s", "text": "t", "idempotency_key": "welcome:ada"},
    });

    let first = herald
        .enqueue("test-worker", std::slice::from_ref(&keyed))
        .await;
    herald
        .wait_for_state(&first, "completed", Duration::from_secs(30))
        .await;
    let second = herald.enqueue("test-worker", &[keyed]).await;
    herald
        .wait_for_state(&second, "completed", Duration::from_secs(30))
        .await;

    assert_eq!(smtp.count(), 1);
    let rows = herald
        .deliveries(&format!("message_id={}", second[0]))
        .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "duplicate-suppressed");
    let sent = herald.deliveries(&format!("message_id={}", first[0])).await;
    assert_eq!(rows[0]["provider_id"], sent[0]["provider_id"]);
}

#[tokio::test]
async fn worker_can_enqueue_and_record_events() {
    let herald = start("").await;

    let ids = herald
        .enqueue(
            "test-worker",
            &[
                json!({"action": "enqueue", "queue": "test-worker", "payload": {"action": "done"}}),
                json!({"action": "audit", "event": "checked", "detail": {"ok": true}}),
            ],
        )
        .await;
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;

    let counts = wait_until("the follow-up message", Duration::from_secs(30), || async {
        let counts = herald.counts("test-worker").await;
        (counts["completed"] == 3).then_some(counts)
    })
    .await;
    assert_eq!(counts["completed"], 3);
}

#[tokio::test]
async fn config_settings_reach_worker() {
    let smtp = SmtpServer::start();
    let config = format!(
        "{}[workers.test-worker]\nsettings = {{ greeting = \"hej\" }}\n",
        smtp_gateway(&smtp)
    );
    let herald = start(&config).await;

    herald
        .enqueue(
            "test-worker",
            &[json!({"action": "config", "key": "greeting", "to": "ada@example.com"})],
        )
        .await;
    let received = tokio::task::spawn_blocking(move || smtp.wait_for(1, Duration::from_secs(30)))
        .await
        .unwrap();

    let email = crate::support::mail::parse(&received[0].data);
    assert_eq!(email.text.unwrap().trim_end(), "hej");
}

#[tokio::test]
async fn concurrent_sends_of_one_key_send_once() {
    let smtp = SmtpServer::start_with(SmtpOptions {
        data_delay: Some(Duration::from_millis(500)),
        ..SmtpOptions::default()
    });
    let config = format!(
        "{}[workers.test-worker]\nbatch_size = 1\nconcurrency = 4\n",
        smtp_gateway(&smtp)
    );
    let herald = start(&config).await;
    let keyed = |subject: &str| {
        json!({
            "action": "send",
            "email": {"to": "ada@example.com", "subject": subject, "text": "t", "idempotency_key": "welcome:ada"},
        })
    };

    let ids = herald
        .enqueue(
            "test-worker",
            &[keyed("s1"), keyed("s2"), keyed("s3"), keyed("s4")],
        )
        .await;
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;

    assert_eq!(smtp.count(), 1, "the same key was sent more than once");
    let rows = herald.deliveries("recipient=ada@example.com").await;
    let count = |status: &str| rows.iter().filter(|row| row["status"] == status).count();
    assert_eq!(count("sent"), 1, "{rows:?}");
    assert_eq!(count("duplicate-suppressed"), 3, "{rows:?}");
}

#[tokio::test]
async fn worker_enqueue_key_deduplicates() {
    let herald = start("").await;
    let follow_up = json!({
        "action": "enqueue",
        "queue": "follow-ups",
        "payload": {"n": 1},
        "idempotency_key": "follow-up:1",
    });

    let ids = herald
        .enqueue("test-worker", &[follow_up.clone(), follow_up])
        .await;
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;

    let counts = herald.counts("follow-ups").await;
    assert_eq!(counts["available"], 1, "{counts}");
}

/// Starts a webhook receiver that responds with 500 to the first `failures`
/// requests and with 204 after that.
async fn start_flaky_receiver(failures: usize) -> (String, Received) {
    let received: Received = Arc::default();
    let state = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = Arc::clone(&state);
            async move {
                let mut received = state.lock().unwrap();
                received.push((headers, body));
                if received.len() <= failures {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn failing_webhook_is_retried() {
    let (url, received) = start_flaky_receiver(2).await;
    let config = format!(
        "[workers.test-worker]\nmax_attempts = 1\n\
         failure_webhook = {{ url = \"{url}\", secret_env = \"TEST_WEBHOOK_SECRET\" }}\n"
    );
    let herald = Herald::start_with_env(&config, &[("TEST_WEBHOOK_SECRET", "whsec-test")]);
    herald.deploy("test-worker", workers::test_worker()).await;

    herald
        .enqueue(
            "test-worker",
            &[json!({"action": "fail", "reason": "gone"})],
        )
        .await;
    wait_until(
        "the notice to be delivered",
        Duration::from_secs(60),
        || async {
            let counts = herald.counts("herald.failure-notices").await;
            (counts["completed"] == 1).then_some(())
        },
    )
    .await;

    let (status, _) = herald.get("/v1/queues/herald.failure-notices/dead").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "internal dead letters are not listable"
    );
    let forged = herald
        .builder(Method::POST, "/v1/queues/herald.failure-notices/messages")
        .json(&json!({"messages": [{"payload": {}}]}));
    let (status, body) = herald.send(forged).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 3, "expected two failures and one success");
    assert_eq!(received[0].1, received[2].1, "the retried body changed");
}
