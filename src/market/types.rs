//! The market's types: who acts, the rows the USSD menus show, and the error enum.

use crate::store::StoreError;

pub use crate::text::Lang;

/// Where an action came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A USSD dialogue.
    Ussd,
    /// An SMS (e.g. a reply keyword).
    Sms,
    /// The HTTP API (partners, admin).
    Http,
    /// The command line (import, seed-demo).
    Cli,
}

impl Channel {
    /// The stored form: `"ussd"`, `"sms"`, `"http"` or `"cli"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Ussd => "ussd",
            Channel::Sms => "sms",
            Channel::Http => "http",
            Channel::Cli => "cli",
        }
    }
}

/// Who performs an action, recorded in its audit event.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The normalised MSISDN (`84…`) for USSD and SMS; an operator or partner name for HTTP
    /// and the command line.
    pub msisdn: String,
    /// The channel the action came through.
    pub channel: Channel,
}

impl Actor {
    /// An actor on a channel.
    pub fn new(msisdn: impl Into<String>, channel: Channel) -> Actor {
        Actor { msisdn: msisdn.into(), channel }
    }
}

/// Idempotency key: the same key applies its action once; repeating it returns the first
/// outcome (re-read from the database) without applying anything again.
///
/// Build it from what identifies the step: the dialogue and its step for USSD, the
/// partner's name and request key for HTTP. At most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdemKey(pub String);

/// A registered household (hộ gia đình).
#[derive(Debug, Clone, PartialEq)]
pub struct Household {
    /// Row id.
    pub id: i64,
    /// Normalised MSISDN, `84` + 9 digits.
    pub msisdn: String,
    /// The household's name (usually the head's).
    pub name: String,
    /// Its village.
    pub village_id: i64,
    /// The village's name.
    pub village_name: String,
    /// The commune's official code (2025 list).
    pub commune_code: u32,
    /// The commune's name.
    pub commune_name: String,
    /// Menu and SMS language.
    pub language: Lang,
    /// Whether it has an e-payment account.
    pub has_epay: bool,
    /// Whether it leads its village's community technology team.
    pub is_leader: bool,
    /// Whether a payment PIN is set.
    pub has_pin: bool,
    /// Registered itself and not confirmed by its team leader yet: it cannot sell, and
    /// partners do not see it.
    pub pending: bool,
    /// Payment confirmation is locked until then (ms since the epoch; 0: not locked).
    pub pin_locked_until_ms: i64,
}

/// A commune or ward after the 2025 reform.
#[derive(Debug, Clone, PartialEq)]
pub struct Commune {
    /// Official code.
    pub code: u32,
    /// Name, e.g. "Xã Chi Lăng".
    pub name: String,
    /// `"xã"` or `"phường"`.
    pub kind: String,
}

/// A catalogue product.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// Row id.
    pub id: i64,
    /// Stable code, e.g. `"na"`.
    pub code: String,
    /// Vietnamese name.
    pub name_vi: String,
    /// English name.
    pub name_en: String,
    /// Unit of sale (`"kg"`).
    pub unit: String,
    /// Typical lowest price per unit, đồng.
    pub min_price: i64,
    /// Typical highest price per unit, đồng.
    pub max_price: i64,
}

impl Product {
    /// The name in a language.
    pub fn name(&self, lang: Lang) -> &str {
        match lang {
            Lang::Vi => &self.name_vi,
            Lang::En => &self.name_en,
        }
    }
}

/// A listing's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingStatus {
    /// On sale.
    Active,
    /// Withdrawn by the household.
    Stopped,
    /// Orders took the whole quantity.
    SoldOut,
}

impl ListingStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            ListingStatus::Active => "active",
            ListingStatus::Stopped => "stopped",
            ListingStatus::SoldOut => "sold_out",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<ListingStatus> {
        match s {
            "active" => Some(ListingStatus::Active),
            "stopped" => Some(ListingStatus::Stopped),
            "sold_out" => Some(ListingStatus::SoldOut),
            _ => None,
        }
    }
}

/// A household's offer of a product.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// Row id.
    pub id: i64,
    /// Code shown to people, `L` + the id on 6 digits (`L000123`).
    pub code: String,
    /// The selling household.
    pub household_id: i64,
    /// The product.
    pub product_id: i64,
    /// Product name, Vietnamese.
    pub product_name_vi: String,
    /// Product name, English.
    pub product_name_en: String,
    /// The product's unit of sale (`kg`, `lít`, `bó`, ...).
    pub unit: String,
    /// Quantity still on offer.
    pub quantity_kg: i64,
    /// Price per kg, đồng.
    pub price_per_kg: i64,
    /// State.
    pub status: ListingStatus,
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
}

/// An order's state: new → accepted | rejected; accepted → shipped → delivered → paid
/// (shipped → paid too); cancelled by the partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    /// Placed by a partner, waiting for the household.
    New,
    /// Accepted by the household.
    Accepted,
    /// Refused by the household.
    Rejected,
    /// Handed to the post office.
    Shipped,
    /// Delivered to the buyer.
    Delivered,
    /// Payment confirmed by the household.
    Paid,
    /// Cancelled by the partner.
    Cancelled,
}

impl OrderStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "new",
            OrderStatus::Accepted => "accepted",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Paid => "paid",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<OrderStatus> {
        Some(match s {
            "new" => OrderStatus::New,
            "accepted" => OrderStatus::Accepted,
            "rejected" => OrderStatus::Rejected,
            "shipped" => OrderStatus::Shipped,
            "delivered" => OrderStatus::Delivered,
            "paid" => OrderStatus::Paid,
            "cancelled" => OrderStatus::Cancelled,
            _ => return None,
        })
    }
}

/// Where a partner's order goes: the recipient and the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The recipient's name.
    pub name: String,
    /// The recipient's number, normalised (`84…`).
    pub phone: String,
    /// The address line (house number, street, village or ward).
    pub address: String,
    /// The commune's official code (2025 list).
    pub commune_code: u32,
}

/// An order a partner places (see [`super::Market::place_order_with`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    /// The listing ordered from.
    pub listing_id: i64,
    /// The buyer as the partner names them.
    pub buyer_name: String,
    /// Quantity, in the product's unit.
    pub quantity_kg: i64,
    /// Amount to be paid, đồng: the quantity times the listing's price.
    pub amount: i64,
    /// The buyer's number (required over the HTTP API).
    pub buyer_phone: Option<String>,
    /// Where the parcel goes (required over the HTTP API).
    pub delivery: Option<Delivery>,
}

/// An order for a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// Row id.
    pub id: i64,
    /// Code shown to people, `D` (đơn) + the id on 6 digits (`D000123`).
    pub code: String,
    /// The listing ordered from.
    pub listing_id: i64,
    /// The selling household.
    pub household_id: i64,
    /// Product name, Vietnamese.
    pub product_name_vi: String,
    /// Product name, English.
    pub product_name_en: String,
    /// The product's unit of sale (`products.unit`, e.g. `"kg"`).
    pub unit: String,
    /// The buyer as the partner names them.
    pub buyer_name: String,
    /// The buyer's number, normalised (`84…`); None for orders placed without one (the
    /// command line, seed-demo of old, tests).
    pub buyer_phone: Option<String>,
    /// Where the parcel goes; None like `buyer_phone`.
    pub delivery: Option<Delivery>,
    /// Quantity ordered.
    pub quantity_kg: i64,
    /// Amount to be paid, đồng.
    pub amount: i64,
    /// State.
    pub status: OrderStatus,
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
}

/// A village's community technology team leader.
#[derive(Debug, Clone, PartialEq)]
pub struct Leader {
    /// Name.
    pub name: String,
    /// Normalised MSISDN.
    pub msisdn: String,
}

/// A leader's view of their village, by the programme's definitions: a household counts
/// once its leader confirmed it; "selling" is at least one active listing with quantity
/// left; e-payment is an account recorded by a leader, an admin or a partner's payment.
#[derive(Debug, Clone, PartialEq)]
pub struct VillageProgress {
    /// The village.
    pub village_name: String,
    /// Confirmed households.
    pub households: i64,
    /// Confirmed households selling now (a digital shop).
    pub with_listing: i64,
    /// Confirmed households with an e-payment account.
    pub with_epay: i64,
    /// Self-registered households waiting for the leader.
    pub pending: i64,
}

/// A household of a village as its leader sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct VillageHousehold {
    /// Row id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Normalised MSISDN.
    pub msisdn: String,
    /// Waiting for the leader's confirmation.
    pub pending: bool,
    /// Selling now.
    pub selling: bool,
    /// Has an e-payment account.
    pub has_epay: bool,
    /// Has a payment PIN (or a lock) its leader can reset.
    pub has_pin: bool,
}

/// A household's sales: paid orders and their amounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sales {
    /// Orders paid this month (Vietnam time).
    pub month_orders: i64,
    /// Their amount, đồng.
    pub month_amount: i64,
    /// Orders paid in all.
    pub all_orders: i64,
    /// Their amount, đồng.
    pub all_amount: i64,
}

/// A village of a commune, for self-registration.
#[derive(Debug, Clone, PartialEq)]
pub struct Village {
    /// Row id.
    pub id: i64,
    /// Name.
    pub name: String,
}

/// A change to a listing.
#[derive(Debug, Clone)]
pub enum ListingChange {
    /// New price per kg, đồng.
    Price(i64),
    /// New quantity on offer, kg (a sold-out listing becomes active again).
    Quantity(i64),
    /// Withdraw the listing.
    Stop,
    /// Put a stopped listing on sale again (with what quantity it had left).
    Restart,
}

/// Counts for `chogate stats` and the reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    /// Registered households.
    pub households: i64,
    /// Listings ever created.
    pub listings: i64,
    /// Listings on sale.
    pub listings_active: i64,
    /// Orders per status (stored form), sorted by status.
    pub orders_by_status: Vec<(String, i64)>,
    /// Confirmed payments.
    pub payments: i64,
    /// Audit events.
    pub events: i64,
    /// USSD dialogues held (counted when they end).
    pub dialogues: i64,
    /// Outbox SMS per status, sorted by status.
    pub outbox_by_status: Vec<(String, i64)>,
}

/// What the writer task did since it started (for metrics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterCounters {
    /// Transactions committed (one per group).
    pub commits: u64,
    /// Actions answered from committed groups (applied, replayed or refused).
    pub actions: u64,
    /// Audit events written.
    pub events: u64,
    /// The most jobs taken in one group.
    pub largest_group: u64,
    /// Groups that failed as a whole (their actions were answered with an error).
    pub failed_groups: u64,
    /// Dialogue events dropped because the write queue was full.
    pub dropped_events: u64,
}

/// Everything the market refuses or fails at. Each message says its cause and none has a
/// `source()`, so a chain printed with `{:#}` says it once.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// No such row: "household", "order", "listing", "product", "commune".
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The action is not allowed: a wrong state transition, someone else's order, not a
    /// leader, an idempotency key used for another action, ...
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The order's status does not allow the move (see [`super::order_flow`]).
    #[error("order {code} is {}: it cannot {}", status.as_str(), wanted.as_str())]
    OrderState {
        /// The order's code.
        code: String,
        /// Where it is.
        status: OrderStatus,
        /// What was asked.
        wanted: super::order_flow::OrderMove,
    },
    /// An argument is out of range or malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The argument.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Wrong PIN; `remaining` tries before payment confirmation is locked.
    #[error("wrong PIN ({remaining} tries left)")]
    PinWrong {
        /// Tries left.
        remaining: u32,
    },
    /// Too many wrong PINs: payment confirmation is locked until then (ms since the epoch).
    #[error("PIN locked until {until_ms}")]
    PinLocked {
        /// End of the lock.
        until_ms: i64,
    },
    /// No PIN set for the household yet.
    #[error("no PIN set")]
    PinNotSet,
    /// The MSISDN is registered already.
    #[error("already registered")]
    AlreadyRegistered,
    /// The PIN pepper file cannot be used.
    #[error("PIN pepper file {path}: {reason}")]
    Pepper {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error("{0}")]
    Store(StoreError),
}

impl From<StoreError> for MarketError {
    fn from(e: StoreError) -> Self {
        MarketError::Store(e)
    }
}

/// Normalises `0912345678`, `+84912345678`, `84912345678`, `"84 912 345 678"` (also with
/// dots or dashes) to `"84912345678"`. Vietnamese mobile numbers: `84` + 9 digits, the
/// first of them 3, 5, 7, 8 or 9. Anything else is [`MarketError::Invalid`].
pub fn normalize_msisdn(s: &str) -> Result<String, MarketError> {
    crate::msisdn::normalize(s).ok_or_else(|| MarketError::Invalid {
        field: "msisdn",
        reason: "not a Vietnamese mobile number (0, 84 or +84, then 9 digits starting with 3, 5, 7, 8 or 9)"
            .to_owned(),
    })
}

/// The code shown for a listing id: `L000123`.
pub fn listing_code(id: i64) -> String {
    format!("L{id:06}")
}

/// The code shown for an order id: `D000123` (đơn hàng).
pub fn order_code(id: i64) -> String {
    format!("D{id:06}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_form_should_normalise_to_one_number() {
        for s in
            ["0912345678", "+84912345678", "84912345678", "84 912 345 678", "0912.345.678", " 0912-345-678 "]
        {
            assert_eq!(normalize_msisdn(s).unwrap(), "84912345678", "{s}");
        }
        assert_eq!(normalize_msisdn("0356789012").unwrap(), "84356789012");
    }

    #[test]
    fn malformed_or_non_mobile_numbers_should_be_invalid() {
        for s in [
            "",
            "12345",
            "0212345678",
            "091234567",
            "09123456789",
            "+1 202 555 0100",
            "09a2345678",
            "8+4912345678",
        ] {
            let err = normalize_msisdn(s).unwrap_err();
            assert!(matches!(err, MarketError::Invalid { field: "msisdn", .. }), "{s}: {err:?}");
        }
    }

    #[test]
    fn stored_forms_should_round_trip() {
        for l in [Lang::Vi, Lang::En] {
            assert_eq!(Lang::parse(l.as_str()), Some(l));
        }
        assert_eq!(Lang::parse("VI"), Some(Lang::Vi));
        assert_eq!(Lang::parse("fr"), None);
        for s in [ListingStatus::Active, ListingStatus::Stopped, ListingStatus::SoldOut] {
            assert_eq!(ListingStatus::parse(s.as_str()), Some(s));
        }
        use OrderStatus::*;
        for s in [New, Accepted, Rejected, Shipped, Delivered, Paid, Cancelled] {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(OrderStatus::parse("lost"), None);
    }

    #[test]
    fn codes_should_be_derived_from_ids() {
        assert_eq!(listing_code(123), "L000123");
        assert_eq!(order_code(7), "D000007");
        assert_eq!(listing_code(1_234_567), "L1234567");
    }
}
