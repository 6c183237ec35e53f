//! SMS texts the market queues in the outbox, in the household's language.

use super::types::{Lang, Order};

/// The service code households dial (printed in notifications).
pub(crate) const SERVICE_CODE: &str = "*384#";

/// How long a new-order notification stays worth sending.
pub(crate) const NEW_ORDER_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// `1500000` → `1.500.000` (Vietnamese) or `1,500,000` (English).
pub fn money(amount: i64, lang: Lang) -> String {
    let sep = match lang {
        Lang::Vi => '.',
        Lang::En => ',',
    };
    let digits = amount.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if amount < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

/// "New order" notification for the selling household.
pub(crate) fn new_order(order: &Order, lang: Lang) -> String {
    match lang {
        Lang::Vi => format!(
            "Đơn mới {}: {} kg {}, {}đ, người mua {}. Quay {} để nhận đơn.",
            order.code,
            order.quantity_kg,
            order.product_name_vi,
            money(order.amount, lang),
            order.buyer_name,
            SERVICE_CODE
        ),
        Lang::En => format!(
            "New order {}: {} kg {}, {} VND, buyer {}. Dial {} to accept it.",
            order.code,
            order.quantity_kg,
            order.product_name_en.to_lowercase(),
            money(order.amount, lang),
            order.buyer_name,
            SERVICE_CODE
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::types::OrderStatus;

    #[test]
    fn money_should_group_thousands_per_language() {
        assert_eq!(money(1_500_000, Lang::Vi), "1.500.000");
        assert_eq!(money(1_500_000, Lang::En), "1,500,000");
        assert_eq!(money(999, Lang::Vi), "999");
        assert_eq!(money(1000, Lang::Vi), "1.000");
        assert_eq!(money(0, Lang::En), "0");
    }

    #[test]
    fn new_order_text_should_name_code_product_and_amount() {
        let order = Order {
            id: 12,
            code: "D000012".into(),
            listing_id: 1,
            household_id: 1,
            product_name_vi: "Na".into(),
            product_name_en: "Custard apple".into(),
            unit: "kg".into(),
            buyer_name: "Shopee".into(),
            buyer_phone: None,
            delivery: None,
            quantity_kg: 50,
            amount: 1_500_000,
            status: OrderStatus::New,
            created_at_ms: 0,
        };
        assert_eq!(
            new_order(&order, Lang::Vi),
            "Đơn mới D000012: 50 kg Na, 1.500.000đ, người mua Shopee. Quay *384# để nhận đơn."
        );
        assert!(new_order(&order, Lang::En).contains("50 kg custard apple, 1,500,000 VND"));
    }
}
