//! The SQLite backend: one file in WAL mode, foreign keys on, one writer connection and a
//! small set of reader connections.
//!
//! Statements run on rusqlite connections in the calling thread, with the prepared
//! statement kept per connection (keyed by its text): no hand-off to another thread per
//! statement. The writer's connection belongs to the writer, which runs on its own thread
//! (see `market::Market::open`); readers borrow a connection from [`SqliteStore::read`] for
//! a few statements (an indexed lookup is a few microseconds, well within what an async
//! task may spend between two awaits). sqlx is kept for the migrations only, so that the
//! `_sqlx_migrations` table stays as it was.
//!
//! Durability: with `synchronous = FULL` (the default) each commit is flushed to the WAL on
//! disk before it returns, so every acknowledged action survives a crash of chogate and a
//! power loss; group commit pays that flush once per group, not once per action. With
//! `normal` a crash of chogate (SIGKILL included) still loses nothing that was committed,
//! but a power loss may lose the last commits.
//!
//! Checkpoints (copying committed pages from the WAL into the database file, then flushing
//! that file) run on a thread of their own, [`Checkpointer`], woken after each group commit.
//! Left to SQLite, the writer ran them itself inside the COMMIT that took the WAL past 1 000
//! pages: dozens of times a second under load, each holding up every action queued behind
//! that commit for the copy and a flush of the database file (at ~90 000 USSD steps/s, one
//! action in ten waited over 5 ms). The writer now checkpoints itself only when the WAL
//! reaches [`WRITER_AUTOCHECKPOINT`] pages, by then nearly all copied, which is what lets
//! SQLite start the WAL over from its beginning.

use std::borrow::Cow;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::warn;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous as Sync};

use super::{Arg, StoreError};
use crate::config::{DatabaseConfig, SqliteSynchronous};

/// Prepared statements kept per connection. The code has fewer distinct statements than
/// this, so after warm-up every statement is prepared once per connection.
const STATEMENT_CACHE: usize = 256;

/// The WAL's size, in pages, at which the writer checkpoints itself (16 MB with 4 KB pages):
/// the [`Checkpointer`] has copied nearly everything by then, so the writer's checkpoint is
/// short, and it lets the next transaction start the WAL over.
pub const WRITER_AUTOCHECKPOINT: u32 = 4_000;

/// A checkpoint is due once this many commits have come since the last one. Under load that
/// is every [`CHECKPOINT_SPACING`]: small checkpoints, each short, keep the tail of the
/// writer's commit times lowest (batches of 32 commits, each checkpoint ~1 000 pages as
/// SQLite's own, gave a p99 of 8 ms against 6 ms at 90 000 USSD steps/s). When commits are
/// few, it spares the database file a flush per commit...
const CHECKPOINT_BATCH: u64 = 4;

/// ...but never sooner than this after the last: each checkpoint copies the pages changed
/// since the one before and flushes the database file, so back to back they would copy the
/// same hot pages (the B-trees' upper levels) far more often, for little gain in how short
/// the WAL stays.
const CHECKPOINT_SPACING: Duration = Duration::from_millis(5);

/// Fewer commits than a batch are checkpointed this long after the last checkpoint, so that
/// the database file catches up when writes slow down, without a flush of it per commit.
const CHECKPOINT_IDLE: Duration = Duration::from_secs(1);

/// After a checkpoint that could not copy everything (a reader on an older snapshot, the
/// writer's own checkpoint holding the lock, an error), the next comes this soon.
const CHECKPOINT_RETRY: Duration = Duration::from_millis(50);

/// When the next checkpoint is due, `since` the last one, with `waiting` commits since then
/// and the last one `incomplete`: `None` until a commit comes, else how long from now (zero:
/// at once).
fn next_checkpoint(waiting: u64, incomplete: bool, since: Duration) -> Option<Duration> {
    let after = if waiting >= CHECKPOINT_BATCH {
        CHECKPOINT_SPACING
    } else if incomplete {
        CHECKPOINT_RETRY
    } else if waiting > 0 {
        CHECKPOINT_IDLE
    } else {
        return None;
    };
    Some(after.saturating_sub(since))
}

/// Runs checkpoints on a thread of its own (`chogate-checkpoint`, with its own connection),
/// woken by [`Checkpointer::committed`] after each commit of the writer, when
/// [`next_checkpoint`] says one is due. Wake-ups that come while a checkpoint runs are
/// folded into one. Dropping it ends the thread and waits for
/// it (it finishes the checkpoint under way), so that two never overlap and none outlives
/// the writer's connection.
#[derive(Debug)]
pub struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The store's count of commits (see [`Progress`]).
    commits: Arc<AtomicU64>,
}

/// How far checkpoints have come, kept by the store across writer connections.
#[derive(Debug, Clone)]
struct Progress {
    /// Commits signalled so far.
    commits: Arc<AtomicU64>,
    /// The commits the database file holds: every one up to this number was copied by a
    /// checkpoint that left nothing in the WAL behind it. Never goes back.
    copied: Arc<watch::Sender<u64>>,
}

impl Checkpointer {
    /// Tells the checkpointer that the writer committed.
    pub fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Release);
        if let Some(wake) = &self.wake {
            match wake.try_send(()) {
                // Full: a wake-up is pending already. Disconnected: the thread ended (it
                // cannot, short of a panic); the writer's own checkpoints bound the WAL.
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.wake.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits for a commit's wake-up, or at most `limit` (when given); false if the writer has
/// gone.
fn wait_wake(wake: &Receiver<()>, limit: Option<Duration>) -> bool {
    match limit {
        None => wake.recv().is_ok(),
        Some(limit) => !matches!(wake.recv_timeout(limit), Err(RecvTimeoutError::Disconnected)),
    }
}

/// The checkpointer's loop: a passive checkpoint (it never waits for a lock and never holds
/// up the writer or the readers) whenever [`next_checkpoint`] says one is due.
fn checkpoint_loop(conn: Connection, wake: Receiver<()>, progress: Progress) {
    let mut failing = false;
    let mut incomplete = false;
    let mut last_at = Instant::now();
    let mut last_upto = 0;
    loop {
        let waiting = progress.commits.load(Ordering::Acquire).saturating_sub(last_upto);
        match next_checkpoint(waiting, incomplete, last_at.elapsed()) {
            Some(d) if d.is_zero() => {}
            limit => {
                if !wait_wake(&wake, limit) {
                    break;
                }
                continue;
            }
        }
        let upto = progress.commits.load(Ordering::Acquire);
        // (busy, frames in the WAL, frames copied into the database file); a checkpoint
        // that did not get the lock (the writer's own running) gives (1, -1, -1).
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        last_at = Instant::now();
        last_upto = upto;
        match result {
            Ok((0, log, done)) if log >= 0 => {
                failing = false;
                crate::metrics::checkpoint();
                // A reader still on an older snapshot can keep the last frames from being
                // copied.
                incomplete = log != done;
                if !incomplete {
                    progress.copied.send_if_modified(|c| {
                        let later = upto > *c;
                        if later {
                            *c = upto;
                        }
                        later
                    });
                }
            }
            Ok(_) => incomplete = true,
            Err(e) => {
                // Once per run of failures: the writer's own checkpoints still bound the WAL.
                if !failing {
                    warn!(error = %e, "checkpoint failed; the writer checkpoints by itself meanwhile");
                }
                failing = true;
                incomplete = true;
            }
        }
    }
}

/// A SQLite database: where the file is, how to open connections, and idle readers.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    synchronous: &'static str,
    busy_timeout: Duration,
    /// For the migrations (sqlx's migrator and its `_sqlx_migrations` table).
    options: SqliteConnectOptions,
    /// Reader connections not in use; at most `keep` are kept.
    idle: Mutex<Vec<Connection>>,
    keep: usize,
    /// Set by [`SqliteStore::close`]: no more reader connections.
    closed: AtomicBool,
    /// How far the checkpointer has come.
    checkpoints: Progress,
}

impl SqliteStore {
    /// Opens (creating the file if missing) the database at `cfg.url` (`sqlite://path`).
    pub fn connect(cfg: &DatabaseConfig) -> Result<SqliteStore, StoreError> {
        if cfg.url.contains(":memory:") || cfg.url.contains("mode=memory") {
            return Err(StoreError::Url(
                "an in-memory SQLite database cannot be shared by the writer and the readers: use a file"
                    .to_owned(),
            ));
        }
        let options = SqliteConnectOptions::from_str(&cfg.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match cfg.sqlite_synchronous {
                SqliteSynchronous::Full => Sync::Full,
                SqliteSynchronous::Normal => Sync::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(cfg.busy_timeout())
            // Used for the migrations only, which `chogate migrate` and the start-up log
            // report themselves: sqlx would log a long one's whole text as a slow statement.
            .disable_statement_logging();
        let store = SqliteStore {
            inner: Arc::new(Inner {
                path: options.get_filename().to_path_buf(),
                synchronous: match cfg.sqlite_synchronous {
                    SqliteSynchronous::Full => "FULL",
                    SqliteSynchronous::Normal => "NORMAL",
                },
                busy_timeout: cfg.busy_timeout(),
                options,
                idle: Mutex::new(Vec::new()),
                keep: cfg.read_pool.max(1) as usize,
                closed: AtomicBool::new(false),
                checkpoints: Progress {
                    commits: Arc::new(AtomicU64::new(0)),
                    copied: Arc::new(watch::channel(0).0),
                },
            }),
        };
        store.make_private()?;
        // Creates the file and switches it to WAL (a property of the file); fails now, not
        // at the first read, when the file cannot be opened.
        let conn = store.open()?;
        store.put_back(conn);
        Ok(store)
    }

    /// The database file is created 0600 before SQLite opens it (SQLite then gives its -wal
    /// and -shm the same mode); files found wider (made before, or by hand) are narrowed.
    fn make_private(&self) -> Result<(), StoreError> {
        let db = &self.inner.path;
        let fail = |path: &std::path::Path| {
            let path = path.display().to_string();
            move |source| StoreError::File { path, source }
        };
        crate::files::ensure_private(db).map_err(fail(db))?;
        for suffix in ["-wal", "-shm"] {
            let mut side = db.as_os_str().to_owned();
            side.push(suffix);
            let side = std::path::PathBuf::from(side);
            crate::files::narrow_if_present(&side).map_err(fail(&side))?;
        }
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &std::path::Path {
        &self.inner.path
    }

    /// A sqlx connection, for the migrations.
    pub async fn migration_conn(&self) -> Result<SqliteConnection, StoreError> {
        Ok(self.inner.options.connect().await?)
    }

    /// A new connection with the settings every connection gets.
    pub fn open(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.inner.path, flags)?;
        conn.busy_timeout(self.inner.busy_timeout)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
            self.inner.synchronous
        ))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// The writer's connection, and the [`Checkpointer`] that keeps its WAL short. Without
    /// a checkpointer (its connection or thread could not be had; logged), the writer
    /// checkpoints by itself as SQLite does by default.
    pub fn writer(&self) -> Result<(Connection, Option<Checkpointer>), StoreError> {
        let conn = self.open()?;
        let checkpointer = match self.checkpointer() {
            Ok(c) => {
                conn.execute_batch(&format!("PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT};"))?;
                Some(c)
            }
            Err(e) => {
                warn!(error = %e, "no checkpointer thread; the writer checkpoints by itself");
                None
            }
        };
        Ok((conn, checkpointer))
    }

    fn checkpointer(&self) -> Result<Checkpointer, StoreError> {
        let conn = self.open()?;
        let (wake, woken) = sync_channel(1);
        let progress = self.inner.checkpoints.clone();
        let commits = progress.commits.clone();
        let thread = std::thread::Builder::new()
            .name("chogate-checkpoint".into())
            .spawn(move || checkpoint_loop(conn, woken, progress))
            .map_err(|e| StoreError::Thread(e.to_string()))?;
        Ok(Checkpointer { wake: Some(wake), thread: Some(thread), commits })
    }

    /// Waits until every commit the writer has made so far is in the database file itself,
    /// not only in the WAL (a copy of the file alone then holds them).
    pub async fn checkpointed(&self) {
        let target = self.inner.checkpoints.commits.load(Ordering::Acquire);
        let mut copied = self.inner.checkpoints.copied.subscribe();
        // The sender lives as long as the store.
        let _ = copied.wait_for(|c| *c >= target).await;
    }

    /// A reader connection: an idle one, or a new one.
    pub fn read(&self) -> Result<Reader, StoreError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let idle = self.inner.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        Ok(Reader { conn: Some(conn), store: self.clone() })
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.inner.keep && conn.is_autocommit() {
            idle.push(conn);
        }
    }

    /// Refuses new readers and drops the idle ones.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// A reader connection, back to the idle set when dropped.
pub struct Reader {
    conn: Option<Connection>,
    store: SqliteStore,
}

impl Reader {
    /// The connection.
    pub fn conn(&mut self) -> Option<&mut Connection> {
        self.conn.as_mut()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.store.put_back(conn);
        }
    }
}

/// How a statement's arguments are bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholders {
    /// The SQL as written: SQLite reads `$1` as a parameter *named* "$1" and numbers its
    /// parameters in the order they first appear, so each is bound to the argument its name
    /// gives. Looking a name up walks the statement's list of names, so this is for
    /// statements with few placeholders (all the statements of a USSD step), where it
    /// spares rewriting the SQL text on every run.
    Named,
    /// `$N` rewritten as `?N` (see [`positional`]): parameter N is at index N.
    Numbered,
}

/// Statements with more `$` than this are rewritten (multi-row `VALUES` of a few hundred).
const NAMED_MAX: usize = 16;

/// The SQL to prepare for `sql` (written with `$1`-style placeholders, as the SQL above the
/// store is, for both backends), and how to bind its arguments.
fn prepared_sql(sql: &str) -> (Cow<'_, str>, Placeholders) {
    // `matches` of a char looks for it with memchr.
    if sql.matches('$').take(NAMED_MAX + 1).count() <= NAMED_MAX {
        (Cow::Borrowed(sql), Placeholders::Named)
    } else {
        (positional(sql), Placeholders::Numbered)
    }
}

/// `$1`-style placeholders (what the SQL above the store is written with) as `?1`: the
/// parameter numbered N is then bound at index N, whatever order the placeholders appear in.
fn positional(sql: &str) -> Cow<'_, str> {
    // Byte by byte: every character looked at is ASCII, and an ASCII byte is never part of
    // a multi-byte character, so each '$' found is a character of its own.
    let bytes = sql.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    // Inside a string literal or a quoted name ('...' or "...", a doubled quote being one
    // quote of the text), a '$' is text.
    let mut quote = None;
    for (i, &b) in bytes.iter().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let o = out.get_or_insert_with(|| String::with_capacity(sql.len()));
                o.push_str(&sql[copied..i]);
                o.push('?');
                copied = i + 1;
            }
            None => {}
        }
    }
    match out {
        None => Cow::Borrowed(sql),
        Some(mut o) => {
            o.push_str(&sql[copied..]);
            Cow::Owned(o)
        }
    }
}

fn bind(stmt: &mut rusqlite::Statement<'_>, how: Placeholders, args: &[Arg]) -> Result<(), rusqlite::Error> {
    let expected = stmt.parameter_count();
    if args.len() != expected {
        return Err(rusqlite::Error::InvalidParameterCount(args.len(), expected));
    }
    for at in 1..=expected {
        let arg = match how {
            Placeholders::Numbered => args.get(at - 1),
            // Distinct names each giving a number in 1..=expected: every argument is bound
            // once.
            Placeholders::Named => stmt
                .parameter_name(at)
                .and_then(|n| n.strip_prefix('$'))
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| args.get(i)),
        };
        let Some(arg) = arg else {
            return Err(rusqlite::Error::InvalidParameterName(
                stmt.parameter_name(at).unwrap_or("?").to_owned(),
            ));
        };
        match arg {
            Arg::Int(v) => stmt.raw_bind_parameter(at, v)?,
            Arg::OptInt(v) => stmt.raw_bind_parameter(at, v)?,
            Arg::Text(v) => stmt.raw_bind_parameter(at, v)?,
            Arg::OptText(v) => stmt.raw_bind_parameter(at, v)?,
            Arg::Bool(v) => stmt.raw_bind_parameter(at, v)?,
        }
    }
    Ok(())
}

/// Runs a statement (every row it returns is read and dropped); returns the rows changed.
pub fn execute(conn: &mut Connection, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
    execute_each(conn, sql, [args])
}

/// Runs one statement once per set of arguments (prepared once); returns the rows changed.
pub fn execute_each<'a>(
    conn: &mut Connection,
    sql: &str,
    each: impl IntoIterator<Item = &'a [Arg]>,
) -> Result<u64, StoreError> {
    let (sql, how) = prepared_sql(sql);
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut changed = 0;
    for args in each {
        bind(&mut stmt, how, args)?;
        let mut rows = stmt.raw_query();
        while rows.next()?.is_some() {}
        drop(rows);
        changed += conn.changes();
    }
    Ok(changed)
}

/// Runs a query; returns up to `limit` rows.
pub fn fetch(
    conn: &mut Connection,
    sql: &str,
    args: &[Arg],
    limit: usize,
) -> Result<Vec<LiteRow>, StoreError> {
    let (sql, how) = prepared_sql(sql);
    let mut stmt = conn.prepare_cached(&sql)?;
    bind(&mut stmt, how, args)?;
    let names: Arc<[String]> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let width = names.len();
    let mut out = Vec::new();
    let mut rows = stmt.raw_query();
    while out.len() < limit {
        let Some(row) = rows.next()? else { break };
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(row.get::<_, Value>(i)?);
        }
        out.push(LiteRow { names: names.clone(), values });
    }
    Ok(out)
}

/// Runs SQL without parameters, possibly several statements.
pub fn batch(conn: &mut Connection, sql: &str) -> Result<(), StoreError> {
    if sql.contains(';') {
        conn.execute_batch(sql)?;
    } else {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.raw_query();
        while rows.next()?.is_some() {}
    }
    Ok(())
}

/// A row read from SQLite: the column names (shared by the rows of one query) and values.
#[derive(Debug, Clone)]
pub struct LiteRow {
    names: Arc<[String]>,
    values: Vec<Value>,
}

impl LiteRow {
    fn get(&self, col: &str) -> Result<&Value, StoreError> {
        self.names
            .iter()
            .position(|n| n == col)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StoreError::Column { column: col.to_owned(), reason: "no such column".to_owned() })
    }

    fn mismatch(col: &str, want: &str, got: &Value) -> StoreError {
        StoreError::Column {
            column: col.to_owned(),
            reason: format!("expected {want}, found {:?}", got.data_type()),
        }
    }

    /// An integer column that may be NULL.
    pub fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        match self.get(col)? {
            Value::Integer(v) => Ok(Some(*v)),
            Value::Null => Ok(None),
            other => Err(Self::mismatch(col, "an integer", other)),
        }
    }

    /// A text column that may be NULL.
    pub fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        match self.get(col)? {
            Value::Text(v) => Ok(Some(v.clone())),
            Value::Null => Ok(None),
            other => Err(Self::mismatch(col, "text", other)),
        }
    }

    /// A boolean column or expression (0/1).
    pub fn flag(&self, col: &str) -> Result<bool, StoreError> {
        match self.get(col)? {
            Value::Integer(v) => Ok(*v != 0),
            other => Err(Self::mismatch(col, "a boolean (0/1)", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_should_come_per_batch_spaced_late_for_stragglers_and_soon_after_a_miss() {
        let ms = Duration::from_millis;
        // Nothing committed: nothing to do until a commit wakes the thread.
        assert_eq!(next_checkpoint(0, false, ms(10_000)), None);
        // A batch: at once, once spaced from the last.
        assert_eq!(next_checkpoint(CHECKPOINT_BATCH, false, ms(2)), Some(ms(3)));
        assert_eq!(next_checkpoint(CHECKPOINT_BATCH + 9, false, ms(20)), Some(Duration::ZERO));
        // A few commits: a second after the last checkpoint.
        assert_eq!(next_checkpoint(3, false, ms(400)), Some(ms(600)));
        assert_eq!(next_checkpoint(3, false, ms(1_500)), Some(Duration::ZERO));
        // The last one left frames: again soon, commits or not.
        assert_eq!(next_checkpoint(0, true, ms(20)), Some(ms(30)));
        assert_eq!(next_checkpoint(3, true, ms(60)), Some(Duration::ZERO));
    }

    #[test]
    fn dollar_placeholders_should_become_numbered_question_marks() {
        assert_eq!(positional("UPDATE t SET a = $2 WHERE id = $1"), "UPDATE t SET a = ?2 WHERE id = ?1");
        assert_eq!(positional("SELECT 1"), "SELECT 1");
        assert_eq!(positional("SELECT '$x', $10"), "SELECT '$x', ?10");
        assert_eq!(positional("SELECT '$1 it''s', \"$2\", $3"), "SELECT '$1 it''s', \"$2\", ?3");
        assert_eq!(positional("SELECT 'Lạng Sơn', $1 || 'ở'"), "SELECT 'Lạng Sơn', ?1 || 'ở'");
    }

    #[test]
    fn many_placeholders_in_any_order_should_bind_by_number() {
        let mut conn = Connection::open_in_memory().unwrap();
        for n in [3, NAMED_MAX, NAMED_MAX + 1, 600] {
            // $n, $n-1, ..., $1: the reverse of the order SQLite numbers them in.
            let cols: Vec<String> = (1..=n).rev().map(|i| format!("${i} AS c{i}")).collect();
            let sql = format!("SELECT {}", cols.join(", "));
            assert_eq!(prepared_sql(&sql).1 == Placeholders::Named, n <= NAMED_MAX);
            let args: Vec<Arg> = (1..=n).map(|i| Arg::Int(i as i64 * 10)).collect();
            let rows = fetch(&mut conn, &sql, &args, usize::MAX).unwrap();
            for i in 1..=n {
                assert_eq!(rows[0].opt_int(&format!("c{i}")).unwrap(), Some(i as i64 * 10), "n={n} i={i}");
            }
        }
    }

    #[test]
    fn dollar_inside_literals_and_quoted_names_should_stay_text() {
        let mut conn = Connection::open_in_memory().unwrap();
        let rows = fetch(
            &mut conn,
            "SELECT '$1 it''s' AS lit, \"$2\" AS quoted, $1 || 'ở Lạng Sơn' AS arg FROM (SELECT 5 AS \"$2\")",
            &[Arg::Text("x".into())],
            usize::MAX,
        )
        .unwrap();
        assert_eq!(rows[0].opt_text("lit").unwrap().as_deref(), Some("$1 it's"));
        assert_eq!(rows[0].opt_int("quoted").unwrap(), Some(5));
        assert_eq!(rows[0].opt_text("arg").unwrap().as_deref(), Some("xở Lạng Sơn"));
    }

    #[test]
    fn placeholders_other_than_dollar_numbers_should_be_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert!(execute(&mut conn, "SELECT ?", &[Arg::Int(1)]).is_err());
        assert!(execute(&mut conn, "SELECT :a", &[Arg::Int(1)]).is_err());
        assert!(execute(&mut conn, "SELECT $0", &[Arg::Int(1)]).is_err());
        assert!(execute(&mut conn, "SELECT $2", &[Arg::Int(1)]).is_err());
    }

    #[test]
    fn numbered_parameters_should_bind_by_number_not_by_position() {
        let mut conn = Connection::open_in_memory().unwrap();
        execute(&mut conn, "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)", &[]).unwrap();
        execute(&mut conn, "INSERT INTO t (id, a) VALUES ($1, 'x')", &[Arg::Int(7)]).unwrap();
        let changed =
            execute(&mut conn, "UPDATE t SET a = $2 WHERE id = $1", &[Arg::Int(7), Arg::Text("y".into())])
                .unwrap();
        assert_eq!(changed, 1);
        let rows = fetch(&mut conn, "SELECT id, a, a IS NULL AS missing FROM t", &[], usize::MAX).unwrap();
        assert_eq!(rows[0].opt_int("id").unwrap(), Some(7));
        assert_eq!(rows[0].opt_text("a").unwrap().as_deref(), Some("y"));
        assert!(!rows[0].flag("missing").unwrap());
        assert!(rows[0].opt_int("a").is_err());
        assert!(rows[0].opt_int("nope").is_err());
    }

    #[test]
    fn a_wrong_number_of_arguments_should_be_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert!(execute(&mut conn, "SELECT $1", &[]).is_err());
        assert!(execute(&mut conn, "SELECT $1", &[Arg::Int(1), Arg::Int(2)]).is_err());
    }

    #[test]
    fn a_repeated_placeholder_should_take_one_argument() {
        let mut conn = Connection::open_in_memory().unwrap();
        let rows = fetch(
            &mut conn,
            "SELECT $2 AS b, '$1' AS literal, $1 + $1 AS twice",
            &[Arg::Int(4), Arg::Text("x".into())],
            usize::MAX,
        )
        .unwrap();
        assert_eq!(rows[0].opt_text("b").unwrap().as_deref(), Some("x"));
        assert_eq!(rows[0].opt_text("literal").unwrap().as_deref(), Some("$1"));
        assert_eq!(rows[0].opt_int("twice").unwrap(), Some(8));
    }
}
