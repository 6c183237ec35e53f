//! The names menu files may use, implemented in code (`crate::ussd::backend`). `menus check`
//! refuses a file that names anything else.

/// Actions (run on a confirmation, an option, or after an input).
pub const ACTIONS: &[&str] = &[
    "listing.create",
    "listing.set_price",
    "listing.set_quantity",
    "listing.stop",
    "order.accept",
    "order.reject",
    "order.ship",
    "pin.set",
    "payment.confirm",
    "commune.lookup",
    "household.register",
    "leader.register_household",
    "leader.reset_pin",
];

/// Data sources of list screens.
pub const SOURCES: &[&str] = &["products", "orders.open", "orders.awaiting_payment", "listings.mine"];

/// Conditions of switch screens.
pub const CONDS: &[&str] = &["has_pin"];

/// Loaders that fill variables before a screen is shown.
pub const LOADERS: &[&str] = &["leader", "village.progress"];

/// Messages the engine and the actions use; every menu tree must define them.
pub const MESSAGES: &[&str] = &[
    "invalid",
    "next",
    "back",
    "yes",
    "no",
    "resume",
    "number_range",
    "text_format",
    "too_long",
    "pin_format",
    "msisdn_format",
    "pin_mismatch",
    "pin_wrong",
    "pin_locked",
    "not_allowed",
    "not_found",
    "already_registered",
    "unknown_commune",
    "error",
];
