//! The SQLite backend: one file in WAL mode, foreign keys on, one writer connection and a
//! read pool.
//!
//! Durability: with `synchronous = FULL` (the default) each commit is flushed to the WAL on
//! disk before it returns, so every acknowledged action survives a crash of chogate and a
//! power loss; group commit pays that flush once per group, not once per action. With
//! `normal` a crash of chogate (SIGKILL included) still loses nothing that was committed,
//! but a power loss may lose the last commits.

use std::str::FromStr;

use sqlx::ConnectOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous as Sync,
};

use super::StoreError;
use crate::config::{DatabaseConfig, SqliteSynchronous};

/// A SQLite database: the read pool and the options for the writer connection.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    options: SqliteConnectOptions,
}

impl SqliteStore {
    /// Opens (creating the file if missing) the database at `cfg.url` (`sqlite://path`).
    pub async fn connect(cfg: &DatabaseConfig) -> Result<SqliteStore, StoreError> {
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
            .busy_timeout(cfg.busy_timeout());
        let pool = SqlitePoolOptions::new()
            .max_connections(cfg.read_pool)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        Ok(SqliteStore { pool, options })
    }

    /// The read pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A new connection for the writer task.
    pub async fn connect_writer(&self) -> Result<SqliteConnection, StoreError> {
        Ok(self.options.connect().await?)
    }
}
