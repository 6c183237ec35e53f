//! Reading requests: bodies under the size limit (413), JSON with the field at fault named
//! (400), query parameters, the `Idempotency-Key`, and stored responses played back.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::market::reports::{StoredResponse, sha256_hex};

/// The longest a request body may take to arrive.
const BODY_DEADLINE: Duration = Duration::from_secs(30);
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 100;

/// Reads the whole body, refusing more than `limit` bytes (by `Content-Length` before
/// reading, or as it arrives) and bodies slower than 30 s.
pub async fn read_limited(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    if let Some(len) =
        headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(ApiError::TooLarge { limit });
    }
    let mut body = body;
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + BODY_DEADLINE;
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            () = tokio::time::sleep_until(deadline) => {
                return Err(ApiError::bad("body", "the body took too long to arrive"));
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| ApiError::bad("body", format!("the body could not be read: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ApiError::TooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// The request's fingerprint: method, path and body (JSON re-serialised, so spacing does
/// not count).
fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    sha256_hex(&[method.as_str().as_bytes(), path.as_bytes(), body])
}

/// A JSON body of type `T`, and the request's fingerprint (for idempotency).
#[derive(Debug)]
pub struct JsonBody<T> {
    /// The value.
    pub value: T,
    /// Hex SHA-256 of method, path and body.
    pub hash: String,
}

/// The field a deserialisation error is about (`delivery.phone` for a nested one), and a
/// message.
fn json_field_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let message = e.inner().to_string();
    let at_object = path == "." || path.is_empty();
    // A missing field is reported at its object (an unknown one at itself): the name is in
    // the message.
    let named = message.starts_with("missing field").then(|| message.split('`').nth(1)).flatten();
    let field = match (at_object, named) {
        (true, named) => named.map(str::to_owned).or_else(|| message.split('`').nth(1).map(str::to_owned)),
        (false, Some(name)) => Some(format!("{path}.{name}")),
        (false, None) => Some(path),
    };
    ApiError::BadRequest { field, message }
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        if let Some(mt) = media_type(&parts.headers)
            && mt != "application/json"
            && !mt.ends_with("+json")
        {
            return Err(ApiError::UnsupportedMediaType("application/json"));
        }
        let bytes = read_limited(body, &parts.headers, state.config.max_body_bytes).await?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest {
            field: None,
            message: format!("the body is not JSON: {e}"),
        })?;
        if !value.is_object() {
            return Err(ApiError::BadRequest {
                field: None,
                message: "the body must be a JSON object".into(),
            });
        }
        let hash = fingerprint(&parts.method, parts.uri.path(), value.to_string().as_bytes());
        let value = serde_path_to_error::deserialize(value).map_err(json_field_error)?;
        Ok(JsonBody { value, hash })
    }
}

/// A CSV body (`text/csv`), and the request's fingerprint.
#[derive(Debug)]
pub struct CsvBody {
    /// The text.
    pub text: String,
    /// Hex SHA-256 of method, path and body.
    pub hash: String,
}

impl FromRequest<AppState> for CsvBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        if media_type(&parts.headers).as_deref() != Some("text/csv") {
            return Err(ApiError::UnsupportedMediaType("text/csv"));
        }
        let bytes = read_limited(body, &parts.headers, state.config.max_body_bytes).await?;
        let hash = fingerprint(&parts.method, parts.uri.path(), &bytes);
        let text =
            String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::bad("body", "the CSV must be UTF-8"))?;
        Ok(CsvBody { text: text.trim_start_matches('\u{feff}').to_owned(), hash })
    }
}

/// The `Idempotency-Key` header: 1 to 100 visible ASCII characters. Required for partner
/// writes; optional for admin writes (a random one is used).
pub fn idempotency_key(headers: &HeaderMap, required: bool) -> Result<Option<String>, ApiError> {
    let field = "Idempotency-Key";
    let Some(v) = headers.get(field) else {
        return if required {
            Err(ApiError::bad(field, "the Idempotency-Key header is required"))
        } else {
            Ok(None)
        };
    };
    let v = v.to_str().map_err(|_| ApiError::bad(field, "must be visible ASCII"))?;
    if v.is_empty() || v.len() > MAX_IDEMPOTENCY_KEY || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad(
            field,
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        ));
    }
    Ok(Some(v.to_owned()))
}

/// A stored API response, played back; `replayed` adds `Idempotent-Replayed: true`.
pub fn stored_response(stored: StoredResponse, replayed: bool) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response =
        (status, [(CONTENT_TYPE, HeaderValue::from_static("application/json"))], stored.body).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Query parameters, percent-decoded; unknown names are refused by [`Params::only`].
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

impl Params {
    /// Parses a query string.
    pub fn parse(query: &str) -> Result<Params, ApiError> {
        let mut out = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k).ok_or_else(|| ApiError::bad("query", "malformed query string"))?;
            let v = percent_decode(v).ok_or_else(|| ApiError::bad(k.clone(), "malformed value"))?;
            if out.iter().any(|(o, _): &(String, String)| *o == k) {
                return Err(ApiError::bad(k, "given twice"));
            }
            out.push((k, v));
        }
        Ok(Params(out))
    }

    /// Refuses parameters not in `allowed`.
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.0.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => {
                Err(ApiError::bad(k.clone(), format!("unknown parameter; known: {}", allowed.join(", "))))
            }
            None => Ok(()),
        }
    }

    /// A parameter's text.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A parameter parsed as a number in a range.
    pub fn number<T>(&self, name: &str, range: std::ops::RangeInclusive<T>) -> Result<Option<T>, ApiError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(v) = self.get(name) else { return Ok(None) };
        let n: T = v.trim().parse().map_err(|_| ApiError::bad(name, format!("`{v}` is not a number")))?;
        if !range.contains(&n) {
            return Err(ApiError::bad(
                name,
                format!("must be between {} and {}", range.start(), range.end()),
            ));
        }
        Ok(Some(n))
    }
}

impl FromRequestParts<AppState> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, ApiError> {
        Params::parse(parts.uri.query().unwrap_or(""))
    }
}

/// A path's one parameter, as text. axum's own `Path` answers a malformed one (bad
/// percent-encoding, `/v1/orders/%FF`) with a plain-text 400; this answers with the JSON
/// error every other refusal gets.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(s)) => Ok(PathParam(s)),
            Err(e) => Err(ApiError::bad("id", e.body_text())),
        }
    }
}

/// A numeric path id.
pub fn path_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad("id", format!("`{raw}` is not a {what} id")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_should_decode_and_refuse_unknowns_and_repeats() {
        let p = Params::parse("commune=6463&product=hoa%20hoi&x=a+b").unwrap();
        assert_eq!(p.get("product"), Some("hoa hoi"));
        assert_eq!(p.get("x"), Some("a b"));
        assert!(p.only(&["commune", "product"]).is_err());
        assert!(Params::parse("a=1&a=2").is_err());
        assert!(Params::parse("a=%zz").is_err());
        let p = Params::parse("limit=5").unwrap();
        assert_eq!(p.number("limit", 1..=10).unwrap(), Some(5));
        assert!(p.number("limit", 1..=4).is_err());
        assert!(Params::parse("limit=x").unwrap().number::<i64>("limit", 1..=4).is_err());
    }

    #[tokio::test]
    async fn bodies_should_be_cut_at_the_limit_with_or_without_a_length() {
        let none = HeaderMap::new();
        assert_eq!(read_limited(Body::from(vec![b'x'; 10]), &none, 10).await.unwrap().len(), 10);
        let streamed = read_limited(Body::from(vec![b'x'; 11]), &none, 10).await;
        assert!(matches!(streamed, Err(ApiError::TooLarge { limit: 10 })), "{streamed:?}");
        let mut announced = HeaderMap::new();
        announced.insert(CONTENT_LENGTH, HeaderValue::from_static("11"));
        let early = read_limited(Body::empty(), &announced, 10).await;
        assert!(matches!(early, Err(ApiError::TooLarge { limit: 10 })), "{early:?}");
    }

    #[test]
    fn idempotency_keys_should_be_short_visible_ascii() {
        let mut h = HeaderMap::new();
        assert!(idempotency_key(&h, true).is_err());
        assert_eq!(idempotency_key(&h, false).unwrap(), None);
        h.insert("Idempotency-Key", HeaderValue::from_static("order-42"));
        assert_eq!(idempotency_key(&h, true).unwrap().as_deref(), Some("order-42"));
        h.insert("Idempotency-Key", HeaderValue::from_str(&"k".repeat(101)).unwrap());
        assert!(idempotency_key(&h, true).is_err());
        h.insert("Idempotency-Key", HeaderValue::from_static("a b"));
        assert!(idempotency_key(&h, true).is_err());
    }

    #[test]
    fn json_errors_should_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: i64,
            b: String,
        }
        let field = |v: serde_json::Value| match json_field_error(
            serde_path_to_error::deserialize::<_, T>(v).unwrap_err(),
        ) {
            ApiError::BadRequest { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(serde_json::json!({ "a": 1 })).as_deref(), Some("b"));
        assert_eq!(field(serde_json::json!({ "a": "x", "b": "y" })).as_deref(), Some("a"));
        assert_eq!(field(serde_json::json!({ "a": 1, "b": "y", "c": 0 })).as_deref(), Some("c"));
    }
}
