//! The HTTP API (axum on hyper): partners (listings, orders, payments, shipments, SMS
//! status), admin (households, villages, teams, leaders), progress reports, and the
//! operations endpoints (`/live`, `/ready`, `/metrics`, `/openapi.json`).
//!
//! Every `/v1` route takes a bearer token ([`auth`]) whose scopes cover it, is rate-limited
//! per token ([`rate`]; requests without a valid token per client address), reads bodies
//! under `[api] max_body_bytes` ([`body`]) and answers errors as
//! `{"error": {"code", "message", "field"}}` ([`error`]). Writes go through the market's
//! writer with the partner's `Idempotency-Key`. Connections are served by [`server`] (its
//! timeouts, connection limit and drain); every request's handling is bounded by
//! `[http] request_timeout_secs`.

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
pub mod server;
pub mod tokens;
pub mod views;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, patch, post};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::config::{ApiConfig, HttpConfig};
use crate::market::Market;
use crate::smpp::session::Registry;
use error::ApiError;
use rate::{AddressLimiter, RateLimiter};
use server::{ClientAddr, Limits};

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
    /// Rate limits of requests without a valid token, per client address.
    pub anonymous: Arc<AddressLimiter>,
    /// The daemon's shutdown token: once cancelled, `/ready` answers 503.
    pub draining: CancellationToken,
    /// The requests in flight on every listener (the drain waits for them).
    pub requests: TaskTracker,
}

impl AppState {
    /// The state for a configuration.
    pub fn new(
        config: &ApiConfig,
        market: Market,
        registry: Arc<Registry>,
        draining: CancellationToken,
    ) -> AppState {
        AppState {
            market,
            registry,
            config: Arc::new(config.clone()),
            limiter: Arc::new(RateLimiter::new(config.rate_per_sec, config.burst)),
            anonymous: Arc::new(AddressLimiter::with_capacity(
                config.unauthenticated_rate_per_sec,
                config.unauthenticated_burst,
                rate::MAX_ADDRESSES,
            )),
            draining,
            requests: TaskTracker::new(),
        }
    }

    /// Charges a request without a valid token to its client's address (see
    /// [`rate::client_key`]).
    pub fn charge_anonymous(&self, client: Option<&ClientAddr>) -> Result<(), ApiError> {
        match client {
            Some(ClientAddr(addr)) => self.anonymous.check(rate::client_key(addr.ip())),
            None => Ok(()),
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
    crate::metrics::http_response(status);
    debug!(%method, path = %path.escape_debug(), status, ms = started.elapsed().as_millis() as u64, "http request");
    response
}

/// Charges every request the token check will not see to its client's address: all but a
/// `/v1` request with a well-formed bearer token (whose check charges the address if the
/// token is not valid, see [`auth::Authed`]).
async fn limit_anonymous(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let checked_later = req.uri().path().starts_with("/v1/")
        && req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).is_some_and(auth::is_bearer_token);
    if !checked_later && let Err(e) = st.charge_anonymous(req.extensions().get::<ClientAddr>()) {
        return e.into_response();
    }
    next.run(req).await
}

/// A request body that says when it has been read to its end.
struct Watched {
    inner: Body,
    ended: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Bounds a request's handling: past `limit`, 408 if its body was still arriving, else 503.
async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let ended = Arc::new(AtomicBool::new(req.body().is_end_stream()));
    let watched = ended.clone();
    let req = req.map(|inner| Body::new(Watched { inner, ended: watched }));
    tokio::select! {
        response = next.run(req) => response,
        () = tokio::time::sleep(limit) => {
            let secs = limit.as_secs();
            if ended.load(Ordering::Relaxed) {
                ApiError::TimedOut { secs }.into_response()
            } else {
                ApiError::RequestTimeout { secs }.into_response()
            }
        }
    }
}

/// The public router: every route of [`routes`], but `/metrics` when the operations
/// endpoints have a listener of their own.
pub fn router(state: AppState, http: &HttpConfig) -> Router {
    let mut router = Router::new();
    for (_, path, handler) in routes() {
        if path == "/metrics" && http.ops_listen.is_some() {
            continue;
        }
        router = router.route(path, handler);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), limit_anonymous))
        .layer(middleware::from_fn_with_state(http.request_timeout(), deadline))
        .layer(middleware::from_fn(track))
        .with_state(state)
}

/// The operations router (`[http] ops_listen`): `/live`, `/ready` with the bound SMPP
/// accounts, `/metrics`.
pub fn ops_router(state: AppState, http: &HttpConfig) -> Router {
    Router::new()
        .route("/live", get(ops::live))
        .route("/ready", get(ops::ready_detailed))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(http.request_timeout(), deadline))
        .layer(middleware::from_fn(track))
        .with_state(state)
}

/// Serves the public router on `listener`, and the operations router on `ops` if given,
/// until shutdown and its drain (see [`server`]).
pub async fn serve(
    listener: TcpListener,
    ops: Option<TcpListener>,
    state: AppState,
    http: &HttpConfig,
    shutdown: CancellationToken,
) {
    let limits = Limits::from_config(http);
    let requests = state.requests.clone();
    let public =
        server::serve(listener, router(state.clone(), http), limits, requests.clone(), shutdown.clone());
    match ops {
        Some(ops) => {
            let ops = server::serve(ops, ops_router(state, http), limits, requests, shutdown);
            tokio::join!(public, ops);
        }
        None => public.await,
    }
}
