//! The writer's rules for orders: placing one and every move of the one state machine
//! (`order_flow`), by the household or a partner.

use super::*;

/// The household's own order (anyone else's is "not found", as if it did not exist).
pub(super) async fn own_order(
    c: &mut Conn<'_>,
    household_id: i64,
    order_id: i64,
) -> Result<Order, MarketError> {
    match queries::order_by_id(c, order_id).await? {
        Some(order) if order.household_id == household_id => Ok(order),
        _ => Err(MarketError::NotFound("order")),
    }
}

pub(super) async fn set_status(
    c: &mut Conn<'_>,
    order: &Order,
    to: OrderStatus,
    now: i64,
) -> Result<(), MarketError> {
    let changed = c
        .execute(
            "UPDATE orders SET status = $2, updated_at_ms = $3 WHERE id = $1 AND status = $4",
            args![order.id, to.as_str(), now, order.status.as_str()],
        )
        .await?;
    if changed != 1 {
        return Err(MarketError::NotAllowed(format!("order {} changed meanwhile", order.code)));
    }
    Ok(())
}

pub(super) async fn household_move(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    household_id: i64,
    order_id: i64,
    mv: OrderMove,
    detail: Option<String>,
) -> Result<Applied, MarketError> {
    let mut order = own_order(c, household_id, order_id).await?;
    let to = order_flow::next(&order, mv, Mover::Household)?;
    let extra = match (mv, &detail) {
        (OrderMove::Cancel, reason) => {
            c.execute("UPDATE orders SET cancel_reason = $2 WHERE id = $1", args![order.id, reason.clone()])
                .await?;
            json!({ "reason": reason })
        }
        (OrderMove::Ship, tracking_code) => {
            c.execute(
                "INSERT INTO shipments (order_id, partner, status, tracking_code, at_ms) \
                 VALUES ($1, 'household', 'shipped', $2, $3)",
                args![order.id, tracking_code.clone(), now],
            )
            .await?;
            json!({ "tracking_code": tracking_code })
        }
        _ => json!({}),
    };
    move_order(c, ev, now, &mut order, mv, to, extra).await?;
    let id = order.id;
    ok(Done::Order(order), id)
}

/// Applies a move the state machine allowed: the status (guarded against a change
/// meanwhile), the quantity back on offer where the move restocks, and the move's event
/// (`extra` merged into its data).
pub(super) async fn move_order(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    order: &mut Order,
    mv: OrderMove,
    to: OrderStatus,
    extra: serde_json::Value,
) -> Result<(), MarketError> {
    set_status(c, order, to, now).await?;
    if mv.restocks() {
        c.execute(
            "UPDATE listings SET quantity_kg = quantity_kg + $2, \
             status = CASE WHEN status = 'sold_out' THEN 'active' ELSE status END, updated_at_ms = $3 \
             WHERE id = $1",
            args![order.listing_id, order.quantity_kg, now],
        )
        .await?;
    }
    let mut data = serde_json::Map::new();
    data.insert("from".to_owned(), order.status.as_str().into());
    data.insert("to".to_owned(), to.as_str().into());
    if let serde_json::Value::Object(more) = extra {
        data.extend(more);
    }
    ev.push(mv.event_kind(), format!("order:{}", order.id), serde_json::Value::Object(data));
    order.status = to;
    Ok(())
}

pub(super) async fn place_order(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    new: crate::market::types::NewOrder,
) -> Result<Applied, MarketError> {
    let crate::market::types::NewOrder { listing_id, buyer_name, quantity_kg, amount, buyer_phone, delivery } =
        new;
    let listing = queries::listing_by_id(c, listing_id).await?.ok_or(MarketError::NotFound("listing"))?;
    if listing.status != ListingStatus::Active {
        return Err(MarketError::NotAllowed(format!(
            "listing {} is {}",
            listing.code,
            listing.status.as_str()
        )));
    }
    // A household its leader has not confirmed sells nothing (a listing from before that rule
    // is not on offer either).
    let pending = c
        .fetch_optional("SELECT pending FROM households WHERE id = $1", args![listing.household_id])
        .await?
        .map(|r| r.flag("pending"))
        .transpose()?
        .unwrap_or(false);
    if pending {
        return Err(MarketError::NotAllowed(format!("listing {} is not on offer", listing.code)));
    }
    if quantity_kg > listing.quantity_kg {
        return Err(MarketError::Invalid {
            field: "quantity_kg",
            reason: format!("only {} kg on offer", listing.quantity_kg),
        });
    }
    // The amount is the listing's price, not whatever the partner says.
    match quantity_kg.checked_mul(listing.price_per_kg) {
        Some(expected) if expected == amount => {}
        expected => {
            return Err(MarketError::Invalid {
                field: "amount",
                reason: match expected {
                    Some(expected) => format!(
                        "must be quantity_kg × the listing's price_per_kg: {quantity_kg} × {} = {expected}, got {amount}",
                        listing.price_per_kg
                    ),
                    None => "quantity_kg × the listing's price_per_kg is out of range".to_owned(),
                },
            });
        }
    }
    if let Some(d) = &delivery
        && queries::commune(c, d.commune_code).await?.is_none()
    {
        return Err(MarketError::Invalid {
            field: "delivery.commune_code",
            reason: format!("no commune {} in the 2025 list", d.commune_code),
        });
    }
    let (d_name, d_phone, d_address, d_commune) = match &delivery {
        Some(d) => (
            Some(d.name.clone()),
            Some(d.phone.clone()),
            Some(d.address.clone()),
            Some(i64::from(d.commune_code)),
        ),
        None => (None, None, None, None),
    };
    let id = c
        .insert(
            "INSERT INTO orders (listing_id, household_id, buyer_name, quantity_kg, amount, status, created_at_ms, \
             updated_at_ms, buyer_phone, delivery_name, delivery_phone, delivery_address, delivery_commune_code) \
             VALUES ($1, $2, $3, $4, $5, 'new', $6, $6, $7, $8, $9, $10, $11)",
            args![
                listing.id,
                listing.household_id,
                &buyer_name,
                quantity_kg,
                amount,
                now,
                buyer_phone.clone(),
                d_name,
                d_phone,
                d_address,
                d_commune
            ],
        )
        .await?;
    // Guarded: another node (PostgreSQL) may have taken some of it meanwhile.
    let taken = c
        .execute(
            "UPDATE listings SET quantity_kg = quantity_kg - $2, \
             status = CASE WHEN quantity_kg - $2 = 0 THEN 'sold_out' ELSE status END, updated_at_ms = $3 \
             WHERE id = $1 AND status = 'active' AND quantity_kg >= $2",
            args![listing.id, quantity_kg, now],
        )
        .await?;
    if taken != 1 {
        return Err(MarketError::NotAllowed(format!("listing {} changed meanwhile", listing.code)));
    }
    let order = Order {
        id,
        code: order_code(id),
        listing_id: listing.id,
        household_id: listing.household_id,
        product_name_vi: listing.product_name_vi.clone(),
        product_name_en: listing.product_name_en.clone(),
        unit: listing.unit.clone(),
        buyer_name,
        buyer_phone,
        delivery,
        quantity_kg,
        amount,
        status: OrderStatus::New,
        created_at_ms: now,
    };
    ev.push(
        "order_placed",
        format!("order:{id}"),
        json!({ "listing_id": listing.id, "household_id": listing.household_id, "buyer": order.buyer_name,
                "quantity_kg": quantity_kg, "amount": amount }),
    );
    // The household hears of it by SMS, in its language; queued in the same transaction.
    let (msisdn, lang) = household_contact(c, listing.household_id).await?;
    let text = notice::new_order(&order, lang);
    let sms = Sms { msisdn: &msisdn, text, lang, kind: "order_new", ttl_ms: notice::NEW_ORDER_TTL_MS };
    enqueue_sms(c, ev, sms, json!({ "order_id": id })).await?;
    ok(Done::Order(order), id)
}

pub(super) async fn mark_delivered(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    order_id: i64,
) -> Result<Applied, MarketError> {
    let mut order = queries::order_by_id(c, order_id).await?.ok_or(MarketError::NotFound("order"))?;
    let to = order_flow::next(&order, OrderMove::Deliver, Mover::Partner)?;
    move_order(c, ev, now, &mut order, OrderMove::Deliver, to, json!({})).await?;
    let id = order.id;
    let text = |lang| notice::order_delivered(&order, lang);
    tell_household(c, ev, order.household_id, "order_delivered", text, json!({ "order_id": id })).await?;
    ok(Done::Order(order), id)
}
