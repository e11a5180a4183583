//! The embedded SQLite database: opening it, migrating its schema, and running
//! reads and write transactions off the async threads.
//!
//! This module owns connections and transactions only. The SQL of each concept
//! lives with the concept: messages in [`crate::queue`], the delivery log in
//! [`crate::audit`] and components in [`crate::workers`].

mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

/// How long SQLite itself waits for another connection's write lock before it
/// returns `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times [`Db::write`] starts a transaction again after
/// `SQLITE_BUSY` before it gives up. With [`BUSY_TIMEOUT`] this waits about
/// a minute for another process that holds the write lock.
const BUSY_RETRIES: u32 = 12;

/// Number of read-only connections opened up front. More are opened when all
/// are busy.
const READERS: usize = 4;

/// A failure of the embedded database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite returned an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database file or its folder could not be created.
    #[error("failed to open database \"{path}\": {error}")]
    Open {
        /// Path of the database file.
        path: PathBuf,
        /// Cause.
        error: std::io::Error,
    },
    /// The database was written by a newer Herald.
    #[error(
        "database schema version {found} is newer than this Herald supports ({supported}); \
         upgrade Herald or point data_dir elsewhere"
    )]
    SchemaTooNew {
        /// Version found in the file.
        found: i64,
        /// Newest version this build supports.
        supported: i64,
    },
    /// Stored data does not have the shape the code expects.
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
    /// The blocking task that ran the query panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(String),
}

/// Handle to the database, cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    /// The one connection that writes. Writes from this process queue on the
    /// mutex instead of contending for SQLite's lock.
    writer: Mutex<Connection>,
    /// Idle read-only connections. Always empty for an in-memory database,
    /// whose reads go through the writer.
    readers: Mutex<Vec<Connection>>,
    path: Option<PathBuf>,
}

impl Db {
    /// Opens (creating if needed) the database file at `path` in WAL mode and
    /// migrates it to the current schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| StoreError::Open {
                path: path.to_owned(),
                error,
            })?;
        }
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        schema::migrate(&mut writer)?;

        let readers = (0..READERS)
            .map(|_| open_reader(path))
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers: Mutex::new(readers),
                path: Some(path.to_owned()),
            }),
        })
    }

    /// Opens a private in-memory database, for `herald run` and tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let mut writer = Connection::open_in_memory()?;
        configure(&writer)?;
        schema::migrate(&mut writer)?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                path: None,
            }),
        })
    }

    /// Returns the database file's path, or `None` when it is in memory.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction on a blocking thread
    /// and commits it when `work` returns `Ok`.
    ///
    /// `work` may run more than once: when another process holds the write
    /// lock past the busy timeout, the transaction is rolled back and started
    /// again, so callers never see `SQLITE_BUSY` unless the lock is held for
    /// about a minute.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.write_blocking(work)).await
    }

    /// Runs `work` on a read-only connection on a blocking thread.
    pub async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.read_blocking(work)).await
    }

    /// Runs [`Db::write`]'s transaction on the calling thread, for code
    /// already off the async threads.
    pub fn write_blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnMut(&Transaction<'_>) -> Result<T, StoreError>,
    {
        self.inner.write_blocking(work)
    }
}

impl Inner {
    fn write_blocking<T, F>(&self, mut work: F) -> Result<T, StoreError>
    where
        F: FnMut(&Transaction<'_>) -> Result<T, StoreError>,
    {
        let mut connection = self
            .writer
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut retries = 0;
        loop {
            let attempt = (|| {
                let transaction =
                    connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let value = work(&transaction)?;
                transaction.commit()?;
                Ok(value)
            })();
            match attempt {
                Err(StoreError::Sqlite(error)) if is_busy(&error) && retries < BUSY_RETRIES => {
                    retries += 1;
                    tracing::warn!(retries, "database is locked by another process, retrying");
                }
                other => return other,
            }
        }
    }

    fn read_blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError>,
    {
        let reader = self
            .readers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .pop();
        let reader = match (reader, &self.path) {
            (Some(reader), _) => reader,
            (None, Some(path)) => open_reader(path)?,
            (None, None) => {
                let connection = self
                    .writer
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                return work(&connection);
            }
        };
        let result = work(&reader);
        self.readers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(reader);
        result
    }
}

fn open_reader(path: &Path) -> Result<Connection, rusqlite::Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let reader = Connection::open_with_flags(path, flags)?;
    configure(&reader)?;
    Ok(reader)
}

fn configure(connection: &Connection) -> Result<(), rusqlite::Error> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

async fn run_blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) => Err(StoreError::Task(error.to_string())),
    }
}
