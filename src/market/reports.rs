//! What the HTTP API (partners, admin, reports) reads and writes: API tokens, the stored
//! responses of idempotent API writes, partners' orders, listings on offer, the admin's
//! lists of households, villages and teams (the progress counts are in `progress`).
//!
//! API writes are one writer action ([`ApiOp`], applied in `writer::http_api`): each claims
//! the partner's `Idempotency-Key` with the SHA-256 of its request and stores the response it
//! gave, in the same transaction as the change, so a repeat gets the first response again
//! and another request under the same key is refused.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::types::{
    Actor, Household, IdemKey, Lang, Listing, ListingStatus, MarketError, NewOrder, Order, listing_code,
    normalize_msisdn,
};
use super::writer::{Action, Done};
use super::{MAX_AMOUNT, Market, check_new_order, check_range, clean_name, unexpected};
use crate::args;
use crate::store::{Conn, Row, StoreError};

pub use super::progress::ProgressRow;

/// The field named when an `Idempotency-Key` is used again for another request.
pub const IDEMPOTENCY_KEY_FIELD: &str = "Idempotency-Key";

/// Longest partner reference (payment reference, tracking code), in characters.
pub const MAX_REFERENCE_CHARS: usize = 100;

/// Hex SHA-256 of the parts, each prefixed with its length (so `("ab", "c")` and
/// `("a", "bc")` differ).
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

// ---- types -------------------------------------------------------------------------------

/// An API bearer token as stored: never the token itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    /// Row id.
    pub id: i64,
    /// The public part of the token (`cg_<public_id>_<secret>`), to find it by.
    pub public_id: String,
    /// The partner (tokens with the same name share orders and idempotency keys).
    pub name: String,
    /// Scopes, e.g. `orders:write`.
    pub scopes: Vec<String>,
    /// Hex SHA-256 of the whole token.
    pub token_hash: String,
    /// Created at, ms since the epoch.
    pub created_at_ms: i64,
    /// Revoked at, if it was.
    pub revoked_at_ms: Option<i64>,
}

/// Who makes an API write and under which key.
#[derive(Debug, Clone)]
pub struct ApiCall {
    /// The partner (token name).
    pub partner: String,
    /// The partner's `Idempotency-Key`.
    pub key: String,
    /// Hex SHA-256 of the request (method, path, body).
    pub request_hash: String,
}

/// The response an API write gave, as stored with its key.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: String,
    /// The request it answered (hex SHA-256).
    pub request_hash: String,
}

/// Turns an API write's result into its HTTP status and JSON body (the API layer's
/// rendering, run inside the transaction so the response can be stored with the key).
pub type Render = fn(&ApiResult) -> (u16, Value);

/// What an API write produced.
#[derive(Debug, Clone)]
pub enum ApiResult {
    /// An order (placed, paid, shipped).
    Order(Box<PartnerOrder>),
    /// A household (created, updated).
    Household(AdminHousehold),
    /// A village, and whether it was created (or confirmed).
    Village {
        /// The village.
        village: VillageRow,
        /// Created by this call.
        created: bool,
    },
    /// A team, and whether this call created it or added the member.
    Team {
        /// The team.
        team: TeamRow,
        /// Changed by this call.
        created: bool,
    },
    /// An import's outcome.
    Import(ImportReport),
    /// A token (created or revoked).
    Token(ApiToken),
}

/// A shipment event's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipmentStatus {
    /// Picked up from the household (Accepted → Shipped).
    Shipped,
    /// Delivered to the buyer (Shipped or Accepted → Delivered).
    Delivered,
}

impl ShipmentStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentStatus::Shipped => "shipped",
            ShipmentStatus::Delivered => "delivered",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<ShipmentStatus> {
        match s {
            "shipped" => Some(ShipmentStatus::Shipped),
            "delivered" => Some(ShipmentStatus::Delivered),
            _ => None,
        }
    }
}

/// One household of an import.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRow {
    /// Line in the file (1 is the header).
    pub line: usize,
    /// MSISDN, any written form.
    pub msisdn: String,
    /// Name.
    pub name: String,
    /// Commune (2025 code).
    pub commune_code: u32,
    /// Village name (created if new).
    pub village_name: String,
    /// Language.
    pub lang: Lang,
    /// Has an e-payment account.
    pub has_epay: bool,
}

/// What became of one imported line.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportOutcome {
    /// Line in the file.
    pub line: usize,
    /// The household (new or already registered).
    pub household_id: i64,
    /// Created now (false: the MSISDN was registered already and is left as it is).
    pub created: bool,
}

/// An import's outcome.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportReport {
    /// Households created.
    pub created: i64,
    /// Lines whose MSISDN was registered already.
    pub existing: i64,
    /// Per line.
    pub rows: Vec<ImportOutcome>,
}

/// API writes, applied by the writer (arguments checked by [`Market::api_call`]).
#[derive(Debug, Clone)]
pub enum ApiOp {
    /// A partner's order for an active listing; the household is told by SMS.
    PlaceOrder(NewOrder),
    /// The partner that placed an order calls it off (new or accepted → cancelled, as the
    /// order state machine allows; the quantity goes back on offer).
    CancelOrder {
        /// The order.
        order_id: i64,
        /// Why (stored with the order, told to the household).
        reason: String,
        /// Whether the caller may cancel any partner's order (admin).
        any_partner: bool,
    },
    /// Money received for a shipped or delivered order (→ Paid); the household is told.
    RecordPayment {
        /// The order.
        order_id: i64,
        /// Must be the order's amount.
        amount: i64,
        /// The payment partner's reference.
        reference: Option<String>,
    },
    /// A post-office event.
    RecordShipment {
        /// The order.
        order_id: i64,
        /// What happened.
        status: ShipmentStatus,
        /// The parcel's tracking code.
        tracking_code: Option<String>,
    },
    /// An admin registers a household (the village is created if new).
    CreateHousehold {
        /// MSISDN.
        msisdn: String,
        /// Name.
        name: String,
        /// Commune.
        commune_code: u32,
        /// Village.
        village_name: String,
        /// Language.
        lang: Lang,
        /// E-payment account.
        has_epay: bool,
    },
    /// An admin changes a household.
    UpdateHousehold {
        /// The household.
        household_id: i64,
        /// New name.
        name: Option<String>,
        /// New language.
        lang: Option<Lang>,
        /// E-payment account.
        has_epay: Option<bool>,
        /// Confirmed (false) or pending (true).
        pending: Option<bool>,
        /// Moves it to this commune's village of that name (created if new).
        village: Option<(u32, String)>,
    },
    /// An admin imports households; lines whose MSISDN is registered already are left alone.
    ImportHouseholds {
        /// The lines.
        rows: Vec<ImportRow>,
    },
    /// An admin creates a village, or confirms a pending one.
    CreateVillage {
        /// Commune.
        commune_code: u32,
        /// Name.
        name: String,
    },
    /// An admin registers a village's team leader (the team is created).
    RegisterLeader {
        /// MSISDN.
        msisdn: String,
        /// Name.
        name: String,
        /// Commune.
        commune_code: u32,
        /// Village (created if new).
        village_name: String,
        /// Language.
        lang: Lang,
    },
    /// An admin adds a household of the team's village to the team.
    AddTeamMember {
        /// The team.
        team_id: i64,
        /// The household.
        household_id: i64,
    },
    /// A new API token (the command line).
    CreateToken {
        /// Public id.
        public_id: String,
        /// Partner name.
        name: String,
        /// Scopes.
        scopes: Vec<String>,
        /// Hex SHA-256 of the token.
        token_hash: String,
    },
    /// Revokes an API token (the command line).
    RevokeToken {
        /// Public id.
        public_id: String,
    },
}

impl ApiOp {
    /// The name recorded with the idempotency key.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ApiOp::PlaceOrder(_) => "api_place_order",
            ApiOp::CancelOrder { .. } => "api_cancel_order",
            ApiOp::RecordPayment { .. } => "api_record_payment",
            ApiOp::RecordShipment { .. } => "api_record_shipment",
            ApiOp::CreateHousehold { .. } => "api_create_household",
            ApiOp::UpdateHousehold { .. } => "api_update_household",
            ApiOp::ImportHouseholds { .. } => "api_import_households",
            ApiOp::CreateVillage { .. } => "api_create_village",
            ApiOp::RegisterLeader { .. } => "api_register_leader",
            ApiOp::AddTeamMember { .. } => "api_add_team_member",
            ApiOp::CreateToken { .. } => "api_create_token",
            ApiOp::RevokeToken { .. } => "api_revoke_token",
        }
    }

    /// Checks and normalises the arguments (names trimmed, MSISDNs normalised, ranges).
    fn checked(self) -> Result<ApiOp, MarketError> {
        Ok(match self {
            ApiOp::PlaceOrder(order) => ApiOp::PlaceOrder(check_new_order(order)?),
            ApiOp::CancelOrder { order_id, reason, any_partner } => {
                ApiOp::CancelOrder { order_id, reason: clean_name("reason", &reason)?, any_partner }
            }
            ApiOp::RecordPayment { order_id, amount, reference } => {
                check_range("amount", amount, &(1..=MAX_AMOUNT))?;
                ApiOp::RecordPayment { order_id, amount, reference: reference_text("reference", reference)? }
            }
            ApiOp::RecordShipment { order_id, status, tracking_code } => ApiOp::RecordShipment {
                order_id,
                status,
                tracking_code: reference_text("tracking_code", tracking_code)?,
            },
            ApiOp::CreateHousehold { msisdn, name, commune_code, village_name, lang, has_epay } => {
                ApiOp::CreateHousehold {
                    msisdn: normalize_msisdn(&msisdn)?,
                    name: clean_name("name", &name)?,
                    commune_code,
                    village_name: clean_name("village_name", &village_name)?,
                    lang,
                    has_epay,
                }
            }
            ApiOp::UpdateHousehold { household_id, name, lang, has_epay, pending, village } => {
                ApiOp::UpdateHousehold {
                    household_id,
                    name: name.map(|n| clean_name("name", &n)).transpose()?,
                    lang,
                    has_epay,
                    pending,
                    village: village
                        .map(|(c, v)| clean_name("village_name", &v).map(|v| (c, v)))
                        .transpose()?,
                }
            }
            ApiOp::ImportHouseholds { rows } => {
                if rows.is_empty() {
                    return Err(MarketError::Invalid {
                        field: "rows",
                        reason: "no households to import".into(),
                    });
                }
                let mut checked = Vec::with_capacity(rows.len());
                for r in rows {
                    checked.push(ImportRow {
                        msisdn: normalize_msisdn(&r.msisdn)?,
                        name: clean_name("name", &r.name)?,
                        village_name: clean_name("village_name", &r.village_name)?,
                        ..r
                    });
                }
                ApiOp::ImportHouseholds { rows: checked }
            }
            ApiOp::CreateVillage { commune_code, name } => {
                ApiOp::CreateVillage { commune_code, name: clean_name("name", &name)? }
            }
            ApiOp::RegisterLeader { msisdn, name, commune_code, village_name, lang } => {
                ApiOp::RegisterLeader {
                    msisdn: normalize_msisdn(&msisdn)?,
                    name: clean_name("name", &name)?,
                    commune_code,
                    village_name: clean_name("village_name", &village_name)?,
                    lang,
                }
            }
            ApiOp::CreateToken { public_id, name, scopes, token_hash } => {
                ApiOp::CreateToken { public_id, name: clean_name("name", &name)?, scopes, token_hash }
            }
            op @ (ApiOp::AddTeamMember { .. } | ApiOp::RevokeToken { .. }) => op,
        })
    }
}

/// An optional partner reference: trimmed, empty is none, at most 100 characters, no
/// control characters.
fn reference_text(field: &'static str, s: Option<String>) -> Result<Option<String>, MarketError> {
    let Some(s) = s else { return Ok(None) };
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.chars().count() > MAX_REFERENCE_CHARS || s.chars().any(char::is_control) {
        return Err(MarketError::Invalid {
            field,
            reason: format!("must be at most {MAX_REFERENCE_CHARS} characters, without control characters"),
        });
    }
    Ok(Some(s.to_owned()))
}

/// How a payment was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentInfo {
    /// Đồng.
    pub amount: i64,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Who recorded it (the household's MSISDN, or the partner).
    pub actor: String,
    /// Through what (`ussd`, `sms`, `http`).
    pub channel: String,
    /// The payment partner's reference.
    pub reference: Option<String>,
}

/// The latest shipment event of an order.
#[derive(Debug, Clone, PartialEq)]
pub struct ShipmentInfo {
    /// `shipped` or `delivered`.
    pub status: String,
    /// Tracking code.
    pub tracking_code: Option<String>,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The post office (partner).
    pub partner: String,
}

/// An order as partners see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerOrder {
    /// The order.
    pub order: Order,
    /// Product code.
    pub product_code: String,
    /// Last change, ms since the epoch.
    pub updated_at_ms: i64,
    /// The partner that placed it (None: placed otherwise, e.g. the demo seed).
    pub partner: Option<String>,
    /// The SMS that told the household.
    pub message_id: Option<i64>,
    /// Its payment.
    pub payment: Option<PaymentInfo>,
    /// Its latest shipment event.
    pub shipment: Option<ShipmentInfo>,
    /// The parcel's tracking code: the latest given (by the household or the post office).
    pub tracking_code: Option<String>,
    /// Why it was cancelled (by the partner, or by the household after accepting it).
    pub cancel_reason: Option<String>,
    /// The name of the delivery commune.
    pub delivery_commune_name: Option<String>,
}

/// An active listing with where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferedListing {
    /// The listing.
    pub listing: Listing,
    /// Product code.
    pub product_code: String,
    /// Village.
    pub village_id: i64,
    /// Village name.
    pub village_name: String,
    /// Commune code.
    pub commune_code: u32,
    /// Commune name.
    pub commune_name: String,
}

/// Filter of [`Market::offered_listings`].
#[derive(Debug, Clone, Default)]
pub struct ListingFilter {
    /// Only this product.
    pub product_id: Option<i64>,
    /// Only this commune.
    pub commune_code: Option<u32>,
    /// Ids above this (paging).
    pub after: i64,
    /// At most this many.
    pub limit: i64,
}

/// A household as the admin sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminHousehold {
    /// The household.
    pub household: Household,
    /// Self-registered, not confirmed yet.
    pub pending: bool,
    /// Registered at, ms since the epoch.
    pub created_at_ms: i64,
}

/// Filter of [`Market::admin_households`].
#[derive(Debug, Clone, Default)]
pub struct HouseholdFilter {
    /// Only this commune.
    pub commune_code: Option<u32>,
    /// Only this village.
    pub village_id: Option<i64>,
    /// Only this (normalised) MSISDN.
    pub msisdn: Option<String>,
    /// Ids above this (paging).
    pub after: i64,
    /// At most this many.
    pub limit: i64,
}

/// A village with its counts.
#[derive(Debug, Clone, PartialEq)]
pub struct VillageRow {
    /// Row id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Commune code.
    pub commune_code: u32,
    /// Commune name.
    pub commune_name: String,
    /// Created by a self-registration, not confirmed yet.
    pub pending: bool,
    /// Registered households.
    pub households: i64,
    /// Its team, if it has one.
    pub team_id: Option<i64>,
}

/// A community technology team.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamRow {
    /// Row id.
    pub id: i64,
    /// Village.
    pub village_id: i64,
    /// Village name.
    pub village_name: String,
    /// Commune code.
    pub commune_code: u32,
    /// Commune name.
    pub commune_name: String,
    /// The leader household.
    pub leader_household_id: i64,
    /// The leader's name.
    pub leader_name: String,
    /// The leader's MSISDN.
    pub leader_msisdn: String,
    /// Members (the leader included).
    pub members: i64,
}

// ---- reads -------------------------------------------------------------------------------

fn corrupt(column: &'static str, value: impl ToString) -> StoreError {
    StoreError::Corrupt { column, value: value.to_string() }
}

pub(super) fn to_u32(column: &'static str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(column, v))
}

fn token_row(r: &Row) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: r.int("id")?,
        public_id: r.text("public_id")?,
        name: r.text("name")?,
        scopes: r.text("scopes")?.split_whitespace().map(str::to_owned).collect(),
        token_hash: r.text("token_hash")?,
        created_at_ms: r.int("created_at_ms")?,
        revoked_at_ms: r.opt_int("revoked_at_ms")?,
    })
}

const TOKEN_SELECT: &str =
    "SELECT id, public_id, name, scopes, token_hash, created_at_ms, revoked_at_ms FROM api_tokens";

/// A token by its public id.
pub(crate) async fn token_by_public_id(
    c: &mut Conn<'_>,
    public_id: &str,
) -> Result<Option<ApiToken>, StoreError> {
    let row = c
        .fetch_optional(
            "SELECT id, public_id, name, scopes, token_hash, created_at_ms, revoked_at_ms FROM api_tokens \
             WHERE public_id = $1",
            args![public_id],
        )
        .await?;
    row.as_ref().map(token_row).transpose()
}

/// A stored API response by its row id.
pub(crate) async fn stored_response(c: &mut Conn<'_>, id: i64) -> Result<Option<StoredResponse>, StoreError> {
    let row = c
        .fetch_optional("SELECT status, response, request_hash FROM api_requests WHERE id = $1", args![id])
        .await?;
    row.map(|r| stored(&r)).transpose()
}

fn stored(r: &Row) -> Result<StoredResponse, StoreError> {
    let status = r.int("status")?;
    Ok(StoredResponse {
        status: u16::try_from(status).map_err(|_| corrupt("api_requests.status", status))?,
        body: r.text("response")?,
        request_hash: r.text("request_hash")?,
    })
}

/// An order with what partners see of it.
pub(crate) async fn partner_order(c: &mut Conn<'_>, id: i64) -> Result<Option<PartnerOrder>, StoreError> {
    let Some(r) = c
        .fetch_optional(
            "SELECT o.id, o.listing_id, o.household_id, p.code AS product_code, p.name_vi, p.name_en, p.unit, \
             o.buyer_name, o.buyer_phone, o.delivery_name, o.delivery_phone, o.delivery_address, \
             o.delivery_commune_code, dc.name AS delivery_commune_name, o.cancel_reason, \
             o.quantity_kg, o.amount, o.status, o.created_at_ms, o.updated_at_ms, \
             ao.partner, ao.message_id, pay.amount AS paid_amount, pay.at_ms AS paid_at_ms, \
             pay.actor AS paid_by, pay.channel AS paid_channel, ap.reference AS paid_reference \
             FROM orders o JOIN listings l ON l.id = o.listing_id JOIN products p ON p.id = l.product_id \
             LEFT JOIN communes dc ON dc.code = o.delivery_commune_code \
             LEFT JOIN api_orders ao ON ao.order_id = o.id \
             LEFT JOIN payments pay ON pay.order_id = o.id \
             LEFT JOIN api_payments ap ON ap.order_id = o.id \
             WHERE o.id = $1",
            args![id],
        )
        .await?
    else {
        return Ok(None);
    };
    let order = super::queries::order(&r)?;
    let payment = match r.opt_int("paid_amount")? {
        Some(amount) => Some(PaymentInfo {
            amount,
            at_ms: r.int("paid_at_ms")?,
            actor: r.text("paid_by")?,
            channel: r.text("paid_channel")?,
            reference: r.opt_text("paid_reference")?,
        }),
        None => None,
    };
    let shipment = c
        .fetch_optional(
            "SELECT status, tracking_code, at_ms, partner FROM shipments WHERE order_id = $1 \
             ORDER BY id DESC LIMIT 1",
            args![id],
        )
        .await?
        .map(|s| {
            Ok::<_, StoreError>(ShipmentInfo {
                status: s.text("status")?,
                tracking_code: s.opt_text("tracking_code")?,
                at_ms: s.int("at_ms")?,
                partner: s.text("partner")?,
            })
        })
        .transpose()?;
    let tracking_code = c
        .fetch_optional(
            "SELECT tracking_code FROM shipments WHERE order_id = $1 AND tracking_code IS NOT NULL \
             ORDER BY id DESC LIMIT 1",
            args![id],
        )
        .await?
        .map(|s| s.text("tracking_code"))
        .transpose()?;
    Ok(Some(PartnerOrder {
        order,
        product_code: r.text("product_code")?,
        updated_at_ms: r.int("updated_at_ms")?,
        partner: r.opt_text("partner")?,
        message_id: r.opt_int("message_id")?,
        payment,
        shipment,
        tracking_code,
        cancel_reason: r.opt_text("cancel_reason")?,
        delivery_commune_name: r.opt_text("delivery_commune_name")?,
    }))
}

macro_rules! admin_household_select {
    () => {
        "SELECT h.id, h.msisdn, h.name, h.village_id, v.name AS village_name, \
         c.code AS commune_code, c.name AS commune_name, h.language, h.has_epay, h.pending, h.created_at_ms, \
         EXISTS (SELECT 1 FROM teams t WHERE t.leader_household_id = h.id) AS is_leader, \
         (h.pin_hash IS NOT NULL) AS has_pin, h.pin_locked_until_ms \
         FROM households h JOIN villages v ON v.id = h.village_id \
         JOIN communes c ON c.code = v.commune_code"
    };
}

fn admin_household(r: &Row) -> Result<AdminHousehold, StoreError> {
    Ok(AdminHousehold {
        household: super::queries::household(r)?,
        pending: r.flag("pending")?,
        created_at_ms: r.int("created_at_ms")?,
    })
}

/// A household as the admin sees it.
pub(crate) async fn admin_household_by_id(
    c: &mut Conn<'_>,
    id: i64,
) -> Result<Option<AdminHousehold>, StoreError> {
    let row = c.fetch_optional(concat!(admin_household_select!(), " WHERE h.id = $1"), args![id]).await?;
    row.as_ref().map(admin_household).transpose()
}

fn village_row(r: &Row) -> Result<VillageRow, StoreError> {
    Ok(VillageRow {
        id: r.int("id")?,
        name: r.text("name")?,
        commune_code: to_u32("commune_code", r.int("commune_code")?)?,
        commune_name: r.text("commune_name")?,
        pending: r.flag("pending")?,
        households: r.int("households")?,
        team_id: r.opt_int("team_id")?,
    })
}

/// A village by id.
pub(crate) async fn village_by_id(c: &mut Conn<'_>, id: i64) -> Result<Option<VillageRow>, StoreError> {
    let row = c
        .fetch_optional(
            "SELECT v.id, v.name, v.commune_code, c.name AS commune_name, v.pending, \
             t.id AS team_id, (SELECT COUNT(*) FROM households h WHERE h.village_id = v.id) AS households \
             FROM villages v JOIN communes c ON c.code = v.commune_code LEFT JOIN teams t ON t.village_id = v.id \
             WHERE v.id = $1",
            args![id],
        )
        .await?;
    row.as_ref().map(village_row).transpose()
}

macro_rules! team_select {
    () => {
        "SELECT t.id, t.village_id, v.name AS village_name, v.commune_code, c.name AS commune_name, \
         t.leader_household_id, h.name AS leader_name, h.msisdn AS leader_msisdn, \
         (SELECT COUNT(*) FROM team_members m WHERE m.team_id = t.id) AS members \
         FROM teams t JOIN villages v ON v.id = t.village_id JOIN communes c ON c.code = v.commune_code \
         JOIN households h ON h.id = t.leader_household_id"
    };
}

fn team_row(r: &Row) -> Result<TeamRow, StoreError> {
    Ok(TeamRow {
        id: r.int("id")?,
        village_id: r.int("village_id")?,
        village_name: r.text("village_name")?,
        commune_code: to_u32("commune_code", r.int("commune_code")?)?,
        commune_name: r.text("commune_name")?,
        leader_household_id: r.int("leader_household_id")?,
        leader_name: r.text("leader_name")?,
        leader_msisdn: r.text("leader_msisdn")?,
        members: r.int("members")?,
    })
}

/// A team by id.
pub(crate) async fn team_by_id(c: &mut Conn<'_>, id: i64) -> Result<Option<TeamRow>, StoreError> {
    let row = c.fetch_optional(concat!(team_select!(), " WHERE t.id = $1"), args![id]).await?;
    row.as_ref().map(team_row).transpose()
}

/// The team of a village.
pub(crate) async fn team_of_village(
    c: &mut Conn<'_>,
    village_id: i64,
) -> Result<Option<TeamRow>, StoreError> {
    let row =
        c.fetch_optional(concat!(team_select!(), " WHERE t.village_id = $1"), args![village_id]).await?;
    row.as_ref().map(team_row).transpose()
}

// ---- the market's API methods ------------------------------------------------------------

impl Market {
    /// Answers a trivial query (for `/ready`).
    pub async fn ping(&self) -> Result<(), MarketError> {
        let mut r = self.read().await?;
        r.conn().fetch_one("SELECT CAST(1 AS BIGINT) AS n", args![]).await?.int("n")?;
        Ok(())
    }

    /// An API token by its public id (revoked ones included).
    pub async fn api_token(&self, public_id: &str) -> Result<Option<ApiToken>, MarketError> {
        let mut r = self.read().await?;
        Ok(token_by_public_id(&mut r.conn(), public_id).await?)
    }

    /// Every API token, oldest first.
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>, MarketError> {
        let mut r = self.read().await?;
        let rows = r.conn().fetch_all(TOKEN_SELECT, args![]).await?;
        let mut tokens = rows.iter().map(token_row).collect::<Result<Vec<_>, _>>()?;
        tokens.sort_by_key(|t| t.id);
        Ok(tokens)
    }

    /// The response stored for a partner's idempotency key.
    pub async fn api_response(
        &self,
        partner: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, MarketError> {
        let mut r = self.read().await?;
        let row = r
            .conn()
            .fetch_optional(
                "SELECT status, response, request_hash FROM api_requests WHERE partner = $1 AND idem_key = $2",
                args![partner, key],
            )
            .await?;
        Ok(row.map(|r| stored(&r)).transpose()?)
    }

    /// Applies an API write (see [`ApiOp`]) under the partner's idempotency key: the first
    /// call applies it and stores `render`'s response with the key, in one transaction; the
    /// same call again returns that response; another request under the same key is
    /// [`MarketError::Invalid`] with field [`IDEMPOTENCY_KEY_FIELD`].
    pub async fn api_call(
        &self,
        actor: &Actor,
        call: ApiCall,
        render: Render,
        op: ApiOp,
    ) -> Result<StoredResponse, MarketError> {
        let op = op.checked()?;
        if call.key.is_empty() || call.key.chars().count() > super::MAX_KEY_CHARS {
            return Err(MarketError::Invalid {
                field: IDEMPOTENCY_KEY_FIELD,
                reason: "must be 1 to 200 characters".into(),
            });
        }
        // The writer's key covers the request too: the same key with another request is a
        // new action, refused when it claims the partner's key.
        let key = IdemKey(format!(
            "http:{}",
            sha256_hex(&[call.partner.as_bytes(), call.key.as_bytes(), call.request_hash.as_bytes()])
        ));
        match self.act(actor, key, Action::Api { call, render, op }).await? {
            Done::Api(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// An order with what partners see of it.
    pub async fn partner_order(&self, order_id: i64) -> Result<Option<PartnerOrder>, MarketError> {
        let mut r = self.read().await?;
        Ok(partner_order(&mut r.conn(), order_id).await?)
    }

    /// The partner whose order an SMS told a household of (None: no partner's).
    pub async fn message_partner(&self, message_id: i64) -> Result<Option<String>, MarketError> {
        let mut r = self.read().await?;
        let row = r
            .conn()
            .fetch_optional("SELECT partner FROM api_orders WHERE message_id = $1", args![message_id])
            .await?;
        Ok(row.map(|r| r.text("partner")).transpose()?)
    }

    /// Active listings by id, with where they come from.
    pub async fn offered_listings(&self, f: &ListingFilter) -> Result<Vec<OfferedListing>, MarketError> {
        let mut r = self.read().await?;
        let rows = r
            .conn()
            .fetch_all(
                "SELECT l.id, l.household_id, l.product_id, p.code AS product_code, p.name_vi, p.name_en, p.unit, \
                 l.quantity_kg, l.price_per_kg, l.status, l.created_at_ms, v.id AS village_id, \
                 v.name AS village_name, c.code AS commune_code, c.name AS commune_name \
                 FROM listings l JOIN products p ON p.id = l.product_id \
                 JOIN households h ON h.id = l.household_id JOIN villages v ON v.id = h.village_id \
                 JOIN communes c ON c.code = v.commune_code \
                 WHERE l.status = 'active' AND NOT h.pending AND l.id > $1 AND ($2 = 0 OR l.product_id = $2) \
                 AND ($3 = 0 OR v.commune_code = $3) ORDER BY l.id LIMIT $4",
                args![f.after, f.product_id.unwrap_or(0), f.commune_code.map_or(0, i64::from), f.limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let id = r.int("id")?;
                let status = r.text("status")?;
                Ok::<_, StoreError>(OfferedListing {
                    listing: Listing {
                        id,
                        code: listing_code(id),
                        household_id: r.int("household_id")?,
                        product_id: r.int("product_id")?,
                        product_name_vi: r.text("name_vi")?,
                        product_name_en: r.text("name_en")?,
                        unit: r.text("unit")?,
                        quantity_kg: r.int("quantity_kg")?,
                        price_per_kg: r.int("price_per_kg")?,
                        status: ListingStatus::parse(&status)
                            .ok_or_else(|| corrupt("listings.status", &status))?,
                        created_at_ms: r.int("created_at_ms")?,
                    },
                    product_code: r.text("product_code")?,
                    village_id: r.int("village_id")?,
                    village_name: r.text("village_name")?,
                    commune_code: to_u32("commune_code", r.int("commune_code")?)?,
                    commune_name: r.text("commune_name")?,
                })
            })
            .collect::<Result<_, _>>()?)
    }

    /// The catalogue product with this code.
    pub fn product_by_code(&self, code: &str) -> Option<super::Product> {
        self.inner.products.iter().find(|p| p.code == code).cloned()
    }

    /// Households as the admin sees them, by id.
    pub async fn admin_households(&self, f: &HouseholdFilter) -> Result<Vec<AdminHousehold>, MarketError> {
        let mut r = self.read().await?;
        let rows = r
            .conn()
            .fetch_all(
                concat!(
                    admin_household_select!(),
                    " WHERE h.id > $1 AND ($2 = 0 OR v.commune_code = $2) AND ($3 = 0 OR h.village_id = $3) \
                     AND ($4 = '' OR h.msisdn = $4) ORDER BY h.id LIMIT $5"
                ),
                args![
                    f.after,
                    f.commune_code.map_or(0, i64::from),
                    f.village_id.unwrap_or(0),
                    f.msisdn.clone().unwrap_or_default(),
                    f.limit
                ],
            )
            .await?;
        Ok(rows.iter().map(admin_household).collect::<Result<_, _>>()?)
    }

    /// One household as the admin sees it.
    pub async fn admin_household(&self, id: i64) -> Result<Option<AdminHousehold>, MarketError> {
        let mut r = self.read().await?;
        Ok(admin_household_by_id(&mut r.conn(), id).await?)
    }

    /// Villages (of one commune, or all), by commune and name.
    pub async fn villages(&self, commune: Option<u32>) -> Result<Vec<VillageRow>, MarketError> {
        let mut r = self.read().await?;
        let rows = r
            .conn()
            .fetch_all(
                "SELECT v.id, v.name, v.commune_code, c.name AS commune_name, v.pending, \
                 t.id AS team_id, (SELECT COUNT(*) FROM households h WHERE h.village_id = v.id) AS households \
                 FROM villages v JOIN communes c ON c.code = v.commune_code LEFT JOIN teams t ON t.village_id = v.id \
                 WHERE ($1 = 0 OR v.commune_code = $1) ORDER BY v.commune_code, v.name_key, v.id",
                args![commune.map_or(0, i64::from)],
            )
            .await?;
        Ok(rows.iter().map(village_row).collect::<Result<_, _>>()?)
    }

    /// Teams (of one commune, or all), by village.
    pub async fn teams(&self, commune: Option<u32>) -> Result<Vec<TeamRow>, MarketError> {
        let mut r = self.read().await?;
        let rows = r
            .conn()
            .fetch_all(
                concat!(
                    team_select!(),
                    " WHERE ($1 = 0 OR v.commune_code = $1) ORDER BY v.commune_code, v.name_key, t.id"
                ),
                args![commune.map_or(0, i64::from)],
            )
            .await?;
        Ok(rows.iter().map(team_row).collect::<Result<_, _>>()?)
    }

    /// SMS in the outbox per status.
    pub async fn outbox_depth(&self) -> Result<Vec<(String, i64)>, MarketError> {
        let mut r = self.read().await?;
        let rows = r
            .conn()
            .fetch_all("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status ORDER BY status", args![])
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok::<_, StoreError>((r.text("status")?, r.int("n")?)))
            .collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_parts_should_be_unambiguous() {
        assert_ne!(sha256_hex(&[b"ab", b"c"]), sha256_hex(&[b"a", b"bc"]));
        assert_eq!(sha256_hex(&[b"x"]), sha256_hex(&[b"x"]));
        assert_eq!(sha256_hex(&[b"x"]).len(), 64);
    }

    #[test]
    fn references_should_be_trimmed_and_bounded() {
        assert_eq!(reference_text("r", Some("  ab ".into())).unwrap(), Some("ab".into()));
        assert_eq!(reference_text("r", Some("   ".into())).unwrap(), None);
        assert!(reference_text("r", Some("x".repeat(101))).is_err());
        assert!(reference_text("r", Some("a\nb".into())).is_err());
    }

    #[test]
    fn shipment_statuses_should_round_trip() {
        for s in [ShipmentStatus::Shipped, ShipmentStatus::Delivered] {
            assert_eq!(ShipmentStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ShipmentStatus::parse("lost"), None);
    }
}
