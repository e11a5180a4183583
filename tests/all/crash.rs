//! Crash safety with the real binary: SIGKILL mid-run, a worker whose host
//! dies on every attempt, graceful shutdown on SIGTERM, and one SQLite file
//! shared by the API and eight outside reservers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use herald::queue::{Disposition, FinishParams, Queue, ReserveParams};
use herald::store::Db;

use crate::support::{Herald, SmtpServer, smtp_gateway, wait_until, workers};

/// Opens the herald's database the way another process would.
fn open_database(herald: &Herald) -> rusqlite::Connection {
    let path = herald.data_dir().join("herald.db");
    let connection = rusqlite::Connection::open(path).unwrap();
    connection.busy_timeout(Duration::from_secs(10)).unwrap();
    connection
}

/// Returns the state and attempts of `id`, read straight from the database.
fn stored_state(herald: &Herald, id: &str) -> (String, u32) {
    open_database(herald)
        .query_row(
            "SELECT state, attempts FROM messages WHERE id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_mid_run_loses_nothing() {
    const COUNT: usize = 10_000;
    let smtp = Arc::new(SmtpServer::start());
    let config = format!(
        "{}[runtime]\nmax_instances = 32\n[workers.welcome-email]\nreservation_timeout_secs = 2\n",
        smtp_gateway(&smtp)
    );
    let mut herald = Herald::start(&config);
    herald
        .deploy("welcome-email", workers::welcome_email())
        .await;
    let payloads: Vec<Value> = (0..COUNT)
        .map(|i| json!({"email": format!("user{i}@example.com"), "name": format!("User {i}"), "token": format!("t{i}")}))
        .collect();
    for chunk in payloads.chunks(2_000) {
        herald.enqueue("welcome-email", chunk).await;
    }

    let waiter = Arc::clone(&smtp);
    tokio::task::spawn_blocking(move || waiter.wait_for(COUNT / 3, Duration::from_secs(120)))
        .await
        .unwrap();
    herald.kill();

    // What the delivery log recorded as sent before the kill.
    let recorded: HashSet<String> = {
        let connection = open_database(&herald);
        let mut statement = connection
            .prepare("SELECT recipient FROM deliveries WHERE status = 'sent'")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let received_at_kill = smtp.count();
    assert!(!recorded.is_empty(), "nothing was recorded before the kill");
    assert!(recorded.len() < COUNT, "the run finished before the kill");

    herald.restart();
    wait_until(
        "every message to complete",
        Duration::from_secs(300),
        || async {
            let counts = herald.counts("welcome-email").await;
            (counts["completed"] == COUNT).then_some(())
        },
    )
    .await;

    let per_recipient = smtp.per_recipient();
    let missing: Vec<usize> = (0..COUNT)
        .filter(|i| !per_recipient.contains_key(&format!("user{i}@example.com")))
        .collect();
    assert!(
        missing.is_empty(),
        "never delivered: {} recipients, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let resent_after_record: Vec<&String> = recorded
        .iter()
        .filter(|recipient| per_recipient.get(*recipient).copied().unwrap_or(0) > 1)
        .collect();
    assert!(
        resent_after_record.is_empty(),
        "sent again although recorded as sent: {resent_after_record:?}"
    );
    let duplicates: usize = per_recipient.values().map(|count| count - 1).sum();
    eprintln!(
        "kill test: {received_at_kill} emails before the kill, {} recorded as sent, \
         {duplicates} duplicate emails in total",
        recorded.len()
    );
    let sent_rows = herald.deliveries("status=sent&limit=10000").await;
    assert_eq!(sent_rows.len(), COUNT);
}

#[tokio::test]
async fn host_dying_every_attempt_dead_letters_message() {
    let config = "[workers.test-worker]\nmax_attempts = 3\nreservation_timeout_secs = 1\n";
    let mut herald = Herald::start(config);
    herald.deploy("test-worker", workers::test_worker()).await;
    // The poison and the messages behind it are enqueued together, so the
    // first reservation puts them in one batch.
    let poison = json!({"payload": {"action": "sleep", "ms": 60000}, "priority": 10});
    let done = json!({"payload": {"action": "done"}});
    let ids = herald
        .enqueue_raw(
            "test-worker",
            json!({"messages": [poison, done.clone(), done.clone(), done]}),
        )
        .await;
    let (poison, behind) = ids.split_first().unwrap();
    herald
        .wait_for_state(&ids, "reserved", Duration::from_secs(30))
        .await;

    for attempt in 1..=3u32 {
        wait_until(
            "the poison message to be reserved",
            Duration::from_secs(30),
            || async {
                let message = herald.message(poison).await;
                (message["state"] == "reserved" && message["attempts"] == attempt).then_some(())
            },
        )
        .await;
        herald.kill();
        herald.restart();
    }

    herald
        .wait_for_state(
            std::slice::from_ref(poison),
            "dead",
            Duration::from_secs(30),
        )
        .await;
    let message = herald.message(poison).await;
    assert_eq!(message["last_error"], "worker lost");
    assert_eq!(message["attempts"], 3);
    herald
        .wait_for_state(behind, "completed", Duration::from_secs(30))
        .await;
}

#[tokio::test]
async fn sigterm_is_not_held_by_hanging_webhook() {
    // A webhook receiver that accepts connections and never responds.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", hanging.local_addr().unwrap());
    let config = format!(
        "[queue]\nshutdown_grace_secs = 2\n[workers.test-worker]\nmax_attempts = 1\n\
         failure_webhook = {{ url = \"{url}\", secret_env = \"TEST_WEBHOOK_SECRET\" }}\n"
    );
    let mut herald = Herald::start_with_env(&config, &[("TEST_WEBHOOK_SECRET", "s")]);
    herald.deploy("test-worker", workers::test_worker()).await;
    let ids = herald
        .enqueue(
            "test-worker",
            &vec![json!({"action": "fail", "reason": "x"}); 3],
        )
        .await;
    herald
        .wait_for_state(&ids, "dead", Duration::from_secs(30))
        .await;
    hanging.set_nonblocking(true).unwrap();
    let _connection = wait_until(
        "the webhook POST to connect",
        Duration::from_secs(30),
        || async { hanging.accept().ok() },
    )
    .await;

    // Three notices at a 10 s request timeout each would take 30 s.
    let code = herald.terminate(Duration::from_secs(15));

    assert_eq!(code, Some(0));
    let logs = herald.logs();
    assert!(
        logs.contains("failure webhook still in flight at the end of the grace period"),
        "{logs}"
    );
}

#[tokio::test]
async fn sigterm_lets_running_batch_finish() {
    let config = "[queue]\nshutdown_grace_secs = 20\n";
    let mut herald = Herald::start(config);
    herald.deploy("test-worker", workers::test_worker()).await;
    let ids = herald
        .enqueue("test-worker", &[json!({"action": "sleep", "ms": 1500})])
        .await;
    herald
        .wait_for_state(&ids, "reserved", Duration::from_secs(30))
        .await;

    let code = herald.terminate(Duration::from_secs(30));

    assert_eq!(code, Some(0));
    assert_eq!(stored_state(&herald, &ids[0]), ("completed".to_owned(), 1));
    let logs = herald.logs();
    for step in [
        "received SIGTERM",
        "dispatcher stopping",
        "waiting for running batches",
        "dispatcher stopped",
        "herald stopped",
    ] {
        assert!(logs.contains(step), "log lacks {step:?}:\n{logs}");
    }
}

#[tokio::test]
async fn sigterm_releases_batch_after_grace() {
    let config = "[queue]\nshutdown_grace_secs = 1\n";
    let mut herald = Herald::start(config);
    herald.deploy("test-worker", workers::test_worker()).await;
    let ids = herald
        .enqueue("test-worker", &[json!({"action": "sleep", "ms": 60000})])
        .await;
    herald
        .wait_for_state(&ids, "reserved", Duration::from_secs(30))
        .await;

    let code = herald.terminate(Duration::from_secs(30));

    assert_eq!(code, Some(0));
    assert_eq!(stored_state(&herald, &ids[0]), ("available".to_owned(), 0));
    assert!(
        herald
            .logs()
            .contains("released messages of an unfinished batch")
    );
}

/// The API inserts 5,000 messages while eight reservers, each with its own
/// connection to the same SQLite file, reserve and complete them, and the
/// dispatcher keeps running another worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_and_eight_reservers_share_sqlite() {
    const MESSAGES: usize = 5_000;
    const REQUESTS: usize = 50;
    const RESERVERS: usize = 8;
    let herald = Arc::new(Herald::start(""));
    herald.deploy("test-worker", workers::test_worker()).await;
    let db_path = herald.data_dir().join("herald.db");

    let reservations: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut reservers = Vec::new();
    for _ in 0..RESERVERS {
        let queue = Queue::new(Db::open(&db_path).unwrap(), Duration::from_secs(3600));
        let reservations = Arc::clone(&reservations);
        let stop = Arc::clone(&stop);
        reservers.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let reservation = queue
                    .reserve(ReserveParams {
                        queue: "shared".into(),
                        limit: 20,
                        timeout: Duration::from_secs(600),
                        max_attempts: 5,
                        dead_letters: Default::default(),
                        reservation_id: None,
                    })
                    .await
                    .expect("reserve failed");
                if reservation.messages.is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                {
                    let mut reservations = reservations.lock().unwrap();
                    for message in &reservation.messages {
                        *reservations.entry(message.id.clone()).or_default() += 1;
                    }
                }
                let dispositions = reservation
                    .messages
                    .iter()
                    .map(|message| (message.id.clone(), Disposition::Complete))
                    .collect();
                let finished = queue
                    .finish(FinishParams {
                        reservation_id: reservation.id,
                        dispositions,
                        ..FinishParams::default()
                    })
                    .await
                    .expect("finish failed");
                assert!(finished.stale.is_empty());
            }
        }));
    }

    let mut producers = Vec::new();
    for request in 0..REQUESTS {
        let herald = Arc::clone(&herald);
        producers.push(tokio::spawn(async move {
            let payloads: Vec<Value> = (0..MESSAGES / REQUESTS)
                .map(|i| json!({"n": request * 1000 + i}))
                .collect();
            herald.enqueue("shared", &payloads).await
        }));
    }
    let worker_messages = herald
        .enqueue("test-worker", &vec![json!({"action": "done"}); 200])
        .await;
    let mut enqueued = Vec::new();
    for producer in producers {
        enqueued.extend(producer.await.unwrap());
    }
    assert_eq!(enqueued.len(), MESSAGES);
    herald
        .wait_for_state(&worker_messages, "completed", Duration::from_secs(60))
        .await;

    wait_until(
        "every shared message to be reserved",
        Duration::from_secs(120),
        || async { (reservations.lock().unwrap().len() == MESSAGES).then_some(()) },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for reserver in reservers {
        reserver.await.unwrap();
    }

    let reservations = reservations.lock().unwrap();
    let twice: Vec<_> = reservations
        .iter()
        .filter(|(_, count)| **count > 1)
        .collect();
    assert!(twice.is_empty(), "reserved more than once: {twice:?}");
    let logs = herald.logs();
    assert!(!logs.contains("database is locked"), "{logs}");
}
