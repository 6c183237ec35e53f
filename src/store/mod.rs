//! The durable store: SQLite (the default: one file, no server) or PostgreSQL (one database
//! shared by several gateway nodes), chosen by `[database] url`.
//!
//! Not sqlx's `Any`: [`Store`] is an enum over the two concrete backends, and [`Conn`] runs
//! one statement on a concrete connection of either kind, binding [`Arg`]s and handing back
//! [`Row`]s. The SQL above this layer is written once, with `$1` placeholders (which both
//! SQLite and PostgreSQL accept) and types both understand (`BIGINT` ids and times in
//! milliseconds, text, booleans); where the backends differ (batch inserts, the write lock,
//! migrations, connection settings) this module picks the form for each.
//!
//! Writes go through one writer connection ([`Store::writer`]) owned by the market's
//! group-commit task; reads use a pool ([`Store::read`]).

mod postgres;
mod sqlite;

pub use sqlite::Checkpointer;

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Postgres, Row as _, SqlSafeStr};

use crate::config::DatabaseConfig;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Everything that can go wrong in the store. Each message says its cause (logs print
/// them alone) and none has a `source()`, so a chain printed with `{:#}` says it once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused a statement or the connection failed.
    #[error("database: {0}")]
    Db(sqlx::Error),
    /// SQLite refused a statement or could not open the file.
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    /// A column is missing from a row, or holds a value of another type.
    #[error("column {column}: {reason}")]
    Column {
        /// The column.
        column: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database file (or its -wal or -shm) could not be created or made private.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The writer's thread could not be started.
    #[error("cannot start the writer thread: {0}")]
    Thread(String),
    /// A migration could not be applied (or an applied one was changed).
    #[error("migration: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// The `[database] url` cannot be used.
    #[error("database url: {0}")]
    Url(String),
    /// The embedded seed data (communes, products) is malformed.
    #[error("seed data: {0}")]
    Seed(String),
    /// A column holds a value the code does not know (e.g. an unknown status).
    #[error("unexpected value {value:?} in column {column}")]
    Corrupt {
        /// The column.
        column: &'static str,
        /// What it held.
        value: String,
    },
    /// The store was closed or its writer has stopped (shutdown): nothing more can be
    /// read or written.
    #[error("the database is closed")]
    Closed,
    /// The action was rolled back (a deadlock with another node's writer, a lock timeout) or
    /// the transaction that carried it failed as a whole (then, if the commit itself failed,
    /// whether it was applied is not known). Repeating the action with the same idempotency
    /// key is safe.
    #[error("the transaction failed ({0}); repeat the action with the same idempotency key")]
    TransactionFailed(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}

impl StoreError {
    /// A foreign key pointed at no row (SQLite's `SQLITE_CONSTRAINT_FOREIGNKEY`,
    /// PostgreSQL's `23503`).
    pub fn is_foreign_key_violation(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
            }
            StoreError::Db(sqlx::Error::Database(db)) => db.code().as_deref() == Some("23503"),
            _ => false,
        }
    }

    /// The database cannot be reached just now (no connection free in time, the pool
    /// closed, the socket failed): worth answering "try again later" rather than an error.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Closed
                | StoreError::Db(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_))
        )
    }

    /// Why the transaction was rolled back for a reason that repeating it may not meet again:
    /// a deadlock with another node's writer, a serialization failure or a lock timeout
    /// (PostgreSQL `40P01`, `40001`, `55P03`). `None` for every other error.
    pub fn retryable_reason(&self) -> Option<String> {
        match self {
            StoreError::Db(sqlx::Error::Database(db))
                if matches!(db.code().as_deref(), Some("40P01" | "40001" | "55P03")) =>
            {
                Some(db.message().to_owned())
            }
            _ => None,
        }
    }
}

/// SQL put together at run time from the store's callers' own fixed pieces (a number of
/// placeholders, say), never from input: values always go in the arguments.
pub fn built_sql(sql: String) -> impl SqlSafeStr {
    sqlx::AssertSqlSafe(sql)
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (WAL mode).
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// The database, either kind: a read pool plus what is needed to open the writer connection.
#[derive(Debug, Clone)]
pub enum Store {
    /// SQLite.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PgStore),
}

impl Store {
    /// Opens the database named by `cfg.url` (creating a SQLite file if missing) and runs the
    /// migrations.
    pub async fn open(cfg: &DatabaseConfig) -> Result<Store, StoreError> {
        let store = Self::connect(cfg).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the database without running the migrations.
    pub async fn connect(cfg: &DatabaseConfig) -> Result<Store, StoreError> {
        let url = cfg.url.as_str();
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::connect(cfg)?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::connect(cfg).await?))
        } else {
            Err(StoreError::Url("must start with sqlite:, postgres:// or postgresql://".to_owned()))
        }
    }

    /// The SQLite database file (None: PostgreSQL).
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        match self {
            Store::Sqlite(s) => Some(s.path()),
            Store::Postgres(_) => None,
        }
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the migrations not applied yet (`migrations/sqlite` or `migrations/postgres`,
    /// embedded at build time). On PostgreSQL an advisory lock keeps two nodes from migrating
    /// at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = migrator(self.backend());
        match self {
            Store::Sqlite(s) => {
                let mut conn = s.migration_conn().await?;
                let result = migrator.run(&mut conn).await;
                sqlx::Connection::close(conn).await?;
                result?;
            }
            Store::Postgres(s) => migrator.run(s.pool()).await?,
        }
        Ok(())
    }

    /// The versions of the migrations applied to the database, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let mut r = self.read().await?;
        let rows = r
            .conn()
            .fetch_all("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version", Vec::new())
            .await?;
        rows.iter().map(|row| row.int("version")).collect()
    }

    /// A connection from the read pool.
    pub async fn read(&self) -> Result<ReadConn, StoreError> {
        Ok(match self {
            Store::Sqlite(s) => ReadConn::Sqlite(s.read()?),
            // Boxed: sqlx's acquire future is ~8.5 KB, and without the box every future that
            // reads the database (each USSD step's) would carry that space and copy it
            // whenever it is moved, SQLite or not.
            Store::Postgres(s) => ReadConn::Postgres(Box::pin(s.pool().acquire()).await?),
        })
    }

    /// A new dedicated connection for the writer task.
    pub async fn writer(&self) -> Result<WriterConn, StoreError> {
        Ok(match self {
            Store::Sqlite(s) => {
                let (conn, checkpointer) = s.writer()?;
                WriterConn::Sqlite(conn, checkpointer)
            }
            Store::Postgres(s) => WriterConn::Postgres(s.connect_writer().await?),
        })
    }

    /// SQLite: waits until every commit made so far is in the database file itself, not
    /// only in its WAL (the checkpointer tries again every 50 ms while a reader on an older
    /// snapshot keeps the last pages from being copied). PostgreSQL: at once.
    pub async fn checkpointed(&self) {
        if let Store::Sqlite(s) = self {
            s.checkpointed().await;
        }
    }

    /// Closes the read pool: PostgreSQL waits for borrowed connections to come back, SQLite
    /// refuses new readers at once.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close(),
            Store::Postgres(s) => s.pool().close().await,
        }
    }
}

/// The migrations embedded for a backend: (version, description, SQL). The files follow
/// sqlx's naming (`0001_init.sql`), so `sqlx migrate` could read the folders as well.
pub fn migrations(backend: Backend) -> &'static [(i64, &'static str, &'static str)] {
    match backend {
        Backend::Sqlite => &[
            (1, "init", include_str!("../../migrations/sqlite/0001_init.sql")),
            (2, "outbox_parts", include_str!("../../migrations/sqlite/0002_outbox_parts.sql")),
            (3, "api", include_str!("../../migrations/sqlite/0003_api.sql")),
            (4, "outbox_indexes", include_str!("../../migrations/sqlite/0004_outbox_indexes.sql")),
            (5, "lean_writes", include_str!("../../migrations/sqlite/0005_lean_writes.sql")),
            (6, "plain_checks", include_str!("../../migrations/sqlite/0006_plain_checks.sql")),
            (7, "event_counts", include_str!("../../migrations/sqlite/0007_event_counts.sql")),
            (
                8,
                "sms_keys_receipt_sweep",
                include_str!("../../migrations/sqlite/0008_sms_keys_receipt_sweep.sql"),
            ),
            (9, "household_flows", include_str!("../../migrations/sqlite/0009_household_flows.sql")),
            (10, "order_delivery", include_str!("../../migrations/sqlite/0010_order_delivery.sql")),
            (11, "retention", include_str!("../../migrations/sqlite/0011_retention.sql")),
        ],
        Backend::Postgres => &[
            (1, "init", include_str!("../../migrations/postgres/0001_init.sql")),
            (2, "outbox_parts", include_str!("../../migrations/postgres/0002_outbox_parts.sql")),
            (3, "api", include_str!("../../migrations/postgres/0003_api.sql")),
            (4, "outbox_indexes", include_str!("../../migrations/postgres/0004_outbox_indexes.sql")),
            (5, "lean_writes", include_str!("../../migrations/postgres/0005_lean_writes.sql")),
            (
                6,
                "sms_keys_receipt_sweep",
                include_str!("../../migrations/postgres/0006_sms_keys_receipt_sweep.sql"),
            ),
            (7, "household_flows", include_str!("../../migrations/postgres/0007_household_flows.sql")),
            (8, "order_delivery", include_str!("../../migrations/postgres/0008_order_delivery.sql")),
            (9, "retention", include_str!("../../migrations/postgres/0009_retention.sql")),
        ],
    }
}

fn migrator(backend: Backend) -> Migrator {
    let list = migrations(backend)
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                sql.into_sql_str(),
                // sqlx's convention for a file that runs its own transactions.
                sql.starts_with("-- no-transaction"),
            )
        })
        .collect();
    Migrator::with_migrations(list)
}

/// A connection borrowed from the read pool.
pub enum ReadConn {
    /// SQLite.
    Sqlite(sqlite::Reader),
    /// PostgreSQL.
    Postgres(PoolConnection<Postgres>),
}

impl ReadConn {
    /// The connection, to run statements on.
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            ReadConn::Sqlite(c) => match c.conn() {
                Some(c) => Conn::Sqlite(c),
                None => Conn::Gone,
            },
            ReadConn::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// The writer task's own connection.
pub enum WriterConn {
    /// SQLite, with the thread that checkpoints its WAL (if it could be had).
    Sqlite(rusqlite::Connection, Option<sqlite::Checkpointer>),
    /// PostgreSQL.
    Postgres(PgConnection),
}

impl WriterConn {
    /// The connection, to run statements on.
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            WriterConn::Sqlite(c, _) => Conn::Sqlite(c),
            WriterConn::Postgres(c) => Conn::Postgres(c),
        }
    }

    /// After each commit: SQLite's checkpointer is woken.
    pub fn committed(&self) {
        if let WriterConn::Sqlite(_, Some(checkpointer)) = self {
            checkpointer.committed();
        }
    }

    /// Closes the connection cleanly (errors are of no use at this point and are dropped).
    pub async fn close(self) {
        use sqlx::Connection as _;
        match self {
            WriterConn::Sqlite(c, checkpointer) => {
                // The checkpoint under way ends first; then the connection.
                drop(checkpointer);
                let _ = c.close();
            }
            WriterConn::Postgres(c) => {
                let _ = c.close().await;
            }
        }
    }
}

/// A bind value.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// An integer (`INTEGER` / `BIGINT`).
    Int(i64),
    /// An integer or NULL.
    OptInt(Option<i64>),
    /// Text.
    Text(String),
    /// Text or NULL.
    OptText(Option<String>),
    /// A boolean (stored as 0/1 by SQLite).
    Bool(bool),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}

impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::OptText(v)
    }
}

impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

/// Builds a `Vec<Arg>` from values convertible into [`Arg`]: `args![id, name, true]`.
#[macro_export]
macro_rules! args {
    () => { ::std::vec::Vec::<$crate::store::Arg>::new() };
    ($($v:expr),+ $(,)?) => { ::std::vec![$($crate::store::Arg::from($v)),+] };
}

/// The type of a column in a batch insert ([`Conn::insert_rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// `BIGINT` / `INTEGER`.
    Int,
    /// `TEXT`.
    Text,
    /// `TEXT` that may be NULL.
    OptText,
    /// JSON given as text (`JSONB` on PostgreSQL, `TEXT` on SQLite).
    Json,
}

/// Most values in one IN list ([`Conn::fetch_in`]).
const IN_CHUNK: usize = 512;

/// Pads a chunk of rows (or IN-list values) to a power of two by repeating its last one.
///
/// A statement's text depends on how many rows it carries, and each text is prepared once
/// per connection and kept: padding bounds the texts of one statement to ten (1, 2, 4, …,
/// 512), all prepared after warm-up, instead of one per batch size. The repeats change
/// nothing: an IN list is a set, and `UPDATE … FROM v` / `… IN (SELECT id FROM v)` touch
/// each target row once.
pub fn pad<T: Clone>(chunk: &mut Vec<T>) {
    if let Some(last) = chunk.last().cloned() {
        chunk.resize(chunk.len().next_power_of_two(), last);
    }
}

/// `$1, $2, …, $n`.
pub fn numbered(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// A connection of either backend, borrowed for a few statements.
pub enum Conn<'c> {
    /// SQLite (statements run in the calling thread).
    Sqlite(&'c mut rusqlite::Connection),
    /// PostgreSQL.
    Postgres(&'c mut PgConnection),
    /// A reader whose connection was already handed back (never happens; every statement
    /// on it fails).
    Gone,
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                Arg::Int(v) => q.bind(v),
                Arg::OptInt(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::OptText(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
            };
        }
        q
    }};
}

impl Conn<'_> {
    /// Which backend this connection belongs to.
    pub fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) | Conn::Gone => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs a statement; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: impl SqlSafeStr, args: Vec<Arg>) -> Result<u64, StoreError> {
        Ok(match self {
            Conn::Sqlite(c) => sqlite::execute(c, sql.into_sql_str().as_str(), &args)?,
            Conn::Postgres(c) => {
                bind_all!(sqlx::query::<Postgres>(sql), args).execute(&mut **c).await?.rows_affected()
            }
            Conn::Gone => return Err(StoreError::Closed),
        })
    }

    /// Runs a query; returns every row.
    pub async fn fetch_all(&mut self, sql: impl SqlSafeStr, args: Vec<Arg>) -> Result<Vec<Row>, StoreError> {
        Ok(match self {
            Conn::Sqlite(c) => sqlite::fetch(c, sql.into_sql_str().as_str(), &args, usize::MAX)?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Conn::Gone => return Err(StoreError::Closed),
            Conn::Postgres(c) => bind_all!(sqlx::query::<Postgres>(sql), args)
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    /// Runs a query; returns its first row, if any.
    pub async fn fetch_optional(
        &mut self,
        sql: impl SqlSafeStr,
        args: Vec<Arg>,
    ) -> Result<Option<Row>, StoreError> {
        Ok(match self {
            Conn::Sqlite(c) => {
                sqlite::fetch(c, sql.into_sql_str().as_str(), &args, 1)?.into_iter().next().map(Row::Sqlite)
            }
            Conn::Gone => return Err(StoreError::Closed),
            Conn::Postgres(c) => bind_all!(sqlx::query::<Postgres>(sql), args)
                .fetch_optional(&mut **c)
                .await?
                .map(Row::Postgres),
        })
    }

    /// Runs a query that returns exactly one row.
    pub async fn fetch_one(&mut self, sql: impl SqlSafeStr, args: Vec<Arg>) -> Result<Row, StoreError> {
        Ok(match self {
            Conn::Sqlite(c) => {
                match sqlite::fetch(c, sql.into_sql_str().as_str(), &args, 1)?.into_iter().next() {
                    Some(row) => Row::Sqlite(row),
                    None => return Err(StoreError::Db(sqlx::Error::RowNotFound)),
                }
            }
            Conn::Gone => return Err(StoreError::Closed),
            Conn::Postgres(c) => {
                Row::Postgres(bind_all!(sqlx::query::<Postgres>(sql), args).fetch_one(&mut **c).await?)
            }
        })
    }

    /// Runs an `INSERT` (written without `RETURNING`) into a table keyed by `id`; returns
    /// the new row's id, or `None` when no row went in (`ON CONFLICT DO NOTHING`). SQLite
    /// reads the id with `last_insert_rowid()`: its `RETURNING` collects the rows in a
    /// temporary B-tree opened and closed per statement (~1 µs on the writer, per row).
    /// PostgreSQL gets `RETURNING id`.
    pub async fn insert_or_skip(
        &mut self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<Option<i64>, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let inserted = sqlite::execute(c, sql, &args)?;
                Ok((inserted > 0).then(|| c.last_insert_rowid()))
            }
            Conn::Postgres(_) => {
                // Audited: the caller's static SQL and a static suffix; every value is bound.
                let text = sqlx::AssertSqlSafe(format!("{sql} RETURNING id"));
                self.fetch_optional(text, args).await?.map(|row| row.int("id")).transpose()
            }
            Conn::Gone => Err(StoreError::Closed),
        }
    }

    /// [`Conn::insert_or_skip`] for an `INSERT` that always inserts its row.
    pub async fn insert(&mut self, sql: &'static str, args: Vec<Arg>) -> Result<i64, StoreError> {
        self.insert_or_skip(sql, args).await?.ok_or(StoreError::Db(sqlx::Error::RowNotFound))
    }

    /// Runs the query `sql` builds around an IN list (`$1, $2, …`) once per chunk of
    /// `values`, each chunk padded (see [`pad`]); returns the rows of all the chunks.
    pub async fn fetch_in(
        &mut self,
        sql: impl Fn(&str) -> String,
        values: Vec<Arg>,
    ) -> Result<Vec<Row>, StoreError> {
        let mut rows = Vec::new();
        for chunk in values.chunks(IN_CHUNK) {
            let mut chunk = chunk.to_vec();
            pad(&mut chunk);
            // Audited: the text holds the caller's static SQL and numbered placeholders;
            // every value is bound.
            let text = sql(&numbered(chunk.len()));
            rows.extend(self.fetch_all(sqlx::AssertSqlSafe(text), chunk).await?);
        }
        Ok(rows)
    }

    /// Runs SQL without parameters (transaction control, savepoints).
    pub async fn raw(&mut self, sql: &'static str) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => sqlite::batch(c, sql)?,
            Conn::Postgres(c) => {
                sqlx::raw_sql(sql).execute(&mut **c).await?;
            }
            Conn::Gone => return Err(StoreError::Closed),
        }
        Ok(())
    }

    /// Starts the writer's transaction: `BEGIN IMMEDIATE` on SQLite (takes the write lock at
    /// once, so a commit never fails for a lock taken by another process meanwhile), `BEGIN`
    /// on PostgreSQL.
    pub async fn begin_write(&mut self) -> Result<(), StoreError> {
        match self.backend() {
            Backend::Sqlite => self.raw("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.raw("BEGIN").await,
        }
    }

    /// Inserts many rows with as few statements as possible: one prepared statement run
    /// per row on SQLite (no round trip), one `INSERT ... SELECT FROM UNNEST`
    /// of array binds on PostgreSQL. Every row must have one value per column, of the
    /// column's type. With `ignore_conflicts`, rows that would break a unique constraint
    /// are skipped (`ON CONFLICT DO NOTHING`). Returns the number of rows inserted.
    pub async fn insert_rows(
        &mut self,
        table: &'static str,
        columns: &'static [(&'static str, ColType)],
        rows: Vec<Vec<Arg>>,
        ignore_conflicts: bool,
    ) -> Result<u64, StoreError> {
        let suffix = if ignore_conflicts { " ON CONFLICT DO NOTHING" } else { "" };
        if rows.is_empty() {
            return Ok(0);
        }
        if let Some(bad) = rows.iter().find(|r| r.len() != columns.len()) {
            return Err(StoreError::Corrupt {
                column: "insert_rows",
                value: format!("{} values", bad.len()),
            });
        }
        let names = columns.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        match self.backend() {
            Backend::Sqlite => {
                // One prepared single-row statement, run per row: without a thread
                // hand-off per statement this is as fast as a multi-row VALUES, and its
                // text (hence its prepared statement) is the same for any number of rows.
                let Conn::Sqlite(c) = self else {
                    return Err(StoreError::Closed);
                };
                let sql =
                    format!("INSERT INTO {table} ({names}) VALUES ({}){suffix}", numbered(columns.len()));
                sqlite::execute_each(c, &sql, rows.iter().map(Vec::as_slice))
            }
            Backend::Postgres => {
                let Conn::Postgres(c) = self else {
                    return Err(StoreError::Corrupt { column: "insert_rows", value: "backend".to_owned() });
                };
                postgres::insert_unnest(c, table, columns, rows, suffix).await
            }
        }
    }
}

/// A result row of either backend.
pub enum Row {
    /// SQLite.
    Sqlite(sqlite::LiteRow),
    /// PostgreSQL.
    Postgres(PgRow),
}

impl Row {
    /// An integer column.
    pub fn int(&self, col: &str) -> Result<i64, StoreError> {
        Ok(match self {
            Row::Sqlite(r) => r.opt_int(col)?.ok_or_else(|| null(col))?,
            Row::Postgres(r) => r.try_get(col)?,
        })
    }

    /// An integer column that may be NULL.
    pub fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        Ok(match self {
            Row::Sqlite(r) => r.opt_int(col)?,
            Row::Postgres(r) => r.try_get(col)?,
        })
    }

    /// A text column.
    pub fn text(&self, col: &str) -> Result<String, StoreError> {
        Ok(match self {
            Row::Sqlite(r) => r.opt_text(col)?.ok_or_else(|| null(col))?,
            Row::Postgres(r) => r.try_get(col)?,
        })
    }

    /// A text column that may be NULL.
    pub fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        Ok(match self {
            Row::Sqlite(r) => r.opt_text(col)?,
            Row::Postgres(r) => r.try_get(col)?,
        })
    }

    /// A boolean column or expression (`BOOLEAN` on PostgreSQL, 0/1 on SQLite).
    pub fn flag(&self, col: &str) -> Result<bool, StoreError> {
        Ok(match self {
            Row::Sqlite(r) => r.flag(col)?,
            Row::Postgres(r) => r.try_get(col)?,
        })
    }
}

fn null(col: &str) -> StoreError {
    StoreError::Column { column: col.to_owned(), reason: "unexpected NULL".to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_should_be_embedded() {
        for (backend, dir) in
            [(Backend::Sqlite, "migrations/sqlite"), (Backend::Postgres, "migrations/postgres")]
        {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            let mut files: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect();
            files.sort();
            let embedded: Vec<String> =
                migrations(backend).iter().map(|(v, d, _)| format!("{v:04}_{d}.sql")).collect();
            assert_eq!(files, embedded, "{dir}");
        }
    }

    /// A SQLite store whose file has the migrations up to `version` applied and holds what
    /// `fill` (SQL run on that version's schema, foreign keys on) puts in it.
    async fn sqlite_at(dir: &tempfile::TempDir, version: i64, fill: &str) -> Store {
        let cfg = crate::config::DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("m.db").display()),
            ..Default::default()
        };
        let store = Store::connect(&cfg).await.unwrap();
        let Store::Sqlite(s) = &store else { unreachable!("a SQLite URL") };
        let mut conn = s.migration_conn().await.unwrap();
        let mut up_to = migrator(Backend::Sqlite);
        up_to.migrations = std::borrow::Cow::Owned(
            up_to.migrations.iter().filter(|m| m.version <= version).cloned().collect(),
        );
        up_to.run(&mut conn).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(fill.to_owned())).execute(&mut conn).await.unwrap();
        sqlx::Connection::close(conn).await.unwrap();
        store
    }

    #[tokio::test]
    async fn idempotency_keys_should_survive_the_lean_writes_migration() {
        let dir = tempfile::tempdir().unwrap();
        // A database as the releases before migration 5 left it, with a key used.
        let store = sqlite_at(
            &dir,
            4,
            "INSERT INTO idempotency_keys (idem_key, kind, result_id, outcome, at_ms) \
             VALUES ('d1:5', 'create_listing', 42, 'ok', 7)",
        )
        .await;
        store.migrate().await.unwrap();
        let mut r = store.read().await.unwrap();
        let mut c = r.conn();
        let key = c
            .fetch_one("SELECT kind, result_id, outcome, at_ms FROM idempotency_keys", args![])
            .await
            .unwrap();
        assert_eq!(
            (key.text("kind").unwrap(), key.opt_int("result_id").unwrap(), key.int("at_ms").unwrap()),
            ("create_listing".to_owned(), Some(42), 7)
        );
        let table = c
            .fetch_one("SELECT sql FROM sqlite_master WHERE name = 'idempotency_keys'", args![])
            .await
            .unwrap()
            .text("sql")
            .unwrap();
        assert!(table.ends_with("WITHOUT ROWID"), "{table}");
        let gone = c
            .fetch_all("SELECT name FROM sqlite_master WHERE name = 'events_subject'", args![])
            .await
            .unwrap();
        assert!(gone.is_empty());
    }

    #[tokio::test]
    async fn event_counts_should_start_from_the_events_there_and_replace_the_kind_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_at(
            &dir,
            6,
            "INSERT INTO events (at_ms, actor, channel, kind, subject) VALUES
                 (1, 'a', 'ussd', 'dialogue_closed', 's'), (2, 'a', 'ussd', 'listing_created', 's'),
                 (3, 'b', 'ussd', 'dialogue_closed', 's'), (4, 'b', 'cli', 'village_created', 's');",
        )
        .await;
        store.migrate().await.unwrap();
        let mut r = store.read().await.unwrap();
        let mut c = r.conn();
        let rows = c.fetch_all("SELECT kind, n FROM event_counts ORDER BY kind", args![]).await.unwrap();
        let counts: Vec<(String, i64)> =
            rows.iter().map(|r| (r.text("kind").unwrap(), r.int("n").unwrap())).collect();
        assert_eq!(
            counts,
            [
                ("dialogue_closed".to_owned(), 2),
                ("listing_created".to_owned(), 1),
                ("village_created".to_owned(), 1)
            ]
        );
        let index =
            c.fetch_all("SELECT name FROM sqlite_master WHERE name = 'events_kind'", args![]).await.unwrap();
        assert!(index.is_empty());
    }

    #[tokio::test]
    async fn rebuilt_tables_should_keep_their_rows_constraints_and_references() {
        let dir = tempfile::tempdir().unwrap();
        // Version 5, with a row in each table migration 6 rebuilds and in one that refers to
        // them.
        let store = sqlite_at(
            &dir,
            5,
            "INSERT INTO communes (code, name, kind) VALUES (6001, 'Xã A', 'xã');
             INSERT INTO villages (id, commune_code, name, name_key, created_at_ms) VALUES (1, 6001, 'B', 'b', 1);
             INSERT INTO households (id, msisdn, name, village_id, language, created_at_ms)
                 VALUES (1, '84912345678', 'C', 1, 'vi', 1);
             INSERT INTO products (id, code, name_vi, name_en, unit, min_price, max_price, sort_order)
                 VALUES (1, 'na', 'Na', 'Custard apple', 'kg', 1, 100, 1);
             INSERT INTO listings (id, household_id, product_id, quantity_kg, price_per_kg, status, created_at_ms,
                 updated_at_ms) VALUES (7, 1, 1, 10, 25, 'sold_out', 2, 3);
             INSERT INTO orders (id, listing_id, household_id, buyer_name, quantity_kg, amount, status,
                 created_at_ms, updated_at_ms) VALUES (8, 7, 1, 'D', 10, 250, 'paid', 4, 5);
             INSERT INTO payments (order_id, household_id, amount, at_ms, actor, channel)
                 VALUES (8, 1, 250, 6, 'gw', 'http');
             INSERT INTO events (id, at_ms, actor, channel, kind, subject, data)
                 VALUES (9, 6, 'cli', 'cli', 'k', 's', '{}');
             INSERT INTO outbox (id, msisdn, text, lang, kind, status, created_at_ms, expires_at_ms,
                 next_attempt_at_ms) VALUES (10, '84912345678', 't', 'en', 'k', 'expired', 7, 8, 7);
             INSERT INTO outbox_parts (outbox_id, part, smsc, message_id, status)
                 VALUES (10, 1, 'gw', 'm1', 'failed');",
        )
        .await;
        store.migrate().await.unwrap();
        let mut r = store.read().await.unwrap();
        let mut c = r.conn();
        let kept = c
            .fetch_one(
                "SELECT l.status AS listing, o.status AS ord, e.channel AS channel, x.status AS sms, \
                 p.status AS part, pay.amount AS paid \
                 FROM listings l JOIN orders o ON o.listing_id = l.id JOIN payments pay ON pay.order_id = o.id, \
                 events e, outbox x JOIN outbox_parts p ON p.outbox_id = x.id",
                args![],
            )
            .await
            .unwrap();
        assert_eq!(
            ["listing", "ord", "channel", "sms", "part"].map(|col| kept.text(col).unwrap()),
            ["sold_out", "paid", "cli", "expired", "failed"]
        );
        assert_eq!(kept.int("paid").unwrap(), 250);
        assert!(c.fetch_all("PRAGMA foreign_key_check", args![]).await.unwrap().is_empty());
        drop(r);

        let mut w = store.writer().await.unwrap();
        let mut c = w.conn();
        // The CHECKs, the foreign keys and the append-only triggers still hold.
        for refused in [
            "UPDATE listings SET status = 'gone' WHERE id = 7",
            "UPDATE orders SET status = 'lost' WHERE id = 8",
            "INSERT INTO events (at_ms, actor, channel, kind, subject) VALUES (1, 'a', 'fax', 'k', 's')",
            "UPDATE outbox SET status = 'lost' WHERE id = 10",
            "UPDATE outbox_parts SET status = 'lost' WHERE outbox_id = 10",
            "INSERT INTO orders (listing_id, household_id, buyer_name, quantity_kg, amount, status, \
             created_at_ms, updated_at_ms) VALUES (99, 1, 'D', 1, 1, 'new', 1, 1)",
            "INSERT INTO outbox_parts (outbox_id, part, smsc, message_id) VALUES (99, 1, 'gw', 'm')",
            "UPDATE events SET kind = 'x' WHERE id = 9",
            "DELETE FROM events WHERE id = 9",
        ] {
            // Audited: constant test statements.
            assert!(c.execute(sqlx::AssertSqlSafe(refused), args![]).await.is_err(), "{refused}");
        }
        // And the ids still come from the rowid.
        let id = c
            .insert(
                "INSERT INTO listings (household_id, product_id, quantity_kg, price_per_kg, status, \
                 created_at_ms, updated_at_ms) VALUES ($1, 1, 5, 20, 'active', 9, 9)",
                args![1],
            )
            .await
            .unwrap();
        assert_eq!(id, 8);
        let skipped = c
            .insert_or_skip(
                "INSERT INTO households (msisdn, name, village_id, language, created_at_ms) \
                 VALUES ('84912345678', 'E', 1, 'vi', 1) ON CONFLICT (msisdn) DO NOTHING",
                args![],
            )
            .await
            .unwrap();
        assert_eq!(skipped, None);
    }

    #[test]
    fn chunks_should_be_padded_to_a_power_of_two_with_their_last_row() {
        let mut v = vec![1, 2, 3];
        pad(&mut v);
        assert_eq!(v, [1, 2, 3, 3]);
        let mut v = vec![7];
        pad(&mut v);
        assert_eq!(v, [7]);
        let mut v: Vec<i32> = (0..300).collect();
        pad(&mut v);
        assert_eq!((v.len(), v[511]), (512, 299));
        let mut v: Vec<i32> = Vec::new();
        pad(&mut v);
        assert!(v.is_empty());
    }

    #[test]
    fn args_macro_should_convert_values() {
        let name = String::from("x");
        let a = args![1_i64, "a", &name, true, None::<i64>, Some("y".to_owned())];
        assert_eq!(
            a,
            vec![
                Arg::Int(1),
                Arg::Text("a".into()),
                Arg::Text("x".into()),
                Arg::Bool(true),
                Arg::OptInt(None),
                Arg::OptText(Some("y".into()))
            ]
        );
    }
}
