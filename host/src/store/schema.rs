//! Schema migrations. Each entry of [`MIGRATIONS`] moves the database one
//! version forward; `PRAGMA user_version` records how far a file has come.
//! Never edit a migration that has shipped: append a new one.

use rusqlite::Connection;

use super::StoreError;

/// Migrations in order. The database's version is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: workers, messages and the delivery log.
    r#"
    CREATE TABLE workers (
        name           TEXT PRIMARY KEY,
        active_version INTEGER NOT NULL,
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL
    );

    CREATE TABLE worker_versions (
        worker     TEXT NOT NULL REFERENCES workers (name),
        version    INTEGER NOT NULL,
        digest     TEXT NOT NULL,
        size       INTEGER NOT NULL,
        component  BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (worker, version)
    );

    -- Times are milliseconds since the Unix epoch.
    CREATE TABLE messages (
        id              TEXT PRIMARY KEY,
        queue           TEXT NOT NULL,
        payload         TEXT NOT NULL,
        state           TEXT NOT NULL,
        priority        INTEGER NOT NULL DEFAULT 0,
        run_at          INTEGER NOT NULL,
        enqueued_at     INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        deferrals       INTEGER NOT NULL DEFAULT 0,
        reservation_id  TEXT,
        reserved_until  INTEGER,
        last_error      TEXT,
        -- 1 after a reservation expired without an outcome: the message may
        -- be what took its host down, so it is reserved alone.
        suspect         INTEGER NOT NULL DEFAULT 0,
        finished_at     INTEGER
    );

    -- Reservation scans due messages in priority, due time and id order.
    CREATE INDEX messages_ready ON messages (queue, priority DESC, run_at, id)
        WHERE state IN ('scheduled', 'available', 'retryable');
    CREATE INDEX messages_reserved ON messages (queue, reserved_until)
        WHERE state = 'reserved';
    CREATE INDEX messages_reservation ON messages (reservation_id)
        WHERE reservation_id IS NOT NULL;
    CREATE INDEX messages_dead ON messages (queue, finished_at)
        WHERE state = 'dead';

    -- Enqueue idempotency keys, kept apart from messages so that deleting a
    -- message (a purged dead letter, say) does not forget its key.
    CREATE TABLE idempotency_keys (
        queue      TEXT NOT NULL,
        key        TEXT NOT NULL,
        message_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (queue, key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

    -- One row per recipient of every gateway attempt.
    CREATE TABLE deliveries (
        id              TEXT PRIMARY KEY,
        message_id      TEXT NOT NULL,
        worker          TEXT NOT NULL,
        worker_version  INTEGER NOT NULL,
        channel         TEXT NOT NULL,
        gateway         TEXT NOT NULL,
        recipient       TEXT NOT NULL COLLATE NOCASE,
        idempotency_key TEXT NOT NULL,
        status          TEXT NOT NULL,
        provider_id     TEXT,
        attempt         INTEGER NOT NULL,
        error           TEXT,
        created_at      INTEGER NOT NULL
    );

    CREATE INDEX deliveries_created ON deliveries (created_at, id);
    CREATE INDEX deliveries_recipient ON deliveries (recipient, created_at);
    CREATE INDEX deliveries_worker ON deliveries (worker, created_at);
    CREATE INDEX deliveries_message ON deliveries (message_id);
    -- The notification idempotency check: at most one sent row per key and
    -- recipient.
    CREATE UNIQUE INDEX deliveries_sent ON deliveries (worker, idempotency_key, recipient)
        WHERE status = 'sent';

    -- Application events that workers record through the audit import.
    CREATE TABLE audit_events (
        id             TEXT PRIMARY KEY,
        message_id     TEXT NOT NULL,
        worker         TEXT NOT NULL,
        worker_version INTEGER NOT NULL,
        event          TEXT NOT NULL,
        detail         TEXT NOT NULL,
        created_at     INTEGER NOT NULL
    );

    CREATE INDEX audit_events_message ON audit_events (message_id);
    "#,
    // 2: stored templates, and the template version behind each delivery.
    r#"
    -- Every version of every template. A delete marks all versions of the
    -- name deleted instead of removing them, so the delivery log can still
    -- show what was rendered and a new template of the same name continues
    -- the version count.
    CREATE TABLE templates (
        name       TEXT NOT NULL,
        version    INTEGER NOT NULL,
        subject    TEXT,
        text       TEXT,
        html       TEXT,
        created_at INTEGER NOT NULL,
        deleted_at INTEGER,
        PRIMARY KEY (name, version)
    );

    ALTER TABLE deliveries ADD COLUMN template TEXT;
    ALTER TABLE deliveries ADD COLUMN template_version INTEGER;
    "#,
];

/// Applies every migration the database has not seen, each in its own
/// transaction.
pub(super) fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if current > supported {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let transaction = connection.transaction()?;
        transaction.execute_batch(sql)?;
        transaction.pragma_update(None, "user_version", version)?;
        transaction.commit()?;
        tracing::info!(version, "migrated database schema");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_twice_is_a_no_op() {
        let mut connection = Connection::open_in_memory().unwrap();
        migrate(&mut connection).unwrap();
        migrate(&mut connection).unwrap();
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[test]
    fn newer_schema_is_rejected() {
        let mut connection = Connection::open_in_memory().unwrap();
        connection.pragma_update(None, "user_version", 999).unwrap();
        let error = migrate(&mut connection).unwrap_err();
        assert!(matches!(error, StoreError::SchemaTooNew { found: 999, .. }));
    }
}
