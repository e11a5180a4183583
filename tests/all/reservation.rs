//! Reservations: a message reserved by a process that dies comes back after
//! the reservation timeout, and a long batch keeps its reservation alive.

use std::time::Duration;

use serde_json::json;

use crate::support::{Herald, wait_until, workers};

const CONFIG: &str = "[workers.test-worker]\nreservation_timeout_secs = 2\n";

#[tokio::test]
async fn killed_host_message_reappears_after_timeout() {
    let mut herald = Herald::start(CONFIG);
    herald.deploy("test-worker", workers::test_worker()).await;
    let ids = herald
        .enqueue("test-worker", &[json!({"action": "sleep", "ms": 3000})])
        .await;
    herald
        .wait_for_state(&ids, "reserved", Duration::from_secs(30))
        .await;

    herald.kill();
    herald.restart();

    let message = wait_until(
        "the message to complete",
        Duration::from_secs(60),
        || async {
            let message = herald.message(&ids[0]).await;
            (message["state"] == "completed").then_some(message)
        },
    )
    .await;
    assert_eq!(message["attempts"], 2, "{message}");
}

#[tokio::test]
async fn long_batch_extends_its_reservation() {
    let herald = Herald::start(CONFIG);
    herald.deploy("test-worker", workers::test_worker()).await;

    let ids = herald
        .enqueue("test-worker", &[json!({"action": "sleep", "ms": 5000})])
        .await;
    herald
        .wait_for_state(&ids, "completed", Duration::from_secs(60))
        .await;

    let message = herald.message(&ids[0]).await;
    assert_eq!(
        message["attempts"], 1,
        "the batch lost its reservation: {message}"
    );
}
