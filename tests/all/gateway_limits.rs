//! Gateway limits through the real binary: the circuit breaker opens after
//! repeated transient failures and stops calling the provider, a fallback
//! takes the sends while it is open, and a rate limit spaces sends out.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Herald, SmtpServer, wait_until, workers};

/// A TCP port that accepts connections and closes them at once, counting
/// them: an SMTP server that is down in a way the client sees as transient.
struct DeadEnd {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl DeadEnd {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Self { port, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn send(to: &str) -> Value {
    json!({"action": "send", "email": {"to": to, "subject": "hello", "text": "hello"}})
}

/// Worker settings: one message per batch and quick retries, so each
/// attempt is one send.
const ONE_AT_A_TIME: &str = r#"
[workers.test-worker]
batch_size = 1
concurrency = 1
max_attempts = 20
backoff_base_secs = 0.05
backoff_cap_secs = 0.1
"#;

async fn gateway(herald: &Herald, name: &str) -> Value {
    let (status, body) = herald.get("/v1/gateways").await;
    assert_eq!(status, 200, "{body}");
    body["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .find(|gateway| gateway["name"] == name)
        .unwrap_or_else(|| panic!("no gateway {name} in {body}"))
        .clone()
}

#[tokio::test]
async fn open_circuit_stops_calling_the_provider() {
    let dead_end = DeadEnd::start();
    let config = format!(
        r#"
[gateways.email]
kind = "smtp"
url = "smtp://127.0.0.1:{}"
from = "noreply@example.com"
circuit_failures = 3
circuit_cooldown_secs = 3600
{ONE_AT_A_TIME}"#,
        dead_end.port
    );
    let herald = Herald::start(&config);
    herald.deploy("test-worker", workers::test_worker()).await;
    let closed = gateway(&herald, "email").await;
    assert_eq!(closed["circuit"]["state"], "closed", "{closed}");

    let ids = herald
        .enqueue("test-worker", &[send("ada@example.com")])
        .await;
    // Wait for several attempts past the three that open the circuit.
    wait_until("eight attempts", Duration::from_secs(60), || async {
        let message = herald.message(&ids[0]).await;
        (message["attempts"].as_u64().unwrap_or(0) >= 8).then_some(())
    })
    .await;

    // SMTP retries a failed connection once within one send, so three
    // failed sends are at most six connections.
    let calls = dead_end.accepted();
    assert!(
        (3..=6).contains(&calls),
        "{calls} connections for 3 failures"
    );
    let message = herald.message(&ids[0]).await;
    let error = message["last_error"].as_str().unwrap();
    assert!(error.contains("circuit"), "{error}");
    let open = gateway(&herald, "email").await;
    assert_eq!(open["circuit"]["state"], "open", "{open}");
    assert!(open["circuit"]["open_until"].is_string(), "{open}");
    assert!(herald.logs().contains("circuit open"));
}

#[tokio::test]
async fn fallback_takes_sends_while_the_circuit_is_open() {
    let dead_end = DeadEnd::start();
    let smtp = SmtpServer::start();
    let config = format!(
        r#"
[gateways.email]
kind = "smtp"
url = "smtp://127.0.0.1:{}"
from = "noreply@example.com"
circuit_failures = 2
circuit_cooldown_secs = 3600
fallback = "backup"

[gateways.backup]
kind = "smtp"
url = "{}"
from = "noreply@example.com"
{ONE_AT_A_TIME}"#,
        dead_end.port,
        smtp.url()
    );
    let herald = Herald::start(&config);
    herald.deploy("test-worker", workers::test_worker()).await;

    let ids = herald
        .enqueue("test-worker", &[send("ada@example.com")])
        .await;
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(60))
        .await;

    let message = herald.message(&ids[0]).await;
    assert_eq!(message["attempts"], 3, "{message}");
    let received = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(received[0].to, ["ada@example.com"]);
    let rows = herald.deliveries("recipient=ada@example.com").await;
    let sent: Vec<&Value> = rows.iter().filter(|row| row["status"] == "sent").collect();
    assert_eq!(sent.len(), 1, "{rows:?}");
    assert_eq!(sent[0]["gateway"], "backup");
    let primary = gateway(&herald, "email").await;
    assert_eq!(primary["circuit"]["state"], "open", "{primary}");
    assert_eq!(primary["fallback"], "backup");
}

#[tokio::test]
async fn rate_limit_spaces_sends() {
    let smtp = SmtpServer::start();
    let config = format!(
        "{}rate = \"5/s\"\n{ONE_AT_A_TIME}",
        crate::support::smtp_gateway(&smtp)
    );
    let herald = Herald::start(&config);
    herald.deploy("test-worker", workers::test_worker()).await;
    let report = gateway(&herald, "email").await;
    assert_eq!(report["rate"], "5/s", "{report}");

    // The bucket contains five tokens, so fifteen sends need at least two more
    // seconds of refill.
    let started = Instant::now();
    let payload = json!({
        "action": "send_many", "count": 15, "to_prefix": "user", "domain": "example.com",
    });
    let ids = herald.enqueue("test-worker", &[payload]).await;
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(60))
        .await;
    let elapsed = started.elapsed();

    assert_eq!(smtp.wait_for(15, Duration::from_secs(10)).len(), 15);
    assert!(
        elapsed >= Duration::from_millis(1_900),
        "15 sends at 5/s took only {elapsed:?}"
    );
}
