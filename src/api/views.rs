//! The JSON the API answers with, and the renderers of API writes (run inside the writer's
//! transaction, their output stored with the idempotency key).

use serde_json::{Value, json};

use crate::market::MessageStatus;
use crate::market::reports::{
    AdminHousehold, ApiResult, ImportReport, OfferedListing, PartnerOrder, TeamRow, VillageRow,
};
use crate::time::rfc3339;

fn opt_time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| json!(rfc3339(ms)))
}

/// An order as partners see it.
pub fn order(po: &PartnerOrder) -> Value {
    let o = &po.order;
    json!({
        "id": o.id,
        "code": o.code,
        "listing_id": o.listing_id,
        "product": {
            "code": po.product_code, "name_vi": o.product_name_vi, "name_en": o.product_name_en, "unit": o.unit,
        },
        "buyer_name": o.buyer_name,
        "buyer_phone": o.buyer_phone,
        "delivery": o.delivery.as_ref().map(|d| json!({
            "name": d.name,
            "phone": d.phone,
            "address": d.address,
            "commune": { "code": d.commune_code, "name": po.delivery_commune_name },
        })),
        "quantity_kg": o.quantity_kg,
        "amount": o.amount,
        "status": o.status.as_str(),
        "created_at": rfc3339(o.created_at_ms),
        "updated_at": rfc3339(po.updated_at_ms),
        "partner": po.partner,
        "message_id": po.message_id,
        "payment": po.payment.as_ref().map(|p| json!({
            "amount": p.amount,
            "paid_at": rfc3339(p.at_ms),
            "channel": p.channel,
            "reference": p.reference,
        })),
        "tracking_code": po.tracking_code,
        "cancel_reason": po.cancel_reason,
        "shipment": po.shipment.as_ref().map(|s| json!({
            "status": s.status,
            "tracking_code": s.tracking_code,
            "at": rfc3339(s.at_ms),
            "partner": s.partner,
        })),
    })
}

/// A listing on offer (no personal data of the household).
pub fn listing(l: &OfferedListing) -> Value {
    let x = &l.listing;
    json!({
        "id": x.id,
        "code": x.code,
        "product": { "code": l.product_code, "name_vi": x.product_name_vi, "name_en": x.product_name_en },
        "quantity_kg": x.quantity_kg,
        "price_per_kg": x.price_per_kg,
        "village": { "id": l.village_id, "name": l.village_name },
        "commune": { "code": l.commune_code, "name": l.commune_name },
        "created_at": rfc3339(x.created_at_ms),
    })
}

/// A household as the admin sees it.
pub fn household(a: &AdminHousehold) -> Value {
    let h = &a.household;
    json!({
        "id": h.id,
        "msisdn": h.msisdn,
        "name": h.name,
        "village": { "id": h.village_id, "name": h.village_name },
        "commune": { "code": h.commune_code, "name": h.commune_name },
        "language": h.language.as_str(),
        "has_epay": h.has_epay,
        "is_leader": h.is_leader,
        "has_pin": h.has_pin,
        "pending": a.pending,
        "created_at": rfc3339(a.created_at_ms),
    })
}

/// A village.
pub fn village(v: &VillageRow) -> Value {
    json!({
        "id": v.id,
        "name": v.name,
        "commune": { "code": v.commune_code, "name": v.commune_name },
        "pending": v.pending,
        "households": v.households,
        "team_id": v.team_id,
    })
}

/// A team.
pub fn team(t: &TeamRow) -> Value {
    json!({
        "id": t.id,
        "village": { "id": t.village_id, "name": t.village_name },
        "commune": { "code": t.commune_code, "name": t.commune_name },
        "leader": { "household_id": t.leader_household_id, "name": t.leader_name, "msisdn": t.leader_msisdn },
        "members": t.members,
    })
}

/// An SMS's status (not its text or number).
pub fn message(m: &MessageStatus) -> Value {
    json!({
        "id": m.id,
        "kind": m.kind,
        "status": m.status,
        "attempts": m.attempts,
        "parts": m.parts,
        "created_at": rfc3339(m.created_at_ms),
        "sent_at": opt_time(m.sent_at_ms),
        "done_at": opt_time(m.done_at_ms),
        "expires_at": rfc3339(m.expires_at_ms),
        "last_error": m.last_error,
    })
}

fn import(r: &ImportReport) -> Value {
    json!({
        "created": r.created,
        "existing": r.existing,
        "rows": r.rows.iter().map(|o| json!({
            "line": o.line,
            "household_id": o.household_id,
            "status": if o.created { "created" } else { "existing" },
        })).collect::<Vec<_>>(),
    })
}

fn unexpected(r: &ApiResult) -> (u16, Value) {
    let what = match r {
        ApiResult::Order(_) => "order",
        ApiResult::Household(_) => "household",
        ApiResult::Village { .. } => "village",
        ApiResult::Team { .. } => "team",
        ApiResult::Import(_) => "import",
        ApiResult::Token(_) => "token",
    };
    (
        500,
        json!({ "error": { "code": "internal", "message": format!("unexpected {what} result"), "field": null } }),
    )
}

/// 201 with the order (placed, paid or shipped: each creates a record).
pub fn order_created(r: &ApiResult) -> (u16, Value) {
    match r {
        ApiResult::Order(o) => (201, order(o)),
        other => unexpected(other),
    }
}

/// 200 with the changed order (cancelled).
pub fn order_updated(r: &ApiResult) -> (u16, Value) {
    match r {
        ApiResult::Order(o) => (200, order(o)),
        other => unexpected(other),
    }
}

/// 201 with the new household.
pub fn household_created(r: &ApiResult) -> (u16, Value) {
    match r {
        ApiResult::Household(h) => (201, household(h)),
        other => unexpected(other),
    }
}

/// 200 with the changed household.
pub fn household_updated(r: &ApiResult) -> (u16, Value) {
    match r {
        ApiResult::Household(h) => (200, household(h)),
        other => unexpected(other),
    }
}

/// 201 with a new (or newly confirmed) village, 200 with one that was there.
pub fn village_saved(r: &ApiResult) -> (u16, Value) {
    match r {
        ApiResult::Village { village: v, created } => (if *created { 201 } else { 200 }, village(v)),
        other => unexpected(other),
    }
}

/// 201 with a new team (or a new member), 200 when nothing changed.
pub fn team_saved(r: &ApiResult) -> (u16, Value) {
    match r {
        ApiResult::Team { team: t, created } => (if *created { 201 } else { 200 }, team(t)),
        other => unexpected(other),
    }
}

/// 200 with an import's outcome.
pub fn import_done(r: &ApiResult) -> (u16, Value) {
    match r {
        ApiResult::Import(i) => (200, import(i)),
        other => unexpected(other),
    }
}
