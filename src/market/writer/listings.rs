//! The writer's rules for listings: opening one, changing its price or quantity, stopping
//! and restarting it.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) async fn create_listing(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    products: &[Product],
    now: i64,
    household_id: i64,
    product_id: i64,
    quantity_kg: i64,
    price_per_kg: i64,
) -> Result<Applied, MarketError> {
    let product = products.iter().find(|p| p.id == product_id).ok_or(MarketError::NotFound("product"))?;
    // One statement checks the household too: it must exist and be confirmed by its leader
    // (a pending self-registration cannot sell); only a refusal reads it again, to say why.
    let inserted = c
        .insert_or_skip(
            "INSERT INTO listings (household_id, product_id, quantity_kg, price_per_kg, status, created_at_ms, \
             updated_at_ms) SELECT id, $2, $3, $4, 'active', $5, $5 FROM households WHERE id = $1 AND NOT pending",
            args![household_id, product_id, quantity_kg, price_per_kg, now],
        )
        .await?;
    let Some(id) = inserted else {
        return Err(if household_exists(c, household_id).await? {
            MarketError::NotAllowed("the household waits for its team leader's confirmation".to_owned())
        } else {
            MarketError::NotFound("household")
        });
    };
    #[derive(serde::Serialize)]
    struct Created<'a> {
        household_id: i64,
        product: &'a str,
        quantity_kg: i64,
        price_per_kg: i64,
    }
    ev.push(
        "listing_created",
        format!("listing:{id}"),
        Created { household_id, product: &product.code, quantity_kg, price_per_kg },
    );
    let listing = Listing {
        id,
        code: listing_code(id),
        household_id,
        product_id,
        product_name_vi: product.name_vi.clone(),
        product_name_en: product.name_en.clone(),
        unit: product.unit.clone(),
        quantity_kg,
        price_per_kg,
        status: ListingStatus::Active,
        created_at_ms: now,
    };
    ok(Done::Listing(listing), id)
}

pub(super) async fn update_listing(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    household_id: i64,
    listing_id: i64,
    change: ListingChange,
) -> Result<Applied, MarketError> {
    let mut listing = match queries::listing_by_id(c, listing_id).await? {
        Some(l) if l.household_id == household_id => l,
        _ => return Err(MarketError::NotFound("listing")),
    };
    match (&change, listing.status) {
        (ListingChange::Restart, ListingStatus::Stopped) => {}
        (ListingChange::Restart, _) => {
            return Err(MarketError::NotAllowed(format!("listing {} is not stopped", listing.code)));
        }
        (_, ListingStatus::Stopped) => {
            return Err(MarketError::NotAllowed(format!("listing {} is stopped", listing.code)));
        }
        _ => {}
    }
    let subject = format!("listing:{}", listing.id);
    match change {
        ListingChange::Price(price) => {
            c.execute(
                "UPDATE listings SET price_per_kg = $2, updated_at_ms = $3 WHERE id = $1",
                args![listing.id, price, now],
            )
            .await?;
            ev.push("listing_price_changed", subject, json!({ "from": listing.price_per_kg, "to": price }));
            listing.price_per_kg = price;
        }
        ListingChange::Quantity(quantity) => {
            c.execute(
                "UPDATE listings SET quantity_kg = $2, status = 'active', updated_at_ms = $3 WHERE id = $1",
                args![listing.id, quantity, now],
            )
            .await?;
            ev.push(
                "listing_quantity_changed",
                subject,
                json!({ "from": listing.quantity_kg, "to": quantity }),
            );
            listing.quantity_kg = quantity;
            listing.status = ListingStatus::Active;
        }
        ListingChange::Stop => {
            c.execute(
                "UPDATE listings SET status = 'stopped', updated_at_ms = $2 WHERE id = $1",
                args![listing.id, now],
            )
            .await?;
            ev.push("listing_stopped", subject, json!({ "from": listing.status.as_str() }));
            listing.status = ListingStatus::Stopped;
        }
        ListingChange::Restart => {
            // What was left when it stopped goes on sale again; nothing left: sold out.
            let to = if listing.quantity_kg > 0 { ListingStatus::Active } else { ListingStatus::SoldOut };
            c.execute(
                "UPDATE listings SET status = $2, updated_at_ms = $3 WHERE id = $1",
                args![listing.id, to.as_str(), now],
            )
            .await?;
            ev.push("listing_restarted", subject, json!({ "to": to.as_str() }));
            listing.status = to;
        }
    }
    let id = listing.id;
    ok(Done::Listing(listing), id)
}
