//! Read connections of the SQLite store's own, for the one read on the path of every secret
//! read: a version with its shares.
//!
//! Why: sqlx runs each SQLite connection on a thread of its own, so every query is a round trip
//! to that thread (two context switches, a wake-up on each side). This read is a single indexed
//! lookup of a few pages (tens of microseconds), cheaper than the round trip; here it runs on
//! the calling thread through rusqlite, on a connection taken from a small idle list. The
//! statement is one implicit read transaction, so the version and its shares come from one WAL
//! snapshot, as before. In WAL mode a reader never waits for the writer, so the caller is not
//! held up by writes; the busy timeout covers only WAL recovery after a crash.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StorageError;

/// Reads running at once beyond this many open a connection for the moment and close it after.
const MAX_IDLE: usize = 8;

/// How long a read waits on a locked database (only WAL recovery locks readers out).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The idle read connections of one database file.
pub(crate) struct DirectReaders {
    file: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for DirectReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectReaders")
            .field("file", &self.file)
            .field("idle", &self.lock_idle().len())
            .finish()
    }
}

impl DirectReaders {
    /// Read connections to `file`, opened when first needed.
    pub(crate) fn new(file: &Path) -> DirectReaders {
        DirectReaders {
            file: file.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on an idle connection (or a new one) and puts the connection back.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let taken = self.lock_idle().pop();
        let conn = match taken {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn);
        // A connection whose read failed in the engine is not trusted again: it is closed.
        if !matches!(result, Err(StorageError::Sqlite(_))) {
            let mut idle = self.lock_idle();
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        result
    }

    /// Closes the idle connections (the store is closing: the writer's connection must be the
    /// last one, so that closing it checkpoints the WAL).
    pub(crate) fn close(&self) {
        self.lock_idle().clear();
    }

    fn open(&self) -> Result<Connection, StorageError> {
        // Read-only; NO_MUTEX since a connection is used by one thread at a time (it is out
        // of the idle list while in use).
        let conn = Connection::open_with_flags(
            &self.file,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    }

    /// The idle list; a panic while it was held cannot leave it inconsistent (a push or a
    /// pop), so a poisoned lock is taken as it is.
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(dir: &Path) -> PathBuf {
        let file = dir.join("t.db");
        let conn = Connection::open(&file).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (k INTEGER PRIMARY KEY); \
             INSERT INTO t VALUES (1), (2);",
        )
        .unwrap();
        file
    }

    fn count(conn: &Connection) -> Result<i64, StorageError> {
        Ok(conn
            .prepare_cached("SELECT COUNT(*) FROM t")?
            .query_row([], |row| row.get(0))?)
    }

    #[test]
    fn a_connection_is_reused_and_one_that_failed_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let readers = DirectReaders::new(&database(dir.path()));
        assert_eq!(readers.read(count).unwrap(), 2);
        assert_eq!(readers.lock_idle().len(), 1);
        // Reused: still one connection after another read.
        assert_eq!(readers.read(count).unwrap(), 2);
        assert_eq!(readers.lock_idle().len(), 1);
        // A refusal of the caller's own keeps the connection; an engine error closes it.
        let refused: Result<(), _> = readers.read(|_| Err(StorageError::Conflict));
        assert!(matches!(refused, Err(StorageError::Conflict)));
        assert_eq!(readers.lock_idle().len(), 1);
        let failed = readers.read(|conn| {
            conn.prepare_cached("SELECT * FROM missing")?
                .query_row([], |_| Ok(()))?;
            Ok(())
        });
        assert!(matches!(failed, Err(StorageError::Sqlite(_))), "{failed:?}");
        assert_eq!(readers.lock_idle().len(), 0);
        readers.close();
        assert_eq!(readers.read(count).unwrap(), 2);
    }

    #[test]
    fn connections_are_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let readers = DirectReaders::new(&database(dir.path()));
        let write = readers.read(|conn| {
            conn.execute("INSERT INTO t VALUES (3)", [])?;
            Ok(())
        });
        assert!(matches!(write, Err(StorageError::Sqlite(_))), "{write:?}");
        assert_eq!(readers.read(count).unwrap(), 2);
    }

    #[test]
    fn a_missing_database_is_an_error_not_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("absent.db");
        let readers = DirectReaders::new(&file);
        assert!(matches!(readers.read(count), Err(StorageError::Sqlite(_))));
        assert!(!file.exists());
    }
}
