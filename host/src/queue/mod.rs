//! The durable message queue: enqueue, reserve, finish, release, and the
//! queries over messages.
//!
//! A message is never deleted while it is being worked on. Reserving it makes
//! it invisible for the reservation timeout. Its outcome later moves it to
//! `completed`, back to `retryable`/`scheduled`, or to `dead`. A process that
//! dies while holding a reservation never records an outcome, so the message
//! comes back when the reservation expires. Every transition out of
//! `reserved` is guarded on the reservation id, so a reservation that expired
//! can never finish a message that another batch has since reserved.
//!
//! This module decides nothing about retries. [`backoff`] computes delays, and
//! the dispatcher turns worker outcomes into [`Disposition`]s.

pub mod backoff;
mod dead;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{OptionalExtension, Row, Transaction, named_params};
use serde::Serialize;

use crate::audit::{self, DeliveryRecord};
use crate::clock;
use crate::store::{Db, StoreError};

pub use dead::{DeadLetter, DeadLetterInfo, DeadLetterPolicy, FAILURE_NOTICE_QUEUE, FailureNotice};

/// Reason recorded when a reservation expires without an outcome.
pub const WORKER_LOST: &str = "worker lost";

/// The state of a message, as stored and as shown by the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    /// Waiting for its `run_at` time. It becomes `available` when that time
    /// passes, without a stored change.
    Scheduled,
    /// Due and waiting to be reserved by its worker's dispatcher.
    Available,
    /// Reserved by a batch until `reserved_until`. The batch's outcome moves
    /// it on. If no outcome arrives before the reservation expires, the next
    /// reservation of its queue makes it `retryable` again, or `dead` when it
    /// has used all its attempts.
    Reserved,
    /// Handled. Kept so that its state and deliveries can still be looked up.
    Completed,
    /// Failed an attempt and waits for its backoff delay to pass before it is
    /// reserved again.
    Retryable,
    /// Failed for good: a `fail` outcome, its attempts or deferrals used up,
    /// or its worker lost too often. It stays until replayed or purged.
    Dead,
}

impl MessageState {
    /// Returns the stored name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Available => "available",
            Self::Reserved => "reserved",
            Self::Completed => "completed",
            Self::Retryable => "retryable",
            Self::Dead => "dead",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "scheduled" => Self::Scheduled,
            "available" => Self::Available,
            "reserved" => Self::Reserved,
            "completed" => Self::Completed,
            "retryable" => Self::Retryable,
            "dead" => Self::Dead,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown message state \"{other}\""
                )));
            }
        })
    }
}

/// A message to enqueue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Payload as JSON text.
    pub payload: String,
    /// Earliest time the message may be reserved, in ms since the epoch.
    pub run_at: i64,
    /// Higher priorities are reserved first.
    pub priority: i32,
    /// Key that makes the enqueue idempotent on its queue.
    pub idempotency_key: Option<String>,
}

/// The result of enqueueing one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// Id of the new message, or of the earlier one for a duplicate.
    pub id: String,
    /// True when the idempotency key was seen within the window, so nothing
    /// new was queued.
    pub duplicate: bool,
}

/// Parameters of one reservation.
#[derive(Debug, Clone)]
pub struct ReserveParams {
    /// Queue to reserve from.
    pub queue: String,
    /// Maximum number of messages to reserve.
    pub limit: u32,
    /// How long the messages stay reserved unless touched.
    pub timeout: Duration,
    /// Attempts after which a message whose reservation expired is
    /// dead-lettered instead of retried.
    pub max_attempts: u32,
    /// Policy for messages this call dead-letters.
    pub dead_letters: DeadLetterPolicy,
    /// Reservation to add the messages to, for topping up a batch that is
    /// still filling. A new reservation id is made when `None`.
    pub reservation_id: Option<String>,
}

/// A message handed to a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedMessage {
    /// Message id.
    pub id: String,
    /// Queue it came from.
    pub queue: String,
    /// Payload as JSON text.
    pub payload: String,
    /// Number of this attempt, starting at 1.
    pub attempt: u32,
    /// Deferrals so far.
    pub deferrals: u32,
    /// Enqueue time in ms since the epoch.
    pub enqueued_at: i64,
}

/// The messages one reservation took, plus the messages it found abandoned.
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    /// Reservation id that guards every later transition of `messages`.
    pub id: String,
    /// Reserved messages in priority, due time and id order.
    pub messages: Vec<ReservedMessage>,
    /// Messages whose earlier reservation had expired on their last attempt,
    /// dead-lettered by this call with the reason [`WORKER_LOST`].
    pub lost: Vec<DeadLetter>,
}

/// Next state of a reserved message once its batch is over.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Mark it completed.
    Complete,
    /// Make it reservable again after `delay`, keeping the attempt it spent.
    Retry {
        /// Error of the failed attempt.
        error: String,
        /// Delay before the next attempt.
        delay: Duration,
    },
    /// Run it again after `delay` and give back the attempt it spent.
    Defer {
        /// Delay before the next run.
        delay: Duration,
    },
    /// Dead-letter it.
    Dead {
        /// Reason it failed for good.
        error: String,
    },
}

/// The outcome of one batch, written in one transaction.
#[derive(Debug, Clone, Default)]
pub struct FinishParams {
    /// The batch's reservation id.
    pub reservation_id: String,
    /// Each message's disposition.
    pub dispositions: Vec<(String, Disposition)>,
    /// Delivery log rows not yet written, such as failed sends.
    pub deliveries: Vec<DeliveryRecord>,
    /// Policy for messages this call dead-letters.
    pub dead_letters: DeadLetterPolicy,
}

/// Result of [`Queue::finish`].
#[derive(Debug, Clone, Default)]
pub struct Finished {
    /// Messages moved to `dead` by this call.
    pub dead: Vec<DeadLetter>,
    /// Messages whose reservation was no longer held, so nothing was changed.
    pub stale: Vec<String>,
}

/// A message as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageInfo {
    /// Message id.
    pub id: String,
    /// Queue name.
    pub queue: String,
    /// Current state.
    pub state: MessageState,
    /// Priority. Higher runs first.
    pub priority: i32,
    /// Attempts started so far.
    pub attempts: u32,
    /// Deferrals so far.
    pub deferrals: u32,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// When the message is due next (RFC 3339), unless it is finished.
    pub run_at: Option<String>,
    /// When its reservation expires (RFC 3339), while reserved.
    pub reserved_until: Option<String>,
    /// When it was enqueued (RFC 3339).
    pub enqueued_at: String,
    /// When it completed or died (RFC 3339).
    pub finished_at: Option<String>,
    /// The payload.
    pub payload: serde_json::Value,
}

/// Maximum length of a queue or worker name.
pub const MAX_NAME_LEN: usize = 128;

/// Prefix of the queues Herald uses itself. Users cannot name a queue or a
/// worker with it.
pub const INTERNAL_PREFIX: &str = "herald.";

/// Checks a queue or worker name that a user creates: one that passes
/// [`validate_queue_lookup`] and does not start with [`INTERNAL_PREFIX`].
pub fn validate_queue_name(name: &str) -> Result<(), String> {
    if name.starts_with(INTERNAL_PREFIX) {
        return Err(format!(
            "invalid name \"{name}\"; names starting with \"{INTERNAL_PREFIX}\" are reserved for Herald"
        ));
    }
    validate_queue_lookup(name)
}

/// Checks a queue name to look up, which may be one of Herald's own: 1 to
/// 128 characters from `A-Z a-z 0-9 . _ -`, not only dots, so that it fits
/// in a URL path segment and a file name unescaped.
pub fn validate_queue_lookup(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.bytes().all(|byte| byte == b'.')
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid name \"{name}\"; use 1 to {MAX_NAME_LEN} characters from A-Z, a-z, 0-9, '.', '_' and '-', \
             not only dots"
        ))
    }
}

/// The queue over the embedded database.
#[derive(Clone)]
pub struct Queue {
    db: Db,
    idempotency_window: Duration,
    /// One notifier per queue name, signalled after each enqueue commits.
    wakeups: Arc<Mutex<HashMap<String, Arc<tokio::sync::Notify>>>>,
}

impl Queue {
    /// Creates a queue over `db` that remembers enqueue idempotency keys for
    /// `idempotency_window`.
    pub fn new(db: Db, idempotency_window: Duration) -> Self {
        Self {
            db,
            idempotency_window,
            wakeups: Arc::default(),
        }
    }

    /// Returns the notifier that is signalled whenever a message is enqueued
    /// on `queue` by this process. Enqueues by other processes are not seen,
    /// so dispatchers also poll.
    pub fn subscribe(&self, queue: &str) -> Arc<tokio::sync::Notify> {
        let mut wakeups = self
            .wakeups
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        Arc::clone(wakeups.entry(queue.to_owned()).or_default())
    }

    fn wake_policy_queues(&self, policy: &DeadLetterPolicy) {
        if let Some(error_queue) = &policy.error_queue {
            self.wake(error_queue);
        }
        if policy.notify_worker.is_some() {
            self.wake(FAILURE_NOTICE_QUEUE);
        }
    }

    fn wake(&self, queue: &str) {
        let wakeups = self
            .wakeups
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(notify) = wakeups.get(queue) {
            notify.notify_one();
        }
    }

    /// Returns the underlying database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Enqueues `messages` on `queue` in one transaction and returns their ids
    /// in order. A message whose idempotency key was enqueued on this queue
    /// within the window is not queued again, and its entry carries the
    /// earlier id.
    pub async fn enqueue(
        &self,
        queue: String,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let window_ms = duration_ms(self.idempotency_window);
        let name = queue.clone();
        let enqueued: Vec<Enqueued> = self
            .db
            .write(move |transaction| {
                let now = clock::now_ms();
                messages
                    .iter()
                    .map(|message| insert_message(transaction, &name, message, now, window_ms))
                    .collect()
            })
            .await?;
        if enqueued.iter().any(|entry| !entry.duplicate) {
            self.wake(&queue);
        }
        Ok(enqueued)
    }

    /// Reserves up to `params.limit` due messages, highest priority first,
    /// then earliest due, then lowest id, and counts an attempt on each.
    ///
    /// First, it settles expired reservations on the queue: messages with
    /// attempts left become `retryable` now, and the others are dead-lettered
    /// with the reason [`WORKER_LOST`] and returned in [`Reservation::lost`].
    pub async fn reserve(&self, params: ReserveParams) -> Result<Reservation, StoreError> {
        let policy = params.dead_letters.clone();
        let reservation = self
            .db
            .write(move |transaction| reserve(transaction, &params))
            .await?;
        if !reservation.lost.is_empty() {
            self.wake_policy_queues(&policy);
        }
        Ok(reservation)
    }

    /// Extends the reservation `reservation_id` to `timeout` from now and
    /// returns how many messages it still holds.
    pub async fn touch(
        &self,
        reservation_id: String,
        timeout: Duration,
    ) -> Result<usize, StoreError> {
        self.db
            .write(move |transaction| {
                let until = clock::now_ms().saturating_add(duration_ms(timeout));
                let touched = transaction
                    .prepare_cached(
                        "UPDATE messages SET reserved_until = ?2
                         WHERE reservation_id = ?1 AND state = 'reserved'",
                    )?
                    .execute(rusqlite::params![reservation_id, until])?;
                Ok(touched)
            })
            .await
    }

    /// Applies a batch's dispositions and writes its pending delivery rows in
    /// one transaction. A message no longer held by the reservation is left
    /// alone and reported in [`Finished::stale`].
    pub async fn finish(&self, params: FinishParams) -> Result<Finished, StoreError> {
        let policy = params.dead_letters.clone();
        let finished = self
            .db
            .write(move |transaction| finish(transaction, &params))
            .await?;
        if !finished.dead.is_empty() {
            self.wake_policy_queues(&policy);
        }
        Ok(finished)
    }

    /// Makes the messages still held by `reservation_id` available at once
    /// and gives back the attempt each one spent. Used on shutdown.
    pub async fn release(&self, reservation_id: String) -> Result<usize, StoreError> {
        self.db
            .write(move |transaction| {
                let released = transaction
                    .prepare_cached(
                        "UPDATE messages
                         SET state = 'available', attempts = MAX(attempts - 1, 0),
                             reservation_id = NULL, reserved_until = NULL
                         WHERE reservation_id = ?1 AND state = 'reserved'",
                    )?
                    .execute([&reservation_id])?;
                Ok(released)
            })
            .await
    }

    /// Returns the message `id`, or `None` when there is none.
    pub async fn get(&self, id: String) -> Result<Option<MessageInfo>, StoreError> {
        self.db
            .read(move |connection| {
                let info = connection
                    .prepare_cached(&format!(
                        "SELECT {INFO_COLUMNS} FROM messages WHERE id = ?1"
                    ))?
                    .query_row([&id], message_info)
                    .optional()?;
                info.transpose()
            })
            .await
    }

    /// Returns when the next message of `queue` becomes due or its next
    /// reservation expires, in ms since the epoch, or `None` when nothing is
    /// pending.
    pub async fn next_due(&self, queue: String) -> Result<Option<i64>, StoreError> {
        self.db
            .read(move |connection| {
                let due: Option<i64> = connection
                    .prepare_cached(
                        "SELECT MIN(t) FROM (
                             SELECT MIN(run_at) AS t FROM messages
                             WHERE queue = ?1 AND state IN ('scheduled', 'available', 'retryable')
                             UNION ALL
                             SELECT MIN(reserved_until) AS t FROM messages
                             WHERE queue = ?1 AND state = 'reserved'
                         )",
                    )?
                    .query_row([&queue], |row| row.get(0))?;
                Ok(due)
            })
            .await
    }

    /// Deletes up to `limit` completed messages that finished before
    /// `finished_before` (ms since the epoch) and returns how many it deleted.
    /// Their delivery rows stay in the delivery log.
    pub async fn delete_completed(
        &self,
        finished_before: i64,
        limit: u32,
    ) -> Result<usize, StoreError> {
        self.db
            .write(move |transaction| {
                let deleted = transaction
                    .prepare_cached(
                        "DELETE FROM messages WHERE id IN (
                             SELECT id FROM messages
                             WHERE state = 'completed' AND finished_at < ?1
                             LIMIT ?2
                         )",
                    )?
                    .execute(rusqlite::params![finished_before, limit])?;
                Ok(deleted)
            })
            .await
    }

    /// Deletes enqueue idempotency keys older than the window and returns how
    /// many it deleted.
    pub async fn delete_expired_keys(&self) -> Result<usize, StoreError> {
        let window_ms = duration_ms(self.idempotency_window);
        self.db
            .write(move |transaction| {
                let cutoff = clock::now_ms().saturating_sub(window_ms);
                let deleted = transaction
                    .prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?
                    .execute([cutoff])?;
                Ok(deleted)
            })
            .await
    }

    /// Counts the messages of `queue` in each state.
    pub async fn counts(&self, queue: String) -> Result<Vec<(MessageState, u64)>, StoreError> {
        self.db
            .read(move |connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT state, COUNT(*) FROM messages WHERE queue = ?1 GROUP BY state",
                )?;
                let rows = statement.query_map([&queue], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })?;
                let mut counts = Vec::new();
                for row in rows {
                    let (state, count) = row?;
                    counts.push((MessageState::parse(&state)?, count.max(0) as u64));
                }
                Ok(counts)
            })
            .await
    }
}

/// Columns read by [`message_info`], in its order.
const INFO_COLUMNS: &str = "id, queue, state, priority, attempts, deferrals, last_error, run_at, \
                            reserved_until, enqueued_at, finished_at, payload";

fn message_info(row: &Row<'_>) -> rusqlite::Result<Result<MessageInfo, StoreError>> {
    let state: String = row.get(2)?;
    let run_at: i64 = row.get(7)?;
    let reserved_until: Option<i64> = row.get(8)?;
    let finished_at: Option<i64> = row.get(10)?;
    let payload: String = row.get(11)?;
    let state = match MessageState::parse(&state) {
        Ok(state) => state,
        Err(error) => return Ok(Err(error)),
    };
    let state = match state {
        MessageState::Scheduled | MessageState::Available if run_at > clock::now_ms() => {
            MessageState::Scheduled
        }
        MessageState::Scheduled => MessageState::Available,
        other => other,
    };
    let finished = matches!(state, MessageState::Completed | MessageState::Dead);
    Ok(Ok(MessageInfo {
        id: row.get(0)?,
        queue: row.get(1)?,
        state,
        priority: row.get(3)?,
        attempts: row.get(4)?,
        deferrals: row.get(5)?,
        last_error: row.get(6)?,
        run_at: (!finished && state != MessageState::Reserved).then(|| clock::to_rfc3339(run_at)),
        reserved_until: reserved_until
            .filter(|_| state == MessageState::Reserved)
            .map(clock::to_rfc3339),
        enqueued_at: clock::to_rfc3339(row.get(9)?),
        finished_at: finished_at.map(clock::to_rfc3339),
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
    }))
}

fn insert_message(
    transaction: &Transaction<'_>,
    queue: &str,
    message: &NewMessage,
    now: i64,
    window_ms: i64,
) -> Result<Enqueued, StoreError> {
    if let Some(key) = &message.idempotency_key {
        let earlier: Option<(String, i64)> = transaction
            .prepare_cached(
                "SELECT message_id, created_at FROM idempotency_keys WHERE queue = ?1 AND key = ?2",
            )?
            .query_row([queue, key], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        if let Some((id, created_at)) = earlier
            && created_at.saturating_add(window_ms) > now
        {
            return Ok(Enqueued {
                id,
                duplicate: true,
            });
        }
    }

    let id = new_id();
    let state = if message.run_at > now {
        MessageState::Scheduled
    } else {
        MessageState::Available
    };
    transaction
        .prepare_cached(
            "INSERT INTO messages (id, queue, payload, state, priority, run_at, enqueued_at)
             VALUES (:id, :queue, :payload, :state, :priority, :run_at, :now)",
        )?
        .execute(named_params! {
            ":id": id,
            ":queue": queue,
            ":payload": message.payload,
            ":state": state.as_str(),
            ":priority": message.priority,
            ":run_at": message.run_at,
            ":now": now,
        })?;
    if let Some(key) = &message.idempotency_key {
        // Replaces a key whose window has passed.
        transaction
            .prepare_cached(
                "INSERT OR REPLACE INTO idempotency_keys (queue, key, message_id, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(rusqlite::params![queue, key, id, now])?;
    }
    Ok(Enqueued {
        id,
        duplicate: false,
    })
}

fn reserve(
    transaction: &Transaction<'_>,
    params: &ReserveParams,
) -> Result<Reservation, StoreError> {
    let now = clock::now_ms();

    // Settle reservations that expired without an outcome.
    let mut lost = Vec::new();
    {
        let mut statement = transaction.prepare_cached(
            "UPDATE messages
             SET state = CASE WHEN attempts >= :max THEN 'dead' ELSE 'retryable' END,
                 finished_at = CASE WHEN attempts >= :max THEN :now ELSE NULL END,
                 last_error = :lost, run_at = :now, suspect = 1,
                 reservation_id = NULL, reserved_until = NULL
             WHERE queue = :queue AND state = 'reserved' AND reserved_until <= :now
             RETURNING id, state, payload, attempts",
        )?;
        let rows = statement.query_map(
            named_params! {
                ":max": params.max_attempts,
                ":now": now,
                ":lost": WORKER_LOST,
                ":queue": params.queue,
            },
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, u32>(3)?,
                ))
            },
        )?;
        for row in rows {
            let (id, state, payload, attempts) = row?;
            if state == "dead" {
                lost.push(DeadLetter {
                    id,
                    queue: params.queue.clone(),
                    payload,
                    attempts,
                    error: WORKER_LOST.to_owned(),
                });
            } else {
                tracing::warn!(message_id = %id, attempts, "reservation expired, message will be retried");
            }
        }
    }
    for letter in &lost {
        tracing::warn!(message_id = %letter.id, attempts = letter.attempts, "dead-lettered: worker lost");
    }
    dead::apply_policy(transaction, &params.dead_letters, &lost, now)?;

    let reservation_id = params.reservation_id.clone().unwrap_or_else(new_id);
    let until = now.saturating_add(duration_ms(params.timeout));

    // A suspect (a message whose host died while it was reserved) runs in a
    // batch of its own, so that if it takes the host down again it does not
    // take its neighbours' attempts with it.
    let first: Option<(String, bool)> = transaction
        .prepare_cached(
            "SELECT id, suspect FROM messages
             WHERE queue = ?1 AND state IN ('scheduled', 'available', 'retryable')
               AND run_at <= ?2
             ORDER BY priority DESC, run_at, id
             LIMIT 1",
        )?
        .query_row(rusqlite::params![params.queue, now], |row| {
            Ok((row.get(0)?, row.get::<_, i64>(1)? != 0))
        })
        .optional()?;
    let (only_id, limit) = match first {
        None => {
            return Ok(Reservation {
                id: reservation_id,
                messages: Vec::new(),
                lost,
            });
        }
        Some((id, true)) => (Some(id), 1),
        Some((_, false)) => (None, params.limit),
    };

    let mut statement = transaction.prepare_cached(
        "UPDATE messages
         SET state = 'reserved', reservation_id = :reservation, reserved_until = :until,
             attempts = attempts + 1
         WHERE id IN (
             SELECT id FROM messages
             WHERE queue = :queue AND state IN ('scheduled', 'available', 'retryable')
               AND run_at <= :now
               AND ((:only IS NULL AND suspect = 0) OR id = :only)
             ORDER BY priority DESC, run_at, id
             LIMIT :limit
         )
         RETURNING id, payload, attempts, deferrals, enqueued_at, priority, run_at",
    )?;
    let rows = statement.query_map(
        named_params! {
            ":reservation": reservation_id,
            ":until": until,
            ":queue": params.queue,
            ":now": now,
            ":only": only_id,
            ":limit": limit,
        },
        |row| {
            let message = ReservedMessage {
                id: row.get(0)?,
                queue: params.queue.clone(),
                payload: row.get(1)?,
                attempt: row.get(2)?,
                deferrals: row.get(3)?,
                enqueued_at: row.get(4)?,
            };
            let priority: i32 = row.get(5)?;
            let run_at: i64 = row.get(6)?;
            Ok((std::cmp::Reverse(priority), run_at, message))
        },
    )?;
    let mut ordered = rows.collect::<Result<Vec<_>, _>>()?;
    // RETURNING does not keep the subquery's order.
    ordered.sort_by(|a, b| (a.0, a.1, &a.2.id).cmp(&(b.0, b.1, &b.2.id)));

    Ok(Reservation {
        id: reservation_id,
        messages: ordered.into_iter().map(|(_, _, message)| message).collect(),
        lost,
    })
}

fn finish(transaction: &Transaction<'_>, params: &FinishParams) -> Result<Finished, StoreError> {
    let now = clock::now_ms();
    let mut finished = Finished::default();

    for (id, disposition) in &params.dispositions {
        let changed = match disposition {
            Disposition::Complete => transaction
                .prepare_cached(
                    "UPDATE messages
                     SET state = 'completed', finished_at = :now, suspect = 0,
                         reservation_id = NULL, reserved_until = NULL
                     WHERE id = :id AND reservation_id = :reservation AND state = 'reserved'",
                )?
                .execute(named_params! {
                    ":now": now, ":id": id, ":reservation": params.reservation_id,
                })?,
            Disposition::Retry { error, delay } => transaction
                .prepare_cached(
                    "UPDATE messages
                     SET state = 'retryable', run_at = :run_at, last_error = :error, suspect = 0,
                         reservation_id = NULL, reserved_until = NULL
                     WHERE id = :id AND reservation_id = :reservation AND state = 'reserved'",
                )?
                .execute(named_params! {
                    ":run_at": now.saturating_add(duration_ms(*delay)), ":error": error, ":id": id,
                    ":reservation": params.reservation_id,
                })?,
            Disposition::Defer { delay } => transaction
                .prepare_cached(
                    "UPDATE messages
                     SET state = 'scheduled', run_at = :run_at, attempts = MAX(attempts - 1, 0),
                         deferrals = deferrals + 1, suspect = 0,
                         reservation_id = NULL, reserved_until = NULL
                     WHERE id = :id AND reservation_id = :reservation AND state = 'reserved'",
                )?
                .execute(named_params! {
                    ":run_at": now.saturating_add(duration_ms(*delay)), ":id": id,
                    ":reservation": params.reservation_id,
                })?,
            Disposition::Dead { error } => {
                let letter = transaction
                    .prepare_cached(
                        "UPDATE messages
                         SET state = 'dead', last_error = :error, finished_at = :now, suspect = 0,
                             reservation_id = NULL, reserved_until = NULL
                         WHERE id = :id AND reservation_id = :reservation AND state = 'reserved'
                         RETURNING id, queue, payload, attempts",
                    )?
                    .query_row(
                        named_params! {
                            ":error": error, ":now": now, ":id": id,
                            ":reservation": params.reservation_id,
                        },
                        |row| {
                            Ok(DeadLetter {
                                id: row.get(0)?,
                                queue: row.get(1)?,
                                payload: row.get(2)?,
                                attempts: row.get(3)?,
                                error: error.clone(),
                            })
                        },
                    )
                    .optional()?;
                match letter {
                    Some(letter) => {
                        finished.dead.push(letter);
                        1
                    }
                    None => 0,
                }
            }
        };
        if changed == 0 {
            finished.stale.push(id.clone());
        }
    }

    dead::apply_policy(transaction, &params.dead_letters, &finished.dead, now)?;

    for record in &params.deliveries {
        audit::insert_delivery(transaction, record)?;
    }
    Ok(finished)
}

/// Returns a new time-ordered id (UUIDv7).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
