//! Operations endpoints, without a token: `/live`, `/ready`, `/metrics`, `/openapi.json`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, metrics, openapi};

/// How long `/ready` and `/metrics` wait for the database.
const DB_WAIT: Duration = Duration::from_secs(2);

/// `GET /live`: the process is running.
pub async fn live() -> Response {
    Json(json!({ "status": "live" })).into_response()
}

/// `GET /ready` (public): 200 when the database answers a trivial query, else 503; 503 as
/// soon as shutdown has begun. Names no account.
pub async fn ready(State(st): State<AppState>) -> Response {
    readiness(&st, None).await
}

/// `GET /ready` on the operations listener: the same, with the bound SMPP sessions per
/// account and the HTTP requests in flight (this one included).
pub async fn ready_detailed(State(st): State<AppState>) -> Response {
    let binds: serde_json::Map<String, serde_json::Value> =
        st.registry.summary().into_iter().map(|(label, n)| (label, json!(n))).collect();
    let details = json!({ "binds": binds, "http_requests_in_flight": st.requests.len() });
    readiness(&st, Some(details)).await
}

async fn readiness(st: &AppState, details: Option<serde_json::Value>) -> Response {
    let (status, mut body) = if st.draining.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, json!({ "status": "draining" }))
    } else {
        let db = tokio::select! {
            r = st.market.ping() => r.map_err(|e| e.to_string()),
            () = tokio::time::sleep(DB_WAIT) => Err("no answer in time".to_owned()),
        };
        match db {
            Ok(()) => (StatusCode::OK, json!({ "status": "ready", "database": "ok" })),
            Err(e) => {
                tracing::warn!(error = %e, "not ready: the database does not answer");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "status": "unavailable", "database": "unavailable" }),
                )
            }
        }
    };
    if let (Some(serde_json::Value::Object(details)), Some(map)) = (details, body.as_object_mut()) {
        map.extend(details);
    }
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(st): State<AppState>) -> Response {
    let outbox = tokio::select! {
        r = st.market.outbox_depth() => r.ok(),
        () = tokio::time::sleep(DB_WAIT) => None,
    };
    let scrape =
        metrics::Scrape { outbox, writer: st.market.writer_counters(), binds: st.registry.summary() };
    let mut response = metrics::render(&scrape).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// `GET /openapi.json`
pub async fn openapi() -> Response {
    Json(openapi::document()).into_response()
}
