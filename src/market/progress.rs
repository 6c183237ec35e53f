//! The programme's progress per commune and per village: households registered, with a
//! digital shop, with an e-payment account, orders and revenue in a period.

use super::Market;
use super::reports::to_u32;
use super::types::MarketError;
use crate::args;
use crate::store::{Conn, StoreError};

/// Progress of one commune or village, for a period.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressRow {
    /// Commune code, or village id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// The commune's code.
    pub commune_code: u32,
    /// Households registered by the end of the period.
    pub households: i64,
    /// Of them, with a listing created by then (a digital shop).
    pub with_listing: i64,
    /// Of them, with an e-payment account (the account flag as it is now: its history is
    /// not kept).
    pub with_epay: i64,
    /// Orders placed in the period.
    pub orders: i64,
    /// Payments received in the period, đồng.
    pub revenue: i64,
}

/// (key, count) rows into a lookup.
async fn counts(
    c: &mut Conn<'_>,
    sql: &'static str,
    args: Vec<crate::store::Arg>,
) -> Result<std::collections::HashMap<i64, i64>, StoreError> {
    let rows = c.fetch_all(sql, args).await?;
    rows.iter().map(|r| Ok((r.int("k")?, r.int("n")?))).collect()
}

/// Progress per commune (`commune` None) or per village of a commune, for orders and
/// payments in `[from_ms, to_ms)` and households as of `to_ms`.
async fn progress(
    c: &mut Conn<'_>,
    commune: Option<u32>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<ProgressRow>, StoreError> {
    let (units, households, listing, epay, orders, revenue) = match commune {
        None => {
            let units = c
                .fetch_all(
                    "SELECT code AS id, name, code AS commune_code FROM communes ORDER BY code",
                    args![],
                )
                .await?;
            let a = args![to_ms];
            let r = args![from_ms, to_ms];
            (
                units,
                counts(
                    c,
                    "SELECT v.commune_code AS k, COUNT(*) AS n FROM households h \
                     JOIN villages v ON v.id = h.village_id WHERE h.created_at_ms < $1 AND NOT h.pending GROUP BY v.commune_code",
                    a.clone(),
                )
                .await?,
                counts(
                    c,
                    "SELECT v.commune_code AS k, COUNT(DISTINCT h.id) AS n FROM listings l \
                     JOIN households h ON h.id = l.household_id JOIN villages v ON v.id = h.village_id \
                     WHERE l.created_at_ms < $1 AND h.created_at_ms < $1 AND NOT h.pending \
                     AND l.status = 'active' AND l.quantity_kg > 0 GROUP BY v.commune_code",
                    a.clone(),
                )
                .await?,
                counts(
                    c,
                    "SELECT v.commune_code AS k, COUNT(*) AS n FROM households h \
                     JOIN villages v ON v.id = h.village_id WHERE h.created_at_ms < $1 AND h.has_epay \
                     AND NOT h.pending GROUP BY v.commune_code",
                    a,
                )
                .await?,
                counts(
                    c,
                    "SELECT v.commune_code AS k, COUNT(*) AS n FROM orders o \
                     JOIN households h ON h.id = o.household_id JOIN villages v ON v.id = h.village_id \
                     WHERE o.created_at_ms >= $1 AND o.created_at_ms < $2 GROUP BY v.commune_code",
                    r.clone(),
                )
                .await?,
                counts(
                    c,
                    "SELECT v.commune_code AS k, CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) AS n FROM payments p \
                     JOIN households h ON h.id = p.household_id JOIN villages v ON v.id = h.village_id \
                     WHERE p.at_ms >= $1 AND p.at_ms < $2 GROUP BY v.commune_code",
                    r,
                )
                .await?,
            )
        }
        Some(code) => {
            let code = i64::from(code);
            let units = c
                .fetch_all(
                    "SELECT id, name, commune_code FROM villages WHERE commune_code = $1 ORDER BY name_key, id",
                    args![code],
                )
                .await?;
            let a = args![to_ms, code];
            let r = args![from_ms, to_ms, code];
            (
                units,
                counts(
                    c,
                    "SELECT v.id AS k, COUNT(*) AS n FROM households h JOIN villages v ON v.id = h.village_id \
                     WHERE h.created_at_ms < $1 AND NOT h.pending AND v.commune_code = $2 GROUP BY v.id",
                    a.clone(),
                )
                .await?,
                counts(
                    c,
                    "SELECT v.id AS k, COUNT(DISTINCT h.id) AS n FROM listings l \
                     JOIN households h ON h.id = l.household_id JOIN villages v ON v.id = h.village_id \
                     WHERE l.created_at_ms < $1 AND h.created_at_ms < $1 AND NOT h.pending \
                     AND l.status = 'active' AND l.quantity_kg > 0 AND v.commune_code = $2 GROUP BY v.id",
                    a.clone(),
                )
                .await?,
                counts(
                    c,
                    "SELECT v.id AS k, COUNT(*) AS n FROM households h JOIN villages v ON v.id = h.village_id \
                     WHERE h.created_at_ms < $1 AND h.has_epay AND NOT h.pending AND v.commune_code = $2 GROUP BY v.id",
                    a,
                )
                .await?,
                counts(
                    c,
                    "SELECT v.id AS k, COUNT(*) AS n FROM orders o \
                     JOIN households h ON h.id = o.household_id JOIN villages v ON v.id = h.village_id \
                     WHERE o.created_at_ms >= $1 AND o.created_at_ms < $2 AND v.commune_code = $3 GROUP BY v.id",
                    r.clone(),
                )
                .await?,
                counts(
                    c,
                    "SELECT v.id AS k, CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) AS n FROM payments p \
                     JOIN households h ON h.id = p.household_id JOIN villages v ON v.id = h.village_id \
                     WHERE p.at_ms >= $1 AND p.at_ms < $2 AND v.commune_code = $3 GROUP BY v.id",
                    r,
                )
                .await?,
            )
        }
    };
    units
        .iter()
        .map(|u| {
            let id = u.int("id")?;
            let get = |m: &std::collections::HashMap<i64, i64>| m.get(&id).copied().unwrap_or(0);
            Ok(ProgressRow {
                id,
                name: u.text("name")?,
                commune_code: to_u32("commune_code", u.int("commune_code")?)?,
                households: get(&households),
                with_listing: get(&listing),
                with_epay: get(&epay),
                orders: get(&orders),
                revenue: get(&revenue),
            })
        })
        .collect()
}

impl Market {
    /// Progress per commune of the 2025 list: orders and payments in `[from_ms, to_ms)`,
    /// households as of `to_ms`.
    pub async fn commune_progress(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ProgressRow>, MarketError> {
        let mut r = self.read().await?;
        Ok(progress(&mut r.conn(), None, from_ms, to_ms).await?)
    }

    /// Progress per village of a commune, like [`Market::commune_progress`].
    pub async fn village_progress_report(
        &self,
        commune: u32,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<ProgressRow>, MarketError> {
        let mut r = self.read().await?;
        Ok(progress(&mut r.conn(), Some(commune), from_ms, to_ms).await?)
    }
}
