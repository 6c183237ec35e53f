//! The HTTP API (axum on hyper): partners (listings, orders, payments, shipments, SMS
//! status), admin (households, villages, teams, leaders), progress reports, and the
//! operations endpoints (`/live`, `/ready`, `/metrics`, `/openapi.json`).
//!
//! Every `/v1` route takes a bearer token ([`auth`]) whose scopes cover it, is rate-limited
//! per token ([`rate`]), reads bodies under `[api] max_body_bytes` ([`body`]) and answers
//! errors as `{"error": {"code", "message", "field"}}` ([`error`]). Writes go through the
//! market's writer with the partner's `Idempotency-Key`.

pub mod admin;
pub mod auth;
pub mod body;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod partner;
pub mod progress;
pub mod rate;

pub mod tokens;
pub mod views;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, patch, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::ApiConfig;
use crate::market::Market;
use crate::smpp::session::Registry;
use error::ApiError;
use rate::RateLimiter;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The market.
    pub market: Market,
    /// Bound SMPP sessions, by label.
    pub registry: Arc<Registry>,
    /// `[api]` settings.
    pub config: Arc<ApiConfig>,
    /// Per-token rate limits.
    pub limiter: Arc<RateLimiter>,
}

impl AppState {
    /// The state for a configuration.
    pub fn new(config: &ApiConfig, market: Market, registry: Arc<Registry>) -> AppState {
        AppState {
            market,
            registry,
            config: Arc::new(config.clone()),
            limiter: Arc::new(RateLimiter::new(config.rate_per_sec, config.burst)),
        }
    }
}

/// Every route: method, path (axum syntax) and handler. The router is built from this
/// table, and the OpenAPI test checks the document against it.
pub fn routes() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    vec![
        (Method::GET, "/live", get(ops::live)),
        (Method::GET, "/ready", get(ops::ready)),
        (Method::GET, "/metrics", get(ops::metrics)),
        (Method::GET, "/openapi.json", get(ops::openapi)),
        (Method::GET, "/v1/listings", get(partner::listings)),
        (Method::POST, "/v1/orders", post(partner::place_order)),
        (Method::GET, "/v1/orders/{id}", get(partner::order)),
        (Method::POST, "/v1/orders/{id}/cancel", post(partner::cancel_order)),
        (Method::POST, "/v1/payments", post(partner::record_payment)),
        (Method::POST, "/v1/shipments", post(partner::record_shipment)),
        (Method::GET, "/v1/messages/{id}", get(partner::message)),
        (Method::GET, "/v1/reports/communes", get(progress::communes)),
        (Method::GET, "/v1/reports/villages", get(progress::villages)),
        (Method::GET, "/v1/admin/households", get(admin::households)),
        (Method::POST, "/v1/admin/households", post(admin::create_household)),
        (Method::POST, "/v1/admin/households/import", post(admin::import_households)),
        (Method::GET, "/v1/admin/households/{id}", get(admin::household)),
        (Method::PATCH, "/v1/admin/households/{id}", patch(admin::update_household)),
        (Method::GET, "/v1/admin/villages", get(admin::villages)),
        (Method::POST, "/v1/admin/villages", post(admin::create_village)),
        (Method::GET, "/v1/admin/teams", get(admin::teams)),
        (Method::POST, "/v1/admin/teams/{id}/members", post(admin::add_member)),
        (Method::POST, "/v1/admin/leaders", post(admin::register_leader)),
    ]
}

/// The (method, path) of every route, for checks.
pub fn route_list() -> Vec<(Method, &'static str)> {
    routes().into_iter().map(|(m, p, _)| (m, p)).collect()
}

async fn not_found() -> Response {
    ApiError::not_found("route").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}

/// Counts every response by status and logs it (the path only: no query, no headers).
async fn track(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    metrics::http_response(status);
    debug!(%method, path, status, ms = started.elapsed().as_millis() as u64, "http request");
    response
}

/// The router.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (_, path, handler) in routes() {
        router = router.route(path, handler);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(track))
        .with_state(state)
}

/// Serves until shutdown, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown.cancelled_owned()).await
}
