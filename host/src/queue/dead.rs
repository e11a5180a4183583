//! Dead letters: listing, replaying and purging them, and copying them to an
//! error queue.

use rusqlite::{Transaction, named_params, params_from_iter};
use serde::Serialize;

use super::{NewMessage, Queue, insert_message};
use crate::clock;
use crate::store::StoreError;

/// A message that failed for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Message id.
    pub id: String,
    /// Queue it was on.
    pub queue: String,
    /// Payload as JSON text.
    #[serde(skip)]
    pub payload: String,
    /// Attempts it used.
    pub attempts: u32,
    /// Reason it failed.
    pub error: String,
}

/// A dead letter as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterInfo {
    /// Message id.
    pub id: String,
    /// Attempts it used.
    pub attempts: u32,
    /// Deferrals it used.
    pub deferrals: u32,
    /// Reason it failed.
    pub error: Option<String>,
    /// When it was enqueued (RFC 3339).
    pub enqueued_at: String,
    /// When it was dead-lettered (RFC 3339).
    pub dead_at: Option<String>,
    /// The payload.
    pub payload: serde_json::Value,
}

impl Queue {
    /// Lists up to `limit` dead letters of `queue`, oldest first, starting
    /// after the message id `after` when given.
    pub async fn list_dead(
        &self,
        queue: String,
        limit: u32,
        after: Option<String>,
    ) -> Result<Vec<DeadLetterInfo>, StoreError> {
        self.db()
            .read(move |connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT id, attempts, deferrals, last_error, enqueued_at, finished_at, payload
                     FROM messages
                     WHERE queue = :queue AND state = 'dead' AND id > :after
                     ORDER BY id LIMIT :limit",
                )?;
                let rows = statement.query_map(
                    named_params! {
                        ":queue": queue,
                        ":after": after.unwrap_or_default(),
                        ":limit": limit,
                    },
                    |row| {
                        let payload: String = row.get(6)?;
                        Ok(DeadLetterInfo {
                            id: row.get(0)?,
                            attempts: row.get(1)?,
                            deferrals: row.get(2)?,
                            error: row.get(3)?,
                            enqueued_at: clock::to_rfc3339(row.get(4)?),
                            dead_at: row.get::<_, Option<i64>>(5)?.map(clock::to_rfc3339),
                            payload: serde_json::from_str(&payload)
                                .unwrap_or(serde_json::Value::String(payload)),
                        })
                    },
                )?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// Makes dead letters of `queue` available again with fresh attempts and
    /// deferrals: those in `ids`, or all of them when `ids` is `None`.
    /// Returns the ids replayed; ids that are not dead letters of `queue` are
    /// skipped.
    pub async fn replay_dead(
        &self,
        queue: String,
        ids: Option<Vec<String>>,
    ) -> Result<Vec<String>, StoreError> {
        let name = queue.clone();
        let replayed = self
            .db()
            .write(move |transaction| {
                let queue = &name;
                let now = clock::now_ms();
                let mut replayed = Vec::new();
                let mut replay_one = |id: Option<&String>| -> Result<(), StoreError> {
                    let mut statement = transaction.prepare_cached(
                        "UPDATE messages
                         SET state = 'available', attempts = 0, deferrals = 0, run_at = :now,
                             finished_at = NULL
                         WHERE queue = :queue AND state = 'dead'
                           AND (:id IS NULL OR id = :id)
                         RETURNING id",
                    )?;
                    let rows = statement.query_map(
                        named_params! { ":now": now, ":queue": queue, ":id": id },
                        |row| row.get::<_, String>(0),
                    )?;
                    for row in rows {
                        replayed.push(row?);
                    }
                    Ok(())
                };
                match &ids {
                    Some(ids) => {
                        for id in ids {
                            replay_one(Some(id))?;
                        }
                    }
                    None => replay_one(None)?,
                }
                Ok(replayed)
            })
            .await?;
        if !replayed.is_empty() {
            self.wake(&queue);
        }
        Ok(replayed)
    }

    /// Deletes dead letters of `queue`: those in `ids`, or all of them when
    /// `ids` is `None`. Returns how many were deleted.
    pub async fn purge_dead(
        &self,
        queue: String,
        ids: Option<Vec<String>>,
    ) -> Result<usize, StoreError> {
        self.db()
            .write(move |transaction| {
                let purged = match &ids {
                    None => transaction
                        .prepare_cached("DELETE FROM messages WHERE queue = ?1 AND state = 'dead'")?
                        .execute([&queue])?,
                    Some(ids) => {
                        let mut purged = 0;
                        for chunk in ids.chunks(500) {
                            let placeholders = vec!["?"; chunk.len()].join(", ");
                            let sql = format!(
                                "DELETE FROM messages
                                 WHERE queue = ? AND state = 'dead' AND id IN ({placeholders})"
                            );
                            let values = std::iter::once(&queue).chain(chunk.iter());
                            purged += transaction.execute(&sql, params_from_iter(values))?;
                        }
                        purged
                    }
                };
                Ok(purged)
            })
            .await
    }
}

/// Queue of failure notices waiting for their webhook. The host consumes it
/// itself (see `crate::webhook`).
pub const FAILURE_NOTICE_QUEUE: &str = "herald.failure-notices";

/// Side effects of dead-lettering a message, written in the same transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterPolicy {
    /// Queue that receives a copy of each dead letter.
    pub error_queue: Option<String>,
    /// Worker whose failure webhook is notified of each dead letter. The
    /// notice is queued on [`FAILURE_NOTICE_QUEUE`].
    pub notify_worker: Option<String>,
}

/// Payload of a message on [`FAILURE_NOTICE_QUEUE`], and the body of the
/// failure webhook's POST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FailureNotice {
    /// Event name, `message.dead`.
    pub event: String,
    /// Worker whose message died.
    pub worker: String,
    /// Id of the dead message.
    pub message_id: String,
    /// Queue it was on.
    pub queue: String,
    /// Attempts it used.
    pub attempts: u32,
    /// Reason it died.
    pub error: String,
    /// When it died, RFC 3339 in UTC.
    pub dead_at: String,
}

/// Applies `policy` to freshly dead-lettered `letters` inside `transaction`.
pub(super) fn apply_policy(
    transaction: &Transaction<'_>,
    policy: &DeadLetterPolicy,
    letters: &[DeadLetter],
    now: i64,
) -> Result<(), StoreError> {
    if let Some(error_queue) = &policy.error_queue {
        copy_to_queue(transaction, error_queue, letters, now)?;
    }
    if let Some(worker) = &policy.notify_worker {
        for letter in letters {
            let notice = FailureNotice {
                event: "message.dead".to_owned(),
                worker: worker.clone(),
                message_id: letter.id.clone(),
                queue: letter.queue.clone(),
                attempts: letter.attempts,
                error: letter.error.clone(),
                dead_at: clock::to_rfc3339(now),
            };
            let payload = serde_json::to_string(&notice)
                .map_err(|error| StoreError::Corrupt(format!("failure notice: {error}")))?;
            let message = NewMessage {
                payload,
                run_at: now,
                priority: 0,
                idempotency_key: None,
            };
            insert_message(transaction, FAILURE_NOTICE_QUEUE, &message, now, 0)?;
        }
    }
    Ok(())
}

/// Enqueues on `error_queue` one message per dead letter. Its payload is
/// `{"dead_letter": {id, queue, attempts, error}, "payload": <original>}`.
fn copy_to_queue(
    transaction: &Transaction<'_>,
    error_queue: &str,
    letters: &[DeadLetter],
    now: i64,
) -> Result<(), StoreError> {
    for letter in letters {
        let original: serde_json::Value = serde_json::from_str(&letter.payload)
            .unwrap_or_else(|_| serde_json::Value::String(letter.payload.clone()));
        let payload = serde_json::json!({
            "dead_letter": letter,
            "payload": original,
        });
        let message = NewMessage {
            payload: payload.to_string(),
            run_at: now,
            priority: 0,
            idempotency_key: None,
        };
        insert_message(transaction, error_queue, &message, now, 0)?;
        tracing::info!(message_id = %letter.id, error_queue, "copied dead letter to error queue");
    }
    Ok(())
}
