//! Group commit for the SQLite store: every write runs on one writer task, which owns the only
//! connection that writes and commits several queued writes with one fsync.
//!
//! Why: SQLite has one writer at a time, and with `synchronous = FULL` each commit waits for an
//! fsync of the WAL (≈ 2–6 ms on the disks we run on). One transaction per request caps every
//! write, including the access count and audit event of each read, at a few hundred per second
//! however many requests are waiting. Here the writer takes every write queued at that moment
//! (up to [`MAX_BATCH`]) and runs them, in arrival order, inside one `BEGIN IMMEDIATE`
//! transaction, each in its own savepoint, then commits once. While that fsync runs, the next
//! writes queue up and form the next batch: the batch grows with the load, and a lone write is
//! never delayed to wait for company.
//!
//! Guarantees:
//! - **Nothing is acknowledged before it is durable.** A write's result is handed back only
//!   after the batch's `COMMIT` (and so its fsync) has returned. If the commit fails, every
//!   write of the batch gets an error, its own or [`StorageError::Unavailable`].
//! - **Each write is atomic on its own.** A write that fails is rolled back to its savepoint; the
//!   batch's other writes are unaffected, exactly as if each had been its own transaction. The
//!   order of the writes is the order they were queued in, so the result is the one a serial
//!   execution gives (reads inside a write see every earlier write of the batch).
//! - **An engine error stops the batch.** After some errors (I/O, a full disk) SQLite rolls back
//!   the whole transaction by itself, and later statements would run outside it. So when a
//!   write fails with an error that is not confined to one statement, the writer rolls the
//!   batch back, answers every write already run with an error (their changes are gone),
//!   reopens its connection, and runs the writes not yet started in the next batch.
//!
//! Two kinds of write share the queue and the batches. A [`write`](GroupCommit::write) is an
//! async closure over a sqlx savepoint: each of its statements is a round trip to the thread
//! sqlx runs the connection on (two context switches). A [`write_direct`](GroupCommit::write_direct)
//! is a synchronous closure over the same connection through rusqlite, run on the writer task
//! while it holds sqlx's lock on the connection handle: one lock round trip serves a whole run
//! of consecutive direct writes (up to [`DIRECT_RUN`]), so the hot writes (the access count and
//! audit event of every read) cost no round trip of their own. Both kinds run in arrival order,
//! each in its own savepoint, with the same guarantees.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Sqlite, Transaction};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::StorageError;
use crate::metrics::Metrics;

/// The most writes committed together. Large enough that one fsync serves every request a busy
/// server has in flight; small enough that one batch's transaction stays short.
pub(crate) const MAX_BATCH: usize = 256;

/// Writes waiting for the writer beyond this block their callers (back-pressure).
const QUEUE_DEPTH: usize = 4 * MAX_BATCH;

/// The most direct writes run under one lock of the connection handle. They run on the writer
/// task itself, on a Tokio worker thread, for ≈ 10–60 µs each (a read's access count to a new
/// version with its shares); after this many the writer yields, so a busy batch holds a
/// worker for about a millisecond at a time, and one lock round trip still serves 16 writes.
pub(crate) const DIRECT_RUN: usize = 16;

/// How long the writer waits before reopening a connection that failed to open.
const REOPEN_BACKOFF: Duration = Duration::from_millis(100);

/// A boxed, sendable future borrowing for `'a`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A write as the writer runs it: given its savepoint, it runs and reports whether it failed,
/// with the closure that hands its result back once the batch's fate is known; refused, it
/// answers its caller at once without running.
type Run = Box<dyn for<'c> FnOnce(Start<'c>) -> BoxFuture<'c, Ran> + Send>;

/// A direct write as the writer runs it: given the connection, it runs in its own savepoint and
/// reports as a [`Run`] does; refused, it answers its caller at once.
type DirectRun = Box<dyn FnOnce(DirectStart<'_>) -> Ran + Send>;

/// How the writer starts a queued direct write.
enum DirectStart<'c> {
    /// Run on this connection, inside the batch's transaction.
    Connection(&'c rusqlite::Connection),
    /// Do not run: the database cannot take writes now, for this reason.
    Refused(String),
}

/// A queued write of either kind.
enum Job {
    /// Statements through sqlx, each a round trip to its connection thread.
    Async(Run),
    /// Statements through rusqlite on the locked connection handle.
    Direct(DirectRun),
}

/// How the writer starts a queued write.
enum Start<'c> {
    /// Run inside this savepoint of the current batch.
    Savepoint(Transaction<'c, Sqlite>),
    /// Do not run: the database cannot take writes now, for this reason.
    Refused(String),
}

/// A write that has run, waiting for its batch to commit.
struct Ran {
    /// The write failed in a way that may have rolled back the whole batch.
    fatal: bool,
    /// Called once with `Ok` after the commit, or with why the batch was lost.
    deliver: Box<dyn FnOnce(Result<(), String>) + Send>,
}

enum Message {
    Write(Job),
    /// Finish the queued writes, close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// How many batches the writer committed and how many writes they held; the ratio is the
/// average batch size.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Batches committed.
    pub(crate) commits: AtomicU64,
    /// Writes in those batches (failed writes included: they were answered with the batch).
    pub(crate) writes: AtomicU64,
    /// Where the server's `/metrics` counts the same, once a server owns the store.
    pub(crate) metrics: OnceLock<Metrics>,
}

/// The handle to the writer task: clones share it.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Message>,
    stats: Arc<Stats>,
    /// Serializes [`close`](Self::close) so the writer is asked once.
    closed: Arc<Mutex<bool>>,
}

impl fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit")
            .field("max_batch", &MAX_BATCH)
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Opens the writer's connection with `options` and starts the writer task on the current
    /// Tokio runtime.
    pub(crate) async fn start(options: SqliteConnectOptions) -> Result<GroupCommit, StorageError> {
        let conn = SqliteConnection::connect_with(&options).await?;
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let stats = Arc::new(Stats::default());
        tokio::spawn(writer(conn, options, rx, Arc::clone(&stats)));
        Ok(GroupCommit {
            queue,
            stats,
            closed: Arc::new(Mutex::new(false)),
        })
    }

    /// Runs `write` on the writer, inside a savepoint of the current batch, and returns its
    /// result once the batch is durably committed.
    ///
    /// `write` gets the savepoint as a [`Transaction`]: it must `commit()` it to keep its
    /// changes (that releases the savepoint; the batch commits later) and returns an error to
    /// undo them. It must only run statements: it holds up every write queued behind it.
    pub(crate) async fn write<T, F>(&self, write: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Transaction<'c, Sqlite>) -> BoxFuture<'c, Result<T, StorageError>>
            + Send
            + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let run: Run = Box::new(move |start| {
            Box::pin(async move {
                let savepoint = match start {
                    Start::Savepoint(savepoint) => savepoint,
                    Start::Refused(reason) => return refused(reason, answer),
                };
                ran(write(savepoint).await, answer)
            })
        });
        self.submit(Job::Async(run), answered).await
    }

    /// Runs `write` synchronously on the writer's connection, inside a savepoint of the
    /// current batch, and returns its result once the batch is durably committed.
    ///
    /// `write` gets the connection (through rusqlite) already inside its savepoint: returning
    /// `Ok` keeps its changes, returning an error undoes them. Like [`write`](Self::write) it
    /// must only run statements, and briefly: it runs on the writer task, which holds up every
    /// write queued behind it. Statements should be prepared with `prepare_cached`.
    pub(crate) async fn write_direct<T, F>(&self, write: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let run: DirectRun = Box::new(move |start| match start {
            DirectStart::Connection(conn) => ran(in_savepoint(conn, write), answer),
            DirectStart::Refused(reason) => refused(reason, answer),
        });
        self.submit(Job::Direct(run), answered).await
    }

    /// Queues `job` and waits for the answer it sends on `answered`.
    async fn submit<T>(
        &self,
        job: Job,
        answered: oneshot::Receiver<Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        self.queue
            .send(Message::Write(job))
            .await
            .map_err(|_| StorageError::Unavailable("the store is closed".into()))?;
        answered.await.map_err(|_| {
            StorageError::Unavailable("the writer stopped before answering this write".into())
        })?
    }

    /// The writer's counters.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Runs every write queued so far, then closes the writer's connection (checkpointing the
    /// WAL when it is the last one). Later writes fail with [`StorageError::Unavailable`].
    pub(crate) async fn close(&self) {
        let mut closed = self.closed.lock().await;
        if *closed {
            return;
        }
        *closed = true;
        let (done, finished) = oneshot::channel();
        if self.queue.send(Message::Close(done)).await.is_ok() {
            let _ = finished.await;
        }
    }
}

/// A write that has run with `result`: its answer waits for the batch's fate.
fn ran<T: Send + 'static>(
    result: Result<T, StorageError>,
    answer: oneshot::Sender<Result<T, StorageError>>,
) -> Ran {
    Ran {
        fatal: result.as_ref().is_err_and(may_lose_transaction),
        deliver: Box::new(move |committed| {
            // The write's own error wins; otherwise the batch decides. The caller may have
            // gone away (a dropped request): nothing to tell then.
            let outcome = match committed {
                Ok(()) => result,
                Err(reason) => result.and_then(|_| Err(StorageError::Unavailable(reason))),
            };
            let _ = answer.send(outcome);
        }),
    }
}

/// A write that was not run: answered at once with `reason`.
fn refused<T>(reason: String, answer: oneshot::Sender<Result<T, StorageError>>) -> Ran {
    let _ = answer.send(Err(StorageError::Unavailable(reason)));
    Ran {
        fatal: false,
        deliver: Box::new(|_| {}),
    }
}

/// Runs `write` on `conn` inside its own savepoint: released if it succeeds, rolled back to
/// if it fails. An error of the savepoint statements themselves is returned as the write's
/// error, and is fatal to the batch (see [`may_lose_transaction`]). Direct writes run one at
/// a time, so one savepoint name serves them all.
fn in_savepoint<T>(
    conn: &rusqlite::Connection,
    write: impl FnOnce(&rusqlite::Connection) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    conn.prepare_cached("SAVEPOINT direct_write")?.execute([])?;
    match write(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE direct_write")?.execute([])?;
            Ok(value)
        }
        Err(e) => {
            conn.prepare_cached("ROLLBACK TO direct_write")?
                .execute([])?;
            conn.prepare_cached("RELEASE direct_write")?.execute([])?;
            Err(e)
        }
    }
}

/// The writer task: batches whatever is queued, runs it, commits, answers.
async fn writer(
    conn: SqliteConnection,
    options: SqliteConnectOptions,
    mut rx: mpsc::Receiver<Message>,
    stats: Arc<Stats>,
) {
    let mut conn = Some(conn);
    let mut pending: VecDeque<Job> = VecDeque::new();
    let mut closing: Option<oneshot::Sender<()>> = None;
    loop {
        if pending.is_empty() {
            if closing.is_some() {
                break;
            }
            match rx.recv().await {
                Some(Message::Write(job)) => pending.push_back(job),
                Some(Message::Close(done)) => {
                    closing = Some(done);
                    continue;
                }
                None => break,
            }
        }
        while pending.len() < MAX_BATCH && closing.is_none() {
            match rx.try_recv() {
                Ok(Message::Write(job)) => pending.push_back(job),
                Ok(Message::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        let Some(open) = conn.as_mut() else {
            match SqliteConnection::connect_with(&options).await {
                Ok(fresh) => conn = Some(fresh),
                Err(e) => {
                    // Nothing can run: answer the queued writes rather than hold them forever.
                    let reason = format!("the database cannot be reopened: {e}");
                    tracing::error!(error = %e, "group commit writer cannot reopen the database");
                    for job in pending.drain(..) {
                        fail_unrun(job, reason.clone()).await;
                    }
                    tokio::time::sleep(REOPEN_BACKOFF).await;
                }
            }
            continue;
        };
        if !run_batch(open, &mut pending, &stats).await {
            // The transaction was lost mid-batch: start again on a fresh connection.
            if let Some(broken) = conn.take() {
                let _ = broken.close().await;
            }
        }
    }
    if let Some(open) = conn.take() {
        let _ = open.close().await;
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Answers a write that cannot run with `reason`, without running it.
async fn fail_unrun(job: Job, reason: String) {
    match job {
        Job::Async(run) => {
            run(Start::Refused(reason)).await;
        }
        Job::Direct(run) => {
            run(DirectStart::Refused(reason));
        }
    }
}

/// Runs up to [`MAX_BATCH`] writes from the front of `pending` in one transaction and answers
/// them. Returns `false` if the connection's transaction was lost and must be reopened; the
/// writes not yet run stay in `pending`.
async fn run_batch(
    conn: &mut SqliteConnection,
    pending: &mut VecDeque<Job>,
    stats: &Stats,
) -> bool {
    let mut outer = match conn.begin_with("BEGIN IMMEDIATE").await {
        Ok(outer) => outer,
        Err(e) => {
            // The write lock could not be taken (another process held it past the busy
            // timeout, or the disk failed): these writes fail, later ones try again.
            // The connection is reopened in case its state is what failed.
            let reason = format!("the database could not start a transaction: {e}");
            tracing::error!(%reason, "group commit writer");
            let count = pending.len().min(MAX_BATCH);
            for job in pending.drain(..count) {
                fail_unrun(job, reason.clone()).await;
            }
            return false;
        }
    };
    let mut ran: Vec<Ran> = Vec::with_capacity(pending.len().min(MAX_BATCH));
    let mut lost: Option<String> = None;
    while ran.len() < MAX_BATCH && lost.is_none() {
        let Some(job) = pending.pop_front() else {
            break;
        };
        match job {
            Job::Async(run) => {
                let savepoint = match outer.begin().await {
                    Ok(savepoint) => savepoint,
                    Err(e) => {
                        pending.push_front(Job::Async(run));
                        lost = Some(format!("the database could not open a savepoint: {e}"));
                        break;
                    }
                };
                let done = run(Start::Savepoint(savepoint)).await;
                if done.fatal {
                    lost = Some(FATAL_WRITE.into());
                }
                ran.push(done);
            }
            Job::Direct(run) => {
                pending.push_front(Job::Direct(run));
                lost = run_direct(&mut outer, pending, &mut ran).await.err();
                // Let the runtime's other tasks in between runs of direct writes.
                tokio::task::yield_now().await;
            }
        }
    }
    let verdict = match lost {
        Some(reason) => {
            let _ = outer.rollback().await;
            Err(reason)
        }
        None => outer
            .commit()
            .await
            .map_err(|e| format!("the batch could not be committed: {e}")),
    };
    let healthy = verdict.is_ok();
    if healthy {
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.writes.fetch_add(ran.len() as u64, Ordering::Relaxed);
        if let Some(metrics) = stats.metrics.get() {
            metrics.storage_committed(ran.len() as u64);
        }
    }
    if let Err(reason) = &verdict {
        tracing::error!(%reason, writes = ran.len(), "group commit failed");
    }
    for done in ran {
        (done.deliver)(verdict.clone());
    }
    healthy
}

/// Why a batch is lost when one of its writes failed inside the engine.
const FATAL_WRITE: &str = "a write failed in the database, which may have undone the batch";

/// Runs the direct writes at the front of `pending` (at most [`DIRECT_RUN`], and no more than
/// the batch has room for) under one lock of the connection handle, adding them to `ran`.
/// Returns why the batch is lost, if it is; a write not run stays in `pending`.
// The crate's one `unsafe` block: see its SAFETY comment.
#[allow(unsafe_code)]
async fn run_direct(
    outer: &mut Transaction<'_, Sqlite>,
    pending: &mut VecDeque<Job>,
    ran: &mut Vec<Ran>,
) -> Result<(), String> {
    let mut handle = outer
        .lock_handle()
        .await
        .map_err(|e| format!("the database handle could not be locked: {e}"))?;
    // SAFETY: `handle` is sqlx's lock on this connection: while it is held, sqlx's connection
    // thread makes no call on the handle or its statements, so this thread has it alone. The
    // rusqlite `Connection` made here does not own the handle (it never closes it) and is
    // dropped, finalizing the statements it prepared, before `handle` is released below. Both
    // crates link the one `libsqlite3-sys` (Cargo allows one crate per `links = "sqlite3"`),
    // so the pointer's type and library are the same.
    let conn = unsafe { rusqlite::Connection::from_handle(handle.as_raw_handle().as_ptr()) }
        .map_err(|e| format!("the database handle could not be used: {e}"))?;
    let mut verdict = Ok(());
    for _ in 0..DIRECT_RUN {
        if ran.len() >= MAX_BATCH {
            break;
        }
        let run = match pending.pop_front() {
            Some(Job::Direct(run)) => run,
            // The run ends at the first async write (or the end of the queue); it stays first.
            Some(other) => {
                pending.push_front(other);
                break;
            }
            None => break,
        };
        let done = run(DirectStart::Connection(&conn));
        let fatal = done.fatal;
        ran.push(done);
        if fatal {
            verdict = Err(FATAL_WRITE.to_owned());
            break;
        }
    }
    drop(conn);
    drop(handle);
    verdict
}

/// Whether a write's error may have cost the batch its transaction. After an engine error
/// (I/O, a full disk, a busy or corrupt database, a lost connection) SQLite may have rolled
/// back the whole transaction by itself, and the statements of the next writes would then run
/// outside it; so any such error ends the batch. What stays inside one statement cannot: a
/// constraint violation (SQLite undoes only that statement), a row that does not decode, a
/// query that found no row, and the store's own refusals (conflict, limit, corrupt row).
fn may_lose_transaction(error: &StorageError) -> bool {
    match error {
        StorageError::Database(e) => match e {
            sqlx::Error::Database(db) => matches!(db.kind(), sqlx::error::ErrorKind::Other),
            sqlx::Error::RowNotFound
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::Encode(_)
            | sqlx::Error::TypeNotFound { .. } => false,
            _ => true,
        },
        // The same rule for the statements of direct writes.
        StorageError::Sqlite(e) => match e {
            rusqlite::Error::SqliteFailure(failure, _) => {
                failure.code != rusqlite::ErrorCode::ConstraintViolation
            }
            rusqlite::Error::QueryReturnedNoRows
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnIndex(_)
            | rusqlite::Error::InvalidColumnName(_)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::ToSqlConversionFailure(_)
            | rusqlite::Error::InvalidParameterCount(..)
            | rusqlite::Error::InvalidParameterName(_) => false,
            _ => true,
        },
        StorageError::Io(_) | StorageError::Migrate(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row as _;
    use sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};

    use super::*;

    async fn writer_on(dir: &std::path::Path) -> (GroupCommit, SqliteConnectOptions) {
        let options = SqliteConnectOptions::new()
            .filename(dir.join("t.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        (GroupCommit::start(options.clone()).await.unwrap(), options)
    }

    /// Inserts `(k, v)` through the writer.
    async fn insert(writer: &GroupCommit, k: i64, v: &str) -> Result<(), StorageError> {
        let v = v.to_owned();
        writer
            .write(move |mut tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (k, v) VALUES ($1, $2)")
                        .bind(k)
                        .bind(&v)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                })
            })
            .await
    }

    /// Inserts `(k, v)` through the writer as a direct write.
    async fn insert_direct(writer: &GroupCommit, k: i64, v: &str) -> Result<(), StorageError> {
        let v = v.to_owned();
        writer
            .write_direct(move |conn| {
                conn.prepare_cached("INSERT INTO t (k, v) VALUES (?1, ?2)")?
                    .execute(rusqlite::params![k, v])?;
                Ok(())
            })
            .await
    }

    /// Counts the rows through the writer (an async write), seeing its batch's earlier writes.
    async fn count_rows(writer: &GroupCommit) -> Result<i64, StorageError> {
        writer
            .write(|mut tx| {
                Box::pin(async move {
                    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(n)
                })
            })
            .await
    }

    async fn rows(options: &SqliteConnectOptions) -> Vec<(i64, String)> {
        let mut conn = SqliteConnection::connect_with(options).await.unwrap();
        sqlx::query("SELECT k, v FROM t ORDER BY k")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("k"), r.get("v")))
            .collect()
    }

    // On a current-thread runtime every write below is queued before the writer runs, so they
    // form exactly one batch: one commit for all of them, and each answered with its own result.
    #[tokio::test(flavor = "current_thread")]
    async fn queued_writes_share_one_commit_and_keep_their_own_results() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, options) = writer_on(dir.path()).await;
        // 100 writes; k = 50 twice, so the second one violates the primary key.
        let keys: Vec<i64> = (0..100).chain([50]).collect();
        let results =
            futures_util::future::join_all(keys.iter().map(|&k| insert(&writer, k, "x"))).await;
        assert_eq!(writer.stats().commits.load(Ordering::Relaxed), 1);
        assert_eq!(writer.stats().writes.load(Ordering::Relaxed), 101);
        assert!(results[..100].iter().all(Result::is_ok));
        assert!(matches!(results[100], Err(StorageError::Database(_))));
        // The failed write was undone alone: the other 100 rows are there.
        assert_eq!(rows(&options).await.len(), 100);
    }

    // A write whose statement fails inside the engine (here a table that does not exist) may
    // have cost the batch its transaction: the batch is rolled back, the writes already run are
    // told so, and the writes queued after it run in the next batch.
    #[tokio::test(flavor = "current_thread")]
    async fn an_engine_error_rolls_back_its_batch_and_later_writes_still_run() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, options) = writer_on(dir.path()).await;
        let broken = writer.write(|mut tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO missing (k) VALUES (1)")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            })
        });
        let (before, failing, after) = tokio::join!(
            insert(&writer, 1, "before"),
            broken,
            insert(&writer, 2, "after")
        );
        assert!(matches!(failing, Err(StorageError::Database(_))));
        assert_batch_lost_then_recovered(&writer, &options, before, after).await;
    }

    /// After an engine error: the write run before it was told it was lost, the one queued
    /// after it committed alone (`k` = 2), and the writer takes later writes.
    async fn assert_batch_lost_then_recovered(
        writer: &GroupCommit,
        options: &SqliteConnectOptions,
        before: Result<(), StorageError>,
        after: Result<(), StorageError>,
    ) {
        assert!(
            matches!(before, Err(StorageError::Unavailable(_))),
            "{before:?}"
        );
        after.unwrap();
        assert_eq!(rows(options).await, vec![(2, "after".to_owned())]);
        insert_direct(writer, 3, "later").await.unwrap();
        insert(writer, 4, "later").await.unwrap();
        assert_eq!(rows(options).await.len(), 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_write_sees_the_earlier_writes_of_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, _options) = writer_on(dir.path()).await;
        let count = count_rows(&writer);
        let (a, b, n) = tokio::join!(insert(&writer, 1, "a"), insert(&writer, 2, "b"), count);
        a.unwrap();
        b.unwrap();
        assert_eq!(n.unwrap(), 2);
        assert_eq!(writer.stats().commits.load(Ordering::Relaxed), 1);
    }

    // Direct and async writes interleave in one batch, in arrival order: more direct writes
    // than one run of the handle lock takes, a duplicate key among them undone alone, and an
    // async write that counts the rows the direct writes before it inserted.
    #[tokio::test(flavor = "current_thread")]
    async fn direct_writes_share_the_batch_in_order_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, options) = writer_on(dir.path()).await;
        let runs = i64::try_from(DIRECT_RUN).unwrap();
        let direct: Vec<i64> = (0..2 * runs + 5).chain([7]).collect();
        let count = count_rows(&writer);
        let (results, n, last) = tokio::join!(
            futures_util::future::join_all(direct.iter().map(|&k| insert_direct(&writer, k, "d"))),
            count,
            insert_direct(&writer, 1000, "after the async write")
        );
        assert_eq!(writer.stats().commits.load(Ordering::Relaxed), 1);
        let (last_result, duplicate) = results.split_last().unwrap();
        assert!(duplicate.iter().all(Result::is_ok));
        // The second k = 7 violates the primary key: a statement error, undone alone.
        assert!(
            matches!(last_result, Err(StorageError::Sqlite(_))),
            "{last_result:?}"
        );
        assert_eq!(n.unwrap(), 2 * runs + 5);
        last.unwrap();
        assert_eq!(
            rows(&options).await.len(),
            usize::try_from(2 * runs + 6).unwrap()
        );
    }

    // A direct write whose statement fails inside the engine ends the batch like an async one:
    // the writes run before it are told they were lost, the ones after it run in the next batch.
    #[tokio::test(flavor = "current_thread")]
    async fn an_engine_error_in_a_direct_write_rolls_back_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, options) = writer_on(dir.path()).await;
        let broken = writer.write_direct(|conn| {
            conn.prepare_cached("INSERT INTO missing (k) VALUES (1)")?
                .execute([])?;
            Ok(())
        });
        let (before, failing, after) = tokio::join!(
            insert_direct(&writer, 1, "before"),
            broken,
            insert(&writer, 2, "after")
        );
        assert!(
            matches!(failing, Err(StorageError::Sqlite(_))),
            "{failing:?}"
        );
        assert_batch_lost_then_recovered(&writer, &options, before, after).await;
    }

    // A direct write that returns an error has its own changes undone, not the batch's.
    #[tokio::test(flavor = "current_thread")]
    async fn a_failing_direct_write_is_undone_to_its_savepoint() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, options) = writer_on(dir.path()).await;
        let refusing = writer.write_direct(|conn| {
            conn.prepare_cached("INSERT INTO t (k, v) VALUES (5, 'undone')")?
                .execute([])?;
            Err::<(), _>(StorageError::Conflict)
        });
        let (a, refused, b) = tokio::join!(
            insert_direct(&writer, 1, "a"),
            refusing,
            insert(&writer, 2, "b")
        );
        a.unwrap();
        b.unwrap();
        assert!(matches!(refused, Err(StorageError::Conflict)));
        assert_eq!(
            rows(&options).await,
            vec![(1, "a".to_owned()), (2, "b".to_owned())]
        );
        assert_eq!(writer.stats().commits.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writes_after_close_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, options) = writer_on(dir.path()).await;
        let (first, ()) = tokio::join!(insert(&writer, 1, "queued before close"), writer.close());
        first.unwrap();
        assert!(matches!(
            insert(&writer, 2, "too late").await,
            Err(StorageError::Unavailable(_))
        ));
        assert_eq!(rows(&options).await.len(), 1);
    }
}
