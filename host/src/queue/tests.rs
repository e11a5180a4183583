//! Queue transitions against a real SQLite database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

fn queue() -> Queue {
    Queue::new(Db::open_in_memory().unwrap(), Duration::from_secs(3600))
}

fn message(payload: &str) -> NewMessage {
    NewMessage {
        payload: payload.to_owned(),
        run_at: clock::now_ms(),
        priority: 0,
        idempotency_key: None,
    }
}

fn params(limit: u32) -> ReserveParams {
    ReserveParams {
        queue: "q".to_owned(),
        limit,
        timeout: Duration::from_secs(60),
        max_attempts: 3,
        dead_letters: DeadLetterPolicy::default(),
        reservation_id: None,
    }
}

async fn finish_all(
    queue: &Queue,
    reservation: &Reservation,
    disposition: Disposition,
) -> Finished {
    let dispositions = reservation
        .messages
        .iter()
        .map(|message| (message.id.clone(), disposition.clone()))
        .collect();
    queue
        .finish(FinishParams {
            reservation_id: reservation.id.clone(),
            dispositions,
            ..FinishParams::default()
        })
        .await
        .unwrap()
}

async fn state(queue: &Queue, id: &str) -> MessageInfo {
    queue.get(id.to_owned()).await.unwrap().unwrap()
}

#[tokio::test]
async fn reserve_orders_by_priority_due_time_id() {
    let queue = queue();
    let now = clock::now_ms();
    let entries = [
        ("low-old", 0, now - 3_000),
        ("high", 5, now - 1_000),
        ("low-new", 0, now - 1_000),
        ("negative", -1, now - 5_000),
        ("future", 9, now + 60_000),
        ("low-old-2", 0, now - 3_000),
    ];
    let messages = entries
        .iter()
        .map(|(payload, priority, run_at)| NewMessage {
            payload: format!("\"{payload}\""),
            run_at: *run_at,
            priority: *priority,
            idempotency_key: None,
        })
        .collect();
    queue.enqueue("q".into(), messages).await.unwrap();

    let reservation = queue.reserve(params(10)).await.unwrap();
    let order: Vec<&str> = reservation
        .messages
        .iter()
        .map(|message| message.payload.as_str())
        .collect();

    assert_eq!(
        order,
        [
            "\"high\"",
            "\"low-old\"",
            "\"low-old-2\"",
            "\"low-new\"",
            "\"negative\""
        ]
    );
}

#[tokio::test]
async fn scheduled_message_waits_until_due() {
    let queue = queue();
    let mut delayed = message("1");
    delayed.run_at = clock::now_ms() + 300;
    let id = queue.enqueue("q".into(), vec![delayed]).await.unwrap()[0]
        .id
        .clone();

    assert_eq!(state(&queue, &id).await.state, MessageState::Scheduled);
    assert!(queue.reserve(params(10)).await.unwrap().messages.is_empty());

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(state(&queue, &id).await.state, MessageState::Available);
    assert_eq!(queue.reserve(params(10)).await.unwrap().messages.len(), 1);
}

#[tokio::test]
async fn reserve_counts_attempts() {
    let queue = queue();
    let id = queue.enqueue("q".into(), vec![message("1")]).await.unwrap()[0]
        .id
        .clone();

    let reservation = queue.reserve(params(1)).await.unwrap();

    assert_eq!(reservation.messages[0].attempt, 1);
    let info = state(&queue, &id).await;
    assert_eq!(info.state, MessageState::Reserved);
    assert_eq!(info.attempts, 1);
    assert!(
        queue.reserve(params(1)).await.unwrap().messages.is_empty(),
        "reserved twice"
    );
}

#[tokio::test]
async fn expired_reservation_cannot_finish() {
    let queue = queue();
    let id = queue.enqueue("q".into(), vec![message("1")]).await.unwrap()[0]
        .id
        .clone();
    let mut short = params(1);
    short.timeout = Duration::from_millis(50);
    let first = queue.reserve(short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let second = queue.reserve(params(1)).await.unwrap();
    assert_eq!(
        second.messages.len(),
        1,
        "expired message was not reserved again"
    );

    let finished = finish_all(&queue, &first, Disposition::Complete).await;

    assert_eq!(finished.stale, std::slice::from_ref(&id));
    let info = state(&queue, &id).await;
    assert_eq!(
        info.state,
        MessageState::Reserved,
        "old reservation completed it"
    );
    assert_eq!(info.attempts, 2);
    let finished = finish_all(&queue, &second, Disposition::Complete).await;
    assert!(finished.stale.is_empty());
    assert_eq!(state(&queue, &id).await.state, MessageState::Completed);
}

#[tokio::test]
async fn touch_keeps_reservation() {
    let queue = queue();
    queue.enqueue("q".into(), vec![message("1")]).await.unwrap();
    let mut short = params(1);
    short.timeout = Duration::from_millis(100);
    let first = queue.reserve(short).await.unwrap();

    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let held = queue
            .touch(first.id.clone(), Duration::from_millis(100))
            .await
            .unwrap();
        assert_eq!(held, 1);
    }

    assert!(queue.reserve(params(1)).await.unwrap().messages.is_empty());
}

#[tokio::test]
async fn retry_reschedules_with_error() {
    let queue = queue();
    let id = queue.enqueue("q".into(), vec![message("1")]).await.unwrap()[0]
        .id
        .clone();
    let reservation = queue.reserve(params(1)).await.unwrap();

    let retry = Disposition::Retry {
        error: "smtp 451".into(),
        delay: Duration::from_secs(30),
    };
    finish_all(&queue, &reservation, retry).await;

    let info = state(&queue, &id).await;
    assert_eq!(info.state, MessageState::Retryable);
    assert_eq!(info.attempts, 1);
    assert_eq!(info.last_error.as_deref(), Some("smtp 451"));
    let run_at = clock::parse_rfc3339(info.run_at.as_deref().unwrap()).unwrap();
    assert!(run_at > clock::now_ms() + 25_000, "retry is due too early");
    assert!(queue.reserve(params(1)).await.unwrap().messages.is_empty());
}

#[tokio::test]
async fn defer_refunds_attempt_and_counts_deferral() {
    let queue = queue();
    let id = queue.enqueue("q".into(), vec![message("1")]).await.unwrap()[0]
        .id
        .clone();
    let reservation = queue.reserve(params(1)).await.unwrap();

    let defer = Disposition::Defer {
        delay: Duration::ZERO,
    };
    finish_all(&queue, &reservation, defer).await;

    let info = state(&queue, &id).await;
    assert_eq!(info.attempts, 0);
    assert_eq!(info.deferrals, 1);
    let again = queue.reserve(params(1)).await.unwrap();
    assert_eq!(again.messages[0].attempt, 1);
    assert_eq!(again.messages[0].deferrals, 1);
}

#[tokio::test]
async fn release_refunds_attempt() {
    let queue = queue();
    let id = queue.enqueue("q".into(), vec![message("1")]).await.unwrap()[0]
        .id
        .clone();
    let reservation = queue.reserve(params(1)).await.unwrap();

    let released = queue.release(reservation.id.clone()).await.unwrap();

    assert_eq!(released, 1);
    let info = state(&queue, &id).await;
    assert_eq!(info.state, MessageState::Available);
    assert_eq!(info.attempts, 0);
    assert_eq!(queue.reserve(params(1)).await.unwrap().messages.len(), 1);
}

#[tokio::test]
async fn lost_worker_dead_letters_after_max_attempts() {
    let queue = queue();
    let id = queue.enqueue("q".into(), vec![message("1")]).await.unwrap()[0]
        .id
        .clone();
    let mut short = params(1);
    short.timeout = Duration::from_millis(20);
    short.max_attempts = 2;

    for attempt in 1..=2 {
        let reservation = queue.reserve(short.clone()).await.unwrap();
        assert_eq!(reservation.messages[0].attempt, attempt);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let reservation = queue.reserve(short).await.unwrap();

    assert!(reservation.messages.is_empty());
    assert_eq!(reservation.lost.len(), 1);
    assert_eq!(reservation.lost[0].error, WORKER_LOST);
    let info = state(&queue, &id).await;
    assert_eq!(info.state, MessageState::Dead);
    assert_eq!(info.last_error.as_deref(), Some(WORKER_LOST));
}

#[tokio::test]
async fn dead_letter_policy_copies_and_notifies() {
    let queue = queue();
    let id = queue
        .enqueue("q".into(), vec![message("{\"to\": 1}")])
        .await
        .unwrap()[0]
        .id
        .clone();
    let reservation = queue.reserve(params(1)).await.unwrap();

    let finished = queue
        .finish(FinishParams {
            reservation_id: reservation.id.clone(),
            dispositions: vec![(
                id.clone(),
                Disposition::Dead {
                    error: "bad".into(),
                },
            )],
            dead_letters: DeadLetterPolicy {
                error_queue: Some("errors".into()),
                notify_worker: Some("mailer".into()),
            },
            ..FinishParams::default()
        })
        .await
        .unwrap();

    assert_eq!(finished.dead.len(), 1);
    let mut errors = params(10);
    errors.queue = "errors".into();
    let copies = queue.reserve(errors).await.unwrap().messages;
    assert_eq!(copies.len(), 1);
    let copy: serde_json::Value = serde_json::from_str(&copies[0].payload).unwrap();
    assert_eq!(copy["dead_letter"]["id"], id.as_str());
    assert_eq!(copy["dead_letter"]["error"], "bad");
    assert_eq!(copy["payload"]["to"], 1);

    let mut notices = params(10);
    notices.queue = FAILURE_NOTICE_QUEUE.into();
    let notices = queue.reserve(notices).await.unwrap().messages;
    let notice: FailureNotice = serde_json::from_str(&notices[0].payload).unwrap();
    assert_eq!(notice.worker, "mailer");
    assert_eq!(notice.message_id, id);
    assert_eq!(notice.attempts, 1);
}

#[tokio::test]
async fn replay_gives_fresh_attempts() {
    let queue = queue();
    let ids: Vec<String> = queue
        .enqueue("q".into(), vec![message("1"), message("2")])
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.id)
        .collect();
    let reservation = queue.reserve(params(2)).await.unwrap();
    finish_all(
        &queue,
        &reservation,
        Disposition::Dead { error: "x".into() },
    )
    .await;
    assert_eq!(
        queue.list_dead("q".into(), 10, None).await.unwrap().len(),
        2
    );

    let replayed = queue
        .replay_dead("q".into(), Some(vec![ids[1].clone(), "unknown".into()]))
        .await
        .unwrap();

    assert_eq!(replayed, [ids[1].clone()]);
    let info = state(&queue, &ids[1]).await;
    assert_eq!(info.state, MessageState::Available);
    assert_eq!(info.attempts, 0);
    assert_eq!(
        queue.list_dead("q".into(), 10, None).await.unwrap().len(),
        1
    );
    assert_eq!(queue.purge_dead("q".into(), None).await.unwrap(), 1);
    assert!(queue.get(ids[0].clone()).await.unwrap().is_none());
}

#[tokio::test]
async fn idempotency_key_returns_first_id() {
    let queue = queue();
    let keyed = |payload: &str| NewMessage {
        idempotency_key: Some("signup-42".into()),
        ..message(payload)
    };

    let first = queue.enqueue("q".into(), vec![keyed("1")]).await.unwrap();
    let second = queue
        .enqueue("q".into(), vec![keyed("2"), keyed("3")])
        .await
        .unwrap();
    let other_queue = queue
        .enqueue("other".into(), vec![keyed("4")])
        .await
        .unwrap();

    assert!(!first[0].duplicate);
    assert_eq!(second[0].id, first[0].id);
    assert!(second[0].duplicate);
    assert_eq!(second[1].id, first[0].id);
    assert!(!other_queue[0].duplicate, "keys are per queue");
    assert_eq!(queue.reserve(params(10)).await.unwrap().messages.len(), 1);
}

#[tokio::test]
async fn idempotency_key_expires_after_window() {
    let queue = Queue::new(Db::open_in_memory().unwrap(), Duration::from_millis(50));
    let keyed = NewMessage {
        idempotency_key: Some("k".into()),
        ..message("1")
    };
    let first = queue
        .enqueue("q".into(), vec![keyed.clone()])
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(80)).await;
    let second = queue.enqueue("q".into(), vec![keyed]).await.unwrap();

    assert!(!second[0].duplicate);
    assert_ne!(second[0].id, first[0].id);
}

#[test]
fn reserved_prefix_is_rejected() {
    assert!(validate_queue_name("herald.failure-notices").is_err());
    assert!(validate_queue_name("welcome-email").is_ok());
    assert!(validate_queue_name("a/b").is_err());
    assert!(validate_queue_name("").is_err());
    assert!(validate_queue_name("..").is_err());
    assert!(validate_queue_name(&"a".repeat(129)).is_err());
}

/// Eight reservers, each with its own connection to one database file,
/// contend with one writer that enqueues 5,000 messages. Every message must
/// be reserved exactly once, and no call may fail with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservers_reserve_each_message_once() {
    const MESSAGES: usize = 5_000;
    const RESERVERS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    let producer = Queue::new(Db::open(&path).unwrap(), Duration::from_secs(3600));

    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut reservers = Vec::new();
    for _ in 0..RESERVERS {
        let queue = Queue::new(Db::open(&path).unwrap(), Duration::from_secs(3600));
        let seen = Arc::clone(&seen);
        let done = Arc::clone(&done);
        reservers.push(tokio::spawn(async move {
            loop {
                let reservation = queue.reserve(params(25)).await.expect("reserve failed");
                if reservation.messages.is_empty() {
                    if done.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                {
                    let mut seen = seen.lock().unwrap();
                    for message in &reservation.messages {
                        *seen.entry(message.id.clone()).or_default() += 1;
                    }
                }
                let finished = finish_all(&queue, &reservation, Disposition::Complete).await;
                assert!(
                    finished.stale.is_empty(),
                    "lost a reservation: {:?}",
                    finished.stale
                );
            }
        }));
    }

    for chunk in 0..(MESSAGES / 100) {
        let messages = (0..100)
            .map(|i| message(&format!("{}", chunk * 100 + i)))
            .collect();
        producer
            .enqueue("q".into(), messages)
            .await
            .expect("enqueue failed");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for reserver in reservers {
        reserver.await.unwrap();
    }

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), MESSAGES);
    let twice: Vec<_> = seen.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "reserved more than once: {twice:?}");
}

#[tokio::test]
async fn delete_completed_keeps_recent_and_unfinished() {
    let queue = queue();
    let ids: Vec<String> = queue
        .enqueue("q".into(), vec![message("1"), message("2")])
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.id)
        .collect();
    let reservation = queue.reserve(params(1)).await.unwrap();
    finish_all(&queue, &reservation, Disposition::Complete).await;

    assert_eq!(
        queue
            .delete_completed(clock::now_ms() - 60_000, 100)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        queue
            .delete_completed(clock::now_ms() + 1, 100)
            .await
            .unwrap(),
        1
    );

    assert!(queue.get(ids[0].clone()).await.unwrap().is_none());
    assert_eq!(state(&queue, &ids[1]).await.state, MessageState::Available);
}

#[tokio::test]
async fn idempotency_key_outlives_purged_message() {
    let queue = queue();
    let keyed = NewMessage {
        idempotency_key: Some("order-1".into()),
        ..message("1")
    };
    let first = queue
        .enqueue("q".into(), vec![keyed.clone()])
        .await
        .unwrap();
    let reservation = queue.reserve(params(1)).await.unwrap();
    finish_all(
        &queue,
        &reservation,
        Disposition::Dead { error: "x".into() },
    )
    .await;
    queue.purge_dead("q".into(), None).await.unwrap();

    let second = queue.enqueue("q".into(), vec![keyed]).await.unwrap();

    assert!(second[0].duplicate, "a purged message freed its key");
    assert_eq!(second[0].id, first[0].id);
}

#[tokio::test]
async fn lost_batch_neighbours_run_alone() {
    let queue = queue();
    let ids: Vec<String> = queue
        .enqueue("q".into(), vec![message("1"), message("2"), message("3")])
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.id)
        .collect();
    let mut short = params(10);
    short.timeout = Duration::from_millis(20);
    assert_eq!(
        queue.reserve(short.clone()).await.unwrap().messages.len(),
        3
    );
    tokio::time::sleep(Duration::from_millis(40)).await;

    let mut reserved = Vec::new();
    for _ in 0..3 {
        let reservation = queue.reserve(params(10)).await.unwrap();
        assert_eq!(reservation.messages.len(), 1, "a suspect shared its batch");
        reserved.push(reservation.messages[0].id.clone());
    }

    assert_eq!(reserved, ids);
    let fresh = queue
        .enqueue("q".into(), vec![message("4"), message("5")])
        .await
        .unwrap();
    let batch = queue.reserve(params(10)).await.unwrap();
    assert_eq!(batch.messages.len(), 2, "fresh messages are batched again");
    assert_eq!(batch.messages[0].id, fresh[0].id);
}
