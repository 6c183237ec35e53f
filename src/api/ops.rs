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

/// `GET /ready`: 200 when the database answers a trivial query, else 503; with the bound
/// SMPP sessions.
pub async fn ready(State(st): State<AppState>) -> Response {
    let binds: serde_json::Map<String, serde_json::Value> =
        st.registry.summary().into_iter().map(|(label, n)| (label, json!(n))).collect();
    let db = tokio::select! {
        r = st.market.ping() => r.map_err(|e| e.to_string()),
        () = tokio::time::sleep(DB_WAIT) => Err("no answer in time".to_owned()),
    };
    match db {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready", "database": "ok", "binds": binds })))
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "database": "unavailable", "binds": binds })),
            )
                .into_response()
        }
    }
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
