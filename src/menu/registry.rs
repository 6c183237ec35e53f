//! The names menu files may use, implemented in code (`crate::ussd::backend`). `menus check`
//! refuses a file that names anything else.

/// Actions (run on a confirmation, an option, or after an input).
pub const ACTIONS: &[&str] = &[
    "listing.create",
    "listing.set_price",
    "listing.set_quantity",
    "listing.stop",
    "listing.restart",
    "order.accept",
    "order.reject",
    "order.ship",
    "order.cancel",
    "pin.set",
    "pin.set_and_pay",
    "payment.confirm",
    "commune.search",
    "village.check",
    "name.check",
    "household.register",
    "leader.check_msisdn",
    "leader.register_household",
    "leader.reset_pin",
    "pin.set_and_reset",
    "leader.confirm_household",
    "leader.refuse_household",
    "leader.set_epay",
];

/// Data sources of list screens.
pub const SOURCES: &[&str] = &[
    "products",
    "orders.open",
    "orders.awaiting_payment",
    "orders.history",
    "listings.active",
    "listings.stopped",
    "cancel_reasons",
    "communes.match",
    "villages.of_commune",
    "households.pending",
    "village.households",
];

/// Conditions of switch screens and of options offered only when they hold.
pub const CONDS: &[&str] = &[
    "has_pin",
    "no_pin",
    "pin_locked",
    "order.can_accept",
    "order.can_ship",
    "order.can_pay",
    "village.is_new",
    "hh.no_epay",
    "hh.has_pin",
];

/// Loaders that fill variables before a screen is shown.
pub const LOADERS: &[&str] = &["leader", "village.progress", "order", "pin.lock", "shop.sales"];

/// Messages the engine and the actions use; every menu tree must define them.
pub const MESSAGES: &[&str] = &[
    "invalid",
    "next",
    "back",
    "back_input",
    "yes",
    "no",
    "resume",
    "resume_topic",
    "number_range",
    "text_format",
    "too_long",
    "pin_format",
    "msisdn_format",
    "name_format",
    "pin_mismatch",
    "pin_wrong",
    "pin_locked",
    "pin_exists",
    "tracking_format",
    "order_state",
    "not_allowed",
    "not_found",
    "already_registered",
    "unknown_commune",
    "error",
];
