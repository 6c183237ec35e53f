//! The API layer's one error enum, mapped to an HTTP status and the JSON error body
//! `{"error": {"code": "...", "message": "...", "field": "..." | null}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::warn;

use crate::market::MarketError;
use crate::market::reports::IDEMPOTENCY_KEY_FIELD;
use crate::store::StoreError;

/// Everything the API answers with an error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed or out-of-range input; names the field when there is one.
    #[error("{message}")]
    BadRequest {
        /// The field (`quantity_kg`, `csv[3].msisdn`, `Idempotency-Key`, `date`).
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// 401: no bearer token, or not a valid one.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: the token's scopes do not cover the route.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such route or resource (or not the caller's).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
        /// The field that referenced it, if it came in the body.
        field: Option<String>,
    },
    /// 405: the route exists, not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the state does not allow it, or the key was used for another request.
    #[error("{message}")]
    Conflict {
        /// `idempotency_key_reused`, `already_registered` or `conflict`.
        code: &'static str,
        /// The field at fault, if one.
        field: Option<String>,
        /// What conflicts.
        message: String,
    },
    /// 413: the body is over `[api] max_body_bytes`.
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// 415: the body is not in the route's media type.
    #[error("the body must be {0}")]
    UnsupportedMediaType(&'static str),
    /// 429: past the token's rate.
    #[error("rate limit exceeded; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request would be let through.
        retry_after_secs: u64,
    },
    /// 408: the body was still arriving when `[http] request_timeout_secs` ran out.
    #[error("the request body did not arrive within {secs} s")]
    RequestTimeout {
        /// The limit.
        secs: u64,
    },
    /// 503: the request was not handled within `[http] request_timeout_secs`.
    #[error("the request was not handled within {secs} s; repeat it (with the same Idempotency-Key)")]
    TimedOut {
        /// The limit.
        secs: u64,
    },
    /// 503: the database is unavailable or shutting down; the request may be repeated.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 500: a bug or corrupt data; details go to the log, not the client.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming a field.
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest { field: Some(field.into()), message: message.into() }
    }

    /// A 404 for something looked up by the path.
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::NotFound { what: what.into(), field: None }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::TimedOut { .. } | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "invalid",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound { .. } => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict { code, .. } => code,
            ApiError::TooLarge { .. } => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::TimedOut { .. } => "timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { field, .. }
            | ApiError::NotFound { field, .. }
            | ApiError::Conflict { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Internal(detail) => {
                warn!(detail = %detail, "internal error answered with 500");
                self.to_string()
            }
            ApiError::Unavailable(detail) => {
                warn!(detail = %detail, "answered with 503");
                "the database is unavailable; repeat the request (with the same Idempotency-Key)".to_owned()
            }
            _ => self.to_string(),
        };
        let body = json!({ "error": { "code": self.code(), "message": message, "field": self.field() } });
        let mut response = (self.status(), axum::Json(body)).into_response();
        match &self {
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RequestTimeout { .. } => {
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::RateLimited { retry_after_secs } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        response
    }
}

/// The body field that references each kind of row the market looks up.
fn referencing_field(what: &str) -> Option<&'static str> {
    Some(match what {
        "listing" => "listing_id",
        "order" => "order_id",
        "commune" => "commune_code",
        "household" => "household_id",
        "team" => "team_id",
        "product" => "product",
        _ => return None,
    })
}

impl From<MarketError> for ApiError {
    fn from(e: MarketError) -> Self {
        match e {
            MarketError::Invalid { field, reason } if field == IDEMPOTENCY_KEY_FIELD => ApiError::Conflict {
                code: "idempotency_key_reused",
                field: Some(field.to_owned()),
                message: format!("Idempotency-Key {reason}"),
            },
            MarketError::Invalid { field, reason } => {
                ApiError::BadRequest { field: Some(field.to_owned()), message: format!("{field} {reason}") }
            }
            MarketError::NotFound(what) => ApiError::NotFound {
                what: what.to_owned(),
                field: referencing_field(what).map(str::to_owned),
            },
            MarketError::NotAllowed(message) => ApiError::Conflict { code: "conflict", field: None, message },
            e @ MarketError::OrderState { .. } => {
                ApiError::Conflict { code: "conflict", field: None, message: e.to_string() }
            }
            MarketError::AlreadyRegistered => ApiError::Conflict {
                code: "already_registered",
                field: Some("msisdn".to_owned()),
                message: "this MSISDN is registered already".to_owned(),
            },
            MarketError::Store(StoreError::Closed) => {
                ApiError::Unavailable("the writer has stopped".to_owned())
            }
            MarketError::Store(StoreError::TransactionFailed(m)) => ApiError::Unavailable(m),
            MarketError::Store(e) if e.is_unavailable() => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn market_errors_should_map_to_statuses_and_fields() {
        let e: ApiError = MarketError::Invalid { field: "quantity_kg", reason: "too big".into() }.into();
        assert_eq!((e.status(), e.field()), (StatusCode::BAD_REQUEST, Some("quantity_kg")));
        let e: ApiError = MarketError::Invalid { field: IDEMPOTENCY_KEY_FIELD, reason: "used".into() }.into();
        assert_eq!((e.status(), e.code()), (StatusCode::CONFLICT, "idempotency_key_reused"));
        let e: ApiError = MarketError::NotFound("listing").into();
        assert_eq!((e.status(), e.field()), (StatusCode::NOT_FOUND, Some("listing_id")));
        let e: ApiError = MarketError::NotAllowed("no".into()).into();
        assert_eq!(e.status(), StatusCode::CONFLICT);
        let e: ApiError = MarketError::Store(StoreError::Closed).into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let e: ApiError = MarketError::PinNotSet.into();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
