//! Guest faults: each is isolated to its batch, logged with the worker,
//! version and message ids, and counted as an attempt, while the host keeps
//! serving other workers. A batch that traps is split until the poison
//! message is alone.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Herald, SmtpServer, smtp_gateway, wait_until, workers};

/// Limits small enough that faults end quickly. One attempt, so a faulted
/// message is dead after its first fault and the tests can read its error.
const CONFIG: &str = r#"
[runtime]
max_instances = 16

[workers.test-worker]
batch_size = 100
deadline_secs = 2
memory_limit_mib = 16
max_attempts = 1
backoff_base_secs = 0.05
backoff_cap_secs = 0.2
"#;

/// Enqueues one payload for the test worker, waits until it is dead, and
/// returns the message.
async fn run_until_dead(herald: &Herald, payload: Value) -> Value {
    let ids = herald.enqueue("test-worker", &[payload]).await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(60))
        .await;
    herald.message(&ids[0]).await
}

async fn start() -> Herald {
    let herald = Herald::start(CONFIG);
    herald.deploy("test-worker", workers::test_worker()).await;
    herald
        .deploy("welcome-email", workers::welcome_email())
        .await;
    herald
}

/// Asserts that the host still serves another worker.
async fn assert_still_serving(herald: &Herald) {
    let ids = herald
        .enqueue(
            "welcome-email",
            &[json!({"email": "ada@example.com", "name": "Ada", "token": "t"})],
        )
        .await;
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;
}

/// Asserts that the log has a fault line for `message_id`, tagged with the
/// worker and its version.
fn assert_fault_logged(herald: &Herald, message_id: &str) {
    let logs = herald.logs();
    let line = logs
        .lines()
        .find(|line| line.contains("batch faulted") && line.contains(message_id))
        .unwrap_or_else(|| panic!("no fault line for {message_id} in:\n{logs}"));
    assert!(line.contains("worker=test-worker"), "{line}");
    assert!(line.contains("version=1"), "{line}");
}

#[tokio::test]
async fn trap_is_isolated() {
    let herald = start().await;

    let message = run_until_dead(&herald, json!({"action": "trap"})).await;

    assert_eq!(message["attempts"], 1);
    let error = message["last_error"].as_str().unwrap();
    assert!(error.contains("worker trapped"), "{error}");
    assert_fault_logged(&herald, message["id"].as_str().unwrap());
    assert_still_serving(&herald).await;
}

#[tokio::test]
async fn endless_loop_hits_deadline() {
    let herald = start().await;
    let ids = herald
        .enqueue("test-worker", &[json!({"action": "loop"})])
        .await;
    herald
        .wait_for_state(&ids, "reserved", Duration::from_secs(30))
        .await;

    // The loop yields at every epoch tick, so other workers run meanwhile.
    assert_still_serving(&herald).await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(60))
        .await;

    let message = herald.message(&ids[0]).await;
    assert_eq!(message["attempts"], 1);
    let error = message["last_error"].as_str().unwrap();
    assert!(error.contains("exceeded its deadline of 2s"), "{error}");
    assert_fault_logged(&herald, &ids[0]);
}

#[tokio::test]
async fn memory_bomb_stops_at_limit() {
    let herald = start().await;

    let message = run_until_dead(&herald, json!({"action": "memory"})).await;

    let error = message["last_error"].as_str().unwrap();
    assert!(
        error.contains("memory allocation was refused at the limit of 16 MiB"),
        "{error}"
    );
    assert_still_serving(&herald).await;
}

#[tokio::test]
async fn stack_overflow_is_isolated() {
    let herald = start().await;

    let message = run_until_dead(&herald, json!({"action": "stack"})).await;

    let error = message["last_error"].as_str().unwrap();
    assert!(error.contains("stack"), "{error}");
    assert_still_serving(&herald).await;
}

#[tokio::test]
async fn wrong_outcome_count_fails_batch() {
    let herald = start().await;

    let short = run_until_dead(&herald, json!({"action": "short_outcomes"})).await;
    let extra = run_until_dead(&herald, json!({"action": "extra_outcomes"})).await;

    assert_eq!(short["attempts"], 1);
    let error = short["last_error"].as_str().unwrap();
    assert!(
        error.contains("returned 0 outcomes for a batch of 1"),
        "{error}"
    );
    let error = extra["last_error"].as_str().unwrap();
    assert!(
        error.contains("returned 2 outcomes for a batch of 1"),
        "{error}"
    );
    assert_still_serving(&herald).await;
}

#[tokio::test]
async fn wrong_outcome_count_counts_attempt_on_each_message() {
    let herald = start().await;
    let mut payloads = vec![json!({"action": "done"}); 3];
    payloads.push(json!({"action": "short_outcomes"}));

    let ids = herald.enqueue("test-worker", &payloads).await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(60))
        .await;

    for id in &ids {
        let message = herald.message(id).await;
        assert_eq!(message["attempts"], 1, "{message}");
        let error = message["last_error"].as_str().unwrap();
        assert!(
            error.contains("returned 3 outcomes for a batch of 4"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn batch_outliving_reservation_keeps_it() {
    let config = format!("{CONFIG}reservation_timeout_secs = 1\ndeadline_secs = 4\n")
        .replace("deadline_secs = 2\n", "");
    let herald = Herald::start(&config);
    herald.deploy("test-worker", workers::test_worker()).await;

    let slow = herald
        .enqueue("test-worker", &[json!({"action": "sleep", "ms": 2500})])
        .await;
    let hung = herald
        .enqueue("test-worker", &[json!({"action": "loop"})])
        .await;
    herald
        .wait_for_state(&slow, "completed", Duration::from_secs(60))
        .await;
    herald
        .wait_for_state(&hung, "dead", Duration::from_secs(60))
        .await;

    let slow = herald.message(&slow[0]).await;
    assert_eq!(slow["attempts"], 1, "reserved again while running: {slow}");
    let hung = herald.message(&hung[0]).await;
    assert_eq!(hung["attempts"], 1, "reserved again while running: {hung}");
    let error = hung["last_error"].as_str().unwrap();
    assert!(error.contains("deadline"), "{error}");
}

#[tokio::test]
async fn poison_message_is_bisected() {
    let herald = start().await;
    let mut payloads = vec![json!({"action": "done"}); 100];
    payloads[37] = json!({"action": "trap"});

    let ids = herald.enqueue("test-worker", &payloads).await;
    let poison = ids[37].clone();
    let good: Vec<String> = ids.iter().filter(|id| **id != poison).cloned().collect();
    herald
        .wait_for_state(&good, "completed", Duration::from_secs(60))
        .await;
    herald
        .wait_for_state(
            std::slice::from_ref(&poison),
            "dead",
            Duration::from_secs(60),
        )
        .await;

    for id in &good {
        assert_eq!(
            herald.message(id).await["attempts"],
            1,
            "good message {id} retried"
        );
    }
    let faults = herald
        .logs()
        .lines()
        .filter(|line| line.contains("batch faulted"))
        .count();
    // 100 -> 50 -> 25 -> 13 -> 7 -> 4 -> 2 -> 1: at most eight runs trap.
    assert!(
        faults <= 8,
        "{faults} faulted runs to isolate one message of 100"
    );
    assert!(
        faults >= 7,
        "only {faults} faulted runs: was the batch split?"
    );
}

#[tokio::test]
async fn trap_after_sends_resends_nothing() {
    let smtp = SmtpServer::start();
    let herald = Herald::start(&format!("{}{CONFIG}", smtp_gateway(&smtp)));
    herald.deploy("test-worker", workers::test_worker()).await;
    let mut payloads: Vec<Value> = (0..10)
        .map(|i| {
            json!({
                "action": "send",
                "email": {"to": format!("user{i}@example.com"), "subject": "s", "text": "t"},
            })
        })
        .collect();
    payloads[5] = json!({"action": "trap"});

    let ids = herald.enqueue("test-worker", &payloads).await;
    herald
        .wait_for_state(&[ids[5].clone()], "dead", Duration::from_secs(60))
        .await;
    let others: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, id)| id.clone())
        .collect();
    herald
        .wait_for_state(&others, "completed", Duration::from_secs(60))
        .await;

    let counts = smtp.per_recipient();
    assert_eq!(counts.len(), 9, "{counts:?}");
    for (recipient, count) in &counts {
        assert_eq!(*count, 1, "{recipient} got {count} emails");
    }
    let suppressed = herald
        .deliveries("status=duplicate-suppressed&limit=100")
        .await;
    assert!(
        !suppressed.is_empty(),
        "the split runs should have found the sends made before the trap"
    );
}

#[tokio::test]
async fn guest_output_reaches_log() {
    let herald = start().await;
    let ids = herald
        .enqueue(
            "test-worker",
            &[
                json!({"action": "stdout", "text": "hello from the guest"}),
                json!({"action": "log", "lines": 2}),
            ],
        )
        .await;
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;

    let logs = wait_until(
        "guest output in the log",
        Duration::from_secs(5),
        || async {
            let logs = herald.logs();
            (logs.contains("log line 1")).then_some(logs)
        },
    )
    .await;
    assert!(logs.contains("hello from the guest"), "{logs}");
    let line = logs
        .lines()
        .find(|line| line.contains("log line 0"))
        .unwrap();
    assert!(
        line.contains(&ids[1]),
        "log line lacks the message id: {line}"
    );
}

#[tokio::test]
async fn sandbox_denies_env_files_and_sockets() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let herald = Herald::start_with_env("", &[("HERALD_TEST_VISIBLE", "leak")]);
    herald.deploy("test-worker", workers::test_worker()).await;

    let ids = herald
        .enqueue(
            "test-worker",
            &[json!({"action": "probe", "connect": target})],
        )
        .await;
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;

    let logs = wait_until("the probe's last line", Duration::from_secs(5), || async {
        let logs = herald.logs();
        logs.contains("probe connect").then_some(logs)
    })
    .await;
    let line = |prefix: &str| -> String {
        logs.lines()
            .find(|line| line.contains(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{logs}"))
            .to_owned()
    };
    assert!(
        line("probe env:").contains("probe env: 0 variables"),
        "{}",
        line("probe env:")
    );
    assert!(
        line("probe read_dir /:").contains("denied"),
        "{}",
        line("probe read_dir /:")
    );
    assert!(
        line("probe read_dir .:").contains("denied"),
        "{}",
        line("probe read_dir .:")
    );
    assert!(
        line("probe connect").contains("denied"),
        "{}",
        line("probe connect")
    );
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the guest opened a connection");
}

#[tokio::test]
async fn output_over_limit_does_not_trap() {
    let herald = start().await;
    let text = "x".repeat(100 * 1024);

    let ids = herald
        .enqueue("test-worker", &[json!({"action": "stdout", "text": text})])
        .await;

    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(30))
        .await;
    let logs = herald.logs();
    assert!(
        logs.contains("dropped worker stdout/stderr over the per-batch limit"),
        "{logs}"
    );
}

#[tokio::test]
async fn hung_gateway_is_not_bisected() {
    // An SMTP server that accepts connections and never sends its greeting.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = format!(
        "[gateways.email]\nkind = \"smtp\"\nurl = \"smtp://{}\"\nfrom = \"a@example.com\"\n\
         timeout_secs = 1\n{CONFIG}",
        hanging.local_addr().unwrap()
    )
    .replace("deadline_secs = 2", "deadline_secs = 3");
    let herald = Herald::start(&config);
    herald.deploy("test-worker", workers::test_worker()).await;
    let payloads: Vec<Value> = (0..8)
        .map(|i| {
            json!({
                "action": "send",
                "email": {"to": format!("user{i}@example.com"), "subject": "s", "text": "t"},
            })
        })
        .collect();

    let ids = herald.enqueue("test-worker", &payloads).await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(60))
        .await;

    let faults = herald
        .logs()
        .lines()
        .filter(|line| line.contains("batch faulted"))
        .count();
    assert_eq!(faults, 1, "a batch waiting on a gateway was split");
    drop(hanging);
}
