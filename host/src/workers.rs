//! Stored workers: every uploaded version of each worker's component, its
//! sha256 digest, and which version is active.
//!
//! This module stores bytes and metadata only; validating and compiling a
//! component is the job of [`crate::runtime`].

use rusqlite::{OptionalExtension, named_params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::clock;
use crate::store::{Db, StoreError};

/// One stored version of a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerVersion {
    /// Worker name.
    pub name: String,
    /// Version number, counting from 1 per worker.
    pub version: u32,
    /// sha256 of the component bytes, as `sha256:<hex>`.
    pub digest: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// Upload time, RFC 3339 in UTC.
    pub created_at: String,
}

/// Result of [`WorkerStore::add_version`].
#[derive(Debug, Clone)]
pub struct Added {
    /// The active version after the call.
    pub version: WorkerVersion,
    /// False when the bytes matched the active version, so nothing was stored.
    pub created: bool,
}

/// Returns the digest of component bytes in the `sha256:<hex>` form.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Worker versions over the embedded database.
#[derive(Clone)]
pub struct WorkerStore {
    db: Db,
}

impl WorkerStore {
    /// Creates the store over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Stores `bytes` as the next version of `name` and makes it active. When
    /// the bytes equal the active version's, nothing is stored and the active
    /// version is returned with `created: false`.
    pub async fn add_version(&self, name: String, bytes: Vec<u8>) -> Result<Added, StoreError> {
        let digest = digest(&bytes);
        self.db
            .write(move |transaction| {
                let now = clock::now_ms();
                let active: Option<(u32, String)> = transaction
                    .prepare_cached(
                        "SELECT v.version, v.digest FROM workers w
                         JOIN worker_versions v ON v.worker = w.name AND v.version = w.active_version
                         WHERE w.name = ?1",
                    )?
                    .query_row([&name], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                if let Some((version, active_digest)) = &active
                    && *active_digest == digest
                {
                    let version = version_row(transaction, &name, *version)?;
                    return Ok(Added {
                        version,
                        created: false,
                    });
                }

                let next: u32 = transaction
                    .prepare_cached(
                        "SELECT COALESCE(MAX(version), 0) + 1 FROM worker_versions WHERE worker = ?1",
                    )?
                    .query_row([&name], |row| row.get(0))?;
                transaction
                    .prepare_cached(
                        "INSERT INTO workers (name, active_version, created_at, updated_at)
                         VALUES (:name, :version, :now, :now)
                         ON CONFLICT (name) DO UPDATE
                         SET active_version = :version, updated_at = :now",
                    )?
                    .execute(named_params! { ":name": name, ":version": next, ":now": now })?;
                transaction
                    .prepare_cached(
                        "INSERT INTO worker_versions
                             (worker, version, digest, size, component, created_at)
                         VALUES (:name, :version, :digest, :size, :component, :now)",
                    )?
                    .execute(named_params! {
                        ":name": name,
                        ":version": next,
                        ":digest": digest,
                        ":size": bytes.len() as i64,
                        ":component": bytes,
                        ":now": now,
                    })?;
                Ok(Added {
                    version: version_row(transaction, &name, next)?,
                    created: true,
                })
            })
            .await
    }

    /// Returns the active version of every worker, by name.
    pub async fn list_active(&self) -> Result<Vec<WorkerVersion>, StoreError> {
        self.db
            .read(|connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT v.worker, v.version, v.digest, v.size, v.created_at
                     FROM workers w
                     JOIN worker_versions v ON v.worker = w.name AND v.version = w.active_version
                     ORDER BY w.name",
                )?;
                let rows = statement.query_map([], read_version)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// Returns the active version of `name` with its component bytes.
    pub async fn active(
        &self,
        name: String,
    ) -> Result<Option<(WorkerVersion, Vec<u8>)>, StoreError> {
        self.db
            .read(move |connection| {
                let found = connection
                    .prepare_cached(
                        "SELECT v.worker, v.version, v.digest, v.size, v.created_at, v.component
                         FROM workers w
                         JOIN worker_versions v ON v.worker = w.name AND v.version = w.active_version
                         WHERE w.name = ?1",
                    )?
                    .query_row([&name], |row| Ok((read_version(row)?, row.get(5)?)))
                    .optional()?;
                Ok(found)
            })
            .await
    }
}

fn version_row(
    transaction: &rusqlite::Transaction<'_>,
    name: &str,
    version: u32,
) -> Result<WorkerVersion, StoreError> {
    let row = transaction
        .prepare_cached(
            "SELECT worker, version, digest, size, created_at FROM worker_versions
             WHERE worker = ?1 AND version = ?2",
        )?
        .query_row(rusqlite::params![name, version], read_version)?;
    Ok(row)
}

fn read_version(row: &rusqlite::Row<'_>) -> rusqlite::Result<WorkerVersion> {
    Ok(WorkerVersion {
        name: row.get(0)?,
        version: row.get(1)?,
        digest: row.get(2)?,
        size: row.get::<_, i64>(3)?.max(0) as u64,
        created_at: clock::to_rfc3339(row.get(4)?),
    })
}
