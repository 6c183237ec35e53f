//! The HTTP API's writes ([`ApiOp`]), applied by the writer like its other actions: in the
//! group's transaction, in their own savepoint, with their audit events.
//!
//! Each first claims the partner's `Idempotency-Key` in `api_requests` with the hash of its
//! request; a key held by another request refuses the action (the savepoint rolls back, so
//! nothing of it stays). Once applied, the response the API renders is stored with the key,
//! so a repeat (answered by the writer's replay or by the API before it gets here) returns
//! it unchanged.

use serde_json::json;

use super::super::notice;
use super::super::reports::{
    self, ApiCall, ApiOp, ApiResult, ApiToken, IDEMPOTENCY_KEY_FIELD, ImportOutcome, ImportReport, ImportRow,
    Render, ShipmentStatus, StoredResponse,
};
use super::{
    Applied, Done, Events, corrupt, find_or_create_village, insert_household, msisdn_taken, place_order,
    register_leader, tell_household,
};
use crate::args;
use crate::market::order_flow::{self, Mover, OrderMove};
use crate::market::types::{Lang, MarketError, NewOrder};
use crate::store::Conn;

/// Applies one API write and stores its response under the partner's key.
pub(super) async fn apply(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    call: ApiCall,
    render: Render,
    op: ApiOp,
) -> Result<Applied, MarketError> {
    let claimed = c
        .insert_or_skip(
            "INSERT INTO api_requests (partner, idem_key, request_hash, status, response, created_at_ms) \
             VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT (partner, idem_key) DO NOTHING",
            args![&call.partner, &call.key, &call.request_hash, now],
        )
        .await?;
    let Some(request_id) = claimed else {
        return Err(MarketError::Invalid {
            field: IDEMPOTENCY_KEY_FIELD,
            reason: "already used for another request".to_owned(),
        });
    };
    let result = match op {
        ApiOp::PlaceOrder(order) => api_place_order(c, ev, now, &call.partner, order).await?,
        ApiOp::CancelOrder { order_id, reason, any_partner } => {
            cancel_order(c, ev, now, &call.partner, order_id, reason, any_partner).await?
        }
        ApiOp::RecordPayment { order_id, amount, reference } => {
            record_payment(c, ev, now, &call.partner, order_id, amount, reference).await?
        }
        ApiOp::RecordShipment { order_id, status, tracking_code } => {
            record_shipment(c, ev, now, &call.partner, order_id, status, tracking_code).await?
        }
        ApiOp::CreateHousehold { msisdn, name, commune_code, village_name, lang, has_epay } => {
            let row = ImportRow { line: 0, msisdn, name, commune_code, village_name, lang, has_epay };
            let id = create_household(c, ev, now, &row).await?;
            ApiResult::Household(admin_household(c, id).await?)
        }
        ApiOp::UpdateHousehold { household_id, name, lang, has_epay, pending, village } => {
            update_household(c, ev, now, household_id, name, lang, has_epay, pending, village).await?
        }
        ApiOp::ImportHouseholds { rows } => import(c, ev, now, rows).await?,
        ApiOp::CreateVillage { commune_code, name } => create_village(c, ev, now, commune_code, name).await?,
        ApiOp::RegisterLeader { msisdn, name, commune_code, village_name, lang } => {
            let applied = register_leader(c, ev, now, msisdn, name, commune_code, village_name, lang).await?;
            let household = match applied.reply? {
                Done::Household(h) => h,
                other => return Err(corrupt("register_leader", format!("{other:?}"))),
            };
            let team = reports::team_of_village(c, household.village_id)
                .await?
                .ok_or(MarketError::NotFound("team"))?;
            ApiResult::Team { team, created: true }
        }
        ApiOp::AddTeamMember { team_id, household_id } => add_member(c, ev, team_id, household_id).await?,
        ApiOp::CreateToken { public_id, name, scopes, token_hash } => {
            create_token(c, ev, now, public_id, name, scopes, token_hash).await?
        }
        ApiOp::RevokeToken { public_id } => revoke_token(c, ev, now, public_id).await?,
    };
    let (status, body) = render(&result);
    let body = body.to_string();
    c.execute(
        "UPDATE api_requests SET status = $2, response = $3 WHERE id = $1",
        args![request_id, i64::from(status), &body],
    )
    .await?;
    Ok(Applied {
        reply: Ok(Done::Api(StoredResponse { status, body, request_hash: call.request_hash })),
        result_id: Some(request_id),
        outcome: "ok".to_owned(),
    })
}

/// The response stored under a key, for the writer's replay.
pub(super) async fn replay(c: &mut Conn<'_>, request_id: i64) -> Result<Done, MarketError> {
    reports::stored_response(c, request_id).await?.map(Done::Api).ok_or(MarketError::NotFound("api request"))
}

async fn partner_order(c: &mut Conn<'_>, order_id: i64) -> Result<ApiResult, MarketError> {
    let order = reports::partner_order(c, order_id).await?.ok_or(MarketError::NotFound("order"))?;
    Ok(ApiResult::Order(Box::new(order)))
}

async fn admin_household(c: &mut Conn<'_>, id: i64) -> Result<reports::AdminHousehold, MarketError> {
    reports::admin_household_by_id(c, id).await?.ok_or(MarketError::NotFound("household"))
}

async fn api_place_order(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    partner: &str,
    order: NewOrder,
) -> Result<ApiResult, MarketError> {
    let applied = place_order(c, ev, now, order).await?;
    let order_id = match applied.reply? {
        Done::Order(o) => o.id,
        other => return Err(corrupt("place_order", format!("{other:?}"))),
    };
    // The SMS place_order queued for the household, so the partner can follow it.
    let message_id = ev
        .events
        .iter()
        .rev()
        .find(|e| e.kind == "sms_queued")
        .and_then(|e| e.subject.strip_prefix("outbox:"))
        .and_then(|id| id.parse::<i64>().ok());
    c.execute(
        "INSERT INTO api_orders (order_id, partner, message_id) VALUES ($1, $2, $3)",
        args![order_id, partner, message_id],
    )
    .await?;
    partner_order(c, order_id).await
}

/// The partner that placed an order (or, with `any_partner`, an admin) calls it off.
async fn cancel_order(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    partner: &str,
    order_id: i64,
    reason: String,
    any_partner: bool,
) -> Result<ApiResult, MarketError> {
    let mut order =
        crate::market::queries::order_by_id(c, order_id).await?.ok_or(MarketError::NotFound("order"))?;
    if !any_partner {
        let placed_by = c
            .fetch_optional("SELECT partner FROM api_orders WHERE order_id = $1", args![order_id])
            .await?
            .map(|r| r.text("partner"))
            .transpose()?;
        // Another partner's order is not found, as if it did not exist.
        if placed_by.as_deref() != Some(partner) {
            return Err(MarketError::NotFound("order"));
        }
    }
    let to = order_flow::next(&order, OrderMove::Cancel, Mover::Partner)?;
    c.execute("UPDATE orders SET cancel_reason = $2 WHERE id = $1", args![order.id, &reason]).await?;
    super::move_order(
        c,
        ev,
        now,
        &mut order,
        OrderMove::Cancel,
        to,
        json!({ "reason": reason, "partner": partner }),
    )
    .await?;
    let text = |lang| notice::order_cancelled(&order, partner, &reason, lang);
    tell_household(c, ev, order.household_id, "order_cancelled", text, json!({ "order_id": order.id }))
        .await?;
    partner_order(c, order.id).await
}

async fn record_payment(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    partner: &str,
    order_id: i64,
    amount: i64,
    reference: Option<String>,
) -> Result<ApiResult, MarketError> {
    let mut order =
        crate::market::queries::order_by_id(c, order_id).await?.ok_or(MarketError::NotFound("order"))?;
    let to = order_flow::next(&order, OrderMove::Pay, Mover::Partner)?;
    if amount != order.amount {
        return Err(MarketError::Invalid {
            field: "amount",
            reason: format!("must be the order's amount, {}", order.amount),
        });
    }
    let extra = json!({ "amount": amount, "partner": partner, "reference": reference });
    super::move_order(c, ev, now, &mut order, OrderMove::Pay, to, extra).await?;
    c.execute(
        "INSERT INTO payments (order_id, household_id, amount, at_ms, actor, channel) VALUES ($1, $2, $3, $4, $5, $6)",
        args![order.id, order.household_id, amount, now, &ev.actor.msisdn, ev.actor.channel.as_str()],
    )
    .await?;
    c.execute(
        "INSERT INTO api_payments (order_id, partner, reference, at_ms) VALUES ($1, $2, $3, $4)",
        args![order.id, partner, reference, now],
    )
    .await?;
    let text = |lang| notice::payment_received(&order, partner, lang);
    tell_household(c, ev, order.household_id, "payment_received", text, json!({ "order_id": order.id }))
        .await?;
    partner_order(c, order.id).await
}

#[allow(clippy::too_many_arguments)]
async fn record_shipment(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    partner: &str,
    order_id: i64,
    status: ShipmentStatus,
    tracking_code: Option<String>,
) -> Result<ApiResult, MarketError> {
    let mut order =
        crate::market::queries::order_by_id(c, order_id).await?.ok_or(MarketError::NotFound("order"))?;
    let mv = match status {
        ShipmentStatus::Shipped => OrderMove::Ship,
        ShipmentStatus::Delivered => OrderMove::Deliver,
    };
    let to = order_flow::next(&order, mv, Mover::Partner)?;
    let extra = json!({ "partner": partner, "tracking_code": tracking_code });
    super::move_order(c, ev, now, &mut order, mv, to, extra).await?;
    c.execute(
        "INSERT INTO shipments (order_id, partner, status, tracking_code, at_ms) VALUES ($1, $2, $3, $4, $5)",
        args![order.id, partner, status.as_str(), tracking_code.clone(), now],
    )
    .await?;
    // The household hears of what the post office did with its parcel.
    let about = json!({ "order_id": order.id });
    match status {
        ShipmentStatus::Shipped => {
            let text = |lang| notice::order_shipped(&order, partner, tracking_code.as_deref(), lang);
            tell_household(c, ev, order.household_id, "order_shipped", text, about).await?;
        }
        ShipmentStatus::Delivered => {
            let text = |lang| notice::order_delivered(&order, lang);
            tell_household(c, ev, order.household_id, "order_delivered", text, about).await?;
        }
    }
    partner_order(c, order.id).await
}

/// Registers one household (village created if new); AlreadyRegistered if the MSISDN is.
async fn create_household(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    row: &ImportRow,
) -> Result<i64, MarketError> {
    if msisdn_taken(c, &row.msisdn).await?.is_some() {
        return Err(MarketError::AlreadyRegistered);
    }
    let (village_id, _) =
        find_or_create_village(c, ev, row.commune_code, &row.village_name, false, now).await?;
    let id = insert_household(c, &row.msisdn, &row.name, village_id, row.lang, false, now).await?;
    if row.has_epay {
        c.execute("UPDATE households SET has_epay = $2 WHERE id = $1", args![id, true]).await?;
    }
    ev.push(
        "household_registered",
        format!("household:{id}"),
        json!({ "village_id": village_id, "commune_code": row.commune_code, "has_epay": row.has_epay,
                "by": "admin" }),
    );
    Ok(id)
}

#[allow(clippy::too_many_arguments)]
async fn update_household(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    household_id: i64,
    name: Option<String>,
    lang: Option<Lang>,
    has_epay: Option<bool>,
    pending: Option<bool>,
    village: Option<(u32, String)>,
) -> Result<ApiResult, MarketError> {
    let before = admin_household(c, household_id).await?;
    let mut changes = serde_json::Map::new();
    if let Some(name) = name {
        c.execute("UPDATE households SET name = $2 WHERE id = $1", args![household_id, &name]).await?;
        changes.insert("name".into(), json!(name));
    }
    if let Some(lang) = lang {
        c.execute("UPDATE households SET language = $2 WHERE id = $1", args![household_id, lang.as_str()])
            .await?;
        changes.insert("language".into(), json!(lang.as_str()));
    }
    if let Some(has_epay) = has_epay {
        c.execute("UPDATE households SET has_epay = $2 WHERE id = $1", args![household_id, has_epay]).await?;
        changes.insert("has_epay".into(), json!(has_epay));
    }
    if let Some(pending) = pending {
        c.execute("UPDATE households SET pending = $2 WHERE id = $1", args![household_id, pending]).await?;
        changes.insert("pending".into(), json!(pending));
    }
    if let Some((commune_code, village_name)) = village {
        // A refused move takes the village it created with it (the action's savepoint).
        let (village_id, _) = find_or_create_village(c, ev, commune_code, &village_name, false, now).await?;
        if village_id != before.household.village_id {
            if before.household.is_leader {
                return Err(MarketError::NotAllowed(
                    "a team leader cannot move to another village".to_owned(),
                ));
            }
            c.execute("DELETE FROM team_members WHERE household_id = $1", args![household_id]).await?;
            c.execute("UPDATE households SET village_id = $2 WHERE id = $1", args![household_id, village_id])
                .await?;
            changes.insert("village_id".into(), json!(village_id));
        }
    }
    if !changes.is_empty() {
        ev.push("household_updated", format!("household:{household_id}"), serde_json::Value::Object(changes));
    }
    Ok(ApiResult::Household(admin_household(c, household_id).await?))
}

async fn import(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    rows: Vec<ImportRow>,
) -> Result<ApiResult, MarketError> {
    let mut report = ImportReport::default();
    for row in &rows {
        if let Some(id) = msisdn_taken(c, &row.msisdn).await? {
            report.existing += 1;
            report.rows.push(ImportOutcome { line: row.line, household_id: id, created: false });
            continue;
        }
        let id = create_household(c, ev, now, row).await?;
        report.created += 1;
        report.rows.push(ImportOutcome { line: row.line, household_id: id, created: true });
    }
    ev.push(
        "households_imported",
        "households".to_owned(),
        json!({ "lines": rows.len(), "created": report.created, "existing": report.existing }),
    );
    Ok(ApiResult::Import(report))
}

async fn create_village(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    commune_code: u32,
    name: String,
) -> Result<ApiResult, MarketError> {
    let (id, created) = find_or_create_village(c, ev, commune_code, &name, false, now).await?;
    let mut changed = created;
    if !created
        && c.execute("UPDATE villages SET pending = $2 WHERE id = $1 AND pending", args![id, false]).await?
            == 1
    {
        ev.push("village_confirmed", format!("village:{id}"), json!({ "commune_code": commune_code }));
        changed = true;
    }
    let village = reports::village_by_id(c, id).await?.ok_or(MarketError::NotFound("village"))?;
    Ok(ApiResult::Village { village, created: changed })
}

async fn add_member(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    team_id: i64,
    household_id: i64,
) -> Result<ApiResult, MarketError> {
    let team = reports::team_by_id(c, team_id).await?.ok_or(MarketError::NotFound("team"))?;
    let household = admin_household(c, household_id).await?;
    if household.household.village_id != team.village_id {
        return Err(MarketError::NotAllowed(format!(
            "household {household_id} is not in the team's village ({})",
            team.village_name
        )));
    }
    let added = c
        .execute(
            "INSERT INTO team_members (team_id, household_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            args![team_id, household_id],
        )
        .await?
        == 1;
    if added {
        ev.push("team_member_added", format!("team:{team_id}"), json!({ "household_id": household_id }));
    }
    let team = reports::team_by_id(c, team_id).await?.ok_or(MarketError::NotFound("team"))?;
    Ok(ApiResult::Team { team, created: added })
}

async fn create_token(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    public_id: String,
    name: String,
    scopes: Vec<String>,
    token_hash: String,
) -> Result<ApiResult, MarketError> {
    if reports::token_by_public_id(c, &public_id).await?.is_some() {
        return Err(MarketError::NotAllowed("a token with this public id exists".to_owned()));
    }
    let id = c
        .insert(
            "INSERT INTO api_tokens (public_id, name, scopes, token_hash, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
            args![&public_id, &name, scopes.join(" "), &token_hash, now],
        )
        .await?;
    // The event names the token, never its secret or hash.
    ev.push(
        "api_token_created",
        format!("api_token:{id}"),
        json!({ "public_id": public_id, "name": name, "scopes": scopes }),
    );
    Ok(ApiResult::Token(ApiToken {
        id,
        public_id,
        name,
        scopes,
        token_hash,
        created_at_ms: now,
        revoked_at_ms: None,
    }))
}

async fn revoke_token(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    public_id: String,
) -> Result<ApiResult, MarketError> {
    let token = reports::token_by_public_id(c, &public_id).await?.ok_or(MarketError::NotFound("token"))?;
    if token.revoked_at_ms.is_some() {
        return Err(MarketError::NotAllowed("the token is revoked already".to_owned()));
    }
    c.execute("UPDATE api_tokens SET revoked_at_ms = $2 WHERE id = $1", args![token.id, now]).await?;
    ev.push("api_token_revoked", format!("api_token:{}", token.id), json!({ "public_id": public_id }));
    Ok(ApiResult::Token(ApiToken { revoked_at_ms: Some(now), ..token }))
}
