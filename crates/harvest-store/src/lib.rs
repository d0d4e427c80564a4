//! The durable store: sessions and their events, in SQLite with WAL.
//!
//! An event gets its `seq` inside the transaction that stores it, together with the byte
//! offset of the agent log it was parsed up to, so a restarted daemon resumes ingestion
//! exactly where the last commit left it: no gap, no duplicate. Session totals (state,
//! cost, tokens, last seq) are updated in the same transaction from the events themselves.
//!
//! One writer connection behind a mutex; readers (replay to subscribers) open their own
//! connections, which WAL lets run beside the writer. All calls block: async callers run
//! them on `spawn_blocking`.

mod schema;
mod sessions;

use harvest_protocol::{Event, EventBody, Seq, SessionId};
use rusqlite::{Connection, OpenFlags, params};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

pub use rusqlite::Error as RusqliteError;
pub use rusqlite::ffi::Error as FfiError;
pub use sessions::{NewSession, SessionRow};

/// SQLite's "disk full" result code.
pub const SQLITE_FULL: i32 = rusqlite::ffi::SQLITE_FULL;

/// A SQLite error value for a result code.
pub fn ffi_error(code: i32) -> FfiError {
    rusqlite::ffi::Error::new(code)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the Harvest store at {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the Harvest store failed: {0} (is the disk full? see `harvest daemon status` for its path)"
    )]
    Sqlite(#[from] rusqlite::Error),
    #[error("an event could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("no session {0}")]
    NoSession(SessionId),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An event as stored: its seq, its JSON form without `raw`, and the raw agent line, so
/// either form can be sent without parsing anything.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: Seq,
    pub json: String,
    pub raw: Option<String>,
}

impl StoredEvent {
    /// The event's JSON, with its `raw` agent line when asked for and present.
    pub fn to_json(&self, include_raw: bool) -> std::borrow::Cow<'_, str> {
        match (&self.raw, include_raw) {
            (Some(raw), true) if self.json.ends_with('}') => std::borrow::Cow::Owned(format!(
                "{},\"raw\":{raw}}}",
                &self.json[..self.json.len() - 1]
            )),
            _ => std::borrow::Cow::Borrowed(&self.json),
        }
    }
}

/// What to append: the event body and the agent line it came from.
pub struct NewEvent {
    pub body: EventBody,
    pub raw: Option<Value>,
}

impl NewEvent {
    pub fn new(body: EventBody) -> Self {
        NewEvent { body, raw: None }
    }
}

pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    /// Read-only calls (`session/list`, `session/get`) go here, so they never wait for an
    /// append nor make one wait: WAL lets a reader run beside the writer.
    reads: Mutex<Connection>,
    /// Checkpoints run here, off the append path (see [`Store::checkpoint`]).
    checkpointer: Mutex<Connection>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let conn = open_conn(path, true)?;
        schema::migrate(&conn)?;
        // SQLite would otherwise checkpoint (and fsync) inside whichever commit crosses
        // 1000 WAL pages, stalling that append by milliseconds; the daemon checkpoints
        // from its own connection instead.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        let checkpointer = open_conn(path, true)?;
        let reads = open_conn(path, false)?;
        Ok(Store {
            path: path.to_owned(),
            writer: Mutex::new(conn),
            reads: Mutex::new(reads),
            checkpointer: Mutex::new(checkpointer),
        })
    }

    /// Copy the WAL into the database without blocking appends (call it periodically,
    /// off the async runtime). `truncate` also empties the WAL file, for shutdown.
    pub fn checkpoint(&self, truncate: bool) -> Result<()> {
        let conn = self
            .checkpointer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let sql = if truncate {
            "PRAGMA wal_checkpoint(TRUNCATE)"
        } else {
            "PRAGMA wal_checkpoint(PASSIVE)"
        };
        conn.query_row(sql, [], |_| Ok(()))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append events to a session in one transaction and return them as sent to clients.
    /// `ingest`, when given, is stored with them: the daemon's ingestion checkpoint (which
    /// agent log, up to which byte, and the parser's and turn's state there), so a restarted
    /// daemon goes on from exactly this point without re-reading anything.
    pub fn append(
        &self,
        session: &SessionId,
        events: Vec<NewEvent>,
        ingest: Option<&Value>,
    ) -> Result<Vec<StoredEvent>> {
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction()?;
        let last: Option<u64> = tx
            .query_row(
                "SELECT last_seq FROM sessions WHERE id = ?1",
                [session.as_str()],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        let Some(mut seq) = last else {
            return Err(StoreError::NoSession(session.clone()));
        };
        let ts = now_rfc3339();
        let mut out = Vec::with_capacity(events.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (session, seq, type, json, raw) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for ev in events {
                seq += 1;
                let event = Event {
                    seq: Seq(seq),
                    ts: ts.clone(),
                    session: session.clone(),
                    body: ev.body,
                    raw: None,
                };
                let json = serde_json::to_string(&event)?;
                let raw = ev.raw.as_ref().map(serde_json::to_string).transpose()?;
                insert.execute(params![
                    session.as_str(),
                    seq,
                    event.body.type_name(),
                    json,
                    raw
                ])?;
                sessions::apply_event(&tx, session, &event.body)?;
                out.push(StoredEvent {
                    seq: Seq(seq),
                    json,
                    raw,
                });
            }
        }
        let ingest = ingest.map(serde_json::to_string).transpose()?;
        tx.execute(
            "UPDATE sessions SET last_seq = ?2, updated_at = unixepoch(),
                    ingest = COALESCE(?3, ingest) WHERE id = ?1",
            params![session.as_str(), seq, ingest],
        )?;
        tx.commit()?;
        Ok(out)
    }

    /// Copy `from`'s events, as they are, to the front of `to`'s history (a fork shows
    /// where it came from), renumbered from `to`'s next seq: its history, not its figures
    /// (costs and counts stay the parent's). Returns how many were copied.
    pub fn copy_history(&self, from: &SessionId, to: &SessionId) -> Result<u64> {
        let reader = self.reader()?;
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction()?;
        let mut seq: u64 = tx.query_row(
            "SELECT last_seq FROM sessions WHERE id = ?1",
            [to.as_str()],
            |r| r.get(0),
        )?;
        let mut copied = 0;
        let mut next = Seq(1);
        loop {
            let chunk = read_from(&reader, from, next, 2000)?;
            let Some(last) = chunk.last() else { break };
            next = Seq(last.seq.0 + 1);
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (session, seq, type, json, raw) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for stored in chunk {
                let mut event: Event = serde_json::from_str(&stored.json)?;
                seq += 1;
                event.seq = Seq(seq);
                event.session = to.clone();
                let json = serde_json::to_string(&event)?;
                insert.execute(params![
                    to.as_str(),
                    seq,
                    event.body.type_name(),
                    json,
                    stored.raw
                ])?;
                copied += 1;
            }
        }
        tx.execute(
            "UPDATE sessions SET last_seq = ?2 WHERE id = ?1",
            params![to.as_str(), seq],
        )?;
        tx.commit()?;
        Ok(copied)
    }

    /// Events of a session from `from` on, at most `limit`, in seq order.
    pub fn read_from(
        &self,
        session: &SessionId,
        from: Seq,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let conn = self.reader()?;
        read_from(&conn, session, from, limit)
    }

    /// A read-only connection for long replays, so they never hold the writer.
    pub fn reader(&self) -> Result<Connection> {
        open_conn(&self.path, false)
    }
}

pub fn read_from(
    conn: &Connection,
    session: &SessionId,
    from: Seq,
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, json, raw FROM events WHERE session = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![
            session.as_str(),
            from.0,
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |r| {
            Ok(StoredEvent {
                seq: Seq(r.get(0)?),
                json: r.get(1)?,
                raw: r.get(2)?,
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn open_conn(path: &Path, write: bool) -> Result<Connection> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    // NORMAL in WAL mode: a commit survives a daemon crash (the OS has it); only a power
    // loss may lose the last transactions, which the agent log then replays.
    // journal_size_limit: once a checkpoint has emptied the WAL, it is cut back to 64 MiB,
    // so a long busy session does not leave a WAL the size of its history.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000; PRAGMA journal_size_limit = 67108864;",
    )?;
    Ok(conn)
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
