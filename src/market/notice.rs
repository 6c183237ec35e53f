//! The SMS texts the market queues in the outbox, in the household's language: one place
//! for them all, so that they keep the rules of the household's screens.
//!
//! - Vietnamese with its diacritics (the notifier falls back to unaccented text where the
//!   operator needs it); English second.
//! - Amounts as `1.500.000đ` (`1,500,000 VND`), products with their unit (`products.unit`),
//!   order codes as `D000012`, numbers in their national form (`0912…`, never `84…`).
//! - One verb for dialling: "Bấm *384#" / "Dial *384#"; the order actions and the menu
//!   options in the words of the USSD screens: "Nhận đơn", "Từ chối", "Đã giao bưu điện",
//!   "Hủy đơn", "xác nhận đã nhận tiền"; main menu 2 "Đơn hàng", 3 "Thanh toán".
//! - Each says what happens next, or what the household can do.

use super::types::{Lang, Order};

/// The service code households dial (printed in notifications).
pub(crate) const SERVICE_CODE: &str = "*384#";

/// How long a new-order notification stays worth sending.
pub(crate) const NEW_ORDER_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// How long the other notifications stay worth sending.
pub(crate) const NOTICE_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// `1500000` → `1.500.000` (Vietnamese) or `1,500,000` (English).
pub fn money(amount: i64, lang: Lang) -> String {
    let sep = match lang {
        Lang::Vi => '.',
        Lang::En => ',',
    };
    crate::text::group_thousands(amount, sep)
}

/// An amount with its currency: `1.500.000đ`, `1,500,000 VND`.
pub fn amount(value: i64, lang: Lang) -> String {
    match lang {
        Lang::Vi => format!("{}đ", money(value, lang)),
        Lang::En => format!("{} VND", money(value, lang)),
    }
}

/// What was ordered, with the unit: `50 kg Na`, `50 kg custard apple`.
pub fn goods(order: &Order, lang: Lang) -> String {
    match lang {
        Lang::Vi => format!("{} {} {}", order.quantity_kg, order.unit, order.product_name_vi),
        Lang::En => format!("{} {} {}", order.quantity_kg, order.unit, order.product_name_en.to_lowercase()),
    }
}

/// "New order" notification for the selling household.
pub(crate) fn new_order(order: &Order, lang: Lang) -> String {
    let (code, goods, amount) = (&order.code, goods(order, lang), amount(order.amount, lang));
    match lang {
        Lang::Vi => format!(
            "Đơn mới {code}: {goods}, {amount}, người mua {}. Bấm {SERVICE_CODE}, chọn 2 (Đơn hàng) để Nhận \
             đơn hoặc Từ chối.",
            order.buyer_name
        ),
        Lang::En => format!(
            "New order {code}: {goods}, {amount}, buyer {}. Dial {SERVICE_CODE}, choose 2 (Orders) to accept or \
             reject it.",
            order.buyer_name
        ),
    }
}

/// A partner called the order off.
pub(crate) fn order_cancelled(order: &Order, partner: &str, reason: &str, lang: Lang) -> String {
    let (code, goods, amount) = (&order.code, goods(order, lang), amount(order.amount, lang));
    match lang {
        Lang::Vi => format!(
            "Đơn {code} ({goods}, {amount}) đã bị {partner} hủy. Lý do: {reason}. Không gửi hàng cho đơn này; \
             số hàng đã được cộng lại vào tin bán."
        ),
        Lang::En => format!(
            "Order {code} ({goods}, {amount}) was cancelled by {partner}. Reason: {reason}. Do not send the goods; \
             the quantity is back on your listing."
        ),
    }
}

/// The post office took the parcel (it reported the order shipped).
pub(crate) fn order_shipped(order: &Order, partner: &str, tracking_code: Option<&str>, lang: Lang) -> String {
    let (code, goods) = (&order.code, goods(order, lang));
    match (lang, tracking_code) {
        (Lang::Vi, Some(t)) => {
            format!(
                "Đơn {code} ({goods}) đã giao bưu điện ({partner}), mã vận đơn {t}. Có tin giao hàng sẽ báo qua SMS."
            )
        }
        (Lang::Vi, None) => {
            format!("Đơn {code} ({goods}) đã giao bưu điện ({partner}). Có tin giao hàng sẽ báo qua SMS.")
        }
        (Lang::En, Some(t)) => format!(
            "Order {code} ({goods}) handed to the post office ({partner}), tracking code {t}. You will hear by SMS \
             when it is delivered."
        ),
        (Lang::En, None) => format!(
            "Order {code} ({goods}) handed to the post office ({partner}). You will hear by SMS when it is delivered."
        ),
    }
}

/// The parcel reached the buyer: the household confirms the payment once it has the money.
pub(crate) fn order_delivered(order: &Order, lang: Lang) -> String {
    let (code, goods, amount) = (&order.code, goods(order, lang), amount(order.amount, lang));
    match lang {
        Lang::Vi => format!(
            "Đơn {code} ({goods}) đã giao tới người mua. Khi nhận được {amount}, bấm {SERVICE_CODE}, chọn 3 \
             (Thanh toán) để xác nhận đã nhận tiền."
        ),
        Lang::En => format!(
            "Order {code} ({goods}) was delivered to the buyer. When you receive {amount}, dial {SERVICE_CODE}, \
             choose 3 (Payments) to confirm the money received."
        ),
    }
}

/// A payment partner recorded the money: nothing left for the household to confirm.
pub(crate) fn payment_received(order: &Order, partner: &str, lang: Lang) -> String {
    let (code, goods, amount) = (&order.code, goods(order, lang), amount(order.amount, lang));
    match lang {
        Lang::Vi => {
            format!(
                "Đơn {code} ({goods}) đã được thanh toán {amount} qua {partner}. Không cần xác nhận đã nhận tiền."
            )
        }
        Lang::En => {
            format!(
                "Order {code} ({goods}) was paid {amount} via {partner}. No need to confirm the money received."
            )
        }
    }
}

/// The team leader cleared the household's PIN.
pub(crate) fn pin_reset(leader_name: &str, leader_msisdn: &str, lang: Lang) -> String {
    let phone = national(leader_msisdn);
    match lang {
        Lang::Vi => format!(
            "Tổ trưởng {leader_name} ({phone}) đã đặt lại mã PIN của bạn. Lần thanh toán tới, bấm {SERVICE_CODE}, \
             chọn 3 (Thanh toán) để tạo PIN mới. Nếu bạn không yêu cầu, hãy gọi tổ trưởng."
        ),
        Lang::En => format!(
            "Your team leader {leader_name} ({phone}) reset your PIN. At your next payment, dial {SERVICE_CODE}, \
             choose 3 (Payments) to create a new one. If you did not ask for this, call your leader."
        ),
    }
}

/// 84912345678 → 0912345678, as people write their numbers.
pub fn national(msisdn: &str) -> String {
    match msisdn.strip_prefix("84") {
        Some(rest) => format!("0{rest}"),
        None => msisdn.to_owned(),
    }
}

/// To a village's team leader: a household registered itself and waits for them.
pub(crate) fn signed_up(name: &str, msisdn: &str, village: &str, lang: Lang) -> String {
    let number = national(msisdn);
    match lang {
        Lang::Vi => format!(
            "Hộ {name} ({number}) đăng ký bán hàng ở {village}. Bấm {SERVICE_CODE}, chọn 1 (Chờ xác nhận) để xác nhận."
        ),
        Lang::En => format!(
            "{name} ({number}) signed up to sell in {village}. Dial {SERVICE_CODE}, choose 1 (Sign-ups to confirm) to confirm."
        ),
    }
}

/// To a household its leader confirmed or registered: what it can do now.
pub(crate) fn welcome(name: &str, lang: Lang) -> String {
    match lang {
        Lang::Vi => format!(
            "Chào {name}! Cửa hàng Chợ 384 của bạn đã sẵn sàng. Bấm {SERVICE_CODE} để đăng bán hàng, xem đơn, \
             xác nhận thanh toán. Nhắn DH để xem đơn."
        ),
        Lang::En => format!(
            "Welcome {name}! Your Market 384 shop is ready. Dial {SERVICE_CODE} to sell, see orders and confirm \
             payments. Text DH to see your orders."
        ),
    }
}

/// To a number whose self-registration its leader refused.
pub(crate) fn refused(leader: &str, leader_msisdn: &str, village: &str, lang: Lang) -> String {
    let number = national(leader_msisdn);
    match lang {
        Lang::Vi => format!(
            "Tổ trưởng {leader} chưa xác nhận đăng ký Chợ 384 của bạn ở {village}. Gọi {number} để hỏi thêm."
        ),
        Lang::En => format!(
            "{leader}, team leader of {village}, did not confirm your Market 384 sign-up. Call {number} to ask why."
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

    /// D000012: 50 kg of custard apple for 1.500.000đ, from Shopee.
    fn na_order() -> Order {
        Order {
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
        }
    }

    #[test]
    fn new_order_text_should_name_code_product_and_amount() {
        let order = na_order();
        assert_eq!(
            new_order(&order, Lang::Vi),
            "Đơn mới D000012: 50 kg Na, 1.500.000đ, người mua Shopee. Bấm *384#, chọn 2 (Đơn hàng) để Nhận đơn \
             hoặc Từ chối."
        );
        assert_eq!(
            new_order(&order, Lang::En),
            "New order D000012: 50 kg custard apple, 1,500,000 VND, buyer Shopee. Dial *384#, choose 2 (Orders) \
             to accept or reject it."
        );
        // The product's own unit.
        let bunches =
            Order { unit: "bó".into(), quantity_kg: 3, product_name_vi: "Rau bò khai".into(), ..order };
        assert!(new_order(&bunches, Lang::Vi).contains(": 3 bó Rau bò khai, "));
    }

    #[test]
    fn no_text_should_dial_with_another_verb_or_show_a_raw_number() {
        let order = na_order();
        assert_eq!(
            order_shipped(&order, "vnpost", Some("EB1VN"), Lang::En),
            "Order D000012 (50 kg custard apple) handed to the post office (vnpost), tracking code EB1VN. You will \
             hear by SMS when it is delivered."
        );
        assert_eq!(
            order_shipped(&order, "vnpost", None, Lang::Vi),
            "Đơn D000012 (50 kg Na) đã giao bưu điện (vnpost). Có tin giao hàng sẽ báo qua SMS."
        );
        assert_eq!(
            order_delivered(&order, Lang::En),
            "Order D000012 (50 kg custard apple) was delivered to the buyer. When you receive 1,500,000 VND, dial \
             *384#, choose 3 (Payments) to confirm the money received."
        );
        assert_eq!(
            payment_received(&order, "vnpay", Lang::En),
            "Order D000012 (50 kg custard apple) was paid 1,500,000 VND via vnpay. No need to confirm the money \
             received."
        );
        for lang in [Lang::Vi, Lang::En] {
            for text in [
                new_order(&order, lang),
                order_cancelled(&order, "shopee", "Người mua đổi ý", lang),
                order_shipped(&order, "vnpost", Some("EB1VN"), lang),
                order_delivered(&order, lang),
                payment_received(&order, "vnpay", lang),
                pin_reset("Hoàng Văn Minh", "84987000001", lang),
            ] {
                assert!(!text.contains("Quay") && !text.contains("84987000001"), "{text}");
                assert!(text.contains("D000012") || text.contains("0987000001"), "{text}");
                let dial = if lang == Lang::Vi { "bấm *384#" } else { "dial *384#" };
                assert!(!text.contains("*384#") || text.to_lowercase().contains(dial), "{text}");
            }
        }
    }
}
