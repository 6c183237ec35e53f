//! The HTTP listener: health endpoints now; the partner API, reports and metrics build on
//! this router.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::smpp::session::Registry;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Bound SMPP sessions, by label.
    pub registry: Arc<Registry>,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new().route("/live", get(live)).route("/ready", get(ready)).with_state(state)
}

async fn live() -> impl IntoResponse {
    axum::Json(json!({ "status": "live" }))
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let binds: serde_json::Map<String, serde_json::Value> =
        state.registry.summary().into_iter().map(|(label, n)| (label, json!(n))).collect();
    (StatusCode::OK, axum::Json(json!({ "status": "ready", "binds": binds })))
}

/// Serves until shutdown, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown.cancelled_owned()).await
}
