//! The menu engine's backend: data sources, actions, conditions and loaders named in the
//! menu files (see [`crate::menu::registry`]), implemented on the market.
//!
//! What a screen offers follows the market's rules: an order's options come from the order
//! state machine ([`crate::market::order_flow`]), read afresh when the order is shown; a
//! refusal names its reason in the subscriber's language.

use crate::market::{
    Actor, Channel, Household, IdemKey, LeaderDecision, ListingChange, ListingStatus, Market, MarketError,
    Mover, Order, OrderMove, national, person_name, village_match_key,
};
use crate::menu::engine::{ActError, Backend, Item, Vars};
use crate::menu::{Lang, Text};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use tracing::warn;

/// An amount as the household reads it: `250.000` in Vietnamese, `250,000` in English.
/// (Quantities are grouped the same way: `100.000` kg.)
fn money(amount: i64, lang: Lang) -> String {
    crate::menu::engine::group_thousands(amount, lang)
}

/// `84912345678` → `0912***678`: enough for a leader to tell two households apart.
pub fn masked_national(msisdn: &str) -> String {
    let n = national(msisdn);
    let len = n.chars().count();
    n.chars().enumerate().map(|(i, c)| if i >= 4 && i + 3 < len { '*' } else { c }).collect()
}

/// A text in both languages, from one formatter.
fn both(f: impl Fn(Lang) -> String) -> Text {
    Text { vi: f(Lang::Vi), en: f(Lang::En) }
}

/// Why a household calls off an order it accepted: (stored code, Vietnamese, English).
const CANCEL_REASONS: &[(&str, &str, &str)] = &[
    ("out_of_stock", "Hết hàng", "Out of stock"),
    ("damaged", "Hàng hỏng", "Goods damaged"),
    ("cannot_ship", "Không gửi được", "Cannot send it"),
    ("other", "Lý do khác", "Another reason"),
];

/// The product catalogue as menu items, built at its first use and shared by every
/// dialogue after: the market loads the catalogue once, at open.
#[derive(Debug, Default)]
pub struct ProductItems(OnceLock<Arc<Vec<Item>>>);

impl ProductItems {
    async fn get(&self, market: &Market) -> Result<Arc<Vec<Item>>, MarketError> {
        if let Some(items) = self.0.get() {
            return Ok(Arc::clone(items));
        }
        let products = market.products().await?;
        let items = products
            .iter()
            .map(|p| Item {
                id: p.id.to_string(),
                label: Text { vi: p.name_vi.clone(), en: p.name_en.clone() },
                fields: vec![("code".into(), p.code.clone()), ("unit".into(), p.unit.clone())],
            })
            .collect();
        Ok(Arc::clone(self.0.get_or_init(|| Arc::new(items))))
    }
}

/// One dialogue step's view of the market, borrowing what the dialogue holds.
pub struct MarketBackend<'a> {
    market: &'a Market,
    products: &'a ProductItems,
    household: Option<&'a Household>,
    msisdn: &'a str,
    lang: Lang,
    hotline: &'a str,
}

impl<'a> MarketBackend<'a> {
    /// For the subscriber `msisdn` (known as `household`, or not registered yet); `hotline`
    /// is `[ussd] hotline`.
    pub fn new(
        market: &'a Market,
        products: &'a ProductItems,
        household: Option<&'a Household>,
        msisdn: &'a str,
        lang: Lang,
        hotline: &'a str,
    ) -> Self {
        MarketBackend { market, products, household, msisdn, lang, hotline }
    }

    fn actor(&self) -> Actor {
        Actor { msisdn: self.msisdn.to_owned(), channel: Channel::Ussd }
    }

    fn household(&self) -> Result<&Household, ActError> {
        self.household.ok_or_else(|| ActError::fail("not_allowed"))
    }

    /// The household, confirmed by its leader (a pending one cannot sell).
    fn seller(&self) -> Result<&Household, ActError> {
        self.household().and_then(|h| if h.pending { Err(ActError::fail("not_allowed")) } else { Ok(h) })
    }

    /// Who to call: the village's team leader, else (for a village without one, and for the
    /// leader themselves) the hotline, else the commune's People's Committee.
    async fn contact(&self, household: Option<&Household>, vars: &mut Vars) -> Result<(), ActError> {
        let leader = match household {
            Some(h) => self.market.leader_of(h.id).await.map_err(self.err())?,
            None => None,
        };
        let leader = leader.filter(|l| l.msisdn != self.msisdn);
        let (who, contact) = match (leader, self.hotline.trim()) {
            (Some(l), _) => {
                let who = format!("{} {}", pick_in(self.lang, "tổ trưởng", "team leader"), l.name);
                let contact = format!("{who} ({})", national(&l.msisdn));
                (who, contact)
            }
            (None, hotline) if !hotline.is_empty() => {
                let who = pick_in(self.lang, "đường dây nóng", "the hotline").to_owned();
                (who.clone(), format!("{who} {hotline}"))
            }
            (None, _) => {
                let commune = household.map(|h| h.commune_name.clone()).unwrap_or_default();
                let who = format!("{} {commune}", pick_in(self.lang, "UBND", "the People's Committee of"));
                (who.clone(), who)
            }
        };
        vars.insert("leader.who".into(), who.trim().to_owned());
        vars.insert("leader.contact".into(), contact.trim().to_owned());
        Ok(())
    }
}

fn id(vars: &Vars, name: &str) -> Result<i64, ActError> {
    vars.get(name).and_then(|v| v.parse().ok()).ok_or_else(|| ActError::fail("not_found"))
}

/// Payment confirmation is locked until then: say so, and whom to call to unlock it.
fn pin_locked(until_ms: i64, contact: &str) -> ActError {
    ActError::Fail {
        message: "pin_locked",
        vars: vec![("until".into(), crate::time::vn_clock(until_ms)), ("contact".into(), contact.to_owned())],
    }
}

/// What each market error tells the household.
fn to_act_error_in(e: MarketError, lang: Lang) -> ActError {
    match e {
        MarketError::PinWrong { remaining } => {
            ActError::Reask { message: "pin_wrong", vars: vec![("remaining".into(), remaining.to_string())] }
        }
        MarketError::PinLocked { until_ms } => {
            pin_locked(until_ms, pick_in(lang, "tổ trưởng", "your team leader"))
        }
        MarketError::OrderState { code, status, wanted } => ActError::Fail {
            message: "order_state",
            vars: vec![
                ("code".into(), code),
                ("status".into(), status.label(lang).to_owned()),
                ("wanted".into(), wanted.label(lang).to_owned()),
            ],
        },
        MarketError::NotFound(_) => ActError::fail("not_found"),
        MarketError::AlreadyRegistered => ActError::reask("already_registered"),
        MarketError::NotAllowed(_) | MarketError::PinNotSet => ActError::fail("not_allowed"),
        MarketError::Invalid { field: "commune_code", .. } => ActError::reask("unknown_commune"),
        MarketError::Invalid { field: "msisdn", .. } => ActError::reask("msisdn_format"),
        MarketError::Invalid { field: "name" | "village_name", .. } => ActError::reask("name_format"),
        MarketError::Invalid { .. } => ActError::reask("text_format"),
        other => {
            warn!(error = %other, "market error in a dialogue");
            ActError::fail("error")
        }
    }
}

impl MarketBackend<'_> {
    fn err(&self) -> impl Fn(MarketError) -> ActError + '_ {
        move |e| to_act_error_in(e, self.lang)
    }

    /// A refused PIN check (a payment, a leader's reset), told as [`to_act_error_in`]
    /// does, but a lock names the person to call (one more read: only on that refusal).
    async fn pin_refusal(&self, e: MarketError) -> ActError {
        match e {
            MarketError::PinLocked { until_ms } => {
                let mut contact = Vars::default();
                if let Err(e) = self.contact(self.household, &mut contact).await {
                    return e;
                }
                pin_locked(until_ms, contact.get("leader.contact").map_or("", String::as_str))
            }
            e => to_act_error_in(e, self.lang),
        }
    }

    /// A team leader resets the PIN of the household chosen (`hh`), authorised by their own
    /// PIN.
    async fn reset_pin(&self, key: IdemKey, leader_pin: &str, vars: &Vars) -> Result<(), ActError> {
        let h = self.household()?;
        let msisdn = vars.get("hh.msisdn").map_or("", String::as_str);
        match self.market.reset_pin(&self.actor(), key, h.id, leader_pin, msisdn).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.pin_refusal(e).await),
        }
    }

    /// Sets the household's first PIN; a PIN set already is told so.
    async fn set_first_pin(&self, key: IdemKey, household_id: i64, pin: &str) -> Result<(), ActError> {
        match self.market.set_pin(&self.actor(), key, household_id, pin).await {
            Ok(()) => Ok(()),
            Err(MarketError::NotAllowed(_)) => Err(ActError::fail("pin_exists")),
            Err(e) => Err(to_act_error_in(e, self.lang)),
        }
    }

    async fn move_order(
        &self,
        key: &str,
        vars: &mut Vars,
        mv: OrderMove,
        detail: Option<&str>,
    ) -> Result<(), ActError> {
        let h = self.seller()?;
        let order = id(vars, "order")?;
        let o = self
            .market
            .move_order(&self.actor(), IdemKey(key.to_owned()), h.id, order, mv, detail)
            .await
            .map_err(self.err())?;
        fill_order_vars(vars, &o, self.lang);
        Ok(())
    }

    async fn change_listing(
        &self,
        key: &str,
        vars: &mut Vars,
        change: ListingChange,
    ) -> Result<(), ActError> {
        let h = self.seller()?;
        let listing = id(vars, "listing")?;
        let l = self
            .market
            .update_listing(&self.actor(), IdemKey(key.to_owned()), h.id, listing, change)
            .await
            .map_err(self.err())?;
        for (k, v) in listing_entry(&l, self.lang).fields {
            vars.insert(format!("listing.{k}"), v);
        }
        Ok(())
    }

    /// Whether the household may make `mv` on the chosen order, as it stands now.
    async fn order_allows(&self, vars: &Vars, mv: OrderMove) -> Result<bool, ActError> {
        let h = self.household()?;
        let o = self.market.order(h.id, id(vars, "order")?).await.map_err(self.err())?;
        Ok(o.status.after(mv, Mover::Household).is_some())
    }

    async fn leader_decides(&self, key: &str, vars: &Vars, what: LeaderDecision) -> Result<(), ActError> {
        let h = self.household()?;
        let who = id(vars, "hh")?;
        self.market
            .leader_decides(&self.actor(), IdemKey(key.to_owned()), h.id, who, what)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// The communes whose folded name holds the folded query, names that start with it
    /// first ("chi lang" finds Xã Chi Lăng).
    async fn communes_matching(&self, query: &str) -> Result<Vec<crate::market::Commune>, ActError> {
        let q = crate::text::fold(query);
        let q = q.strip_prefix("xa ").or_else(|| q.strip_prefix("phuong ")).unwrap_or(&q).to_owned();
        if q.chars().count() < 2 {
            return Ok(Vec::new());
        }
        let mut found: Vec<(bool, crate::market::Commune)> = self
            .market
            .communes()
            .await
            .map_err(self.err())?
            .into_iter()
            .filter_map(|c| {
                let name = crate::text::fold(&c.name);
                let bare = name.split_once(' ').map_or(name.as_str(), |(_, rest)| rest).to_owned();
                name.contains(&q).then(|| (!bare.starts_with(&q), c))
            })
            .collect();
        found.sort_by_key(|f| f.0);
        Ok(found.into_iter().map(|(_, c)| c).collect())
    }
}

fn pick_in<'s>(lang: Lang, vi: &'s str, en: &'s str) -> &'s str {
    if lang == Lang::Vi { vi } else { en }
}

/// An order's placeholders (`{order.code}`, `{order.amount}`, ...), as the household reads
/// them.
fn fill_order_vars(vars: &mut Vars, o: &Order, lang: Lang) {
    vars.insert("order.code".into(), o.code.clone());
    vars.insert("order.amount".into(), money(o.amount, lang));
    vars.insert("order.qty".into(), money(o.quantity_kg, lang));
    vars.insert("order.unit".into(), o.unit.clone());
    vars.insert("order.product".into(), pick_in(lang, &o.product_name_vi, &o.product_name_en).to_owned());
    vars.insert("order.status".into(), o.status.label(lang).to_owned());
    // The buyer's number, unless the delivery line below gives it already.
    let sent_to_buyer = o.delivery.as_ref().is_some_and(|d| Some(&d.phone) == o.buyer_phone.as_ref());
    let buyer = match &o.buyer_phone {
        Some(phone) if !sent_to_buyer => format!("{} {}", o.buyer_name, national(phone)),
        _ => o.buyer_name.clone(),
    };
    vars.insert("order.buyer".into(), buyer);
    let ship = match &o.delivery {
        Some(d) => format!("{}, {}, {}", d.name, national(&d.phone), d.address),
        None => pick_in(lang, "hỏi người mua", "ask the buyer").to_owned(),
    };
    vars.insert("order.ship".into(), ship);
}

/// An order in the household's lists: code, product, quantity and unit, status.
fn order_entry(o: &Order, lang: Lang) -> Item {
    let label = |l: Lang| {
        let name = pick_in(l, &o.product_name_vi, &o.product_name_en);
        let qty = money(o.quantity_kg, l);
        format!("{} {} {qty}{} {}", o.code, name, o.unit, o.status.short_label(l))
    };
    Item {
        id: o.id.to_string(),
        label: both(label),
        fields: vec![
            ("code".into(), o.code.clone()),
            ("amount".into(), money(o.amount, lang)),
            ("status".into(), o.status.as_str().to_owned()),
        ],
    }
}

/// A listing in the household's shop: code, product, quantity and unit, price.
fn listing_entry(l: &crate::market::Listing, lang: Lang) -> Item {
    let label = |lg: Lang| {
        let name = pick_in(lg, &l.product_name_vi, &l.product_name_en);
        let price = money(l.price_per_kg, lg);
        let cur = if lg == Lang::Vi { "đ" } else { "d" };
        let qty = money(l.quantity_kg, lg);
        format!("{name} {qty}{unit} {price}{cur}/{unit}", unit = l.unit)
    };
    Item {
        id: l.id.to_string(),
        label: both(label),
        fields: vec![
            ("code".into(), l.code.clone()),
            ("product".into(), pick_in(lang, &l.product_name_vi, &l.product_name_en).to_owned()),
            ("qty".into(), money(l.quantity_kg, lang)),
            ("unit".into(), l.unit.clone()),
            ("price".into(), money(l.price_per_kg, lang)),
        ],
    }
}

/// A household in its leader's lists: the name, and the masked number (sign-ups to confirm)
/// or where it stands (the village's households).
fn household_entry(r: &crate::market::VillageHousehold, pending_list: bool, lang: Lang) -> Item {
    let phone = masked_national(&r.msisdn);
    // Short: a village has dozens of households to page through.
    let state = |l: Lang| match (l, r.pending, r.selling) {
        (Lang::Vi, true, _) => "chờ",
        (Lang::Vi, false, true) => "bán",
        (Lang::Vi, false, false) => "chưa bán",
        (Lang::En, true, _) => "new",
        (Lang::En, false, true) => "sells",
        (Lang::En, false, false) => "not yet",
    };
    let label = |l: Lang| {
        if pending_list { format!("{} {phone}", r.name) } else { format!("{}: {}", r.name, state(l)) }
    };
    Item {
        id: r.id.to_string(),
        label: both(label),
        fields: vec![
            ("name".into(), r.name.clone()),
            ("phone".into(), phone.clone()),
            ("msisdn".into(), r.msisdn.clone()),
            ("epay".into(), if r.has_epay { "1" } else { "0" }.into()),
            ("pin".into(), if r.has_pin { "1" } else { "0" }.into()),
            ("state".into(), household_state(r, lang)),
        ],
    }
}

/// Where a household stands, in words, for its leader.
fn household_state(r: &crate::market::VillageHousehold, lang: Lang) -> String {
    let say = |b: bool, yes: (&str, &str), no: (&str, &str)| {
        let (vi, en) = if b { yes } else { no };
        pick_in(lang, vi, en).to_owned()
    };
    // A line each: the leader's screen pages at line breaks.
    [
        say(r.pending, ("chờ xác nhận", "waiting for you"), ("đã xác nhận", "confirmed")),
        say(r.selling, ("đang bán", "selling"), ("chưa bán", "not selling yet")),
        say(
            r.has_epay,
            ("có tài khoản thanh toán", "has e-payment"),
            ("chưa có tài khoản thanh toán", "no e-payment yet"),
        ),
        say(r.has_pin, ("có mã PIN", "has a PIN"), ("chưa có mã PIN", "no PIN yet")),
    ]
    .join("\n")
}

/// Registers the stored cleaned name back into the variable it came from.
fn check_person(vars: &mut Vars, var: &str) -> Result<(), ActError> {
    if let Some(v) = vars.get(var).cloned() {
        let cleaned = person_name("name", &v).map_err(|_| ActError::reask("name_format"))?;
        vars.insert(var.to_owned(), cleaned);
    }
    Ok(())
}

impl Backend for MarketBackend<'_> {
    async fn items(&self, source: &str, vars: &Vars) -> Result<Arc<Vec<Item>>, ActError> {
        let items = match source {
            "products" => return self.products.get(self.market).await.map_err(self.err()),
            "orders.open" => {
                let h = self.seller()?;
                let orders = self.market.orders_in_progress(h.id).await.map_err(self.err())?;
                orders.iter().map(|o| order_entry(o, self.lang)).collect()
            }
            "orders.awaiting_payment" => {
                let h = self.seller()?;
                let orders = self.market.orders_awaiting_payment(h.id).await.map_err(self.err())?;
                orders
                    .iter()
                    .map(|o| {
                        let mut item = order_entry(o, self.lang);
                        item.label = both(|l| {
                            let cur = if l == Lang::Vi { "đ" } else { "d" };
                            format!("{} {}{cur}", o.code, money(o.amount, l))
                        });
                        item
                    })
                    .collect()
            }
            "orders.history" => {
                let h = self.seller()?;
                let orders = self.market.past_orders(h.id).await.map_err(self.err())?;
                orders.iter().map(|o| order_entry(o, self.lang)).collect()
            }
            "listings.active" | "listings.stopped" => {
                let h = self.seller()?;
                let status =
                    if source == "listings.active" { ListingStatus::Active } else { ListingStatus::Stopped };
                let listings = self.market.listings_in(h.id, status).await.map_err(self.err())?;
                listings.iter().map(|l| listing_entry(l, self.lang)).collect()
            }
            "cancel_reasons" => CANCEL_REASONS
                .iter()
                .map(|(code, vi, en)| Item {
                    id: (*code).to_owned(),
                    label: Text { vi: (*vi).to_owned(), en: (*en).to_owned() },
                    fields: Vec::new(),
                })
                .collect(),
            "communes.match" => {
                let q = vars.get("commune_q").cloned().unwrap_or_default();
                self.communes_matching(&q)
                    .await?
                    .into_iter()
                    .map(|c| Item {
                        id: c.code.to_string(),
                        label: Text { vi: c.name.clone(), en: c.name.clone() },
                        fields: Vec::new(),
                    })
                    .collect()
            }
            "villages.of_commune" => {
                let code: u32 =
                    vars.get("commune").and_then(|c| c.parse().ok()).ok_or(ActError::fail("not_found"))?;
                let mut items: Vec<Item> = self
                    .market
                    .villages_of(code)
                    .await
                    .map_err(self.err())?
                    .into_iter()
                    .map(|v| Item {
                        id: v.id.to_string(),
                        label: Text { vi: v.name.clone(), en: v.name.clone() },
                        fields: vec![("name".into(), v.name)],
                    })
                    .collect();
                // Last: a village not in the list yet, typed by name.
                items.push(Item {
                    id: "0".into(),
                    label: Text { vi: "Thôn/bản khác".into(), en: "Another village".into() },
                    fields: Vec::new(),
                });
                items
            }
            "households.pending" | "village.households" => {
                let h = self.household()?;
                let pending = source == "households.pending";
                let rows = self.market.village_households(h.id, pending).await.map_err(self.err())?;
                rows.into_iter()
                    .filter(|r| r.id != h.id)
                    .map(|r| household_entry(&r, pending, self.lang))
                    .collect()
            }
            other => {
                warn!(source = other, "unknown data source");
                return Err(ActError::fail("error"));
            }
        };
        Ok(Arc::new(items))
    }

    async fn act(&self, action: &str, key: &str, vars: &mut Vars) -> Result<(), ActError> {
        let actor = self.actor();
        let idem = IdemKey(key.to_owned());
        match action {
            "listing.create" => {
                let h = self.seller()?;
                let (product, qty, price) = (id(vars, "product")?, id(vars, "qty")?, id(vars, "price")?);
                let l = self
                    .market
                    .create_listing(&actor, idem, h.id, product, qty, price)
                    .await
                    .map_err(self.err())?;
                vars.insert("listing.code".into(), l.code);
                Ok(())
            }
            "listing.set_price" => {
                let price = id(vars, "new_price")?;
                self.change_listing(key, vars, ListingChange::Price(price)).await
            }
            "listing.set_quantity" => {
                let qty = id(vars, "new_qty")?;
                self.change_listing(key, vars, ListingChange::Quantity(qty)).await
            }
            "listing.stop" => self.change_listing(key, vars, ListingChange::Stop).await,
            "listing.restart" => self.change_listing(key, vars, ListingChange::Restart).await,
            "order.accept" => self.move_order(key, vars, OrderMove::Accept, None).await,
            "order.reject" => self.move_order(key, vars, OrderMove::Reject, None).await,
            "order.ship" => {
                let tracking = vars.get("tracking").cloned().filter(|t| t.trim() != "0");
                // A post office's tracking code: letters and digits (EB123456789VN).
                if let Some(t) = &tracking {
                    let t = t.trim();
                    if !(4..=30).contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
                        return Err(ActError::reask("tracking_format"));
                    }
                }
                self.move_order(key, vars, OrderMove::Ship, tracking.as_deref()).await
            }
            "order.cancel" => {
                let reason = vars.get("reason").cloned().unwrap_or_else(|| "other".to_owned());
                self.move_order(key, vars, OrderMove::Cancel, Some(&reason)).await
            }
            "pin.set" => {
                let h = self.seller()?;
                let pin = vars.get("pin1").cloned().unwrap_or_default();
                self.set_first_pin(idem, h.id, &pin).await
            }
            "pin.set_and_pay" => {
                // The PIN typed twice a moment ago creates the PIN and confirms the payment.
                let h = self.seller()?;
                let pin = vars.get("pin1").cloned().unwrap_or_default();
                let order = id(vars, "order")?;
                self.set_first_pin(IdemKey(format!("{key}:pin")), h.id, &pin).await?;
                match self
                    .market
                    .confirm_payment(&actor, IdemKey(format!("{key}:pay")), h.id, order, &pin)
                    .await
                {
                    Ok(o) => {
                        fill_order_vars(vars, &o, self.lang);
                        Ok(())
                    }
                    Err(e) => Err(self.pin_refusal(e).await),
                }
            }
            "payment.confirm" => {
                let h = self.seller()?;
                let order = id(vars, "order")?;
                let pin = vars.get("pin").cloned().unwrap_or_default();
                match self.market.confirm_payment(&actor, idem, h.id, order, &pin).await {
                    Ok(o) => {
                        fill_order_vars(vars, &o, self.lang);
                        Ok(())
                    }
                    Err(e) => Err(self.pin_refusal(e).await),
                }
            }
            "commune.search" => {
                let q = vars.get("commune_q").cloned().unwrap_or_default();
                if self.communes_matching(&q).await?.is_empty() {
                    return Err(ActError::reask("unknown_commune"));
                }
                Ok(())
            }
            "village.check" => {
                let typed = vars.get("village_name").cloned().unwrap_or_default();
                let name = crate::market::village_name("village_name", &typed)
                    .map_err(|_| ActError::reask("name_format"))?;
                // A village of the list typed again (without accents, say) is that village.
                let code: u32 =
                    vars.get("commune").and_then(|c| c.parse().ok()).ok_or(ActError::fail("not_found"))?;
                let key = village_match_key(&name);
                let known = self.market.villages_of(code).await.map_err(self.err())?;
                let name =
                    known.into_iter().find(|v| village_match_key(&v.name) == key).map_or(name, |v| v.name);
                vars.insert("village.name".into(), name.clone());
                vars.insert("village.label".into(), name);
                Ok(())
            }
            "name.check" => {
                check_person(vars, "hh_name")?;
                check_person(vars, "new_name")
            }
            "household.register" => {
                let code: u32 =
                    vars.get("commune").and_then(|c| c.parse().ok()).ok_or(ActError::fail("not_found"))?;
                let village = vars.get("village.name").cloned().unwrap_or_default();
                let name = vars.get("hh_name").cloned().unwrap_or_default();
                let h = self
                    .market
                    .self_register(&actor, idem, self.msisdn, code, &village, &name, self.lang)
                    .await
                    .map_err(self.err())?;
                self.contact(Some(&h), vars).await
            }
            "leader.check_msisdn" => {
                let msisdn = vars.get("new_msisdn").cloned().unwrap_or_default();
                match self.market.household_by_msisdn(&msisdn).await.map_err(self.err())? {
                    Some(_) => Err(ActError::reask("already_registered")),
                    None => {
                        vars.insert("new_phone".into(), national(&msisdn));
                        Ok(())
                    }
                }
            }
            "leader.register_household" => {
                let h = self.household()?;
                let msisdn = vars.get("new_msisdn").cloned().unwrap_or_default();
                let name = vars.get("new_name").cloned().unwrap_or_default();
                self.market
                    .register_household(&actor, idem, h.id, &msisdn, &name)
                    .await
                    .map_err(self.err())?;
                vars.insert("new_msisdn".into(), national(&msisdn));
                Ok(())
            }
            "leader.reset_pin" => {
                let pin = vars.get("pin").cloned().unwrap_or_default();
                self.reset_pin(idem, &pin, vars).await
            }
            "pin.set_and_reset" => {
                // The leader's first PIN, typed twice a moment ago, is created and authorises
                // the reset at once.
                let h = self.household()?;
                let pin = vars.get("pin1").cloned().unwrap_or_default();
                self.set_first_pin(IdemKey(format!("{key}:pin")), h.id, &pin).await?;
                self.reset_pin(IdemKey(format!("{key}:reset")), &pin, vars).await
            }
            "leader.confirm_household" => self.leader_decides(key, vars, LeaderDecision::Confirm).await,
            "leader.refuse_household" => self.leader_decides(key, vars, LeaderDecision::Refuse).await,
            "leader.set_epay" => self.leader_decides(key, vars, LeaderDecision::Epay).await,
            other => {
                warn!(action = other, "unknown action");
                Err(ActError::fail("error"))
            }
        }
    }

    async fn check(&self, cond: &str, vars: &Vars) -> Result<bool, ActError> {
        match cond {
            // Read again: the PIN may have been set earlier in this very dialogue.
            "has_pin" | "no_pin" | "pin_locked" => {
                let fresh = self.market.household_by_msisdn(self.msisdn).await.map_err(self.err())?;
                let fresh = fresh.ok_or(ActError::fail("not_found"))?;
                Ok(match cond {
                    "has_pin" => fresh.has_pin,
                    "no_pin" => !fresh.has_pin,
                    _ => fresh.pin_locked_until_ms > crate::time::now_ms(),
                })
            }
            "order.can_accept" => self.order_allows(vars, OrderMove::Accept).await,
            "order.can_ship" => self.order_allows(vars, OrderMove::Ship).await,
            "order.can_pay" => self.order_allows(vars, OrderMove::Pay).await,
            "village.is_new" => Ok(vars.get("village").map(String::as_str) == Some("0")),
            "hh.no_epay" => Ok(vars.get("hh.epay").map(String::as_str) != Some("1")),
            "hh.has_pin" => Ok(vars.get("hh.pin").map(String::as_str) == Some("1")),
            other => {
                warn!(cond = other, "unknown condition");
                Err(ActError::fail("error"))
            }
        }
    }

    async fn load(&self, loader: &str, vars: &mut Vars) -> Result<(), ActError> {
        match loader {
            "leader" => self.contact(self.household, vars).await,
            "village.progress" => {
                let h = self.household()?;
                let p = self.market.village_progress(h.id).await.map_err(self.err())?;
                vars.insert("progress.village".into(), p.village_name);
                vars.insert("progress.households".into(), p.households.to_string());
                vars.insert("progress.listing".into(), p.with_listing.to_string());
                vars.insert("progress.epay".into(), p.with_epay.to_string());
                vars.insert("progress.pending".into(), p.pending.to_string());
                Ok(())
            }
            "order" => {
                let h = self.household()?;
                let o = self.market.order(h.id, id(vars, "order")?).await.map_err(self.err())?;
                fill_order_vars(vars, &o, self.lang);
                // Where to send it, down to the commune.
                if let Some(d) = &o.delivery
                    && let Some(c) = self.market.commune(d.commune_code).await.map_err(self.err())?
                {
                    let ship = format!("{}, {}, {}, {}", d.name, national(&d.phone), d.address, c.name);
                    vars.insert("order.ship".into(), ship);
                }
                Ok(())
            }
            "pin.lock" => {
                let fresh = self.market.household_by_msisdn(self.msisdn).await.map_err(self.err())?;
                let until = fresh.as_ref().map_or(0, |h| h.pin_locked_until_ms);
                vars.insert("lock.until".into(), crate::time::vn_clock(until));
                self.contact(self.household, vars).await
            }
            "shop.sales" => {
                let h = self.seller()?;
                let s = self.market.sales(h.id).await.map_err(self.err())?;
                vars.insert("sales.month_orders".into(), s.month_orders.to_string());
                vars.insert("sales.month_amount".into(), money(s.month_amount, self.lang));
                vars.insert("sales.all_orders".into(), s.all_orders.to_string());
                vars.insert("sales.all_amount".into(), money(s.all_amount, self.lang));
                Ok(())
            }
            other => {
                warn!(loader = other, "unknown loader");
                Err(ActError::fail("error"))
            }
        }
    }
}

/// The longest a person's name is taken to be on screens (the inputs allow 25 characters).
const WORST_NAME: &str = "Nguyễn Thị Thanh Hương Ly";
/// The longest village name taken on screens.
const WORST_VILLAGE: &str = "Thôn Khuổi Bó Nà Lầm Pác";

/// The worst-case market for `menus check --walk`, built with the formatters the dialogues
/// use: the longest product and commune names, the largest codes, quantities, prices and
/// amounts, the longest status and reason labels, long names.
pub fn worst_case() -> crate::menu::walk::WorstCase {
    use crate::market::{
        Listing, ListingStatus, MAX_AMOUNT, OrderStatus, PRICE_PER_KG, QUANTITY_KG, VillageHousehold,
        listing_code, order_code,
    };
    use crate::menu::walk::WorstCase;
    let longest = |v: Vec<String>| v.into_iter().max_by_key(|s| s.chars().count()).unwrap_or_default();
    let catalogue = crate::market::seed_catalogue();
    let (vi, en) = (
        longest(catalogue.iter().map(|p| p.0.clone()).collect()),
        longest(catalogue.iter().map(|p| p.1.clone()).collect()),
    );
    let unit = longest(catalogue.iter().map(|p| p.2.clone()).collect());
    let commune = longest(crate::market::seed_commune_names());
    let status = |short: bool| {
        let all = [
            OrderStatus::New,
            OrderStatus::Accepted,
            OrderStatus::Rejected,
            OrderStatus::Shipped,
            OrderStatus::Delivered,
            OrderStatus::Paid,
            OrderStatus::Cancelled,
        ];
        let pick = |lang| {
            all.iter()
                .copied()
                .max_by_key(|s| if short { s.short_label(lang) } else { s.label(lang) }.chars().count())
                .unwrap_or(OrderStatus::New)
        };
        (pick(Lang::Vi), pick(Lang::En))
    };
    let order = |st: OrderStatus| Order {
        id: 9_999_999,
        code: order_code(9_999_999),
        listing_id: 9_999_999,
        household_id: 1,
        product_name_vi: vi.clone(),
        product_name_en: en.clone(),
        unit: unit.clone(),
        buyer_name: WORST_NAME.to_owned(),
        buyer_phone: Some("84912345678".to_owned()),
        delivery: Some(crate::market::Delivery {
            name: WORST_NAME.to_owned(),
            phone: "84912345678".to_owned(),
            address: "Số 125 ngõ 14 đường Trần Đăng Ninh, khu phố 3, gần chợ Kỳ Lừa".to_owned(),
            commune_code: 0,
        }),
        quantity_kg: *QUANTITY_KG.end(),
        amount: MAX_AMOUNT,
        status: st,
        created_at_ms: 0,
    };
    let listing = Listing {
        id: 9_999_999,
        code: listing_code(9_999_999),
        household_id: 1,
        product_id: 1,
        product_name_vi: vi.clone(),
        product_name_en: en.clone(),
        unit: unit.clone(),
        quantity_kg: *QUANTITY_KG.end(),
        price_per_kg: *PRICE_PER_KG.end(),
        status: ListingStatus::Active,
        created_at_ms: 0,
    };
    let household = |pending: bool| VillageHousehold {
        id: 9_999,
        name: WORST_NAME.to_owned(),
        msisdn: "84912345678".into(),
        pending,
        selling: false,
        has_epay: false,
        has_pin: true,
    };
    let mut wc = WorstCase::default();
    let mut set = |k: &str, vi: String, en: String| {
        wc.values.insert(k.to_owned(), Text { vi, en });
    };
    // The order of the longest status, in both languages, and every placeholder it sets.
    let (sv, se) = status(false);
    let (mut ov, mut oe) = (Vars::default(), Vars::default());
    fill_order_vars(&mut ov, &order(sv), Lang::Vi);
    fill_order_vars(&mut oe, &order(se), Lang::En);
    for (k, v) in &ov {
        set(k, v.clone(), oe.get(k).cloned().unwrap_or_default());
    }
    let ship = format!("{}, {commune}", ov.get("order.ship").cloned().unwrap_or_default());
    set("order.ship", ship.clone(), ship);
    let le = listing_entry(&listing, Lang::En);
    for (k, v) in listing_entry(&listing, Lang::Vi).fields {
        let e = le.fields.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        set(&format!("listing.{k}"), v, e);
    }
    set("product.label", vi.clone(), en.clone());
    set("product.unit", unit.clone(), unit.clone());
    set("qty.fmt", money(*QUANTITY_KG.end(), Lang::Vi), money(*QUANTITY_KG.end(), Lang::En));
    set("price.fmt", money(*PRICE_PER_KG.end(), Lang::Vi), money(*PRICE_PER_KG.end(), Lang::En));
    for name in ["hh_name", "new_name", "hh.name", "village_name"] {
        set(name, WORST_NAME.into(), WORST_NAME.into());
    }
    set("new_phone", "0912345678".into(), "0912345678".into());
    set("hh.phone", masked_national("84912345678"), masked_national("84912345678"));
    for name in ["village.label", "village.name", "progress.village"] {
        set(name, WORST_VILLAGE.into(), WORST_VILLAGE.into());
    }
    set("commune.label", commune.clone(), commune.clone());
    let reason = Text {
        vi: longest(CANCEL_REASONS.iter().map(|r| r.1.to_owned()).collect()),
        en: longest(CANCEL_REASONS.iter().map(|r| r.2.to_owned()).collect()),
    };
    set("reason.label", reason.vi.clone(), reason.en.clone());
    set("leader.who", format!("tổ trưởng {WORST_NAME}"), format!("team leader {WORST_NAME}"));
    set(
        "leader.contact",
        format!("tổ trưởng {WORST_NAME} (0912345678)"),
        format!("team leader {WORST_NAME} (0912345678)"),
    );
    set("lock.until", "23:59".into(), "23:59".into());
    for n in [
        "progress.households",
        "progress.listing",
        "progress.epay",
        "progress.pending",
        "sales.month_orders",
        "sales.all_orders",
    ] {
        set(n, "100.000".into(), "100,000".into());
    }
    for n in ["sales.month_amount", "sales.all_amount"] {
        set(n, money(MAX_AMOUNT, Lang::Vi), money(MAX_AMOUNT, Lang::En));
    }
    set("tracking", "EB123456789VN".into(), "EB123456789VN".into());
    // The lists, each entry at its longest.
    let (shv, she) = status(true);
    let entry =
        |vi_item: Item, en_item: Item| (Text { vi: vi_item.label.vi, en: en_item.label.en }, vi_item.fields);
    let orders = entry(order_entry(&order(shv), Lang::Vi), order_entry(&order(she), Lang::En));
    let mut entries = HashMap::new();
    for source in ["orders.open", "orders.history"] {
        entries.insert(source.to_owned(), orders.clone());
    }
    let amount = money(MAX_AMOUNT, Lang::Vi);
    let pay = Text {
        vi: format!("{} {amount}đ", order_code(9_999_999)),
        en: format!("{} {}d", order_code(9_999_999), money(MAX_AMOUNT, Lang::En)),
    };
    entries.insert("orders.awaiting_payment".to_owned(), (pay, orders.1.clone()));
    let listings = (listing_entry(&listing, Lang::Vi).label, listing_entry(&listing, Lang::Vi).fields);
    entries.insert("listings.active".to_owned(), listings.clone());
    entries.insert("listings.stopped".to_owned(), listings);
    entries.insert(
        "products".to_owned(),
        (Text { vi: vi.clone(), en: en.clone() }, vec![("unit".into(), unit.clone())]),
    );
    entries.insert("cancel_reasons".to_owned(), (reason, Vec::new()));
    entries.insert("communes.match".to_owned(), (Text { vi: commune.clone(), en: commune }, Vec::new()));
    entries.insert(
        "villages.of_commune".to_owned(),
        (
            Text { vi: WORST_VILLAGE.into(), en: WORST_VILLAGE.into() },
            vec![("name".into(), WORST_VILLAGE.into())],
        ),
    );
    let pending = household_entry(&household(true), true, Lang::Vi);
    entries.insert("households.pending".to_owned(), (pending.label, pending.fields));
    let all = household_entry(&household(false), false, Lang::Vi);
    entries.insert("village.households".to_owned(), (all.label, all.fields));
    wc.entries = entries;
    wc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_numbers_should_keep_the_ends() {
        assert_eq!(masked_national("84912345678"), "0912***678");
    }

    #[test]
    fn cancel_reasons_should_have_both_languages() {
        for (code, vi, en) in CANCEL_REASONS {
            assert!(!code.is_empty() && !vi.is_empty() && !en.is_empty());
        }
    }
}
