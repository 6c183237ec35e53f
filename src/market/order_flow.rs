//! The one order state machine: which moves an order's status allows, who may make each,
//! and the status it leads to. The writer applies every change of an order through
//! [`OrderStatus::after`]; the USSD screens, the SMS keywords and the HTTP API offer or
//! refuse a move by asking the same table, so they can never disagree.
//!
//! ```text
//! new ──accept──▶ accepted ──ship──▶ shipped ──deliver──▶ delivered
//!  │ └─reject──▶ rejected    │  └─deliver─────────────────▶ │
//!  └─cancel──▶ cancelled ◀─cancel─┘      shipped | delivered ──pay──▶ paid
//! ```

use super::types::{Lang, MarketError, Order, OrderStatus};

/// A change of an order's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderMove {
    /// The household takes the order.
    Accept,
    /// The household refuses a new order (its quantity goes back on offer).
    Reject,
    /// The parcel was handed to the post office.
    Ship,
    /// The parcel reached the buyer.
    Deliver,
    /// The money was received.
    Pay,
    /// The order is called off (by the partner, or by the household after accepting it,
    /// with a reason); its quantity goes back on offer.
    Cancel,
}

impl OrderMove {
    /// The stored and logged form.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderMove::Accept => "accept",
            OrderMove::Reject => "reject",
            OrderMove::Ship => "ship",
            OrderMove::Deliver => "deliver",
            OrderMove::Pay => "pay",
            OrderMove::Cancel => "cancel",
        }
    }

    /// The audit event of the move.
    pub fn event_kind(self) -> &'static str {
        match self {
            OrderMove::Accept => "order_accepted",
            OrderMove::Reject => "order_rejected",
            OrderMove::Ship => "order_shipped",
            OrderMove::Deliver => "order_delivered",
            OrderMove::Pay => "order_paid",
            OrderMove::Cancel => "order_cancelled",
        }
    }

    /// Whether the ordered quantity goes back on the listing.
    pub fn restocks(self) -> bool {
        matches!(self, OrderMove::Reject | OrderMove::Cancel)
    }
}

/// Who makes a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mover {
    /// The selling household (USSD, SMS keywords).
    Household,
    /// A partner over the HTTP API (platform, post office, payment provider) or an admin.
    Partner,
}

use OrderMove::*;
use OrderStatus::*;

/// (from, move, to, the household may, a partner may).
const TABLE: &[(OrderStatus, OrderMove, OrderStatus, bool, bool)] = &[
    (New, Accept, Accepted, true, false),
    (New, Reject, Rejected, true, false),
    (New, Cancel, Cancelled, false, true),
    (Accepted, Ship, Shipped, true, true),
    (Accepted, Deliver, Delivered, false, true),
    (Accepted, Cancel, Cancelled, true, true),
    (Shipped, Deliver, Delivered, false, true),
    (Shipped, Pay, Paid, true, true),
    (Delivered, Pay, Paid, true, true),
];

impl OrderStatus {
    /// The status `m` leads to when `who` makes it, or `None` when the status does not
    /// allow it.
    pub fn after(self, m: OrderMove, who: Mover) -> Option<OrderStatus> {
        TABLE
            .iter()
            .find(|(from, mv, _, hh, partner)| {
                *from == self
                    && *mv == m
                    && match who {
                        Mover::Household => *hh,
                        Mover::Partner => *partner,
                    }
            })
            .map(|(_, _, to, _, _)| *to)
    }

    /// The moves `who` may make from this status, in the table's order (the order the
    /// screens offer them in).
    pub fn moves(self, who: Mover) -> impl Iterator<Item = OrderMove> {
        TABLE.iter().filter(move |row| row.0 == self && self.after(row.1, who).is_some()).map(|row| row.1)
    }

    /// Whether the order is still the household's business (shown in its open orders).
    pub fn is_open(self) -> bool {
        !matches!(self, Rejected | Paid | Cancelled)
    }
}

impl OrderStatus {
    /// How a household reads the status, in its language (the screens and the SMS use
    /// these words).
    pub fn label(self, lang: Lang) -> &'static str {
        match (lang, self) {
            (Lang::Vi, New) => "mới",
            (Lang::Vi, Accepted) => "đã nhận đơn",
            (Lang::Vi, Rejected) => "đã từ chối",
            (Lang::Vi, Shipped) => "đã giao bưu điện",
            (Lang::Vi, Delivered) => "đã đến người mua",
            (Lang::Vi, Paid) => "đã thanh toán",
            (Lang::Vi, Cancelled) => "đã hủy",
            (Lang::En, New) => "new",
            (Lang::En, Accepted) => "accepted",
            (Lang::En, Rejected) => "rejected",
            (Lang::En, Shipped) => "handed to post",
            (Lang::En, Delivered) => "delivered",
            (Lang::En, Paid) => "paid",
            (Lang::En, Cancelled) => "cancelled",
        }
    }

    /// The status in a few letters, for lists.
    pub fn short_label(self, lang: Lang) -> &'static str {
        match (lang, self) {
            (Lang::Vi, New) => "Mới",
            (Lang::Vi, Accepted) => "Chờ gửi",
            (Lang::Vi, Shipped) => "Đã gửi",
            (Lang::Vi, Delivered) => "Đã đến",
            (Lang::Vi, Paid) => "Đã trả",
            (Lang::Vi, Rejected) => "Từ chối",
            (Lang::Vi, Cancelled) => "Đã hủy",
            (Lang::En, New) => "new",
            (Lang::En, Accepted) => "to send",
            (Lang::En, Shipped) => "sent",
            (Lang::En, Delivered) => "arrived",
            (Lang::En, Paid) => "paid",
            (Lang::En, Rejected) => "rejected",
            (Lang::En, Cancelled) => "cancelled",
        }
    }
}

impl OrderMove {
    /// The move as a household reads it after "cannot" ("không thể {label}" / "cannot be
    /// {label}").
    pub fn label(self, lang: Lang) -> &'static str {
        match (lang, self) {
            (Lang::Vi, Accept) => "nhận đơn",
            (Lang::Vi, Reject) => "từ chối",
            (Lang::Vi, Ship) => "ghi đã giao bưu điện",
            (Lang::Vi, Deliver) => "ghi đã đến người mua",
            (Lang::Vi, Pay) => "xác nhận thanh toán",
            (Lang::Vi, Cancel) => "hủy đơn",
            (Lang::En, Accept) => "accepted",
            (Lang::En, Reject) => "rejected",
            (Lang::En, Ship) => "handed to post",
            (Lang::En, Deliver) => "delivered",
            (Lang::En, Pay) => "paid",
            (Lang::En, Cancel) => "cancelled",
        }
    }
}

/// The status `m` leads `order` to, or [`MarketError::OrderState`] naming where it is.
pub fn next(order: &Order, m: OrderMove, who: Mover) -> Result<OrderStatus, MarketError> {
    order.status.after(m, who).ok_or_else(|| MarketError::OrderState {
        code: order.code.clone(),
        status: order.status,
        wanted: m,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [OrderStatus; 7] = [New, Accepted, Rejected, Shipped, Delivered, Paid, Cancelled];

    #[test]
    fn household_should_only_move_its_own_steps() {
        assert_eq!(New.after(Accept, Mover::Household), Some(Accepted));
        assert_eq!(New.after(Reject, Mover::Household), Some(Rejected));
        assert_eq!(New.after(Ship, Mover::Household), None);
        assert_eq!(New.after(Cancel, Mover::Household), None, "a new order is rejected, not cancelled");
        assert_eq!(Accepted.after(Cancel, Mover::Household), Some(Cancelled));
        assert_eq!(Accepted.after(Deliver, Mover::Household), None);
        assert_eq!(Shipped.after(Pay, Mover::Household), Some(Paid));
        assert_eq!(New.moves(Mover::Household).collect::<Vec<_>>(), [Accept, Reject]);
        assert_eq!(Accepted.moves(Mover::Household).collect::<Vec<_>>(), [Ship, Cancel]);
    }

    #[test]
    fn ended_orders_should_allow_nothing() {
        for s in [Rejected, Paid, Cancelled] {
            assert!(!s.is_open());
            for who in [Mover::Household, Mover::Partner] {
                assert_eq!(s.moves(who).count(), 0, "{s:?}");
            }
        }
    }

    #[test]
    fn every_move_should_lead_forward_to_a_known_status() {
        for s in ALL {
            for who in [Mover::Household, Mover::Partner] {
                for m in s.moves(who) {
                    let to = s.after(m, who).unwrap();
                    assert_ne!(to, s);
                    assert!(ALL.contains(&to));
                }
            }
        }
    }
}
