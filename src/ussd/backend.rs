//! The menu engine's backend: data sources, actions, conditions and loaders named in the
//! menu files (see [`crate::menu::registry`]), implemented on the market.

use crate::market::{
    Actor, Channel, Household, IdemKey, Lang as MarketLang, ListingChange, Market, MarketError, Order,
    OrderMove,
};
use crate::menu::engine::{ActError, Backend, Item, Vars};
use crate::menu::{Lang, Text};
use std::sync::{Arc, OnceLock};
use tracing::warn;

/// An amount as the household reads it: `250.000` in Vietnamese, `250,000` in English.
fn money(amount: i64, lang: Lang) -> String {
    crate::market::money(amount, if lang == Lang::Vi { MarketLang::Vi } else { MarketLang::En })
}

/// Minutes a PIN lock lasts, as told to the household.
const fn minutes_until(until_ms: i64, now_ms: i64) -> i64 {
    let left = until_ms - now_ms;
    if left <= 0 { 1 } else { (left + 59_999) / 60_000 }
}

/// 84912345678 → 0912345678, as people write their numbers.
pub fn national(msisdn: &str) -> String {
    match msisdn.strip_prefix("84") {
        Some(rest) => format!("0{rest}"),
        None => msisdn.to_owned(),
    }
}

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
                fields: vec![("code".into(), p.code.clone())],
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
}

impl<'a> MarketBackend<'a> {
    /// For the subscriber `msisdn` (known as `household`, or not registered yet).
    pub fn new(
        market: &'a Market,
        products: &'a ProductItems,
        household: Option<&'a Household>,
        msisdn: &'a str,
        lang: Lang,
    ) -> Self {
        MarketBackend { market, products, household, msisdn, lang }
    }

    fn actor(&self) -> Actor {
        Actor { msisdn: self.msisdn.to_owned(), channel: Channel::Ussd }
    }

    fn household(&self) -> Result<&Household, ActError> {
        self.household.ok_or_else(|| ActError::fail("not_allowed"))
    }

    fn market_lang(&self) -> MarketLang {
        match self.lang {
            Lang::Vi => MarketLang::Vi,
            Lang::En => MarketLang::En,
        }
    }

    fn product_name<'s>(&self, vi: &'s str, en: &'s str) -> &'s str {
        match self.lang {
            Lang::Vi => vi,
            Lang::En => en,
        }
    }
}

fn id(vars: &Vars, name: &'static str) -> Result<i64, ActError> {
    vars.get(name).and_then(|v| v.parse().ok()).ok_or_else(|| ActError::fail("not_found"))
}

/// What each market error tells the household.
fn to_act_error(e: MarketError) -> ActError {
    match e {
        MarketError::PinWrong { remaining } => {
            ActError::Reask { message: "pin_wrong", vars: vec![("remaining".into(), remaining.to_string())] }
        }
        MarketError::PinLocked { until_ms } => {
            let now = crate::market::now_ms();
            ActError::Fail {
                message: "pin_locked",
                vars: vec![("minutes".into(), minutes_until(until_ms, now).to_string())],
            }
        }
        MarketError::NotFound(_) => ActError::fail("not_found"),
        MarketError::AlreadyRegistered => ActError::fail("already_registered"),
        MarketError::NotAllowed(_) | MarketError::PinNotSet => ActError::fail("not_allowed"),
        MarketError::Invalid { field: "commune_code", .. } => ActError::reask("unknown_commune"),
        MarketError::Invalid { field: "msisdn", .. } => ActError::reask("msisdn_format"),
        MarketError::Invalid { .. } => ActError::reask("text_format"),
        other => {
            warn!(error = %other, "market error in a dialogue");
            ActError::fail("error")
        }
    }
}

impl MarketBackend<'_> {
    fn order_vars(&self, vars: &mut Vars, o: &Order) {
        vars.insert("order.code".into(), o.code.clone());
        vars.insert("order.amount".into(), money(o.amount, self.lang));
        vars.insert("order.qty".into(), o.quantity_kg.to_string());
        vars.insert(
            "order.product".into(),
            self.product_name(&o.product_name_vi, &o.product_name_en).to_owned(),
        );
    }

    fn order_item(&self, o: &Order, with_product: bool) -> Item {
        let label = |lang: Lang| match (with_product, lang) {
            (true, Lang::Vi) => format!("{} {} {}kg", o.code, o.product_name_vi, o.quantity_kg),
            (true, Lang::En) => format!("{} {} {}kg", o.code, o.product_name_en, o.quantity_kg),
            (false, Lang::Vi) => format!("{} {}đ", o.code, money(o.amount, Lang::Vi)),
            (false, Lang::En) => format!("{} {}d", o.code, money(o.amount, Lang::En)),
        };
        Item {
            id: o.id.to_string(),
            label: Text { vi: label(Lang::Vi), en: label(Lang::En) },
            fields: vec![
                ("code".into(), o.code.clone()),
                ("amount".into(), money(o.amount, self.lang)),
                ("qty".into(), o.quantity_kg.to_string()),
                ("product".into(), self.product_name(&o.product_name_vi, &o.product_name_en).to_owned()),
                ("buyer".into(), o.buyer_name.clone()),
            ],
        }
    }

    async fn set_order(&self, key: &str, vars: &mut Vars, mv: OrderMove) -> Result<(), ActError> {
        let h = self.household()?;
        let order = id(vars, "order")?;
        let o = self
            .market
            .move_order(&self.actor(), IdemKey(key.to_owned()), h.id, order, mv, None)
            .await
            .map_err(to_act_error)?;
        self.order_vars(vars, &o);
        Ok(())
    }

    async fn change_listing(
        &self,
        key: &str,
        vars: &mut Vars,
        change: ListingChange,
    ) -> Result<(), ActError> {
        let h = self.household()?;
        let listing = id(vars, "listing")?;
        let l = self
            .market
            .update_listing(&self.actor(), IdemKey(key.to_owned()), h.id, listing, change)
            .await
            .map_err(to_act_error)?;
        vars.insert("listing.code".into(), l.code);
        vars.insert("listing.qty".into(), l.quantity_kg.to_string());
        vars.insert("listing.price".into(), money(l.price_per_kg, self.lang));
        Ok(())
    }
}

impl Backend for MarketBackend<'_> {
    async fn items(&self, source: &str, _vars: &Vars) -> Result<Arc<Vec<Item>>, ActError> {
        let items = match source {
            "products" => return self.products.get(self.market).await.map_err(to_act_error),
            "orders.open" => {
                let h = self.household()?;
                let orders = self.market.open_orders(h.id).await.map_err(to_act_error)?;
                orders.iter().map(|o| self.order_item(o, true)).collect()
            }
            "orders.awaiting_payment" => {
                let h = self.household()?;
                let orders = self.market.orders_awaiting_payment(h.id).await.map_err(to_act_error)?;
                orders.iter().map(|o| self.order_item(o, false)).collect()
            }
            "listings.mine" => {
                let h = self.household()?;
                let listings = self.market.listings(h.id).await.map_err(to_act_error)?;
                listings
                    .iter()
                    .map(|l| {
                        let label = |name: &str| format!("{} {} {}kg", l.code, name, l.quantity_kg);
                        Item {
                            id: l.id.to_string(),
                            label: Text { vi: label(&l.product_name_vi), en: label(&l.product_name_en) },
                            fields: vec![
                                ("code".into(), l.code.clone()),
                                ("qty".into(), l.quantity_kg.to_string()),
                                ("price".into(), money(l.price_per_kg, self.lang)),
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
        let num = |name: &'static str| id(vars, name);
        match action {
            "listing.create" => {
                let h = self.household()?;
                let (product, qty, price) = (num("product")?, num("qty")?, num("price")?);
                let l = self
                    .market
                    .create_listing(&actor, idem, h.id, product, qty, price)
                    .await
                    .map_err(to_act_error)?;
                vars.insert("listing.code".into(), l.code);
                Ok(())
            }
            "listing.set_price" => {
                let price = num("new_price")?;
                self.change_listing(key, vars, ListingChange::Price(price)).await
            }
            "listing.set_quantity" => {
                let qty = num("new_qty")?;
                self.change_listing(key, vars, ListingChange::Quantity(qty)).await
            }
            "listing.stop" => self.change_listing(key, vars, ListingChange::Stop).await,
            "order.accept" => self.set_order(key, vars, OrderMove::Accept).await,
            "order.reject" => self.set_order(key, vars, OrderMove::Reject).await,
            "order.ship" => self.set_order(key, vars, OrderMove::Ship).await,
            "pin.set" => {
                let h = self.household()?;
                let pin = vars.get("pin1").cloned().unwrap_or_default();
                self.market.set_pin(&actor, idem, h.id, &pin).await.map_err(to_act_error)
            }
            "payment.confirm" => {
                let h = self.household()?;
                let order = num("order")?;
                let pin = vars.get("pin").cloned().unwrap_or_default();
                let o = self
                    .market
                    .confirm_payment(&actor, idem, h.id, order, &pin)
                    .await
                    .map_err(to_act_error)?;
                self.order_vars(vars, &o);
                Ok(())
            }
            "commune.lookup" => {
                let code: u32 = vars
                    .get("commune")
                    .and_then(|c| c.parse().ok())
                    .ok_or(ActError::reask("unknown_commune"))?;
                match self.market.commune(code).await.map_err(to_act_error)? {
                    Some(c) => {
                        vars.insert("commune.name".into(), c.name);
                        Ok(())
                    }
                    None => Err(ActError::reask("unknown_commune")),
                }
            }
            "household.register" => {
                let code: u32 =
                    vars.get("commune").and_then(|c| c.parse().ok()).ok_or(ActError::fail("not_found"))?;
                let village = vars.get("village").cloned().unwrap_or_default();
                let name = vars.get("hh_name").cloned().unwrap_or_default();
                self.market
                    .self_register(&actor, idem, self.msisdn, code, &village, &name, self.market_lang())
                    .await
                    .map_err(to_act_error)?;
                Ok(())
            }
            "leader.register_household" => {
                let h = self.household()?;
                let msisdn = vars.get("new_msisdn").cloned().unwrap_or_default();
                let name = vars.get("new_name").cloned().unwrap_or_default();
                self.market
                    .register_household(&actor, idem, h.id, &msisdn, &name)
                    .await
                    .map_err(to_act_error)?;
                vars.insert("new_msisdn".into(), national(&msisdn));
                Ok(())
            }
            "leader.reset_pin" => {
                let h = self.household()?;
                let msisdn = vars.get("reset_msisdn").cloned().unwrap_or_default();
                self.market.reset_pin(&actor, idem, h.id, &msisdn).await.map_err(to_act_error)
            }
            other => {
                warn!(action = other, "unknown action");
                Err(ActError::fail("error"))
            }
        }
    }

    async fn check(&self, cond: &str, _vars: &Vars) -> Result<bool, ActError> {
        match cond {
            // Read again: the PIN may have been set earlier in this very dialogue.
            "has_pin" => {
                let fresh = self.market.household_by_msisdn(self.msisdn).await.map_err(to_act_error)?;
                Ok(fresh.is_some_and(|h| h.has_pin))
            }
            other => {
                warn!(cond = other, "unknown condition");
                Err(ActError::fail("error"))
            }
        }
    }

    async fn load(&self, loader: &str, vars: &mut Vars) -> Result<(), ActError> {
        let h = self.household()?;
        match loader {
            "leader" => {
                let leader = self.market.leader_of(h.id).await.map_err(to_act_error)?;
                let (name, phone) = match leader {
                    Some(l) => (l.name, national(&l.msisdn)),
                    None => (String::from("-"), String::from("-")),
                };
                vars.insert("leader.name".into(), name);
                vars.insert("leader.msisdn".into(), phone);
                Ok(())
            }
            "village.progress" => {
                let p = self.market.village_progress(h.id).await.map_err(to_act_error)?;
                vars.insert("progress.village".into(), p.village_name);
                vars.insert("progress.households".into(), p.households.to_string());
                vars.insert("progress.listing".into(), p.with_listing.to_string());
                vars.insert("progress.epay".into(), p.with_epay.to_string());
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
    fn national_form_should_start_with_zero() {
        assert_eq!(national("84912345678"), "0912345678");
    }

    #[test]
    fn lock_minutes_should_round_up() {
        assert_eq!(minutes_until(15 * 60_000, 0), 15);
        assert_eq!(minutes_until(60_001, 0), 2);
        assert_eq!(minutes_until(0, 5), 1);
    }
}
