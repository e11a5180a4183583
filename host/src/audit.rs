//! The delivery log and the workers' audit events: who was notified, when,
//! through which gateway, and with what result.
//!
//! Each gateway attempt becomes one row per recipient. A `sent` row is
//! committed as soon as the gateway accepts the notification, before the
//! batch ends. A crash between the send and the batch outcome then cannot
//! lead to a second send, because the retried batch finds the row and
//! suppresses the duplicate. Every other row is written in the transaction that records the
//! message's outcome (see [`crate::queue::Queue::finish`]).

use rusqlite::{OptionalExtension, Transaction, named_params};
use serde::Serialize;

use crate::clock;
use crate::queue::new_id;
use crate::store::{Db, StoreError};

/// Result of one gateway attempt for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryStatus {
    /// The gateway accepted the notification.
    Sent,
    /// The send failed and the worker still completed the message.
    Failed,
    /// The send failed and the message will be retried.
    Retrying,
    /// The send failed and the message was dead-lettered.
    Dead,
    /// The idempotency key had already been sent, so nothing was sent again.
    DuplicateSuppressed,
}

impl DeliveryStatus {
    /// Returns the stored name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Retrying => "retrying",
            Self::Dead => "dead",
            Self::DuplicateSuppressed => "duplicate-suppressed",
        }
    }

    /// Parses a stored or user-given status name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "sent" => Self::Sent,
            "failed" => Self::Failed,
            "retrying" => Self::Retrying,
            "dead" => Self::Dead,
            "duplicate-suppressed" => Self::DuplicateSuppressed,
            _ => return None,
        })
    }
}

/// One row of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Row id.
    pub id: String,
    /// Message the worker was handling.
    pub message_id: String,
    /// Worker name.
    pub worker: String,
    /// Worker version.
    pub worker_version: u32,
    /// Channel, such as `email`.
    pub channel: String,
    /// Gateway name.
    pub gateway: String,
    /// One recipient address.
    pub recipient: String,
    /// Idempotency key of the send.
    pub idempotency_key: String,
    /// Result.
    pub status: DeliveryStatus,
    /// The provider's id, such as the email's Message-ID.
    pub provider_id: Option<String>,
    /// The message's attempt number.
    pub attempt: u32,
    /// Error text of a failed send.
    pub error: Option<String>,
    /// Name of the stored template the notification was rendered from.
    pub template: Option<String>,
    /// Version of that template.
    pub template_version: Option<u32>,
    /// Time of the attempt in ms since the epoch.
    pub created_at: i64,
}

/// A delivery row as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryInfo {
    /// Row id.
    pub id: String,
    /// Message id.
    pub message_id: String,
    /// Worker name.
    pub worker: String,
    /// Worker version.
    pub worker_version: u32,
    /// Channel.
    pub channel: String,
    /// Gateway name.
    pub gateway: String,
    /// Recipient address.
    pub recipient: String,
    /// Result.
    pub status: String,
    /// The provider's id.
    pub provider_id: Option<String>,
    /// The message's attempt number.
    pub attempt: u32,
    /// Error text.
    pub error: Option<String>,
    /// Stored template the notification was rendered from.
    pub template: Option<String>,
    /// Version of that template.
    pub template_version: Option<u32>,
    /// Time of the attempt, RFC 3339 in UTC.
    pub created_at: String,
}

/// Filters of a delivery log query. `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Worker name.
    pub worker: Option<String>,
    /// Recipient address, compared without regard to case.
    pub recipient: Option<String>,
    /// Status.
    pub status: Option<DeliveryStatus>,
    /// Message id.
    pub message_id: Option<String>,
    /// Maximum number of rows.
    pub limit: u32,
}

/// The earlier receipt of an idempotency key that was already sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentReceipt {
    /// Id of the first `sent` row.
    pub delivery_id: String,
    /// Gateway that sent it.
    pub gateway: String,
    /// The provider's id.
    pub provider_id: String,
}

/// The delivery log over the embedded database.
#[derive(Clone)]
pub struct AuditLog {
    db: Db,
}

impl AuditLog {
    /// Creates the log over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Commits `sent` rows at once, in their own transaction, and returns how
    /// many were skipped because their worker, key and recipient were already
    /// recorded as sent.
    pub async fn record_sent(&self, records: Vec<DeliveryRecord>) -> Result<usize, StoreError> {
        self.db
            .write(move |transaction| {
                let mut skipped = 0;
                for record in &records {
                    if !insert_delivery(transaction, record)? {
                        skipped += 1;
                    }
                }
                Ok(skipped)
            })
            .await
    }

    /// Returns the earlier receipt when `worker` already sent `key`.
    pub async fn find_sent(
        &self,
        worker: String,
        key: String,
    ) -> Result<Option<SentReceipt>, StoreError> {
        self.db
            .read(move |connection| {
                let receipt = connection
                    .prepare_cached(
                        // Without statistics the planner may prefer the worker
                        // index and scan every row of the worker.
                        "SELECT id, gateway, provider_id FROM deliveries INDEXED BY deliveries_sent
                         WHERE worker = ?1 AND idempotency_key = ?2 AND status = 'sent'
                         ORDER BY created_at, id LIMIT 1",
                    )?
                    .query_row([&worker, &key], |row| {
                        Ok(SentReceipt {
                            delivery_id: row.get(0)?,
                            gateway: row.get(1)?,
                            provider_id: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        })
                    })
                    .optional()?;
                Ok(receipt)
            })
            .await
    }

    /// Returns delivery rows matching `filter`, newest first.
    pub async fn list(&self, filter: DeliveryFilter) -> Result<Vec<DeliveryInfo>, StoreError> {
        self.db
            .read(move |connection| {
                // Only the filters given go into the query, so that SQLite can
                // use the index of the column filtered on.
                let mut conditions = Vec::new();
                let mut values: Vec<&dyn rusqlite::ToSql> = Vec::new();
                let status = filter.status.map(DeliveryStatus::as_str);
                let filters: [(&str, Option<&dyn rusqlite::ToSql>); 4] = [
                    ("worker", filter.worker.as_ref().map(|value| value as _)),
                    (
                        "recipient",
                        filter.recipient.as_ref().map(|value| value as _),
                    ),
                    ("status", status.as_ref().map(|value| value as _)),
                    (
                        "message_id",
                        filter.message_id.as_ref().map(|value| value as _),
                    ),
                ];
                for (column, value) in filters {
                    if let Some(value) = value {
                        conditions.push(format!("{column} = ?"));
                        values.push(value);
                    }
                }
                let where_clause = if conditions.is_empty() {
                    String::new()
                } else {
                    format!("WHERE {}", conditions.join(" AND "))
                };
                values.push(&filter.limit);
                let sql = format!(
                    "SELECT id, message_id, worker, worker_version, channel, gateway, recipient,
                            status, provider_id, attempt, error, created_at, template,
                            template_version
                     FROM deliveries {where_clause}
                     ORDER BY created_at DESC, id DESC
                     LIMIT ?"
                );
                let mut statement = connection.prepare_cached(&sql)?;
                let rows = statement.query_map(values.as_slice(), |row| {
                    Ok(DeliveryInfo {
                        id: row.get(0)?,
                        message_id: row.get(1)?,
                        worker: row.get(2)?,
                        worker_version: row.get(3)?,
                        channel: row.get(4)?,
                        gateway: row.get(5)?,
                        recipient: row.get(6)?,
                        status: row.get(7)?,
                        provider_id: row.get(8)?,
                        attempt: row.get(9)?,
                        error: row.get(10)?,
                        created_at: clock::to_rfc3339(row.get(11)?),
                        template: row.get(12)?,
                        template_version: row.get(13)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// Records an application event that a worker reported for a message.
    pub async fn record_event(&self, event: AuditEvent) -> Result<String, StoreError> {
        self.db
            .write(move |transaction| {
                let id = new_id();
                transaction
                    .prepare_cached(
                        "INSERT INTO audit_events
                             (id, message_id, worker, worker_version, event, detail, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(rusqlite::params![
                        id,
                        event.message_id,
                        event.worker,
                        event.worker_version,
                        event.event,
                        event.detail,
                        clock::now_ms(),
                    ])?;
                Ok(id)
            })
            .await
    }
}

/// An application event reported by a worker.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Message the event belongs to.
    pub message_id: String,
    /// Worker name.
    pub worker: String,
    /// Worker version.
    pub worker_version: u32,
    /// Event name.
    pub event: String,
    /// Detail as JSON text.
    pub detail: String,
}

/// Inserts one delivery row inside `transaction` and returns whether it was
/// inserted. A second `sent` row for the same worker, key and recipient is
/// skipped.
pub(crate) fn insert_delivery(
    transaction: &Transaction<'_>,
    record: &DeliveryRecord,
) -> Result<bool, StoreError> {
    let inserted = transaction
        .prepare_cached(
            "INSERT INTO deliveries
                 (id, message_id, worker, worker_version, channel, gateway, recipient,
                  idempotency_key, status, provider_id, attempt, error, template,
                  template_version, created_at)
             VALUES (:id, :message_id, :worker, :worker_version, :channel, :gateway, :recipient,
                     :key, :status, :provider_id, :attempt, :error, :template,
                     :template_version, :created_at)
             ON CONFLICT DO NOTHING",
        )?
        .execute(named_params! {
            ":id": record.id,
            ":message_id": record.message_id,
            ":worker": record.worker,
            ":worker_version": record.worker_version,
            ":channel": record.channel,
            ":gateway": record.gateway,
            ":recipient": record.recipient,
            ":key": record.idempotency_key,
            ":status": record.status.as_str(),
            ":provider_id": record.provider_id,
            ":attempt": record.attempt,
            ":error": record.error,
            ":template": record.template,
            ":template_version": record.template_version,
            ":created_at": record.created_at,
        })?;
    Ok(inserted == 1)
}
