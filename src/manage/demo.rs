//! `seed-demo`: a small living market for newcomers: five villages of three real communes
//! (2025 codes), a team leader each, thirty households with e-payment accounts and PINs
//! here and there, listings of local produce, and orders in every state.
//!
//! Every step is a market action with a fixed idempotency key (`demo1:…`), so running it
//! again applies nothing twice and changes nothing. The MSISDNs are made-up demo numbers
//! (`0912100…` leaders, `0912200…` households): never point a demo database at a real SMSC.

use std::io::Write;

use super::ManageError;
use crate::market::{
    Actor, Channel, Delivery, Household, IdemKey, Lang, Listing, Market, MarketError, NewOrder, Order,
    OrderMove, OrderStatus,
};

/// Xã Chi Lăng, Xã Bắc Sơn, Xã Vạn Linh (2025 list).
const COMMUNES: [u32; 3] = [6463, 6325, 6505];

/// (commune, village, leader's name).
const VILLAGES: [(u32, &str, &str); 5] = [
    (6463, "Thôn Đồng Lâm", "Hoàng Văn Minh"),
    (6463, "Thôn Bắc Thủy", "Lương Thị Hằng"),
    (6325, "Thôn Quỳnh Sơn", "Dương Văn Thắng"),
    (6325, "Thôn Hồng Phong", "Hà Thị Nguyệt"),
    (6505, "Thôn Còn Coóc", "Lộc Văn Sáu"),
];

/// Households, five per village in the order of [`VILLAGES`].
const HOUSEHOLDS: [&str; 25] = [
    "Nông Thị Hoa",
    "Vi Văn Hùng",
    "Lý Thị Mai",
    "Chu Văn Bình",
    "Mông Thị Thu",
    "Hoàng Thị Lan",
    "Triệu Văn Nam",
    "Lộc Thị Xuân",
    "Nông Văn Tiến",
    "Đinh Thị Huệ",
    "Dương Thị Hạnh",
    "Hà Văn Long",
    "La Thị Sen",
    "Lương Văn Quý",
    "Vi Thị Duyên",
    "Hoàng Văn Dũng",
    "Nguyễn Thị Hà",
    "Lăng Văn Khoa",
    "Chu Thị Nhung",
    "Triệu Văn Phúc",
    "Lộc Thị Hiền",
    "Hoàng Văn Cường",
    "Nông Thị Yến",
    "Mã Văn Toàn",
    "Lý Thị Thơm",
];

/// A household that registered itself (English menus) and waits for its leader.
const SELF_REGISTERED: &str = "Vy Thị Ngọc";

/// (household number, product code, kg, đồng per kg).
const LISTINGS: [(usize, &str, i64, i64); 16] = [
    (1, "na", 200, 35_000),
    (1, "thach_den", 50, 60_000),
    (2, "na", 150, 32_000),
    (3, "hoa_hoi", 80, 150_000),
    (4, "rau_bo_khai", 30, 50_000),
    (6, "na", 300, 30_000),
    (7, "lap_suon", 40, 320_000),
    (9, "mang_kho", 25, 250_000),
    (11, "quyt_bac_son", 500, 35_000),
    (12, "quyt_bac_son", 300, 40_000),
    (13, "hoa_hoi", 60, 180_000),
    (16, "hong_bao_lam", 200, 30_000),
    (18, "mat_ong", 20, 400_000),
    (21, "che_van_linh", 30, 600_000),
    (22, "che_van_linh", 15, 900_000),
    (24, "thach_den", 100, 45_000),
];

/// One demo order: from a listing of [`LISTINGS`], by a buyer, to an address in Lạng Sơn,
/// taken to a state.
struct DemoOrder {
    listing: usize,
    buyer: &'static str,
    buyer_phone: &'static str,
    kg: i64,
    to: OrderStatus,
    /// Recipient, their number, address line, commune (2025 code).
    delivery: (&'static str, &'static str, &'static str, u32),
}

const fn order(
    listing: usize,
    buyer: &'static str,
    buyer_phone: &'static str,
    kg: i64,
    to: OrderStatus,
    delivery: (&'static str, &'static str, &'static str, u32),
) -> DemoOrder {
    DemoOrder { listing, buyer, buyer_phone, kg, to, delivery }
}

/// The demo's orders. Buyers' numbers are made up too (`0912300…`).
const ORDERS: [DemoOrder; 8] = [
    order(
        0,
        "Nguyễn Thị Hương",
        "0912300001",
        20,
        OrderStatus::New,
        ("Nguyễn Thị Hương", "0912300001", "Số 12 Trần Đăng Ninh", 5983),
    ),
    order(
        1,
        "Cửa hàng Nông sản Xứ Lạng",
        "0912300002",
        10,
        OrderStatus::Shipped,
        ("Hoàng Văn Sơn", "0912300012", "Số 45 Bà Triệu", 5977),
    ),
    order(
        0,
        "Bưu điện Chi Lăng",
        "0912300003",
        15,
        OrderStatus::Paid,
        ("Lương Thị Thảo", "0912300003", "Thôn Bắc Thủy", 6463),
    ),
    order(
        8,
        "Siêu thị Co.op Lạng Sơn",
        "0912300004",
        100,
        OrderStatus::Accepted,
        ("Kho hàng Co.op Lạng Sơn", "0912300014", "Số 168 Bà Triệu", 5977),
    ),
    order(
        13,
        "Trà Việt Online",
        "0912300005",
        5,
        OrderStatus::Delivered,
        ("Phạm Minh Đức", "0912300015", "Số 30 Nguyễn Du", 5986),
    ),
    order(
        5,
        "Trần Văn Tú",
        "0912300006",
        50,
        OrderStatus::Rejected,
        ("Trần Văn Tú", "0912300006", "Số 7 Ngô Gia Tự", 6187),
    ),
    order(
        3,
        "Công ty Gia vị Đông Bắc",
        "0912300007",
        20,
        OrderStatus::New,
        ("Vi Thị Lan", "0912300017", "Số 21 Lê Lợi", 5983),
    ),
    order(
        9,
        "Shop Quýt Bắc Sơn",
        "0912300008",
        60,
        OrderStatus::Paid,
        ("Hà Văn Thành", "0912300008", "Thôn Quỳnh Sơn", 6325),
    ),
];

/// (household number, PIN): the households that confirm payments.
const PINS: [(usize, &str); 3] = [(1, "1234"), (12, "2468"), (21, "1357")];

/// The household a newcomer should dial as (it has a new order, a shipped one to confirm
/// payment for, and a PIN).
const DEMO_HOUSEHOLD: usize = 1;

fn leader_msisdn(i: usize) -> String {
    format!("0912100{:03}", i + 1)
}

fn household_msisdn(n: usize) -> String {
    format!("0912200{n:03}")
}

fn key(s: String) -> IdemKey {
    IdemKey(format!("demo1:{s}"))
}

/// What the demo holds (the same on every run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    /// Villages (each with a team leader).
    pub villages: usize,
    /// Households, leaders included.
    pub households: usize,
    /// Of which with an e-payment account.
    pub with_epay: usize,
    /// Listings.
    pub listings: usize,
    /// Orders per state they were taken to: new, accepted, shipped, delivered, paid, rejected.
    pub orders: Vec<(OrderStatus, usize)>,
    /// A household to dial as (normalised MSISDN).
    pub household_msisdn: String,
    /// Its village's team leader (normalised MSISDN).
    pub leader_msisdn: String,
}

fn context(what: String) -> impl FnOnce(MarketError) -> ManageError {
    move |e| ManageError::Market(MarketError::NotAllowed(format!("seed-demo: {what}: {e}")))
}

/// Takes an order from New to `to` (each step its own key).
async fn advance(
    m: &Market,
    a: &Actor,
    n: usize,
    order: &Order,
    pin: Option<&str>,
) -> Result<(), ManageError> {
    use OrderStatus::*;
    let to = ORDERS[n].to;
    let h = order.household_id;
    let step = |s: &str| key(format!("order:{n}:{s}"));
    let err = || context(format!("order {n}"));
    if to == Rejected {
        m.move_order(a, step("reject"), h, order.id, OrderMove::Reject, None).await.map_err(err())?;
        return Ok(());
    }
    if to == New {
        return Ok(());
    }
    m.move_order(a, step("accept"), h, order.id, OrderMove::Accept, None).await.map_err(err())?;
    if to == Accepted {
        return Ok(());
    }
    m.move_order(a, step("ship"), h, order.id, OrderMove::Ship, None).await.map_err(err())?;
    if to == Shipped {
        return Ok(());
    }
    m.mark_delivered(a, step("deliver"), order.id).await.map_err(err())?;
    if to == Delivered {
        return Ok(());
    }
    let pin =
        pin.ok_or_else(|| MarketError::NotAllowed(format!("seed-demo: order {n}: no PIN to pay with")))?;
    m.confirm_payment(a, step("pay"), h, order.id, pin).await.map_err(err())?;
    Ok(())
}

/// Creates the demo market (or, run again, replays it and changes nothing) and writes
/// what it holds and two MSISDNs to try with `chogate phone`.
pub async fn seed_demo(market: &Market, out: &mut dyn Write) -> Result<DemoSummary, ManageError> {
    let a = Actor::new("seed-demo", Channel::Cli);
    let m = market;
    let mut leaders: Vec<Household> = Vec::new();
    for (i, (commune, village, name)) in VILLAGES.iter().enumerate() {
        let l = m
            .register_leader(
                &a,
                key(format!("leader:{i}")),
                &leader_msisdn(i),
                name,
                *commune,
                village,
                Lang::Vi,
            )
            .await
            .map_err(context(format!("leader of {village}")))?;
        m.set_epay(&a, key(format!("leader:{i}:epay")), l.id, true)
            .await
            .map_err(context(format!("e-payment of {name}")))?;
        leaders.push(l);
    }
    let mut households: Vec<Household> = Vec::new();
    let mut with_epay = leaders.len();
    for (j, name) in HOUSEHOLDS.iter().enumerate() {
        let n = j + 1;
        let leader = &leaders[j / 5];
        let h = m
            .register_household(&a, key(format!("household:{n}")), leader.id, &household_msisdn(n), name)
            .await
            .map_err(context(format!("household {n}")))?;
        if n % 3 == 1 {
            m.set_epay(&a, key(format!("household:{n}:epay")), h.id, true)
                .await
                .map_err(context(format!("e-payment of household {n}")))?;
            with_epay += 1;
        }
        households.push(h);
    }
    let (commune, village, _) = VILLAGES[0];
    m.self_register(
        &a,
        key("self_registered".to_owned()),
        &household_msisdn(HOUSEHOLDS.len() + 1),
        commune,
        village,
        SELF_REGISTERED,
        Lang::En,
    )
    .await
    .map_err(context("self-registered household".to_owned()))?;
    for (n, pin) in PINS {
        m.set_pin(&a, key(format!("household:{n}:pin")), households[n - 1].id, pin)
            .await
            .map_err(context(format!("PIN of household {n}")))?;
    }
    let products = m.products().await?;
    let mut listings: Vec<Listing> = Vec::new();
    for (i, (n, code, kg, price)) in LISTINGS.iter().enumerate() {
        let product = products.iter().find(|p| p.code == *code).ok_or_else(|| {
            MarketError::NotAllowed(format!("seed-demo: no product {code:?} in the catalogue"))
        })?;
        let l = m
            .create_listing(&a, key(format!("listing:{i}")), households[n - 1].id, product.id, *kg, *price)
            .await
            .map_err(context(format!("listing {i}")))?;
        listings.push(l);
    }
    for (n, o) in ORDERS.iter().enumerate() {
        let l = &listings[o.listing];
        let (name, phone, address, commune_code) = o.delivery;
        let new = NewOrder {
            listing_id: l.id,
            buyer_name: o.buyer.to_owned(),
            quantity_kg: o.kg,
            amount: o.kg * l.price_per_kg,
            buyer_phone: Some(o.buyer_phone.to_owned()),
            delivery: Some(Delivery {
                name: name.to_owned(),
                phone: phone.to_owned(),
                address: address.to_owned(),
                commune_code,
            }),
        };
        let order = m
            .place_order_with(&a, key(format!("order:{n}")), new)
            .await
            .map_err(context(format!("order {n}")))?;
        let owner = LISTINGS[o.listing].0;
        let pin = PINS.iter().find(|(h, _)| *h == owner).map(|(_, p)| *p);
        advance(m, &a, n, &order, pin).await?;
    }

    use OrderStatus::*;
    let orders: Vec<(OrderStatus, usize)> = [New, Accepted, Shipped, Delivered, Paid, Rejected]
        .into_iter()
        .map(|s| (s, ORDERS.iter().filter(|o| o.to == s).count()))
        .collect();
    let demo = &households[DEMO_HOUSEHOLD - 1];
    let leader = &leaders[(DEMO_HOUSEHOLD - 1) / 5];
    let summary = DemoSummary {
        villages: VILLAGES.len(),
        households: leaders.len() + households.len() + 1,
        with_epay,
        listings: listings.len(),
        orders,
        household_msisdn: demo.msisdn.clone(),
        leader_msisdn: leader.msisdn.clone(),
    };

    let mut communes = Vec::new();
    for code in COMMUNES {
        let name = m.commune(code).await?.map_or_else(|| "?".to_owned(), |c| c.name);
        communes.push(format!("{name} ({code})"));
    }
    let demo_pin = PINS.iter().find(|(h, _)| *h == DEMO_HOUSEHOLD).map_or("", |(_, p)| *p);
    let orders = summary.orders.iter().map(|(s, n)| format!("{n} {}", s.as_str())).collect::<Vec<_>>();
    writeln!(out, "Demo market ready (the same on every run: fixed idempotency keys):")?;
    writeln!(out, "  communes    {}", communes.join(", "))?;
    writeln!(out, "  villages    {}, each with its community tech team leader", summary.villages)?;
    writeln!(
        out,
        "  households  {} ({} with e-payment, {} with a PIN, 1 self-registered waiting for its leader)",
        summary.households,
        summary.with_epay,
        PINS.len()
    )?;
    writeln!(
        out,
        "  listings    {} (na, hoa hồi, thạch đen, quýt Bắc Sơn, chè Vạn Linh ...)",
        summary.listings
    )?;
    writeln!(out, "  orders      {} ({})", ORDERS.len(), orders.join(", "))?;
    writeln!(out, "Try it, with `chogate serve` running:")?;
    writeln!(
        out,
        "  chogate phone {}   household {} of {}: a new order to accept, a shipped one to confirm \
         payment for (PIN {demo_pin})",
        demo.msisdn, demo.name, demo.village_name
    )?;
    writeln!(
        out,
        "  chogate phone {}   {}, team leader of {}: village progress, registrations, PIN resets (confirmed with a PIN of their own, made at the first)",
        leader.msisdn, leader.name, leader.village_name
    )?;
    Ok(summary)
}
