//! Bearer tokens and scopes.
//!
//! A token reads `cg_<public id: 12 hex>_<secret: 64 hex>` (32 random bytes from the OS).
//! The store keeps only the SHA-256 of the whole token: a request's token is found by its
//! public id, hashed, and compared with the stored hash in constant time. Tokens are never
//! logged; only the public id and the partner name are.

use std::marker::PhantomData;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;
use tracing::debug;

use super::AppState;
use super::error::ApiError;
use super::server::ClientAddr;
use crate::market::reports::{ApiCall, ApiOp, ApiResult, ApiToken, sha256_hex};
use crate::market::{Actor, Channel, Market, MarketError};

/// Token prefix.
const PREFIX: &str = "cg_";
/// Hex digits of the public id and of the secret.
const PUBLIC_HEX: usize = 12;
const SECRET_HEX: usize = 64;
/// Longest partner name.
pub const MAX_NAME_CHARS: usize = 40;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Place orders, read one's own orders and their SMS, see listings.
    OrdersWrite,
    /// Record payments for any order, read orders.
    PaymentsWrite,
    /// Record shipment events (post office) for any order, read orders.
    ShipmentsWrite,
    /// Progress reports.
    ReportsRead,
    /// Everything, including households, villages, teams and leaders.
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 5] =
        [Scope::OrdersWrite, Scope::PaymentsWrite, Scope::ShipmentsWrite, Scope::ReportsRead, Scope::Admin];

    /// The written form.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::OrdersWrite => "orders:write",
            Scope::PaymentsWrite => "payments:write",
            Scope::ShipmentsWrite => "shipments:write",
            Scope::ReportsRead => "reports:read",
            Scope::Admin => "admin",
        }
    }

    /// Parses the written form.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token row id (the rate limit's key).
    pub token_id: i64,
    /// The partner (token name).
    pub partner: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// Whether the caller has the scope (admin has every scope).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    /// The actor recorded in audit events.
    pub fn actor(&self) -> Actor {
        Actor::new(format!("api:{}", self.partner), Channel::Http)
    }
}

/// The scopes a route accepts (any one of them; admin always).
pub trait Need: Send + Sync + 'static {
    /// Accepted scopes.
    const ANY_OF: &'static [Scope];
}

macro_rules! need {
    ($($name:ident => [$($scope:ident),+];)+) => {
        $(
            #[doc = concat!("Routes that need one of: ", $(stringify!($scope), " "),+)]
            #[derive(Debug)]
            pub struct $name;
            impl Need for $name {
                const ANY_OF: &'static [Scope] = &[$(Scope::$scope),+];
            }
        )+
    };
}

need! {
    NeedOrders => [OrdersWrite];
    NeedOrderRead => [OrdersWrite, PaymentsWrite, ShipmentsWrite];
    NeedPayments => [PaymentsWrite];
    NeedShipments => [ShipmentsWrite];
    NeedReports => [ReportsRead];
    NeedAdmin => [Admin];
}

/// Extracts the caller from `Authorization: Bearer ...`: 401 without a valid token, 429
/// past its rate, 403 when its scopes do not cover the route. Runs before the body is read.
#[derive(Debug)]
pub struct Authed<N: Need>(pub Caller, pub PhantomData<N>);

impl<N: Need> FromRequestParts<AppState> for Authed<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = match authenticate(parts, &state.market).await {
            Ok(caller) => caller,
            Err(e) => {
                // Without a valid token, the request counts against its client's address:
                // here when it came with a bearer token (the router's layer charged those
                // without one already, once).
                let bearer = parts
                    .headers
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(is_bearer_token);
                if bearer {
                    state.charge_anonymous(parts.extensions.get::<ClientAddr>())?;
                }
                return Err(e);
            }
        };
        state.limiter.check(caller.token_id)?;
        if !N::ANY_OF.iter().any(|s| caller.has(*s)) {
            let needed: Vec<&str> = N::ANY_OF.iter().map(|s| s.as_str()).collect();
            return Err(ApiError::Forbidden(format!(
                "this token's scopes do not allow it; it needs {}",
                needed.join(" or ")
            )));
        }
        Ok(Authed(caller, PhantomData))
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(header: &str) -> Option<&str> {
    header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).map(str::trim)
}

/// Whether an `Authorization` header carries a well-formed token (valid or not).
pub fn is_bearer_token(header: &str) -> bool {
    bearer(header).and_then(public_id).is_some()
}

async fn authenticate(parts: &Parts, market: &Market) -> Result<Caller, ApiError> {
    let header =
        parts.headers.get(AUTHORIZATION).ok_or(ApiError::Unauthorized("a bearer token is needed"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(bearer)
        .ok_or(ApiError::Unauthorized("the Authorization header must be `Bearer <token>`"))?;
    let invalid = ApiError::Unauthorized("the token is not valid");
    let public_id = public_id(token).ok_or(ApiError::Unauthorized("the token is not valid"))?;
    let stored = market.api_token(public_id).await?.ok_or(invalid)?;
    let presented = hash(token);
    let same: bool = presented.as_bytes().ct_eq(stored.token_hash.as_bytes()).into();
    if !same || stored.revoked_at_ms.is_some() {
        debug!(public_id, "token refused");
        return Err(ApiError::Unauthorized("the token is not valid"));
    }
    Ok(Caller {
        token_id: stored.id,
        partner: stored.name,
        scopes: stored.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
    })
}

/// The public id of a well-formed token.
fn public_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(PREFIX)?;
    let (public, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(public, PUBLIC_HEX) && hex(secret, SECRET_HEX)).then_some(public)
}

/// The stored form of a token.
fn hash(token: &str) -> String {
    sha256_hex(&[token.as_bytes()])
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random idempotency key, for writes sent without one.
pub(crate) fn random_key() -> String {
    format!("auto-{}", random_hex(16))
}

/// Checks a partner name: 1 to 40 of `A-Z a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!("the name must be 1 to {MAX_NAME_CHARS} of A-Z a-z 0-9 . _ -"));
    }
    Ok(())
}

/// Parses scopes (at least one; duplicates dropped).
pub fn parse_scopes(scopes: &[String]) -> Result<Vec<Scope>, String> {
    let mut out: Vec<Scope> = Vec::new();
    for s in scopes {
        for part in s.split([',', ' ']).filter(|p| !p.is_empty()) {
            let scope = Scope::parse(part).ok_or_else(|| {
                let all: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope `{part}`; one of {}", all.join(", "))
            })?;
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
    }
    if out.is_empty() {
        return Err("give at least one --scope".to_owned());
    }
    Ok(out)
}

fn token_response(r: &ApiResult) -> (u16, serde_json::Value) {
    match r {
        ApiResult::Token(t) => (
            201,
            serde_json::json!({ "id": t.id, "public_id": t.public_id, "name": t.name, "scopes": t.scopes,
                                 "revoked": t.revoked_at_ms.is_some() }),
        ),
        _ => (500, serde_json::json!({})),
    }
}

fn cli_call(what: &str, public_id: &str) -> ApiCall {
    ApiCall {
        partner: "cli".to_owned(),
        key: format!("{what}:{public_id}"),
        request_hash: sha256_hex(&[what.as_bytes(), public_id.as_bytes()]),
    }
}

/// Creates a token for a partner; returns it with the token itself, which is not stored and
/// cannot be shown again.
pub async fn create_token(
    market: &Market,
    name: &str,
    scopes: &[Scope],
) -> Result<(ApiToken, String), MarketError> {
    check_name(name).map_err(|reason| MarketError::Invalid { field: "name", reason })?;
    let public_id = random_hex(PUBLIC_HEX / 2);
    let token = format!("{PREFIX}{public_id}_{}", random_hex(SECRET_HEX / 2));
    let op = ApiOp::CreateToken {
        public_id: public_id.clone(),
        name: name.to_owned(),
        scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        token_hash: hash(&token),
    };
    let actor = Actor::new("cli", Channel::Cli);
    market.api_call(&actor, cli_call("create_token", &public_id), token_response, op).await?;
    let stored = market.api_token(&public_id).await?.ok_or(MarketError::NotFound("token"))?;
    Ok((stored, token))
}

/// Revokes a token by its public id (or the whole token).
pub async fn revoke_token(market: &Market, public_or_token: &str) -> Result<(), MarketError> {
    let public_id = public_id(public_or_token).unwrap_or(public_or_token).to_owned();
    let actor = Actor::new("cli", Channel::Cli);
    let op = ApiOp::RevokeToken { public_id: public_id.clone() };
    market.api_call(&actor, cli_call("revoke_token", &public_id), token_response, op).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_should_parse_only_in_their_exact_form() {
        let token = format!("{PREFIX}{}_{}", "a1".repeat(6), "f0".repeat(32));
        assert_eq!(public_id(&token), Some("a1a1a1a1a1a1"));
        assert_eq!(public_id("cg_a1a1a1a1a1a1_short"), None);
        assert_eq!(public_id(&token.replace("cg_", "xx_")), None);
        assert_eq!(public_id(&format!("{token}0")), None);
        assert_eq!(public_id(""), None);
        assert_eq!(hash(&token).len(), 64);
        assert_ne!(hash(&token), hash(&token.replace('f', "e")));
    }

    #[test]
    fn scopes_should_parse_dedupe_and_refuse_unknowns() {
        let s = parse_scopes(&["orders:write".into(), "reports:read,orders:write".into()]).unwrap();
        assert_eq!(s, vec![Scope::OrdersWrite, Scope::ReportsRead]);
        assert!(parse_scopes(&["orders:read".into()]).is_err());
        assert!(parse_scopes(&[]).is_err());
        let admin = Caller { token_id: 1, partner: "x".into(), scopes: vec![Scope::Admin] };
        assert!(Scope::ALL.iter().all(|s| admin.has(*s)));
    }

    #[test]
    fn names_should_be_short_and_plain() {
        assert!(check_name("shopee").is_ok());
        assert!(check_name("vnpost-lang.son_1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"a".repeat(41)).is_err());
    }
}
