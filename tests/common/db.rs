//! Fresh test databases on both backends: a SQLite file in a temporary folder, or a new
//! PostgreSQL database on the cluster `scripts/test.sh` starts (`CHOGATE_TEST_POSTGRES_URL`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use chogate::config::DatabaseConfig;
use sqlx::{AssertSqlSafe, Connection};

/// A fresh database, and a folder (the SQLite file lives there; tests put configuration
/// and CSV files there too) that lives as long as this.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    /// `[database]` pointing at it.
    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig { url: self.url.clone(), ..DatabaseConfig::default() }
    }

    /// A file in its folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Another fresh database of the same backend.
    pub async fn fresh(&self) -> TestDb {
        if self.url.starts_with("sqlite:") { sqlite_db() } else { postgres_db().await }
    }
}

pub fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chogate.db").display());
    TestDb { url, dir }
}

/// The URL of the test cluster; its absence is a failure, never a skip.
pub fn postgres_base_url() -> String {
    std::env::var("CHOGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "CHOGATE_TEST_POSTGRES_URL is not set: the PostgreSQL half of these tests needs a server. \
             Run scripts/test.sh, which starts a throwaway PostgreSQL cluster and sets it \
             (e.g. postgres://postgres@127.0.0.1:PORT/postgres)."
        )
    })
}

/// A new database on the test cluster.
pub async fn postgres_db() -> TestDb {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = postgres_base_url();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    let name =
        format!("chogate_test_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let mut admin =
        sqlx::PgConnection::connect(&base).await.expect("cannot connect to CHOGATE_TEST_POSTGRES_URL");
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    let (before_query, query) = match base.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (base.as_str(), String::new()),
    };
    let (server, _) = before_query.rsplit_once('/').expect("CHOGATE_TEST_POSTGRES_URL has no database path");
    TestDb { url: format!("{server}/{name}{query}"), dir: tempfile::tempdir().unwrap() }
}

/// Runs each listed test function on both backends: `sqlite::name` and `postgres::name`.
/// The functions take a [`TestDb`].
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::db::sqlite_db()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::db::postgres_db().await).await
                }
            )*
        }
    };
}
