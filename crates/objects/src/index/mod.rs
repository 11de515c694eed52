//! The SQLite index: buckets, object records (metadata, and small bodies
//! inline), multipart uploads and their parts. Every SQL statement of the
//! crate is in this module: one submodule per table family, plus ordered
//! listing.
//!
//! Writes go through one writer thread that commits every write waiting
//! for it in one transaction (group commit): with `synchronous=FULL` each
//! commit costs one fsync of the WAL, so concurrent small PUTs share it
//! instead of queueing behind each other's fsyncs. Each write runs in its
//! own savepoint, so one failing write does not undo the others in its
//! batch. Reads use a small pool of connections, which WAL lets run beside
//! the writer.

pub(crate) mod buckets;
pub(crate) mod listing;
pub(crate) mod objects;
mod schema;
pub(crate) mod uploads;

use crate::error::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};

type Finish = Box<dyn FnOnce(Option<&Error>) + Send>;
/// A write: given the connection (inside the batch's transaction) or
/// `None` when the transaction could not begin, runs and returns what
/// reports its outcome once the commit is known.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Finish + Send>;

pub(crate) struct Index {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Job>>,
    readers: Mutex<Vec<Connection>>,
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

impl Index {
    pub(crate) fn open(path: &Path) -> Result<Index> {
        let conn = open_connection(path)?;
        schema::upgrade(&conn)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("objects-index".into())
            .spawn(move || write_loop(conn, rx))?;
        Ok(Index {
            path: path.to_path_buf(),
            writer: Mutex::new(tx),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` in the writer's next transaction and returns its result
    /// once that transaction is durable.
    pub(crate) async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel::<Result<R>>();
        let job: Job = Box::new(move |conn: Option<&Connection>| {
            let outcome = match conn {
                Some(conn) => run_in_savepoint(conn, f),
                None => Err(Error::Internal("index transaction not started".into())),
            };
            Box::new(move |commit_error: Option<&Error>| {
                let result = match commit_error {
                    Some(err) => Err(Error::Internal(format!("index commit failed: {err}"))),
                    None => outcome,
                };
                let _ = reply.send(result);
            })
        });
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| Error::Internal("the index writer stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Internal("the index writer stopped".into()))?
    }

    /// Runs `f` on a read connection (blocking; call from a blocking context
    /// or for short point reads).
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_connection(&self.path)?,
        };
        let result = f(&conn);
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        result
    }

    /// [`Index::read`] on the blocking pool.
    pub(crate) async fn read_async<R, F>(self: &std::sync::Arc<Self>, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let index = self.clone();
        tokio::task::spawn_blocking(move || index.read(f))
            .await
            .map_err(|e| Error::Internal(format!("index read task failed: {e}")))?
    }
}

/// The ids of every body file a row names (objects and parts).
pub(crate) fn referenced_files(conn: &Connection) -> Result<HashSet<String>> {
    let mut ids = HashSet::new();
    for sql in [
        "SELECT file FROM objects WHERE file IS NOT NULL",
        "SELECT file FROM parts",
    ] {
        let mut stmt = conn.prepare(sql)?;
        for id in stmt.query_map([], |row| row.get::<_, String>(0))? {
            ids.insert(id?);
        }
    }
    Ok(ids)
}

fn run_in_savepoint<R>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    conn.execute_batch("SAVEPOINT job")?;
    let outcome = f(conn);
    let end = if outcome.is_ok() {
        conn.execute_batch("RELEASE job")
    } else {
        conn.execute_batch("ROLLBACK TO job; RELEASE job")
    };
    match end {
        Ok(()) => outcome,
        Err(err) => Err(err.into()),
    }
}

/// How many writes one transaction takes at most, so that a flood of
/// writers still sees commits (and replies) regularly.
const MAX_BATCH: usize = 256;

fn write_loop(conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let begin = conn.execute_batch("BEGIN IMMEDIATE").map_err(Error::from);
        if let Err(err) = begin {
            tracing::error!(error = %err, "cannot begin an index transaction");
            for job in batch {
                job(None)(Some(&err));
            }
            continue;
        }
        let finishers: Vec<Finish> = batch.into_iter().map(|job| job(Some(&conn))).collect();
        let commit = conn.execute_batch("COMMIT").map_err(Error::from);
        if let Err(err) = &commit {
            tracing::error!(error = %err, "index commit failed");
            if let Err(rollback) = conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %rollback, "index rollback failed");
            }
        }
        for finish in finishers {
            finish(commit.as_ref().err());
        }
    }
}
