//! Partner routes: listings on offer, orders (e-commerce platforms, post offices), payments
//! (payment partners), shipments (post office), and the SMS that told households.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Authed, Caller, NeedOrderRead, NeedOrders, NeedPayments, NeedShipments, Scope};
use super::body::{JsonBody, Params, PathParam, idempotency_key, path_id, stored_response};
use super::error::ApiError;
use super::{AppState, views};
use crate::market::reports::{ApiCall, ApiOp, ListingFilter, Render, ShipmentStatus};
use crate::market::{Delivery, NewOrder};

/// Applies an API write under the caller's idempotency key: a repeat of the same request
/// gets the first response (`Idempotent-Replayed: true`), another request under the same
/// key 409; the market checks both again inside its transaction, where concurrent repeats
/// meet.
pub(super) async fn write(
    st: &AppState,
    caller: &Caller,
    key: Option<String>,
    request_hash: String,
    render: Render,
    op: ApiOp,
) -> Result<Response, ApiError> {
    let key = key.unwrap_or_else(super::auth::random_key);
    if let Some(stored) = st.market.api_response(&caller.partner, &key).await? {
        if stored.request_hash != request_hash {
            return Err(ApiError::Conflict {
                code: "idempotency_key_reused",
                field: Some("Idempotency-Key".to_owned()),
                message: "Idempotency-Key already used for another request".to_owned(),
            });
        }
        return Ok(stored_response(stored, true));
    }
    let call = ApiCall { partner: caller.partner.clone(), key, request_hash };
    let stored = st.market.api_call(&caller.actor(), call, render, op).await?;
    Ok(stored_response(stored, false))
}

/// `GET /v1/listings?product=&commune=&limit=&after=`
pub async fn listings(
    Authed(_caller, _): Authed<NeedOrders>,
    State(st): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    params.only(&["product", "commune", "limit", "after"])?;
    let product_id = match params.get("product") {
        None => None,
        Some(code) => match st.market.product_by_code(code) {
            Some(p) => Some(p.id),
            None => {
                let codes: Vec<String> = st.market.products().await?.iter().map(|p| p.code.clone()).collect();
                return Err(ApiError::bad(
                    "product",
                    format!("unknown product `{code}`; one of {}", codes.join(", ")),
                ));
            }
        },
    };
    let commune_code = params.number::<u32>("commune", 1..=99_999)?;
    if let Some(code) = commune_code
        && st.market.commune(code).await?.is_none()
    {
        return Err(ApiError::bad("commune", format!("no commune {code} in the 2025 list")));
    }
    let limit = params.number::<i64>("limit", 1..=500)?.unwrap_or(100);
    let after = params.number::<i64>("after", 0..=i64::MAX)?.unwrap_or(0);
    let rows = st.market.offered_listings(&ListingFilter { product_id, commune_code, after, limit }).await?;
    let next = if rows.len() as i64 == limit { rows.last().map(|l| l.listing.id) } else { None };
    Ok(Json(json!({
        "listings": rows.iter().map(views::listing).collect::<Vec<_>>(),
        "next_after": next,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    listing_id: i64,
    buyer_name: String,
    buyer_phone: String,
    quantity_kg: i64,
    amount: i64,
    delivery: DeliveryRequest,
}

/// Where the parcel goes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRequest {
    name: String,
    phone: String,
    address: String,
    commune_code: u32,
}

/// `POST /v1/orders` (Idempotency-Key required): the buyer's number and the delivery
/// address are required; the amount must be the quantity times the listing's price.
pub async fn place_order(
    Authed(caller, _): Authed<NeedOrders>,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: JsonBody<OrderRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, true)?;
    let OrderRequest { listing_id, buyer_name, buyer_phone, quantity_kg, amount, delivery } = body.value;
    let DeliveryRequest { name, phone, address, commune_code } = delivery;
    let op = ApiOp::PlaceOrder(NewOrder {
        listing_id,
        buyer_name,
        quantity_kg,
        amount,
        buyer_phone: Some(buyer_phone),
        delivery: Some(Delivery { name, phone, address, commune_code }),
    });
    write(&st, &caller, key, body.hash, views::order_created, op).await
}

/// `GET /v1/orders/{id}`: orders:write sees the orders its partner placed; payments,
/// shipments and admin see any.
pub async fn order(
    Authed(caller, _): Authed<NeedOrderRead>,
    State(st): State<AppState>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "order")?;
    let po = st.market.partner_order(id).await?.ok_or_else(|| ApiError::not_found("order"))?;
    let sees_all = caller.has(Scope::PaymentsWrite) || caller.has(Scope::ShipmentsWrite);
    if !sees_all && po.partner.as_deref() != Some(caller.partner.as_str()) {
        return Err(ApiError::not_found("order"));
    }
    Ok(Json(views::order(&po)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    reason: String,
}

/// `POST /v1/orders/{id}/cancel` (Idempotency-Key required): the partner that placed the
/// order calls it off, while it is new or accepted; the quantity goes back on offer and
/// the household is told by SMS.
pub async fn cancel_order(
    Authed(caller, _): Authed<NeedOrders>,
    State(st): State<AppState>,
    headers: HeaderMap,
    PathParam(id): PathParam,
    body: JsonBody<CancelRequest>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "order")?;
    let key = idempotency_key(&headers, true)?;
    let any_partner = caller.has(Scope::Admin);
    // Checked again in the writer's transaction; here so that another partner's order is a
    // plain 404, like GET.
    let po = st.market.partner_order(id).await?.ok_or_else(|| ApiError::not_found("order"))?;
    if !any_partner && po.partner.as_deref() != Some(caller.partner.as_str()) {
        return Err(ApiError::not_found("order"));
    }
    let op = ApiOp::CancelOrder { order_id: id, reason: body.value.reason, any_partner };
    write(&st, &caller, key, body.hash, views::order_updated, op).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    order_id: i64,
    amount: i64,
    #[serde(default)]
    reference: Option<String>,
}

/// `POST /v1/payments`: money received for a shipped or delivered order.
pub async fn record_payment(
    Authed(caller, _): Authed<NeedPayments>,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: JsonBody<PaymentRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, true)?;
    let PaymentRequest { order_id, amount, reference } = body.value;
    let op = ApiOp::RecordPayment { order_id, amount, reference };
    write(&st, &caller, key, body.hash, views::order_created, op).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipmentRequest {
    order_id: i64,
    status: String,
    #[serde(default)]
    tracking_code: Option<String>,
}

/// `POST /v1/shipments`: `shipped` (Accepted → Shipped) or `delivered`.
pub async fn record_shipment(
    Authed(caller, _): Authed<NeedShipments>,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: JsonBody<ShipmentRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, true)?;
    let ShipmentRequest { order_id, status, tracking_code } = body.value;
    let status = ShipmentStatus::parse(&status)
        .ok_or_else(|| ApiError::bad("status", format!("`{status}` is not one of shipped, delivered")))?;
    let op = ApiOp::RecordShipment { order_id, status, tracking_code };
    write(&st, &caller, key, body.hash, views::order_created, op).await
}

/// `GET /v1/messages/{id}`: the status of an SMS that told a household of the partner's
/// order (admin: any SMS).
pub async fn message(
    Authed(caller, _): Authed<NeedOrders>,
    State(st): State<AppState>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "message")?;
    if !caller.has(Scope::Admin)
        && st.market.message_partner(id).await?.as_deref() != Some(caller.partner.as_str())
    {
        return Err(ApiError::not_found("message"));
    }
    let m = st.market.message(id).await?.ok_or_else(|| ApiError::not_found("message"))?;
    Ok(Json(views::message(&m)).into_response())
}
