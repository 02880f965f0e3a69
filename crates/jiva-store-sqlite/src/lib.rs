//! `jiva-store-sqlite` is JivaChat's embedded [`MessageStore`]: one SQLite file (the library is
//! bundled, so it builds anywhere), for servers that run without an AWS account.
//!
//! Design: every write goes through one writer thread that owns the only writing connection. It
//! takes whatever appends are waiting (up to [`Config::max_batch`]) and commits them in one
//! transaction (group commit), then answers each caller. An `append` therefore returns only after
//! its message is committed, and under load many messages share one commit. A batch is written
//! without savepoints; when SQLite refuses a row it is rolled back and written again with a
//! savepoint around each write, so that row fails only its own append (with
//! [`StoreError::Conflict`] for a constraint); only a failure of the transaction itself fails
//! the whole batch. Reads run on a small
//! pool of read-only connections in `spawn_blocking`; the database is in WAL mode so reads never
//! wait for the writer. The pool is bounded ([`Config::readers`]): a read waits for a free
//! connection at most [`Config::read_wait`], then fails with [`StoreError::Unavailable`]
//! (`jiva_sqlite_reader_wait_timeouts_total`); `jiva_sqlite_reader_connections` shows how many
//! are open.
//!
//! Readiness ([`MessageStore::check`]): a read, and, while the writer's last transaction failed
//! (an unwritable file, a full disk), a small write (one row of the `probes` table) that must
//! commit; so a store whose writes fail is reported unavailable, and available again as soon
//! as a write commits, with no append needed.
//!
//! Checkpoints (copying the WAL back into the database, with its fsyncs) run on a separate
//! checkpointer thread every [`CHECKPOINT_EVERY`], never on the writer: an fsync that takes tens
//! of milliseconds on a busy disk would otherwise stall every append behind it. The writer still
//! checkpoints by itself if the WAL ever grows past [`WRITER_CHECKPOINT_PAGES`].
//!
//! Durability: a committed append survives the server being killed (`kill -9`) with the default
//! `synchronous = NORMAL` in WAL mode; [`Synchronous::Full`] also survives power loss, at the cost
//! of an fsync per commit.
//!
//! What it deliberately is not: a shared database. One server process owns the file; other
//! processes may read it, but two servers writing one file is not supported.
//!
//! Sequence numbers: the writer gives each message its chat's next number (`chat_seq`) inside
//! the batch's transaction, from a per-chat counter it keeps in memory (read from the index on
//! first use). The counters of a batch are applied only once its transaction has committed, so a
//! failed commit takes no number.
//!
//! Layout (schema version 2): the `messages` table is clustered by `(agent_id, secondary_id,
//! chat_seq)` (`WITHOUT ROWID`), so a chat's history is one contiguous range of the table, and
//! the message id (its 16 bytes) has a unique index of its own (appends are idempotent by id).
//! An older database is migrated on open, in one transaction (`PRAGMA user_version`): from
//! before sequence numbers (0), existing messages are first numbered per chat in their
//! `(timestamp, id)` order; from version 1 (a rowid table with a text id and two indexes) the
//! rows are copied into the clustered table. A migrated database cannot be opened by a server
//! from before version 2.
//!
//! Invariants: messages are read back in `chat_seq` order; a chat's history is read through the
//! table's `(agent_id, secondary_id, chat_seq)` key only, never by scanning other chats.

#[doc(hidden)]
pub mod fuzzing;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use async_trait::async_trait;
use jiva_core::{
    Appended, Body, ChatId, Cursor, HistoryPage, Message, MessageId, MessageStore, OlderPage,
    Sender, Seq, StoreError, Timestamp,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// How hard SQLite works to make a commit durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Durable across a crash of the process; a power loss may lose the last commits.
    #[default]
    Normal,
    /// Durable across power loss too (an fsync per commit).
    Full,
}

/// Configuration of [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The database file. Its directory is created if missing.
    pub path: PathBuf,
    /// Durability level.
    pub synchronous: Synchronous,
    /// The most writes committed in one transaction.
    pub max_batch: usize,
    /// Writes waiting for the writer thread before `append` callers wait for room.
    pub queue: usize,
    /// Read-only connections for history reads: the most ever open at once. A read waits for
    /// a free one.
    pub readers: usize,
    /// How long a read waits for a free reader connection before failing with
    /// [`StoreError::Unavailable`].
    pub read_wait: std::time::Duration,
}

impl Config {
    /// Defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            synchronous: Synchronous::Normal,
            max_batch: 512,
            queue: 8192,
            readers: 4,
            read_wait: DEFAULT_READ_WAIT,
        }
    }

    /// Defaults for `jivachat.db` inside the data directory `dir`.
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        Self::new(dir.as_ref().join("jivachat.db"))
    }
}

/// How long a read waits for a free reader connection by default.
pub const DEFAULT_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// SQLite could not open or prepare the database.
    #[error("cannot open the SQLite database {path}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the SQLite writer thread")]
    Thread(#[source] std::io::Error),
}

enum Write {
    Chat(ChatId),
    Message(Message),
    /// A write that only proves the writer can commit (see [`SqliteStore::check`]).
    Probe,
}

struct Job {
    write: Write,
    /// `None` for a chat registration.
    reply: oneshot::Sender<Result<Option<Appended>, StoreError>>,
}

/// The embedded SQLite [`MessageStore`]. Cheap to clone; all clones share one writer thread,
/// which stops when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    writes: mpsc::Sender<Job>,
    readers: Arc<ReaderPool>,
    /// Set while the writer's last transaction failed, cleared by its next commit.
    writer_failing: Arc<AtomicBool>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.readers.path)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS chats (
    agent_id     TEXT NOT NULL,
    secondary_id TEXT NOT NULL,
    PRIMARY KEY (agent_id, secondary_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS probes (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL
);
";

/// The messages table of the current schema (version 2): clustered by chat and number, so a
/// chat's history is one range of the table (no look-up per row), and an append writes two
/// B-trees (the table and the id index) instead of three. `message_id` is the UUID's 16 bytes
/// (a row migrated from an id that was not a UUID keeps its text).
const MESSAGES: &str = "
CREATE TABLE messages (
    agent_id     TEXT NOT NULL,
    secondary_id TEXT NOT NULL,
    chat_seq     INTEGER NOT NULL,
    message_id   BLOB NOT NULL,
    sender       TEXT NOT NULL,
    ts           INTEGER NOT NULL,
    kind         INTEGER NOT NULL,
    body         TEXT NOT NULL,
    PRIMARY KEY (agent_id, secondary_id, chat_seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_by_id ON messages (message_id);
";

/// Schema version 1: per-chat sequence numbers. Existing messages are numbered per chat in their
/// `(ts, message_id)` order; the `(ts, message_id)` index is replaced by the sequence index.
const MIGRATE_TO_1: &str = "
UPDATE messages SET chat_seq = numbered.n
FROM (SELECT seq, ROW_NUMBER() OVER (PARTITION BY agent_id, secondary_id ORDER BY ts, message_id) AS n
      FROM messages) AS numbered
WHERE messages.seq = numbered.seq;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_chat_seq ON messages (agent_id, secondary_id, chat_seq);
DROP INDEX IF EXISTS messages_by_chat;
";

/// Schema version 2 (see [`MESSAGES`]): the version 1 table (a rowid table with a text
/// `message_id` and two indexes) is copied into the clustered one, in key order, and replaced.
const MIGRATE_TO_2: &str = "
INSERT INTO messages (agent_id, secondary_id, chat_seq, message_id, sender, ts, kind, body)
SELECT agent_id, secondary_id, chat_seq,
       CASE WHEN length(unhex(replace(message_id, '-', ''))) = 16
            THEN unhex(replace(message_id, '-', '')) ELSE message_id END,
       sender, ts, kind, body
FROM messages_v1 ORDER BY agent_id, secondary_id, chat_seq;
DROP TABLE messages_v1;
";

/// The schema version [`migrate`] brings a database to (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 2;

/// Chats whose next number the writer remembers; past this the memory is cleared (each chat's
/// counter is then read back from the index on its next append). Each one keeps its chat id,
/// about 150 bytes of heap: 10,000 hold about 1.5 MB. At 100,000 the map was most of the
/// server's heap growth in a 30-minute soak (docs/RELIABILITY.md, "Soak", Run 3).
const CACHED_COUNTERS: usize = 10_000;

/// Each read-only connection's page cache, in KiB (SQLite's default is 2,000). A reader's pages
/// are a chat's history, read once per join, so a big private cache mostly keeps pages no read
/// will want again: at the default the readers' caches grew for as long as the database did
/// (docs/RELIABILITY.md, "Soak"). The kernel's page cache still holds the file, so a small one
/// costs a copy, not a disk read. [`Config::readers`] times this is the readers' bound.
const READER_CACHE_KIB: u32 = 256;

const KIND_TEXT: i64 = 0;
const KIND_COPILOT: i64 = 1;

impl SqliteStore {
    /// Opens (creating if needed) the database and starts the writer thread.
    ///
    /// Blocking: call it before serving, or from `spawn_blocking`.
    pub fn open(config: Config) -> Result<Self, OpenError> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::Directory {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let sqlite = |source| OpenError::Sqlite {
            path: config.path.clone(),
            source,
        };
        let mut writer = Connection::open(&config.path).map_err(sqlite)?;
        let sync = match config.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000;
                 PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES};"
            ))
            .map_err(sqlite)?;
        writer.execute_batch(SCHEMA).map_err(sqlite)?;
        migrate(&mut writer).map_err(sqlite)?;
        let checkpointer = Connection::open(&config.path).map_err(sqlite)?;
        checkpointer
            .execute_batch(&format!(
                "PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000;"
            ))
            .map_err(sqlite)?;

        let readers = Arc::new(ReaderPool {
            path: config.path.clone(),
            idle: Mutex::new(Vec::new()),
            keep: config.readers.max(1),
            permits: Arc::new(Semaphore::new(config.readers.max(1))),
            wait: config.read_wait,
            open: AtomicUsize::new(0),
            most_open: AtomicUsize::new(0),
        });
        // Open one reader now so a bad path fails here, not on the first request.
        let first = readers.open().map_err(sqlite)?;
        readers.put(first);

        let (writes, jobs) = mpsc::channel(config.queue.max(1));
        let max_batch = config.max_batch.max(1);
        let writer_failing = Arc::new(AtomicBool::new(false));
        let failing = Arc::clone(&writer_failing);
        // The checkpointer stops when the writer does (its sender is dropped).
        let (writer_alive, writer_gone) = std::sync::mpsc::channel::<()>();
        thread::Builder::new()
            .name("jiva-sqlite-ckpt".into())
            .spawn(move || checkpoint_loop(checkpointer, writer_gone))
            .map_err(OpenError::Thread)?;
        thread::Builder::new()
            .name("jiva-sqlite-writer".into())
            .spawn(move || {
                writer_loop(writer, jobs, max_batch, &failing);
                drop(writer_alive);
            })
            .map_err(OpenError::Thread)?;
        Ok(Self {
            writes,
            readers,
            writer_failing,
        })
    }

    /// The read-only connections open now and the most ever open at once (the gauge
    /// `jiva_sqlite_reader_connections` shows the first).
    pub fn reader_stats(&self) -> ReaderStats {
        self.readers.stats()
    }

    async fn write(&self, write: Write) -> Result<Option<Appended>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(Job { write, reply })
            .await
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = Arc::clone(&self.readers);
        // A connection is taken only with a permit, so at most `readers` are ever open.
        let permit = match tokio::time::timeout(
            pool.wait,
            Arc::clone(&pool.permits).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(closed)) => return Err(StoreError::Unavailable(Box::new(closed))),
            Err(_) => {
                metrics::counter!("jiva_sqlite_reader_wait_timeouts_total").increment(1);
                return Err(StoreError::Unavailable(
                    "no SQLite reader connection became free in time".into(),
                ));
            }
        };
        tokio::task::spawn_blocking(move || {
            let conn = pool.take().map_err(unavailable)?;
            let result = f(&conn);
            pool.put(conn);
            drop(permit);
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?
    }
}

/// Brings a database to the current schema version ([`SCHEMA_VERSION`]), in one transaction: a
/// new database gets the current schema; an older one is migrated step by step.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let has_messages = tx
        .prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'messages'")?
        .exists([])?;
    if !has_messages {
        tx.execute_batch(MESSAGES)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        return tx.commit();
    }
    let rows: i64 = tx.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?;
    if version < 1 {
        let has_column = tx
            .prepare("SELECT 1 FROM pragma_table_info('messages') WHERE name = 'chat_seq'")?
            .exists([])?;
        if !has_column {
            tx.execute_batch("ALTER TABLE messages ADD COLUMN chat_seq INTEGER")?;
        }
        tx.execute_batch(MIGRATE_TO_1)?;
    }
    tx.execute_batch("ALTER TABLE messages RENAME TO messages_v1")?;
    tx.execute_batch(MESSAGES)?;
    tx.execute_batch(MIGRATE_TO_2)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    if rows > 0 {
        tracing::info!(
            messages = rows,
            from = version,
            to = SCHEMA_VERSION,
            "migrated the messages table"
        );
    }
    Ok(())
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the SQLite writer thread has stopped".into())
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(code, _)
            if matches!(
                code.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Throttled(Box::new(e))
        }
        _ => StoreError::Unavailable(Box::new(e)),
    }
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    keep: usize,
    /// One per connection that may be open; a read holds one while it uses a connection.
    permits: Arc<Semaphore>,
    wait: std::time::Duration,
    /// Reader connections open now, and the most ever open at once.
    open: AtomicUsize,
    most_open: AtomicUsize,
}

/// How many read-only connections a [`SqliteStore`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderStats {
    /// Open now.
    pub open: usize,
    /// The most open at once since the store was opened.
    pub most_open: usize,
}

impl ReaderPool {
    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(&format!("PRAGMA cache_size = -{READER_CACHE_KIB};"))?;
        let open = self.open.fetch_add(1, Ordering::SeqCst).saturating_add(1);
        self.most_open.fetch_max(open, Ordering::SeqCst);
        metrics::gauge!("jiva_sqlite_reader_connections").set(open as f64);
        Ok(conn)
    }

    fn closed(&self) {
        let open = self.open.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        metrics::gauge!("jiva_sqlite_reader_connections").set(open as f64);
    }

    fn stats(&self) -> ReaderStats {
        ReaderStats {
            open: self.open.load(Ordering::SeqCst),
            most_open: self.most_open.load(Ordering::SeqCst),
        }
    }

    fn take(&self) -> rusqlite::Result<Connection> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match pooled {
            Some(conn) => Ok(conn),
            None => self.open(),
        }
    }

    fn put(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.keep {
                idle.push(conn);
                return;
            }
        }
        drop(conn);
        self.closed();
    }
}

/// How often the checkpointer copies committed WAL frames into the database.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// WAL size (pages) past which the writer checkpoints by itself: a safety net for a
/// checkpointer that cannot keep up (SQLite's default is 1000).
pub const WRITER_CHECKPOINT_PAGES: u32 = 16_384;

fn checkpoint_loop(conn: Connection, writer_gone: std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        let stop = matches!(
            writer_gone.recv_timeout(CHECKPOINT_EVERY),
            Err(RecvTimeoutError::Disconnected) | Ok(())
        );
        // PASSIVE: copies what it can without waiting for (or blocking) the writer or readers.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "SQLite checkpoint failed");
        }
        if stop {
            return;
        }
    }
}

/// The writer's memory of each chat's last number.
#[derive(Default)]
struct Counters {
    last: HashMap<ChatId, u64>,
}

fn writer_loop(
    mut conn: Connection,
    mut jobs: mpsc::Receiver<Job>,
    max_batch: usize,
    failing: &AtomicBool,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut counters = Counters::default();
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let size = batch.len();
        match commit(&mut conn, &batch, &mut counters) {
            Ok(outcomes) => {
                failing.store(false, Ordering::SeqCst);
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    // A caller that gave up waiting is not an error.
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                failing.store(true, Ordering::SeqCst);
                tracing::error!(error = %e, batch = size, "SQLite commit failed");
                // The batch took no number; its chats' counters are read again next time, in
                // case the failure came from a number another writer had taken.
                for job in &batch {
                    if let Write::Message(m) = &job.write {
                        counters.last.remove(&m.chat);
                    }
                }
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(StoreError::Unavailable(
                        format!("SQLite commit failed: {e}").into(),
                    )));
                }
            }
        }
    }
}

/// What one write of a batch answers.
type Outcome = Result<Option<Appended>, StoreError>;

/// A row SQLite refused: a constraint (retrying will not help) or a transient failure.
fn row_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Conflict(Box::new(e)),
        _ => unavailable(e),
    }
}

/// Commits `batch` in one transaction. A row SQLite refuses (a constraint, a trigger) is
/// rolled back alone and answers its own error, and the rest of the batch commits. A refused row
/// takes no number, so numbers stay gap-free. The numbers the batch takes are recorded in
/// `counters` only once the transaction has committed; the counter of a chat with a refused row
/// is forgotten (read again from the index), in case the refusal came from a number another
/// writer had taken.
///
/// Refusals are rare, so the batch is first written without savepoints (they copy pages into a
/// sub-journal on every write); only when a row is refused is the batch rolled back and written
/// again with a savepoint around each write.
///
/// `Err` means the transaction itself failed (nothing of the batch is stored).
fn commit(
    conn: &mut Connection,
    batch: &[Job],
    counters: &mut Counters,
) -> rusqlite::Result<Vec<Outcome>> {
    match write_batch(conn, batch, counters, false)? {
        Some(outcomes) => Ok(outcomes),
        // With savepoints every refusal is answered in place: there is no `None`.
        None => write_batch(conn, batch, counters, true).map(Option::unwrap_or_default),
    }
}

/// One attempt of [`commit`]: with `per_row_savepoints`, each write runs in a savepoint of its
/// own; without, the first refused row rolls the whole batch back and `Ok(None)` asks for the
/// attempt with savepoints.
fn write_batch(
    conn: &mut Connection,
    batch: &[Job],
    counters: &mut Counters,
    per_row_savepoints: bool,
) -> rusqlite::Result<Option<Vec<Outcome>>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    // This batch's numbers, over the committed ones.
    let mut taken: HashMap<&ChatId, u64> = HashMap::new();
    // Chats with a refused row.
    let mut refused: Vec<&ChatId> = Vec::new();
    {
        let mut chat_stmt = tx.prepare_cached(
            "INSERT INTO chats (agent_id, secondary_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?;
        let mut msg_stmt = tx.prepare_cached(
            "INSERT INTO messages (message_id, agent_id, secondary_id, sender, ts, kind, body, chat_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (message_id) DO NOTHING",
        )?;
        let mut last_stmt = tx.prepare_cached(
            "SELECT MAX(chat_seq) FROM messages WHERE agent_id = ?1 AND secondary_id = ?2",
        )?;
        let mut probe_stmt = tx.prepare_cached(
            "INSERT INTO probes (id, at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        )?;
        // Prepared once per connection: a savepoint per write costs no parsing.
        let mut savepoints = if per_row_savepoints {
            Some((
                tx.prepare_cached("SAVEPOINT row")?,
                tx.prepare_cached("RELEASE row")?,
                tx.prepare_cached("ROLLBACK TO row")?,
            ))
        } else {
            None
        };
        let mut existing_stmt =
            tx.prepare_cached("SELECT chat_seq FROM messages WHERE message_id = ?1")?;
        for job in batch {
            if let Some((savepoint, _, _)) = savepoints.as_mut() {
                savepoint.execute([])?;
            }
            let outcome = match &job.write {
                Write::Chat(chat) => chat_stmt
                    .execute(params![chat.agent().as_str(), chat.kind().as_str()])
                    .map(|_| None),
                Write::Probe => probe_stmt
                    .execute(params![Timestamp::now().as_millis()])
                    .map(|_| None),
                Write::Message(m) => {
                    let written = (|| -> rusqlite::Result<Appended> {
                        let last = match taken.get(&m.chat) {
                            Some(last) => *last,
                            None => match counters.last.get(&m.chat) {
                                Some(last) => *last,
                                None => last_stmt
                                    .query_row(
                                        params![m.chat.agent().as_str(), m.chat.kind().as_str()],
                                        |r| r.get::<_, Option<i64>>(0),
                                    )?
                                    .map_or(0, |n| u64::try_from(n).unwrap_or(0)),
                            },
                        };
                        let seq = last.saturating_add(1);
                        let (kind, body) = match &m.body {
                            Body::Text(t) => (KIND_TEXT, t.as_str()),
                            Body::CopilotAnswer(t) => (KIND_COPILOT, t.as_str()),
                        };
                        let uuid = m.id.as_uuid();
                        let id = uuid.as_bytes().as_slice();
                        let changed = msg_stmt.execute(params![
                            id,
                            m.chat.agent().as_str(),
                            m.chat.kind().as_str(),
                            m.sender.as_str(),
                            m.timestamp.as_millis(),
                            kind,
                            body,
                            i64::try_from(seq).unwrap_or(i64::MAX),
                        ])?;
                        if changed == 0 {
                            let stored: Option<i64> =
                                existing_stmt.query_row(params![id], |r| r.get(0))?;
                            let stored = stored.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
                            Ok(Appended::AlreadyStored(Seq::new(stored)))
                        } else {
                            Ok(Appended::Stored(Seq::new(seq)))
                        }
                    })();
                    match written {
                        Ok(appended) => {
                            if let Appended::Stored(seq) = appended {
                                taken.insert(&m.chat, seq.get());
                            }
                            Ok(Some(appended))
                        }
                        Err(e) => {
                            refused.push(&m.chat);
                            Err(e)
                        }
                    }
                }
            };
            match outcome {
                Ok(done) => {
                    if let Some((_, release, _)) = savepoints.as_mut() {
                        release.execute([])?;
                    }
                    outcomes.push(Ok(done));
                }
                Err(e) => {
                    // Some failures (a full disk, I/O) end the whole transaction: then the batch
                    // fails as one, below.
                    if tx.is_autocommit() {
                        return Err(e);
                    }
                    // Without savepoints, dropping the transaction rolls the batch back.
                    let Some((_, release, rollback)) = savepoints.as_mut() else {
                        return Ok(None);
                    };
                    rollback.execute([])?;
                    release.execute([])?;
                    tracing::warn!(error = %e, "SQLite refused one write of a batch");
                    outcomes.push(Err(row_error(e)));
                }
            }
        }
    }
    tx.commit()?;
    if counters.last.len() + taken.len() > CACHED_COUNTERS {
        counters.last.clear();
    }
    for (chat, last) in taken {
        counters.last.insert(chat.clone(), last);
    }
    for chat in refused {
        counters.last.remove(chat);
    }
    Ok(Some(outcomes))
}

const COLUMNS: &str = "message_id, sender, ts, kind, body, chat_seq";

fn row_to_message(chat: &ChatId, row: &rusqlite::Row<'_>) -> Result<Message, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("messages row: {what}"));
    let id = match row.get_ref(0).map_err(|_| corrupt("message_id"))? {
        // The current form: the UUID's 16 bytes.
        ValueRef::Blob(bytes) => uuid::Uuid::from_slice(bytes)
            .map(MessageId::from_uuid)
            .map_err(|_| corrupt("message_id is not a UUID"))?,
        // Kept as text by the migration to version 2 (it was not a UUID then either).
        ValueRef::Text(text) => std::str::from_utf8(text)
            .ok()
            .and_then(|text| MessageId::parse(text).ok())
            .ok_or_else(|| corrupt("message_id is not a UUID"))?,
        _ => return Err(corrupt("message_id")),
    };
    let sender = match row.get_ref(1).map_err(|_| corrupt("sender"))? {
        ValueRef::Text(text) => std::str::from_utf8(text)
            .ok()
            .and_then(|text| Sender::parse(text).ok())
            .ok_or_else(|| corrupt("unknown sender"))?,
        _ => return Err(corrupt("sender")),
    };
    let ts: i64 = row.get(2).map_err(|_| corrupt("ts"))?;
    let kind: i64 = row.get(3).map_err(|_| corrupt("kind"))?;
    let body: String = row.get(4).map_err(|_| corrupt("body"))?;
    let seq: i64 = row.get(5).map_err(|_| corrupt("chat_seq"))?;
    let seq = u64::try_from(seq).map_err(|_| corrupt("chat_seq is negative"))?;
    Ok(Message {
        id,
        chat: chat.clone(),
        sender,
        timestamp: Timestamp::from_millis(ts),
        body: if kind == KIND_COPILOT {
            Body::CopilotAnswer(body)
        } else {
            Body::Text(body)
        },
        seq: Some(Seq::new(seq)),
    })
}

/// The cursor after `m`: `s{chat_seq}`.
fn encode_cursor(m: &Message) -> Cursor {
    Cursor::from_token(format!("s{}", m.seq.map_or(0, Seq::get)))
}

fn decode_cursor(cursor: &Cursor) -> Result<i64, StoreError> {
    let invalid = || StoreError::InvalidInput("malformed history cursor".into());
    let seq = cursor.token().strip_prefix('s').ok_or_else(invalid)?;
    let seq: u64 = seq.parse().map_err(|_| invalid())?;
    i64::try_from(seq).map_err(|_| invalid())
}

fn collect(chat: &ChatId, rows: rusqlite::Rows<'_>) -> Result<Vec<Message>, StoreError> {
    let mut rows = rows;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        out.push(row_to_message(chat, row)?);
    }
    Ok(out)
}

#[async_trait]
impl MessageStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn register_chat(&self, chat: &ChatId) -> Result<(), StoreError> {
        self.write(Write::Chat(chat.clone())).await.map(|_| ())
    }

    async fn append(&self, message: &Message) -> Result<Appended, StoreError> {
        self.write(Write::Message(message.clone()))
            .await?
            .ok_or_else(|| StoreError::Corrupt("the writer answered an append as a chat".into()))
    }

    async fn history(
        &self,
        chat: &ChatId,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let after = cursor.as_ref().map(decode_cursor).transpose()?;
        let chat = chat.clone();
        if limit == 0 {
            return Ok(HistoryPage {
                messages: Vec::new(),
                next: cursor,
            });
        }
        self.read(move |conn| {
            let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1).saturating_add(1);
            let agent = chat.agent().as_str();
            let kind = chat.kind().as_str();
            let mut messages = match &after {
                None => {
                    let mut stmt = conn
                        .prepare_cached(&format!(
                            "SELECT {COLUMNS} FROM messages WHERE agent_id = ?1 AND secondary_id = ?2
                             ORDER BY chat_seq LIMIT ?3"
                        ))
                        .map_err(unavailable)?;
                    let rows = stmt.query(params![agent, kind, fetch]).map_err(unavailable)?;
                    collect(&chat, rows)?
                }
                Some(after) => {
                    let mut stmt = conn
                        .prepare_cached(&format!(
                            "SELECT {COLUMNS} FROM messages WHERE agent_id = ?1 AND secondary_id = ?2
                             AND chat_seq > ?3 ORDER BY chat_seq LIMIT ?4"
                        ))
                        .map_err(unavailable)?;
                    let rows = stmt.query(params![agent, kind, after, fetch]).map_err(unavailable)?;
                    collect(&chat, rows)?
                }
            };
            let next = if messages.len() > limit {
                messages.truncate(limit);
                messages.last().map(encode_cursor)
            } else {
                None
            };
            Ok(HistoryPage { messages, next })
        })
        .await
    }

    async fn recent(&self, chat: &ChatId, limit: usize) -> Result<Vec<Message>, StoreError> {
        let chat = chat.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM messages WHERE agent_id = ?1 AND secondary_id = ?2
                     ORDER BY chat_seq DESC LIMIT ?3"
                ))
                .map_err(unavailable)?;
            let rows = stmt
                .query(params![chat.agent().as_str(), chat.kind().as_str(), limit])
                .map_err(unavailable)?;
            let mut messages = collect(&chat, rows)?;
            messages.reverse();
            Ok(messages)
        })
        .await
    }

    fn seeks_by_number(&self) -> bool {
        true
    }

    async fn after(
        &self,
        chat: &ChatId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        // Every row is numbered (older databases are numbered on open): the history after the
        // cursor of that number, through the `(agent_id, secondary_id, chat_seq)` index.
        let cursor = Cursor::from_token(format!("s{}", after.get()));
        Ok(self.history(chat, Some(cursor), limit).await?.messages)
    }

    async fn before(
        &self,
        chat: &ChatId,
        before: Seq,
        limit: usize,
    ) -> Result<OlderPage, StoreError> {
        let chat = chat.clone();
        let before = i64::try_from(before.get()).unwrap_or(i64::MAX);
        let fetch = i64::try_from(limit)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM messages WHERE agent_id = ?1 AND secondary_id = ?2
                     AND chat_seq < ?3 ORDER BY chat_seq DESC LIMIT ?4"
                ))
                .map_err(unavailable)?;
            let rows = stmt
                .query(params![
                    chat.agent().as_str(),
                    chat.kind().as_str(),
                    before,
                    fetch
                ])
                .map_err(unavailable)?;
            let mut messages = collect(&chat, rows)?;
            let has_older = messages.len() > limit;
            messages.truncate(limit);
            messages.reverse();
            Ok(OlderPage {
                messages,
                has_older,
            })
        })
        .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .optional()
                .map_err(unavailable)?;
            Ok(())
        })
        .await?;
        if self.writes.is_closed() {
            return Err(writer_gone());
        }
        // After a failed commit, ready again only once a write commits: a probe that writes
        // (reads alone would still succeed on a file that can no longer be written).
        if self.writer_failing.load(Ordering::SeqCst) {
            self.write(Write::Probe).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use jiva_core::{AgentId, ConnectionType};

    fn job(message: Message) -> Job {
        Job {
            write: Write::Message(message),
            reply: oneshot::channel().0,
        }
    }

    #[test]
    fn a_refused_row_takes_no_number_and_the_rest_of_its_batch_commits() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        migrate(&mut conn).unwrap();
        let chat = ChatId::new(AgentId::parse("a-1").unwrap(), ConnectionType::Supervisor);
        let mut counters = Counters::default();
        let first = Message::user(chat.clone(), Sender::Agent, "one".into());
        let outcomes = commit(&mut conn, &[job(first)], &mut counters).unwrap();
        assert!(matches!(outcomes[..], [Ok(Some(Appended::Stored(s)))] if s == Seq::new(1)));
        assert_eq!(counters.last.get(&chat), Some(&1));

        // Another writer took number 3 behind the counter's back: the batch's second message
        // collides with it and is refused alone.
        conn.execute(
            "INSERT INTO messages (message_id, agent_id, secondary_id, sender, ts, kind, body, chat_seq)
             VALUES (?1, 'a-1', 'supervisor', 'agent', 0, 0, 'x', 3)",
            params![MessageId::new_v7().to_string()],
        )
        .unwrap();
        let batch = [
            job(Message::user(chat.clone(), Sender::Agent, "two".into())),
            job(Message::user(chat.clone(), Sender::Agent, "three".into())),
        ];
        let outcomes = commit(&mut conn, &batch, &mut counters).unwrap();
        assert!(matches!(outcomes[0], Ok(Some(Appended::Stored(s))) if s == Seq::new(2)));
        assert!(matches!(outcomes[1], Err(StoreError::Conflict(_))));
        assert_eq!(
            counters.last.get(&chat),
            None,
            "the counter of a chat with a refused row is read again"
        );
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 3, "the refused row was not stored");

        let retry = [job(Message::user(
            chat.clone(),
            Sender::Agent,
            "three".into(),
        ))];
        let outcomes = commit(&mut conn, &retry, &mut counters).unwrap();
        assert!(matches!(outcomes[..], [Ok(Some(Appended::Stored(s)))] if s == Seq::new(4)));
    }

    #[tokio::test]
    async fn a_read_that_finds_no_free_reader_in_time_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            readers: 1,
            read_wait: std::time::Duration::from_millis(50),
            ..Config::in_dir(dir.path())
        };
        let store = SqliteStore::open(config).unwrap();
        let chat = ChatId::new(AgentId::parse("a-1").unwrap(), ConnectionType::Supervisor);
        let held = Arc::clone(&store.readers.permits)
            .acquire_owned()
            .await
            .unwrap();
        let refused = store.history(&chat, None, 10).await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable(_))),
            "{refused:?}"
        );
        drop(held);
        assert!(store.history(&chat, None, 10).await.is_ok());
    }

    #[test]
    fn a_reader_keeps_a_small_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(Config::in_dir(dir.path())).unwrap();
        let reader = store.readers.open().unwrap();
        let kib: i64 = reader
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kib, -i64::from(READER_CACHE_KIB));
    }
}
