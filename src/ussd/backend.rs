//! The menu engine's backend: data sources, actions, conditions and loaders named in the
//! menu files (see [`crate::menu::registry`]), implemented on the market.
//!
//! What a screen offers follows the market's rules: an order's options come from the order
//! state machine ([`crate::market::order_flow`]), read afresh when the order is shown; a
//! refusal names its reason in the subscriber's language.

use crate::market::{
    Actor, Channel, Household, IdemKey, Lang as MarketLang, LeaderDecision, ListingChange, ListingStatus,
    Market, MarketError, Mover, Order, OrderMove, national, person_name, village_match_key,
};
use crate::menu::engine::{ActError, Backend, Item, Vars};
use crate::menu::{Lang, Text};
use std::sync::{Arc, OnceLock};
use tracing::warn;

/// An amount as the household reads it: `250.000` in Vietnamese, `250,000` in English.
fn money(amount: i64, lang: Lang) -> String {
    crate::market::money(amount, to_market(lang))
}

fn to_market(lang: Lang) -> MarketLang {
    match lang {
        Lang::Vi => MarketLang::Vi,
        Lang::En => MarketLang::En,
    }
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

    fn pick<'s>(&self, vi: &'s str, en: &'s str) -> &'s str {
        match self.lang {
            Lang::Vi => vi,
            Lang::En => en,
        }
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
                let who = format!("{} {}", self.pick("tổ trưởng", "team leader"), l.name);
                let contact = format!("{who} ({})", national(&l.msisdn));
                (who, contact)
            }
            (None, hotline) if !hotline.is_empty() => {
                let who = self.pick("đường dây nóng", "the hotline").to_owned();
                (who.clone(), format!("{who} {hotline}"))
            }
            (None, _) => {
                let commune = household.map(|h| h.commune_name.clone()).unwrap_or_default();
                let who = format!("{} {commune}", self.pick("UBND", "the People's Committee of"));
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

/// What each market error tells the household.
fn to_act_error_in(e: MarketError, lang: Lang) -> ActError {
    match e {
        MarketError::PinWrong { remaining } => {
            ActError::Reask { message: "pin_wrong", vars: vec![("remaining".into(), remaining.to_string())] }
        }
        MarketError::PinLocked { until_ms } => ActError::Fail {
            message: "pin_locked",
            vars: vec![("until".into(), crate::time::vn_clock(until_ms))],
        },
        MarketError::OrderState { code, status, wanted } => ActError::Fail {
            message: "order_state",
            vars: vec![
                ("code".into(), code),
                ("status".into(), status.label(to_market(lang)).to_owned()),
                ("wanted".into(), wanted.label(to_market(lang)).to_owned()),
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

    fn order_vars(&self, vars: &mut Vars, o: &Order) {
        let lang = to_market(self.lang);
        vars.insert("order.code".into(), o.code.clone());
        vars.insert("order.amount".into(), money(o.amount, self.lang));
        vars.insert("order.qty".into(), crate::text::group_thousands(o.quantity_kg, self.sep()));
        vars.insert("order.unit".into(), o.unit.clone());
        vars.insert("order.product".into(), self.pick(&o.product_name_vi, &o.product_name_en).to_owned());
        vars.insert("order.status".into(), o.status.label(lang).to_owned());
        vars.insert("order.buyer".into(), o.buyer_name.clone());
        vars.insert("order.ship".into(), self.pick("chưa có địa chỉ", "no address yet").to_owned());
    }

    fn sep(&self) -> char {
        if self.lang == Lang::Vi { '.' } else { ',' }
    }

    fn order_item(&self, o: &Order) -> Item {
        let label = |lang: Lang| {
            let name = if lang == Lang::Vi { &o.product_name_vi } else { &o.product_name_en };
            format!(
                "{} {} {}{} {}",
                o.code,
                name,
                o.quantity_kg,
                o.unit,
                o.status.short_label(to_market(lang))
            )
        };
        Item {
            id: o.id.to_string(),
            label: both(label),
            fields: vec![
                ("code".into(), o.code.clone()),
                ("amount".into(), money(o.amount, self.lang)),
                ("status".into(), o.status.as_str().to_owned()),
            ],
        }
    }

    fn listing_item(&self, l: &crate::market::Listing) -> Item {
        let label = |lang: Lang| {
            let name = if lang == Lang::Vi { &l.product_name_vi } else { &l.product_name_en };
            let price = crate::market::money(l.price_per_kg, to_market(lang));
            let cur = if lang == Lang::Vi { "đ" } else { "d" };
            format!("{} {name} {}{} {price}{cur}", l.code, l.quantity_kg, l.unit)
        };
        Item {
            id: l.id.to_string(),
            label: both(label),
            fields: vec![
                ("code".into(), l.code.clone()),
                ("product".into(), self.pick(&l.product_name_vi, &l.product_name_en).to_owned()),
                ("qty".into(), crate::text::group_thousands(l.quantity_kg, self.sep())),
                ("unit".into(), l.unit.clone()),
                ("price".into(), money(l.price_per_kg, self.lang)),
            ],
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
        self.order_vars(vars, &o);
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
        for (k, v) in self.listing_item(&l).fields {
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
                orders.iter().map(|o| self.order_item(o)).collect()
            }
            "orders.awaiting_payment" => {
                let h = self.seller()?;
                let orders = self.market.orders_awaiting_payment(h.id).await.map_err(self.err())?;
                orders
                    .iter()
                    .map(|o| {
                        let mut item = self.order_item(o);
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
                orders.iter().map(|o| self.order_item(o)).collect()
            }
            "listings.active" | "listings.stopped" => {
                let h = self.seller()?;
                let status =
                    if source == "listings.active" { ListingStatus::Active } else { ListingStatus::Stopped };
                let listings = self.market.listings_in(h.id, status).await.map_err(self.err())?;
                listings.iter().map(|l| self.listing_item(l)).collect()
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
                    .map(|r| {
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
                            if pending {
                                format!("{} {phone}", r.name)
                            } else {
                                format!("{}: {}", r.name, state(l))
                            }
                        };
                        Item {
                            id: r.id.to_string(),
                            label: both(label),
                            fields: vec![
                                ("name".into(), r.name.clone()),
                                ("phone".into(), phone.clone()),
                                ("msisdn".into(), r.msisdn.clone()),
                                ("epay".into(), if r.has_epay { "1" } else { "0" }.into()),
                            ],
                        }
                    })
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
                self.move_order(key, vars, OrderMove::Ship, tracking.as_deref()).await
            }
            "order.cancel" => {
                let reason = vars.get("reason").cloned().unwrap_or_else(|| "other".to_owned());
                self.move_order(key, vars, OrderMove::Cancel, Some(&reason)).await
            }
            "pin.set" => {
                let h = self.seller()?;
                let pin = vars.get("pin1").cloned().unwrap_or_default();
                self.market.set_pin(&actor, idem, h.id, &pin).await.map_err(|e| match e {
                    MarketError::NotAllowed(_) => ActError::fail("pin_exists"),
                    e => to_act_error_in(e, self.lang),
                })
            }
            "pin.set_and_pay" => {
                // The PIN typed twice a moment ago creates the PIN and confirms the payment.
                let h = self.seller()?;
                let pin = vars.get("pin1").cloned().unwrap_or_default();
                let order = id(vars, "order")?;
                self.market.set_pin(&actor, IdemKey(format!("{key}:pin")), h.id, &pin).await.map_err(
                    |e| match e {
                        MarketError::NotAllowed(_) => ActError::fail("pin_exists"),
                        e => to_act_error_in(e, self.lang),
                    },
                )?;
                let o = self
                    .market
                    .confirm_payment(&actor, IdemKey(format!("{key}:pay")), h.id, order, &pin)
                    .await
                    .map_err(self.err())?;
                self.order_vars(vars, &o);
                Ok(())
            }
            "payment.confirm" => {
                let h = self.seller()?;
                let order = id(vars, "order")?;
                let pin = vars.get("pin").cloned().unwrap_or_default();
                let o =
                    self.market.confirm_payment(&actor, idem, h.id, order, &pin).await.map_err(self.err())?;
                self.order_vars(vars, &o);
                Ok(())
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
                    .self_register(&actor, idem, self.msisdn, code, &village, &name, to_market(self.lang))
                    .await
                    .map_err(self.err())?;
                self.contact(Some(&h), vars).await
            }
            "leader.check_msisdn" => {
                let msisdn = vars.get("new_msisdn").cloned().unwrap_or_default();
                match self.market.household_by_msisdn(&msisdn).await.map_err(self.err())? {
                    Some(_) => Err(ActError::reask("already_registered")),
                    None => Ok(()),
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
                let h = self.household()?;
                let msisdn = vars.get("hh.msisdn").cloned().unwrap_or_default();
                self.market.reset_pin(&actor, idem, h.id, &msisdn).await.map_err(self.err())
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
                    _ => fresh.pin_locked_until_ms > crate::market::now_ms(),
                })
            }
            "order.can_accept" => self.order_allows(vars, OrderMove::Accept).await,
            "order.can_ship" => self.order_allows(vars, OrderMove::Ship).await,
            "order.can_pay" => self.order_allows(vars, OrderMove::Pay).await,
            "village.is_new" => Ok(vars.get("village").map(String::as_str) == Some("0")),
            "hh.no_epay" => Ok(vars.get("hh.epay").map(String::as_str) != Some("1")),
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
                self.order_vars(vars, &o);
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
