//! The PostgreSQL backend: a read pool, one writer connection per node, batch inserts as
//! `INSERT ... SELECT FROM UNNEST($1::bigint[], ...)` with one array bind per column.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions};

use super::{Arg, ColType, StoreError};
use crate::config::DatabaseConfig;

/// A PostgreSQL database: the read pool and the options for the writer connection.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    options: Box<PgConnectOptions>,
}

impl PgStore {
    /// Connects to the database at `cfg.url` (`postgres://user@host:port/db`).
    pub async fn connect(cfg: &DatabaseConfig) -> Result<PgStore, StoreError> {
        let lock_timeout = format!("{}ms", cfg.busy_timeout_ms);
        let options = PgConnectOptions::from_str(&cfg.url)?
            .application_name("chogate")
            .options([("lock_timeout", lock_timeout.as_str())]);
        let pool = PgPoolOptions::new().max_connections(cfg.read_pool).connect_with(options.clone()).await?;
        Ok(PgStore { pool, options: Box::new(options) })
    }

    /// The read pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A new connection for the writer task.
    pub async fn connect_writer(&self) -> Result<PgConnection, StoreError> {
        Ok(self.options.connect().await?)
    }
}

/// One column's values, as the array bound for it.
enum Column {
    Int(Vec<i64>),
    Text(Vec<String>),
    OptText(Vec<Option<String>>),
}

/// Inserts `rows` with one statement: each column becomes an array parameter, unnested.
pub(super) async fn insert_unnest(
    conn: &mut PgConnection,
    table: &'static str,
    columns: &'static [(&'static str, ColType)],
    rows: Vec<Vec<Arg>>,
    suffix: &'static str,
) -> Result<u64, StoreError> {
    let mut arrays: Vec<Column> = columns
        .iter()
        .map(|(_, t)| match t {
            ColType::Int => Column::Int(Vec::with_capacity(rows.len())),
            ColType::Text | ColType::Json => Column::Text(Vec::with_capacity(rows.len())),
            ColType::OptText => Column::OptText(Vec::with_capacity(rows.len())),
        })
        .collect();
    for row in rows {
        for (i, (arg, column)) in row.into_iter().zip(arrays.iter_mut()).enumerate() {
            match (column, arg) {
                (Column::Int(v), Arg::Int(x)) => v.push(x),
                (Column::Text(v), Arg::Text(x)) => v.push(x),
                (Column::OptText(v), Arg::OptText(x)) => v.push(x),
                (Column::OptText(v), Arg::Text(x)) => v.push(Some(x)),
                (_, other) => {
                    return Err(StoreError::Corrupt { column: columns[i].0, value: format!("{other:?}") });
                }
            }
        }
    }
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let selected: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, t))| match t {
            ColType::Json => format!("c{i}::jsonb"),
            _ => format!("c{i}"),
        })
        .collect();
    let unnested: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, t))| match t {
            ColType::Int => format!("${}::bigint[]", i + 1),
            _ => format!("${}::text[]", i + 1),
        })
        .collect();
    let aliases: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
    let sql = format!(
        "INSERT INTO {table} ({}) SELECT {} FROM UNNEST({}) AS u({}){suffix}",
        names.join(", "),
        selected.join(", "),
        unnested.join(", "),
        aliases.join(", ")
    );
    // Audited: the text holds only static table and column names and numbered
    // placeholders; every value is bound as an array.
    let mut query = sqlx::query::<sqlx::Postgres>(AssertSqlSafe(sql));
    for column in arrays {
        query = match column {
            Column::Int(v) => query.bind(v),
            Column::Text(v) => query.bind(v),
            Column::OptText(v) => query.bind(v),
        };
    }
    Ok(query.execute(conn).await?.rows_affected())
}
