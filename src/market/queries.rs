//! Reads, shared by the read pool and the writer's transaction: one SQL text for both
//! backends, rows mapped to the market's types.

use super::types::{
    Commune, Delivery, Household, Lang, Leader, Listing, ListingStatus, Order, OrderStatus, Product, Sales,
    Stats, Village, VillageHousehold, VillageProgress, listing_code, order_code,
};
use crate::args;
use crate::store::{Backend, Conn, Row, StoreError};

macro_rules! household_select {
    () => {
        "SELECT h.id, h.msisdn, h.name, h.village_id, v.name AS village_name, \
         c.code AS commune_code, c.name AS commune_name, h.language, h.has_epay, \
         EXISTS (SELECT 1 FROM teams t WHERE t.leader_household_id = h.id) AS is_leader, \
         (h.pin_hash IS NOT NULL) AS has_pin, h.pending, h.pin_locked_until_ms \
         FROM households h JOIN villages v ON v.id = h.village_id \
         JOIN communes c ON c.code = v.commune_code"
    };
}

macro_rules! listing_select {
    () => {
        "SELECT l.id, l.household_id, l.product_id, p.name_vi, p.name_en, p.unit, l.quantity_kg, \
         l.price_per_kg, l.status, l.created_at_ms \
         FROM listings l JOIN products p ON p.id = l.product_id"
    };
}

macro_rules! order_select {
    () => {
        "SELECT o.id, o.listing_id, o.household_id, p.name_vi, p.name_en, p.unit, o.buyer_name, \
         o.buyer_phone, o.delivery_name, o.delivery_phone, o.delivery_address, o.delivery_commune_code, \
         o.quantity_kg, o.amount, o.status, o.created_at_ms \
         FROM orders o JOIN listings l ON l.id = o.listing_id JOIN products p ON p.id = l.product_id"
    };
}

fn corrupt(column: &'static str, value: impl ToString) -> StoreError {
    StoreError::Corrupt { column, value: value.to_string() }
}

fn to_u32(column: &'static str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(column, v))
}

pub(super) fn household(r: &Row) -> Result<Household, StoreError> {
    let language = r.text("language")?;
    Ok(Household {
        id: r.int("id")?,
        msisdn: r.text("msisdn")?,
        name: r.text("name")?,
        village_id: r.int("village_id")?,
        village_name: r.text("village_name")?,
        commune_code: to_u32("commune_code", r.int("commune_code")?)?,
        commune_name: r.text("commune_name")?,
        language: Lang::parse(&language).ok_or_else(|| corrupt("households.language", &language))?,
        has_epay: r.flag("has_epay")?,
        is_leader: r.flag("is_leader")?,
        has_pin: r.flag("has_pin")?,
        pending: r.flag("pending")?,
        pin_locked_until_ms: r.int("pin_locked_until_ms")?,
    })
}

fn listing(r: &Row) -> Result<Listing, StoreError> {
    let id = r.int("id")?;
    let status = r.text("status")?;
    Ok(Listing {
        id,
        code: listing_code(id),
        household_id: r.int("household_id")?,
        product_id: r.int("product_id")?,
        product_name_vi: r.text("name_vi")?,
        product_name_en: r.text("name_en")?,
        unit: r.text("unit")?,
        quantity_kg: r.int("quantity_kg")?,
        price_per_kg: r.int("price_per_kg")?,
        status: ListingStatus::parse(&status).ok_or_else(|| corrupt("listings.status", &status))?,
        created_at_ms: r.int("created_at_ms")?,
    })
}

/// An order's delivery columns: all set (a partner's order) or none.
fn delivery(r: &Row) -> Result<Option<Delivery>, StoreError> {
    let Some(commune_code) = r.opt_int("delivery_commune_code")? else {
        return Ok(None);
    };
    Ok(Some(Delivery {
        name: r.opt_text("delivery_name")?.unwrap_or_default(),
        phone: r.opt_text("delivery_phone")?.unwrap_or_default(),
        address: r.opt_text("delivery_address")?.unwrap_or_default(),
        commune_code: to_u32("orders.delivery_commune_code", commune_code)?,
    }))
}

pub(super) fn order(r: &Row) -> Result<Order, StoreError> {
    let id = r.int("id")?;
    let status = r.text("status")?;
    Ok(Order {
        id,
        code: order_code(id),
        listing_id: r.int("listing_id")?,
        household_id: r.int("household_id")?,
        product_name_vi: r.text("name_vi")?,
        product_name_en: r.text("name_en")?,
        unit: r.text("unit")?,
        buyer_name: r.text("buyer_name")?,
        buyer_phone: r.opt_text("buyer_phone")?,
        delivery: delivery(r)?,
        quantity_kg: r.int("quantity_kg")?,
        amount: r.int("amount")?,
        status: OrderStatus::parse(&status).ok_or_else(|| corrupt("orders.status", &status))?,
        created_at_ms: r.int("created_at_ms")?,
    })
}

/// The household with this (normalised) MSISDN.
pub(crate) async fn household_by_msisdn(
    c: &mut Conn<'_>,
    msisdn: &str,
) -> Result<Option<Household>, StoreError> {
    let row = c.fetch_optional(concat!(household_select!(), " WHERE h.msisdn = $1"), args![msisdn]).await?;
    row.as_ref().map(household).transpose()
}

/// The household with this id.
pub(crate) async fn household_by_id(c: &mut Conn<'_>, id: i64) -> Result<Option<Household>, StoreError> {
    let row = c.fetch_optional(concat!(household_select!(), " WHERE h.id = $1"), args![id]).await?;
    row.as_ref().map(household).transpose()
}

/// Every household, by id.
pub(crate) async fn all_households(c: &mut Conn<'_>) -> Result<Vec<Household>, StoreError> {
    let rows = c.fetch_all(concat!(household_select!(), " ORDER BY h.id"), args![]).await?;
    rows.iter().map(household).collect()
}

/// A commune of the 2025 list.
pub(crate) async fn commune(c: &mut Conn<'_>, code: u32) -> Result<Option<Commune>, StoreError> {
    let row = c
        .fetch_optional("SELECT code, name, kind FROM communes WHERE code = $1", args![i64::from(code)])
        .await?;
    row.map(|r| {
        Ok(Commune {
            code: to_u32("communes.code", r.int("code")?)?,
            name: r.text("name")?,
            kind: r.text("kind")?,
        })
    })
    .transpose()
}

/// The catalogue, in menu order.
pub(crate) async fn products(c: &mut Conn<'_>) -> Result<Vec<Product>, StoreError> {
    let rows = c
        .fetch_all(
            "SELECT id, code, name_vi, name_en, unit, min_price, max_price FROM products \
             ORDER BY sort_order, id",
            args![],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Product {
                id: r.int("id")?,
                code: r.text("code")?,
                name_vi: r.text("name_vi")?,
                name_en: r.text("name_en")?,
                unit: r.text("unit")?,
                min_price: r.int("min_price")?,
                max_price: r.int("max_price")?,
            })
        })
        .collect()
}

/// A household's orders in any of `statuses` (one to four), newest first,
/// at most `limit`.
pub(crate) async fn orders_with(
    c: &mut Conn<'_>,
    household_id: i64,
    statuses: &[OrderStatus],
    limit: i64,
) -> Result<Vec<Order>, StoreError> {
    // One statement text for every call: the list is padded with its last status.
    let at = |i: usize| statuses.get(i).or(statuses.last()).map_or("", |s| s.as_str());
    let rows = c
        .fetch_all(
            concat!(
                order_select!(),
                " WHERE o.household_id = $1 AND o.status IN ($2, $3, $4, $5) \
                 ORDER BY o.created_at_ms DESC, o.id DESC LIMIT $6"
            ),
            args![household_id, at(0), at(1), at(2), at(3), limit],
        )
        .await?;
    rows.iter().map(order).collect()
}

/// An order by id, whoever's it is.
pub(crate) async fn order_by_id(c: &mut Conn<'_>, id: i64) -> Result<Option<Order>, StoreError> {
    let row = c.fetch_optional(concat!(order_select!(), " WHERE o.id = $1"), args![id]).await?;
    row.as_ref().map(order).transpose()
}

/// A household's listings in one state, newest first.
pub(crate) async fn listings_in(
    c: &mut Conn<'_>,
    household_id: i64,
    status: ListingStatus,
) -> Result<Vec<Listing>, StoreError> {
    let rows = c
        .fetch_all(
            concat!(
                listing_select!(),
                " WHERE l.household_id = $1 AND l.status = $2 ORDER BY l.created_at_ms DESC, l.id DESC"
            ),
            args![household_id, status.as_str()],
        )
        .await?;
    rows.iter().map(listing).collect()
}

/// A listing by id, whoever's it is.
pub(crate) async fn listing_by_id(c: &mut Conn<'_>, id: i64) -> Result<Option<Listing>, StoreError> {
    let row = c.fetch_optional(concat!(listing_select!(), " WHERE l.id = $1"), args![id]).await?;
    row.as_ref().map(listing).transpose()
}

/// The team leader of the household's village.
pub(crate) async fn leader_of(c: &mut Conn<'_>, household_id: i64) -> Result<Option<Leader>, StoreError> {
    let row = c
        .fetch_optional(
            "SELECT lh.name, lh.msisdn FROM households h \
             JOIN teams t ON t.village_id = h.village_id \
             JOIN households lh ON lh.id = t.leader_household_id \
             WHERE h.id = $1",
            args![household_id],
        )
        .await?;
    row.map(|r| Ok(Leader { name: r.text("name")?, msisdn: r.text("msisdn")? })).transpose()
}

/// The village a household leads, if it leads one.
pub(crate) async fn led_village(
    c: &mut Conn<'_>,
    leader_household_id: i64,
) -> Result<Option<i64>, StoreError> {
    let row = c
        .fetch_optional(
            "SELECT village_id FROM teams WHERE leader_household_id = $1",
            args![leader_household_id],
        )
        .await?;
    row.map(|r| r.int("village_id")).transpose()
}

/// Counts for the village a household leads, by the programme's definitions (see
/// [`VillageProgress`]); `None` if it leads none.
pub(crate) async fn village_progress(
    c: &mut Conn<'_>,
    leader_household_id: i64,
) -> Result<Option<VillageProgress>, StoreError> {
    let row = c
        .fetch_optional(
            "SELECT v.name AS village_name, \
             (SELECT COUNT(*) FROM households h WHERE h.village_id = v.id AND NOT h.pending) AS households, \
             (SELECT COUNT(DISTINCT l.household_id) FROM listings l \
                JOIN households h ON h.id = l.household_id \
                WHERE h.village_id = v.id AND NOT h.pending AND l.status = 'active' AND l.quantity_kg > 0) \
                AS with_listing, \
             (SELECT COUNT(*) FROM households h WHERE h.village_id = v.id AND NOT h.pending AND h.has_epay) \
                AS with_epay, \
             (SELECT COUNT(*) FROM households h WHERE h.village_id = v.id AND h.pending) AS pending \
             FROM teams t JOIN villages v ON v.id = t.village_id WHERE t.leader_household_id = $1",
            args![leader_household_id],
        )
        .await?;
    row.map(|r| {
        Ok(VillageProgress {
            village_name: r.text("village_name")?,
            households: r.int("households")?,
            with_listing: r.int("with_listing")?,
            with_epay: r.int("with_epay")?,
            pending: r.int("pending")?,
        })
    })
    .transpose()
}

/// The households of a village, pending ones first, then by name.
pub(crate) async fn village_households(
    c: &mut Conn<'_>,
    village_id: i64,
    only_pending: bool,
) -> Result<Vec<VillageHousehold>, StoreError> {
    let rows = c
        .fetch_all(
            "SELECT h.id, h.name, h.msisdn, h.pending, h.has_epay, \
             (h.pin_hash IS NOT NULL OR h.pin_locked_until_ms > 0) AS has_pin, \
             EXISTS (SELECT 1 FROM listings l WHERE l.household_id = h.id AND l.status = 'active' \
                     AND l.quantity_kg > 0) AS selling \
             FROM households h WHERE h.village_id = $1 AND (h.pending OR NOT $2) \
             ORDER BY h.pending DESC, h.name, h.id",
            args![village_id, only_pending],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(VillageHousehold {
                id: r.int("id")?,
                name: r.text("name")?,
                msisdn: r.text("msisdn")?,
                pending: r.flag("pending")?,
                selling: r.flag("selling")?,
                has_epay: r.flag("has_epay")?,
                has_pin: r.flag("has_pin")?,
            })
        })
        .collect()
}

/// Every commune of the 2025 list, by name.
pub(crate) async fn communes(c: &mut Conn<'_>) -> Result<Vec<Commune>, StoreError> {
    let rows = c.fetch_all("SELECT code, name, kind FROM communes ORDER BY name, code", args![]).await?;
    rows.iter()
        .map(|r| {
            Ok(Commune {
                code: to_u32("communes.code", r.int("code")?)?,
                name: r.text("name")?,
                kind: r.text("kind")?,
            })
        })
        .collect()
}

/// The villages of a commune, by name.
pub(crate) async fn villages_of(c: &mut Conn<'_>, commune_code: u32) -> Result<Vec<Village>, StoreError> {
    let rows = c
        .fetch_all(
            "SELECT id, name FROM villages WHERE commune_code = $1 ORDER BY name, id",
            args![i64::from(commune_code)],
        )
        .await?;
    rows.iter().map(|r| Ok(Village { id: r.int("id")?, name: r.text("name")? })).collect()
}

/// A household's paid orders: since `month_start_ms`, and in all.
pub(crate) async fn sales(
    c: &mut Conn<'_>,
    household_id: i64,
    month_start_ms: i64,
) -> Result<Sales, StoreError> {
    let r = c
        .fetch_one(
            // PostgreSQL sums BIGINTs as NUMERIC: cast back.
            "SELECT COUNT(*) AS all_orders, CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS all_amount, \
             CAST(COALESCE(SUM(CASE WHEN at_ms >= $2 THEN 1 ELSE 0 END), 0) AS BIGINT) AS month_orders, \
             CAST(COALESCE(SUM(CASE WHEN at_ms >= $2 THEN amount ELSE 0 END), 0) AS BIGINT) AS month_amount \
             FROM payments WHERE household_id = $1",
            args![household_id, month_start_ms],
        )
        .await?;
    Ok(Sales {
        month_orders: r.int("month_orders")?,
        month_amount: r.int("month_amount")?,
        all_orders: r.int("all_orders")?,
        all_amount: r.int("all_amount")?,
    })
}

async fn count(c: &mut Conn<'_>, sql: &'static str) -> Result<i64, StoreError> {
    c.fetch_one(sql, args![]).await?.int("n")
}

async fn group_count(c: &mut Conn<'_>, sql: &'static str) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = c.fetch_all(sql, args![]).await?;
    rows.iter().map(|r| Ok((r.text("status")?, r.int("n")?))).collect()
}

/// Audit events per kind, by kind. SQLite keeps them in `event_counts`, which the writer adds
/// each group's events to. PostgreSQL counts the events through their index on kind: there
/// the writers of several nodes may commit at once, and would queue for the count rows.
pub(crate) async fn events_by_kind(c: &mut Conn<'_>) -> Result<Vec<(String, i64)>, StoreError> {
    let sql = match c.backend() {
        Backend::Sqlite => "SELECT kind, n FROM event_counts WHERE n > 0 ORDER BY kind",
        Backend::Postgres => "SELECT kind, COUNT(*) AS n FROM events GROUP BY kind ORDER BY kind",
    };
    let rows = c.fetch_all(sql, args![]).await?;
    rows.iter().map(|r| Ok((r.text("kind")?, r.int("n")?))).collect()
}

/// The whole market's counts.
pub(crate) async fn stats(c: &mut Conn<'_>) -> Result<Stats, StoreError> {
    let by_kind = events_by_kind(c).await?;
    Ok(Stats {
        households: count(c, "SELECT COUNT(*) AS n FROM households").await?,
        listings: count(c, "SELECT COUNT(*) AS n FROM listings").await?,
        listings_active: count(c, "SELECT COUNT(*) AS n FROM listings WHERE status = 'active'").await?,
        orders_by_status: group_count(
            c,
            "SELECT status, COUNT(*) AS n FROM orders GROUP BY status ORDER BY status",
        )
        .await?,
        payments: count(c, "SELECT COUNT(*) AS n FROM payments").await?,
        events: by_kind.iter().map(|(_, n)| n).sum(),
        dialogues: by_kind.iter().find(|(k, _)| k == "dialogue_closed").map_or(0, |(_, n)| *n),
        outbox_by_status: group_count(
            c,
            "SELECT status, COUNT(*) AS n FROM outbox GROUP BY status ORDER BY status",
        )
        .await?,
    })
}
