//! The operator's commands over the database of `[database] url`: `migrate`,
//! `households import` / `export`, `seed-demo` and `stats`.
//!
//! Everything goes through the public [`Market`] API (so every change is an audited,
//! idempotent action of the group-commit writer) or, for bulk reads, through its
//! [`Store`](crate::store::Store). Output goes to the writers given, so the command line
//! passes stdout and stderr and tests can pass buffers.

mod demo;
mod households;

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Value, json};

pub use demo::{DemoSummary, seed_demo};
pub use households::{ImportOutcome, export_households, import_households};

use crate::config::DatabaseConfig;
use crate::market::{Market, MarketError, OrderStatus, Stats};
use crate::store::{Backend, Store, StoreError};

/// What the operator's commands fail at.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The market refused or failed.
    #[error(transparent)]
    Market(#[from] MarketError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read.
    #[error("{path}: cannot read it")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// An output file could not be created.
    #[error("{path}: cannot create it")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The output could not be written (a closed pipe, a full disk).
    #[error("writing the output")]
    Output(#[from] std::io::Error),
    /// The CSV output could not be written.
    #[error("writing CSV")]
    Csv(#[from] csv::Error),
    /// The CSV file cannot be imported at all (its header).
    #[error("{path}: {reason}")]
    Header {
        /// The file.
        path: String,
        /// What is wrong with the header.
        reason: String,
    },
    /// Some lines were refused, so nothing was imported.
    #[error("{path}: {rejected} of {lines} lines refused; nothing was imported")]
    Rejected {
        /// The file.
        path: String,
        /// Lines refused.
        rejected: usize,
        /// Lines read.
        lines: usize,
    },
}

/// Applies the migrations not applied yet and writes every applied version, newest
/// marked as such: `0003 api (applied now)`.
pub async fn migrate(db: &DatabaseConfig, out: &mut dyn Write) -> Result<Vec<i64>, ManageError> {
    let store = Store::connect(db).await?;
    // A new database has no migrations table yet.
    let before = store.applied_migrations().await.unwrap_or_default();
    let result = store.migrate().await;
    let applied = match result {
        Ok(()) => store.applied_migrations().await,
        Err(e) => Err(e),
    };
    store.close().await;
    let applied = applied?;
    let backend = match store.backend() {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    let names: BTreeMap<i64, &str> =
        crate::store::migrations(store.backend()).iter().map(|(v, d, _)| (*v, *d)).collect();
    writeln!(out, "{backend} database: {} migrations applied", applied.len())?;
    for v in &applied {
        let name = names.get(v).copied().unwrap_or("(unknown to this build)");
        let now = if before.contains(v) { "" } else { " (applied now)" };
        writeln!(out, "{v:04} {name}{now}")?;
    }
    Ok(applied)
}

/// The market's counts plus the audit events per kind.
#[derive(Debug, Clone)]
pub struct FullStats {
    /// [`Market::stats`].
    pub stats: Stats,
    /// Audit events per kind, by kind.
    pub events_by_kind: BTreeMap<String, i64>,
}

impl FullStats {
    /// Reads them.
    pub async fn read(market: &Market) -> Result<FullStats, ManageError> {
        let stats = market.stats().await?;
        let events_by_kind = market.events_by_kind().await?.into_iter().collect();
        Ok(FullStats { stats, events_by_kind })
    }

    /// Orders per status, every status present (0 when none), in the order of an order's
    /// life: new, accepted, shipped, delivered, paid, rejected, cancelled (then any other).
    pub fn orders(&self) -> Vec<(String, i64)> {
        use OrderStatus::*;
        let mut v: Vec<(String, i64)> = [New, Accepted, Shipped, Delivered, Paid, Rejected, Cancelled]
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
        for (status, n) in &self.stats.orders_by_status {
            match v.iter_mut().find(|(s, _)| s == status) {
                Some((_, c)) => *c = *n,
                None => v.push((status.clone(), *n)),
            }
        }
        v
    }

    /// Outbox SMS per status.
    pub fn outbox(&self) -> BTreeMap<String, i64> {
        self.stats.outbox_by_status.iter().cloned().collect()
    }

    /// One JSON object: `{"households": 31, "orders": {"new": 2, ...}, ...}`.
    pub fn to_json(&self) -> Value {
        let s = &self.stats;
        json!({
            "households": s.households,
            "listings": s.listings,
            "listings_active": s.listings_active,
            "orders": self.orders().into_iter().collect::<BTreeMap<_, _>>(),
            "orders_total": s.orders_by_status.iter().map(|(_, n)| n).sum::<i64>(),
            "payments": s.payments,
            "events": s.events,
            "events_by_kind": self.events_by_kind,
            "dialogues": s.dialogues,
            "outbox": self.outbox(),
            "outbox_total": s.outbox_by_status.iter().map(|(_, n)| n).sum::<i64>(),
        })
    }

    /// A table for people.
    pub fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let s = &self.stats;
        let row = |out: &mut dyn Write, label: &str, n: i64| writeln!(out, "{label:<28}{n:>10}");
        row(out, "households", s.households)?;
        row(out, "listings", s.listings)?;
        row(out, "  active", s.listings_active)?;
        row(out, "orders", s.orders_by_status.iter().map(|(_, n)| n).sum())?;
        for (status, n) in self.orders() {
            row(out, &format!("  {status}"), n)?;
        }
        row(out, "payments", s.payments)?;
        row(out, "USSD dialogues", s.dialogues)?;
        row(out, "outbox SMS", s.outbox_by_status.iter().map(|(_, n)| n).sum())?;
        for (status, n) in self.outbox() {
            row(out, &format!("  {status}"), n)?;
        }
        row(out, "audit events", s.events)?;
        for (kind, n) in &self.events_by_kind {
            row(out, &format!("  {kind}"), *n)?;
        }
        Ok(())
    }
}

/// Writes the counts: a table, or one JSON object on one line.
pub async fn stats(market: &Market, as_json: bool, out: &mut dyn Write) -> Result<FullStats, ManageError> {
    let full = FullStats::read(market).await?;
    if as_json {
        writeln!(out, "{}", full.to_json())?;
    } else {
        full.write_table(out)?;
    }
    Ok(full)
}
