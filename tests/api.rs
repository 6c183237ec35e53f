//! The HTTP API against the real daemon over real TCP, on both database backends: every
//! test runs as `sqlite::name` (a fresh file) and `postgres::name` (a fresh database through
//! `CHOGATE_TEST_POSTGRES_URL`, which `scripts/test.sh` sets).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chogate::api::auth::{Scope, create_token};
use chogate::args;
use chogate::market::{Actor, Channel, Household, IdemKey, Lang, Market, OrderMove};
use common::{PATIENCE, TestDaemon, base_config};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// Xã Chi Lăng and Xã Bắc Sơn (2025 list).
const CHI_LANG: u32 = 6463;
const BAC_SON: u32 = 6325;

// ---- databases -------------------------------------------------------------------------

use common::db::{TestDb, sqlite_db};

both_backends!(
    openapi_should_document_exactly_the_real_routes,
    ops_endpoints_should_answer_without_a_token,
    tokens_should_be_checked_and_scopes_enforced,
    listings_should_be_filtered_and_paged,
    an_order_should_be_placed_once_per_key_and_notify_the_household,
    bad_order_bodies_should_be_400_naming_the_field,
    concurrent_repeats_of_one_key_should_make_one_order,
    shipments_and_payments_should_move_the_order_to_paid,
    a_partner_should_cancel_its_own_new_or_accepted_orders,
    households_should_hear_by_sms_of_what_others_do_to_their_orders,
    admin_should_create_update_and_list_households,
    csv_import_should_be_all_or_nothing_and_report_existing_lines,
    villages_teams_and_leaders_should_be_managed,
    reports_should_count_shares_orders_and_revenue_per_period,
    bodies_over_the_limit_should_be_413,
    a_token_past_its_rate_should_get_429,
    unknown_routes_and_methods_should_be_json_404_and_405,
    metrics_should_count_pdus_dialogues_commits_and_the_outbox,
);

// ---- harness ---------------------------------------------------------------------------

struct Env {
    td: TestDaemon,
    market: Market,
    _db: TestDb,
}

impl Env {
    async fn start(db: TestDb, api: &str) -> Env {
        let mut config = base_config(api);
        config.database.url = db.url.clone();
        let td = TestDaemon::start(config).await;
        let market = td.daemon.as_ref().unwrap().market.clone();
        Env { td, market, _db: db }
    }

    fn addr(&self) -> SocketAddr {
        self.td.http
    }

    async fn token(&self, name: &str, scopes: &[Scope]) -> String {
        create_token(&self.market, name, scopes).await.unwrap().1
    }

    async fn count(&self, sql: &'static str) -> i64 {
        let mut r = self.market.store().read().await.unwrap();
        r.conn().fetch_one(sql, args![]).await.unwrap().int("n").unwrap()
    }

    async fn stop(self) {
        self.td.stop().await;
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }

    /// Asserts an error response: status, code, field.
    fn error(&self, status: u16, code: &str, field: Option<&str>) {
        let v = self.json();
        assert_eq!(self.status, status, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(v["error"]["field"].as_str(), field, "{v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
}

/// One request on a fresh connection.
struct Req<'a> {
    method: String,
    path: String,
    token: Option<&'a str>,
    headers: Vec<(&'a str, String)>,
    body: Option<(&'a str, Vec<u8>)>,
}

impl<'a> Req<'a> {
    fn new(method: &str, path: impl Into<String>) -> Req<'a> {
        Req { method: method.to_owned(), path: path.into(), token: None, headers: Vec::new(), body: None }
    }

    fn get(path: impl Into<String>) -> Req<'a> {
        Req::new("GET", path)
    }

    fn post(path: impl Into<String>, body: &Value) -> Req<'a> {
        Req::new("POST", path).json(body)
    }

    fn token(mut self, t: &'a str) -> Self {
        self.token = Some(t);
        self
    }

    fn key(self, k: &str) -> Self {
        self.header("Idempotency-Key", k)
    }

    fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn json(mut self, v: &Value) -> Self {
        self.body = Some(("application/json", v.to_string().into_bytes()));
        self
    }

    fn raw(mut self, content_type: &'a str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some((content_type, body.into()));
        self
    }

    async fn send(self, addr: SocketAddr) -> Resp {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let mut b = hyper::Request::builder()
            .method(self.method.as_str())
            .uri(&self.path)
            .header("host", "localhost");
        if let Some(t) = self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in &self.headers {
            b = b.header(*k, v);
        }
        let body = match self.body {
            Some((ct, bytes)) => {
                b = b.header("content-type", ct);
                Bytes::from(bytes)
            }
            None => Bytes::new(),
        };
        let req = b.body(Full::new(body)).unwrap();
        let resp =
            tokio::time::timeout(PATIENCE, sender.send_request(req)).await.expect("no response").unwrap();
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(PATIENCE, body.collect()).await.expect("no body").unwrap().to_bytes();
        Resp { status: parts.status.as_u16(), headers: parts.headers, body }
    }
}

fn cli() -> Actor {
    Actor::new("test", Channel::Cli)
}

fn key(s: &str) -> IdemKey {
    IdemKey(s.to_owned())
}

/// A village of Chi Lăng with its leader, and an active listing of 100 kg of na at
/// 30.000đ/kg. Returns (leader, listing id).
async fn seed(env: &Env) -> (Household, i64) {
    let m = &env.market;
    let leader = m
        .register_leader(
            &cli(),
            key("seed:leader"),
            "0912000001",
            "Hoàng Văn Tổ",
            CHI_LANG,
            "Thôn Nà Lầm",
            Lang::Vi,
        )
        .await
        .unwrap();
    let na = m.products().await.unwrap()[0].id;
    let listing = m
        .create_listing(
            &Actor::new(leader.msisdn.clone(), Channel::Ussd),
            key("seed:listing"),
            leader.id,
            na,
            100,
            30_000,
        )
        .await
        .unwrap();
    (leader, listing.id)
}

/// Phường Lương Văn Tri (2025 list).
const LUONG_VAN_TRI: u32 = 5983;

fn order_body(listing: i64, kg: i64) -> Value {
    json!({
        "listing_id": listing,
        "buyer_name": "Nguyễn Văn Mua",
        "buyer_phone": "0913 456 789",
        "quantity_kg": kg,
        "amount": kg * 30_000,
        "delivery": {
            "name": "Nguyễn Thị Nhận",
            "phone": "+84 977 000 111",
            "address": "  Số 12   Trần Đăng Ninh ",
            "commune_code": LUONG_VAN_TRI,
        },
    })
}

// ---- tests -----------------------------------------------------------------------------

async fn openapi_should_document_exactly_the_real_routes(db: TestDb) {
    let env = Env::start(db, "").await;
    let doc = Req::get("/openapi.json").send(env.addr()).await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
            // The route answers: not 404 or 405 (without a token: 401, or 200 for ops).
            let concrete = path.replace("{id}", "1");
            let mut req = Req::new(&method.to_uppercase(), concrete.clone());
            if method != "get" {
                req = req.json(&json!({}));
            }
            let r = req.send(env.addr()).await;
            assert!(![404, 405].contains(&r.status), "{method} {concrete}: {} {}", r.status, r.text());
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                r.error(401, "unauthorized", None);
            }
        }
    }
    let real: HashSet<(String, String)> =
        chogate::api::route_list().into_iter().map(|(m, p)| (m.as_str().to_owned(), p.to_owned())).collect();
    assert_eq!(documented, real, "documented vs real routes");
    // And a path that is in neither is a 404.
    Req::get("/v1/nothing").send(env.addr()).await.error(404, "not_found", None);
    env.stop().await;
}

async fn ops_endpoints_should_answer_without_a_token(db: TestDb) {
    let env = Env::start(db, "").await;
    let live = Req::get("/live").send(env.addr()).await;
    assert_eq!((live.status, live.json()["status"].as_str()), (200, Some("live")));
    let ready = Req::get("/ready").send(env.addr()).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["database"], "ok");
    let metrics = Req::get("/metrics").send(env.addr()).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    for family in [
        "chogate_ussd_dialogues_total",
        "chogate_ussd_steps_total",
        "chogate_smpp_pdus_total",
        "chogate_outbox_messages",
        "chogate_db_commit_seconds_bucket",
        "chogate_http_responses_total",
    ] {
        assert!(text.contains(&format!("# TYPE {family}").replace("_bucket", "")), "{family}");
    }
    // Not ready once the database is gone (the pool is closed).
    env.market.store().close().await;
    let ready = Req::get("/ready").send(env.addr()).await;
    assert_eq!((ready.status, ready.json()["database"].as_str()), (503, Some("unavailable")));
    env.stop().await;
}

async fn tokens_should_be_checked_and_scopes_enforced(db: TestDb) {
    let env = Env::start(db, "").await;
    let orders = env.token("shopee", &[Scope::OrdersWrite]).await;
    let reports = env.token("so-cong-thuong", &[Scope::ReportsRead]).await;
    let admin = env.token("ops", &[Scope::Admin]).await;
    let a = env.addr();

    // 401: no token, another scheme, malformed, unknown, wrong secret, revoked.
    let r = Req::get("/v1/listings").send(a).await;
    r.error(401, "unauthorized", None);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    Req::get("/v1/listings").header("authorization", "Basic eDp5").send(a).await.error(
        401,
        "unauthorized",
        None,
    );
    Req::get("/v1/listings").token("cg_nothex_xyz").send(a).await.error(401, "unauthorized", None);
    let unknown = format!("cg_{}_{}", "0".repeat(12), "0".repeat(64));
    Req::get("/v1/listings").token(&unknown).send(a).await.error(401, "unauthorized", None);
    let public = &orders[3..15];
    let wrong_secret = format!("cg_{public}_{}", "1".repeat(64));
    Req::get("/v1/listings").token(&wrong_secret).send(a).await.error(401, "unauthorized", None);
    let revoked = env.token("old", &[Scope::Admin]).await;
    assert_eq!(Req::get("/v1/listings").token(&revoked).send(a).await.status, 200);
    chogate::api::auth::revoke_token(&env.market, &revoked).await.unwrap();
    Req::get("/v1/listings").token(&revoked).send(a).await.error(401, "unauthorized", None);

    // The stored token is only a hash.
    let stored = env.market.api_token(public).await.unwrap().unwrap();
    assert_eq!(stored.name, "shopee");
    assert_ne!(stored.token_hash, orders);
    assert!(!stored.token_hash.contains(&orders[15..]));

    // 403: outside the scopes; admin may do everything.
    assert_eq!(Req::get("/v1/listings").token(&orders).send(a).await.status, 200);
    Req::get("/v1/listings").token(&reports).send(a).await.error(403, "forbidden", None);
    Req::get("/v1/reports/communes").token(&orders).send(a).await.error(403, "forbidden", None);
    Req::get("/v1/admin/households").token(&orders).send(a).await.error(403, "forbidden", None);
    Req::post("/v1/payments", &json!({})).token(&orders).send(a).await.error(403, "forbidden", None);
    Req::post("/v1/shipments", &json!({})).token(&reports).send(a).await.error(403, "forbidden", None);
    // Scope is checked before the body: a forbidden write is 403 whatever it carries.
    Req::post("/v1/orders", &json!({ "junk": 1 })).token(&reports).send(a).await.error(
        403,
        "forbidden",
        None,
    );
    assert_eq!(Req::get("/v1/reports/communes").token(&reports).send(a).await.status, 200);
    for path in ["/v1/listings", "/v1/reports/communes", "/v1/admin/households", "/v1/admin/villages"] {
        assert_eq!(Req::get(path).token(&admin).send(a).await.status, 200, "{path}");
    }
    env.stop().await;
}

async fn listings_should_be_filtered_and_paged(db: TestDb) {
    let env = Env::start(db, "").await;
    let (leader, first) = seed(&env).await;
    let m = &env.market;
    let products = m.products().await.unwrap();
    let hoi = products.iter().find(|p| p.code == "hoa_hoi").unwrap().id;
    let other = m
        .register_leader(&cli(), key("l2"), "0912000009", "Lường Văn B", BAC_SON, "Bản Chắt", Lang::Vi)
        .await
        .unwrap();
    let ussd = |h: &Household| Actor::new(h.msisdn.clone(), Channel::Ussd);
    m.create_listing(&ussd(&other), key("l2:1"), other.id, hoi, 20, 150_000).await.unwrap();
    let stopped = m.create_listing(&ussd(&leader), key("l1:2"), leader.id, hoi, 5, 120_000).await.unwrap();
    m.update_listing(
        &ussd(&leader),
        key("l1:stop"),
        leader.id,
        stopped.id,
        chogate::market::ListingChange::Stop,
    )
    .await
    .unwrap();
    let t = env.token("shopee", &[Scope::OrdersWrite]).await;
    let a = env.addr();

    let all = Req::get("/v1/listings").token(&t).send(a).await.json();
    let listings = all["listings"].as_array().unwrap();
    assert_eq!(listings.len(), 2, "the stopped one is not on offer: {all}");
    assert_eq!(listings[0]["id"], first);
    assert_eq!(listings[0]["code"], format!("L{first:06}"));
    assert_eq!(listings[0]["product"]["code"], "na");
    assert_eq!(listings[0]["commune"]["code"], CHI_LANG);
    assert_eq!(listings[0]["village"]["name"], "Thôn Nà Lầm");
    assert_eq!(listings[0]["price_per_kg"], 30_000);
    assert!(listings[0].get("msisdn").is_none() && !all.to_string().contains(&leader.msisdn));
    assert_eq!(all["next_after"], Value::Null);

    let by_product = Req::get("/v1/listings?product=hoa_hoi").token(&t).send(a).await.json();
    assert_eq!(by_product["listings"].as_array().unwrap().len(), 1);
    assert_eq!(by_product["listings"][0]["commune"]["code"], BAC_SON);
    let by_commune = Req::get(format!("/v1/listings?commune={CHI_LANG}")).token(&t).send(a).await.json();
    assert_eq!(by_commune["listings"].as_array().unwrap().len(), 1);
    let page = Req::get("/v1/listings?limit=1").token(&t).send(a).await.json();
    assert_eq!(page["listings"].as_array().unwrap().len(), 1);
    let next = page["next_after"].as_i64().unwrap();
    let page2 = Req::get(format!("/v1/listings?limit=1&after={next}")).token(&t).send(a).await.json();
    assert_ne!(page2["listings"][0]["id"], page["listings"][0]["id"]);

    Req::get("/v1/listings?product=durian").token(&t).send(a).await.error(400, "invalid", Some("product"));
    Req::get("/v1/listings?commune=1").token(&t).send(a).await.error(400, "invalid", Some("commune"));
    Req::get("/v1/listings?commune=abc").token(&t).send(a).await.error(400, "invalid", Some("commune"));
    Req::get("/v1/listings?limit=0").token(&t).send(a).await.error(400, "invalid", Some("limit"));
    Req::get("/v1/listings?colour=red").token(&t).send(a).await.error(400, "invalid", Some("colour"));
    env.stop().await;
}

async fn an_order_should_be_placed_once_per_key_and_notify_the_household(db: TestDb) {
    let env = Env::start(db, "").await;
    let (leader, listing) = seed(&env).await;
    let shopee = env.token("shopee", &[Scope::OrdersWrite]).await;
    let shopee2 = env.token("shopee", &[Scope::OrdersWrite]).await;
    let lazada = env.token("lazada", &[Scope::OrdersWrite]).await;
    let admin = env.token("ops", &[Scope::Admin]).await;
    let a = env.addr();

    let body = order_body(listing, 10);
    let first = Req::post("/v1/orders", &body).token(&shopee).key("order-1").send(a).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let order = first.json();
    assert_eq!(order["status"], "new");
    assert_eq!(order["quantity_kg"], 10);
    assert_eq!(order["amount"], 300_000);
    assert_eq!(order["partner"], "shopee");
    assert_eq!(order["product"]["code"], "na");
    assert_eq!(order["product"]["unit"], "kg");
    // What the seller needs, normalised: numbers as 84…, the address trimmed, the commune named.
    assert_eq!(order["buyer_phone"], "84913456789");
    assert_eq!(
        order["delivery"],
        json!({ "name": "Nguyễn Thị Nhận", "phone": "84977000111", "address": "Số 12 Trần Đăng Ninh",
                "commune": { "code": LUONG_VAN_TRI, "name": "Phường Lương Văn Tri" } })
    );
    assert_eq!((order["cancel_reason"].clone(), order["tracking_code"].clone()), (Value::Null, Value::Null));
    let id = order["id"].as_i64().unwrap();
    assert_eq!(order["code"], format!("D{id:06}"));

    // The same key and body: the first response again, byte for byte, and no second order
    // (another token of the same partner shares its keys).
    let again = Req::post("/v1/orders", &body).token(&shopee2).key("order-1").send(a).await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM orders").await, 1);
    // Another body under the same key: 409. Another partner's key space is its own.
    Req::post("/v1/orders", &order_body(listing, 11)).token(&shopee).key("order-1").send(a).await.error(
        409,
        "idempotency_key_reused",
        Some("Idempotency-Key"),
    );
    let other = Req::post("/v1/orders", &order_body(listing, 1)).token(&lazada).key("order-1").send(a).await;
    assert_eq!(other.status, 201);
    let other_id = other.json()["id"].as_i64().unwrap();
    // No key: 400.
    Req::post("/v1/orders", &body).token(&shopee).send(a).await.error(
        400,
        "invalid",
        Some("Idempotency-Key"),
    );
    Req::post("/v1/orders", &body).token(&shopee).key(&"k".repeat(101)).send(a).await.error(
        400,
        "invalid",
        Some("Idempotency-Key"),
    );

    // The household was told by SMS, in the same transaction.
    let message = order["message_id"].as_i64().expect("message id");
    let sms = Req::get(format!("/v1/messages/{message}")).token(&shopee).send(a).await;
    assert_eq!(sms.status, 200, "{}", sms.text());
    let sms = sms.json();
    assert_eq!((sms["id"].as_i64(), sms["kind"].as_str()), (Some(message), Some("order_new")));
    assert!(["queued", "sent", "delivered", "failed", "expired"].contains(&sms["status"].as_str().unwrap()));
    assert!(!sms.to_string().contains(&leader.msisdn), "no number in the status");
    // Each partner sees its own orders and messages only; admin sees all.
    let got = Req::get(format!("/v1/orders/{id}")).token(&shopee).send(a).await;
    assert_eq!((got.status, got.json()["id"].as_i64()), (200, Some(id)));
    Req::get(format!("/v1/orders/{id}")).token(&lazada).send(a).await.error(404, "not_found", None);
    Req::get(format!("/v1/orders/{other_id}")).token(&shopee).send(a).await.error(404, "not_found", None);
    Req::get(format!("/v1/messages/{message}")).token(&lazada).send(a).await.error(404, "not_found", None);
    assert_eq!(Req::get(format!("/v1/messages/{message}")).token(&admin).send(a).await.status, 200);
    assert_eq!(Req::get(format!("/v1/orders/{other_id}")).token(&admin).send(a).await.status, 200);
    Req::get("/v1/orders/999999").token(&admin).send(a).await.error(404, "not_found", None);
    Req::get("/v1/orders/abc").token(&admin).send(a).await.error(400, "invalid", Some("id"));
    // Not even UTF-8 once percent-decoded: the same JSON error, not axum's plain text.
    Req::get("/v1/orders/%FF").token(&admin).send(a).await.error(400, "invalid", Some("id"));
    Req::get("/v1/messages/999999").token(&admin).send(a).await.error(404, "not_found", None);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'order_new'").await, 2);

    // Audited as the partner, over HTTP.
    let mut r = env.market.store().read().await.unwrap();
    let row = r
        .conn()
        .fetch_one(
            "SELECT actor, channel FROM events WHERE kind = 'order_placed' ORDER BY id LIMIT 1",
            args![],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.text("actor").unwrap(), row.text("channel").unwrap()),
        ("api:shopee".into(), "http".into())
    );
    drop(r);
    env.stop().await;
}

async fn bad_order_bodies_should_be_400_naming_the_field(db: TestDb) {
    let env = Env::start(db, "").await;
    let (_, listing) = seed(&env).await;
    let t = env.token("shopee", &[Scope::OrdersWrite]).await;
    let a = env.addr();
    let post = |body: Value, k: &'static str| Req::post("/v1/orders", &body).token(&t).key(k).send(a);

    // A good body with one change (`null` removes the field).
    let with = |path: &[&str], v: Value| {
        let mut b = order_body(listing, 1);
        let mut at = &mut b;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        let last = path[path.len() - 1];
        match v {
            Value::Null => {
                at.as_object_mut().unwrap().remove(last);
            }
            v => at[last] = v,
        }
        b
    };
    let cases: Vec<(&[&str], Value, &str)> = vec![
        (&["buyer_name"], Value::Null, "buyer_name"),
        (&["buyer_name"], json!("   "), "buyer_name"),
        (&["quantity_kg"], json!("ten"), "quantity_kg"),
        (&["quantity_kg"], json!(0), "quantity_kg"),
        (&["amount"], json!(0), "amount"),
        (&["colour"], json!(1), "colour"),
        (&["buyer_phone"], Value::Null, "buyer_phone"),
        (&["buyer_phone"], json!("12345"), "buyer_phone"),
        (&["buyer_phone"], json!("+1 202 555 0100"), "buyer_phone"),
        (&["delivery"], Value::Null, "delivery"),
        (&["delivery"], json!("Số 12 Trần Đăng Ninh"), "delivery"),
        (&["delivery", "name"], Value::Null, "delivery.name"),
        (&["delivery", "name"], json!(" "), "delivery.name"),
        (&["delivery", "name"], json!("x".repeat(81)), "delivery.name"),
        (&["delivery", "phone"], Value::Null, "delivery.phone"),
        (&["delivery", "phone"], json!("0212345678"), "delivery.phone"),
        (&["delivery", "address"], Value::Null, "delivery.address"),
        (&["delivery", "address"], json!(""), "delivery.address"),
        (&["delivery", "address"], json!("x".repeat(201)), "delivery.address"),
        (&["delivery", "address"], json!("Số 12\u{7}"), "delivery.address"),
        (&["delivery", "commune_code"], Value::Null, "delivery.commune_code"),
        (&["delivery", "commune_code"], json!("Lương Văn Tri"), "delivery.commune_code"),
        (&["delivery", "commune_code"], json!(-1), "delivery.commune_code"),
        // Before the reform: not a commune of the 2025 list.
        (&["delivery", "commune_code"], json!(5971), "delivery.commune_code"),
        (&["delivery", "colour"], json!("red"), "delivery.colour"),
    ];
    for (i, (path, v, field)) in cases.into_iter().enumerate() {
        let body = with(path, v);
        let r = Req::post("/v1/orders", &body).token(&t).key(&format!("bad-{i}")).send(a).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        r.error(400, "invalid", Some(field));
    }
    // The amount is the listing's price (30.000đ/kg) times the quantity: the 400 says so.
    let r = post(with(&["amount"], json!(1)), "cheap").await;
    r.error(400, "invalid", Some("amount"));
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("30000"), "the expected figure: {message}");
    post(
        json!({ "listing_id": listing, "buyer_name": "B", "buyer_phone": "0913456789", "quantity_kg": 2,
                  "amount": 59_999, "delivery": order_body(listing, 1)["delivery"] }),
        "cheap2",
    )
    .await
    .error(400, "invalid", Some("amount"));
    // More than is on offer.
    post(order_body(listing, 101), "g").await.error(400, "invalid", Some("quantity_kg"));
    // No such listing.
    post(order_body(999_999, 1), "h").await.error(404, "not_found", Some("listing_id"));
    // Not JSON, not an object, not JSON's media type.
    let r = Req::new("POST", "/v1/orders").raw("application/json", "{nope").token(&t).key("i").send(a).await;
    r.error(400, "invalid", None);
    let r = Req::new("POST", "/v1/orders").raw("application/json", "[1]").token(&t).key("j").send(a).await;
    r.error(400, "invalid", None);
    let r = Req::new("POST", "/v1/orders").raw("text/plain", "x").token(&t).key("k").send(a).await;
    r.error(415, "unsupported_media_type", None);
    // A sold-out listing: 409.
    assert_eq!(post(order_body(listing, 100), "all").await.status, 201);
    post(order_body(listing, 1), "more").await.error(409, "conflict", None);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM orders").await, 1);
    env.stop().await;
}

async fn concurrent_repeats_of_one_key_should_make_one_order(db: TestDb) {
    let env = Env::start(db, "").await;
    let (_, listing) = seed(&env).await;
    let t = env.token("shopee", &[Scope::OrdersWrite]).await;
    let a = env.addr();
    // Eight at once with the same key and body: one order, eight identical answers.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            Req::post("/v1/orders", &order_body(listing, 3)).token(&t).key("same").send(a).await
        }));
    }
    let mut bodies = HashSet::new();
    for task in tasks {
        let r = task.await.unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        bodies.insert(r.body);
    }
    assert_eq!(bodies.len(), 1);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM orders").await, 1);
    // Two at once with the same key and different bodies: one order, one 409.
    let (t1, t2) = (t.clone(), t.clone());
    let x = tokio::spawn(async move {
        Req::post("/v1/orders", &order_body(listing, 4)).token(&t1).key("race").send(a).await
    });
    let y = tokio::spawn(async move {
        Req::post("/v1/orders", &order_body(listing, 5)).token(&t2).key("race").send(a).await
    });
    let mut statuses = vec![x.await.unwrap().status, y.await.unwrap().status];
    statuses.sort();
    assert_eq!(statuses, vec![201, 409]);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM orders").await, 2);
    env.stop().await;
}

async fn shipments_and_payments_should_move_the_order_to_paid(db: TestDb) {
    let env = Env::start(db, "").await;
    let (leader, listing) = seed(&env).await;
    let shop = env.token("shopee", &[Scope::OrdersWrite]).await;
    let post = env.token("vnpost", &[Scope::ShipmentsWrite]).await;
    let pay = env.token("vnpay", &[Scope::PaymentsWrite]).await;
    let a = env.addr();
    let order = Req::post("/v1/orders", &order_body(listing, 10)).token(&shop).key("o").send(a).await.json();
    let id = order["id"].as_i64().unwrap();
    let ship = |status: &str, k: &'static str| {
        Req::post(
            "/v1/shipments",
            &json!({ "order_id": id, "status": status, "tracking_code": "EB123456789VN" }),
        )
        .token(&post)
        .key(k)
        .send(a)
    };
    // Not accepted yet: the post office cannot have it.
    ship("shipped", "s0").await.error(409, "conflict", None);
    env.market
        .move_order(
            &Actor::new(leader.msisdn.clone(), Channel::Ussd),
            key("acc"),
            leader.id,
            id,
            OrderMove::Accept,
            None,
        )
        .await
        .unwrap();
    // Paying before shipping: refused.
    Req::post("/v1/payments", &json!({ "order_id": id, "amount": 300_000 }))
        .token(&pay)
        .key("p0")
        .send(a)
        .await
        .error(409, "conflict", None);
    ship("lost", "s1").await.error(400, "invalid", Some("status"));
    let shipped = ship("shipped", "s2").await;
    assert_eq!(shipped.status, 201, "{}", shipped.text());
    let shipped = shipped.json();
    assert_eq!(shipped["status"], "shipped");
    assert_eq!(shipped["shipment"]["tracking_code"], "EB123456789VN");
    assert_eq!(shipped["shipment"]["partner"], "vnpost");
    Req::post("/v1/shipments", &json!({ "order_id": 999_999, "status": "shipped" }))
        .token(&post)
        .key("s3")
        .send(a)
        .await
        .error(404, "not_found", Some("order_id"));

    // The post office and the payment partner read any order.
    assert_eq!(Req::get(format!("/v1/orders/{id}")).token(&post).send(a).await.json()["status"], "shipped");
    let paid = |amount: i64, k: &'static str| {
        Req::post("/v1/payments", &json!({ "order_id": id, "amount": amount, "reference": "VNPAY-778899" }))
            .token(&pay)
            .key(k)
            .send(a)
    };
    paid(299_000, "p1").await.error(400, "invalid", Some("amount"));
    let r = paid(300_000, "p2").await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "paid");
    assert_eq!(v["payment"]["amount"], 300_000);
    assert_eq!(v["payment"]["reference"], "VNPAY-778899");
    assert_eq!(v["payment"]["channel"], "http");
    // The same payment again under its key: the same answer; under a new key: 409.
    assert_eq!(paid(300_000, "p2").await.body, r.body);
    paid(300_000, "p3").await.error(409, "conflict", None);
    ship("delivered", "s4").await.error(409, "conflict", None);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM payments").await, 1);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM shipments").await, 1);
    // The household heard of the payment.
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'payment_received'").await, 1);
    let seen = Req::get(format!("/v1/orders/{id}")).token(&shop).send(a).await.json();
    assert_eq!((seen["status"].as_str(), seen["payment"]["amount"].as_i64()), (Some("paid"), Some(300_000)));

    // Delivered straight from accepted, too.
    let o2 = Req::post("/v1/orders", &order_body(listing, 1)).token(&shop).key("o2").send(a).await.json();
    let id2 = o2["id"].as_i64().unwrap();
    env.market
        .move_order(
            &Actor::new(leader.msisdn.clone(), Channel::Ussd),
            key("acc2"),
            leader.id,
            id2,
            OrderMove::Accept,
            None,
        )
        .await
        .unwrap();
    let d = Req::post("/v1/shipments", &json!({ "order_id": id2, "status": "delivered" }))
        .token(&post)
        .key("d2")
        .send(a)
        .await;
    assert_eq!((d.status, d.json()["status"].as_str()), (201, Some("delivered")));

    // The household hands a parcel to the post office itself, with its tracking code: the
    // partner sees the code, and keeps seeing it once the post office reports the delivery.
    let o3 = Req::post("/v1/orders", &order_body(listing, 1)).token(&shop).key("o3").send(a).await.json();
    let id3 = o3["id"].as_i64().unwrap();
    let hh = Actor::new(leader.msisdn.clone(), Channel::Ussd);
    env.market.move_order(&hh, key("acc3"), leader.id, id3, OrderMove::Accept, None).await.unwrap();
    env.market
        .move_order(&hh, key("ship3"), leader.id, id3, OrderMove::Ship, Some("RR123456789VN"))
        .await
        .unwrap();
    let seen = Req::get(format!("/v1/orders/{id3}")).token(&shop).send(a).await.json();
    assert_eq!(seen["status"], "shipped");
    assert_eq!(seen["tracking_code"], "RR123456789VN");
    assert_eq!(seen["shipment"]["partner"], "household");
    let d = Req::post("/v1/shipments", &json!({ "order_id": id3, "status": "delivered" }))
        .token(&post)
        .key("d3")
        .send(a)
        .await
        .json();
    assert_eq!(
        (d["status"].as_str(), d["tracking_code"].as_str()),
        (Some("delivered"), Some("RR123456789VN"))
    );
    env.stop().await;
}

async fn a_partner_should_cancel_its_own_new_or_accepted_orders(db: TestDb) {
    let env = Env::start(db, "").await;
    let (leader, listing) = seed(&env).await;
    let shop = env.token("shopee", &[Scope::OrdersWrite]).await;
    let lazada = env.token("lazada", &[Scope::OrdersWrite]).await;
    let pay = env.token("vnpay", &[Scope::PaymentsWrite]).await;
    let admin = env.token("ops", &[Scope::Admin]).await;
    let a = env.addr();
    let hh = Actor::new(leader.msisdn.clone(), Channel::Ussd);
    let on_offer = || async { env.market.listing(leader.id, listing).await.unwrap() };
    let place = |k: &'static str, kg: i64| {
        Req::post("/v1/orders", &order_body(listing, kg)).token(&shop).key(k).send(a)
    };
    let cancel = |id: i64, t: &String, k: &'static str, body: Value| {
        let t = t.clone();
        async move { Req::post(format!("/v1/orders/{id}/cancel"), &body).token(&t).key(k).send(a).await }
    };
    let why = json!({ "reason": "  Người mua đổi ý " });

    let o = place("o1", 10).await.json();
    let id = o["id"].as_i64().unwrap();
    assert_eq!(on_offer().await.quantity_kg, 90);
    // Only the partner that placed it: another's is not found; other scopes are forbidden.
    cancel(id, &lazada, "c0", why.clone()).await.error(404, "not_found", None);
    cancel(id, &pay, "c0", why.clone()).await.error(403, "forbidden", None);
    cancel(999_999, &shop, "c0", why.clone()).await.error(404, "not_found", None);
    // A reason and a key are required.
    cancel(id, &shop, "c1", json!({})).await.error(400, "invalid", Some("reason"));
    cancel(id, &shop, "c1", json!({ "reason": " " })).await.error(400, "invalid", Some("reason"));
    Req::post(format!("/v1/orders/{id}/cancel"), &why).token(&shop).send(a).await.error(
        400,
        "invalid",
        Some("Idempotency-Key"),
    );
    // New → cancelled: the quantity is back on offer, the reason kept.
    let r = cancel(id, &shop, "c2", why.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["status"].as_str(), v["cancel_reason"].as_str()),
        (Some("cancelled"), Some("Người mua đổi ý"))
    );
    assert_eq!(on_offer().await.quantity_kg, 100);
    // The same request again: the same answer, nothing applied twice; a new key: 409.
    let again = cancel(id, &shop, "c2", why.clone()).await;
    assert_eq!((again.status, &again.body), (200, &r.body));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(on_offer().await.quantity_kg, 100);
    cancel(id, &shop, "c3", why.clone()).await.error(409, "conflict", None);
    assert_eq!(
        env.count("SELECT COUNT(*) AS n FROM events WHERE kind = 'order_cancelled'").await,
        1,
        "one cancellation"
    );

    // Accepted → cancelled, and a sold-out listing is on offer again.
    let all = place("o2", 100).await.json();
    let all_id = all["id"].as_i64().unwrap();
    assert_eq!(on_offer().await.status, chogate::market::ListingStatus::SoldOut);
    env.market.move_order(&hh, key("acc2"), leader.id, all_id, OrderMove::Accept, None).await.unwrap();
    let v = cancel(all_id, &shop, "c4", json!({ "reason": "Hết hàng" })).await.json();
    assert_eq!(v["status"], "cancelled");
    let l = on_offer().await;
    assert_eq!((l.status, l.quantity_kg), (chogate::market::ListingStatus::Active, 100));

    // Shipped: too late.
    let o3 = place("o3", 1).await.json()["id"].as_i64().unwrap();
    env.market.move_order(&hh, key("acc3"), leader.id, o3, OrderMove::Accept, None).await.unwrap();
    env.market.move_order(&hh, key("ship3"), leader.id, o3, OrderMove::Ship, None).await.unwrap();
    let r = cancel(o3, &shop, "c5", why.clone()).await;
    r.error(409, "conflict", None);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("shipped"), "{}", r.text());
    assert_eq!(on_offer().await.quantity_kg, 99);

    // An admin may call off any partner's order.
    let o4 = place("o4", 1).await.json()["id"].as_i64().unwrap();
    assert_eq!(cancel(o4, &admin, "c6", why.clone()).await.json()["status"], "cancelled");

    // The household's own cancellation (after accepting) shows its reason too.
    let o5 = place("o5", 1).await.json()["id"].as_i64().unwrap();
    env.market.move_order(&hh, key("acc5"), leader.id, o5, OrderMove::Accept, None).await.unwrap();
    env.market
        .move_order(&hh, key("cancel5"), leader.id, o5, OrderMove::Cancel, Some("Hàng bị hỏng"))
        .await
        .unwrap();
    let seen = Req::get(format!("/v1/orders/{o5}")).token(&shop).send(a).await.json();
    assert_eq!(
        (seen["status"].as_str(), seen["cancel_reason"].as_str()),
        (Some("cancelled"), Some("Hàng bị hỏng"))
    );
    env.stop().await;
}

/// The texts queued for a number, oldest first, of one kind.
async fn sms(env: &Env, msisdn: &str, kind: &str) -> Vec<String> {
    let mut r = env.market.store().read().await.unwrap();
    let rows = r
        .conn()
        .fetch_all("SELECT text FROM outbox WHERE msisdn = $1 AND kind = $2 ORDER BY id", args![msisdn, kind])
        .await
        .unwrap();
    rows.iter().map(|row| row.text("text").unwrap()).collect()
}

async fn households_should_hear_by_sms_of_what_others_do_to_their_orders(db: TestDb) {
    let env = Env::start(db, "").await;
    let (leader, listing) = seed(&env).await;
    let shop = env.token("shopee", &[Scope::OrdersWrite]).await;
    let post = env.token("vnpost", &[Scope::ShipmentsWrite]).await;
    let pay = env.token("vnpay", &[Scope::PaymentsWrite]).await;
    let admin = env.token("ops", &[Scope::Admin]).await;
    let a = env.addr();
    let hh = Actor::new(leader.msisdn.clone(), Channel::Ussd);
    let me = leader.msisdn.as_str();
    let place = |k: &'static str, kg: i64| {
        let t = shop.clone();
        async move {
            let o = Req::post("/v1/orders", &order_body(listing, kg)).token(&t).key(k).send(a).await.json();
            o["id"].as_i64().unwrap()
        }
    };
    let accept =
        |id: i64, k: &'static str| env.market.move_order(&hh, key(k), leader.id, id, OrderMove::Accept, None);

    // A new order, in the words of the screens.
    let o1 = place("o1", 10).await;
    let c1 = format!("D{o1:06}");
    assert_eq!(
        sms(&env, me, "order_new").await,
        [format!(
            "Đơn mới {c1}: 10 kg Na, 300.000đ, người mua Nguyễn Văn Mua. Bấm *384#, chọn 2 (Đơn hàng) để Nhận \
             đơn hoặc Từ chối."
        )]
    );
    // Called off by the partner.
    let r = Req::post(format!("/v1/orders/{o1}/cancel"), &json!({ "reason": "Người mua đổi ý" }))
        .token(&shop)
        .key("c1")
        .send(a)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        sms(&env, me, "order_cancelled").await,
        [format!(
            "Đơn {c1} (10 kg Na, 300.000đ) đã bị shopee hủy. Lý do: Người mua đổi ý. Không gửi hàng cho đơn này; \
             số hàng đã được cộng lại vào tin bán."
        )]
    );

    // Taken by the post office, delivered, paid through a payment partner.
    let o2 = place("o2", 5).await;
    let c2 = format!("D{o2:06}");
    accept(o2, "a2").await.unwrap();
    let shipment = |status: &str, k: &'static str| {
        Req::post(
            "/v1/shipments",
            &json!({ "order_id": o2, "status": status, "tracking_code": "EB123456789VN" }),
        )
        .token(&post)
        .key(k)
        .send(a)
    };
    assert_eq!(shipment("shipped", "s2").await.status, 201);
    assert_eq!(shipment("delivered", "d2").await.status, 201);
    let paid = Req::post("/v1/payments", &json!({ "order_id": o2, "amount": 150_000 }))
        .token(&pay)
        .key("p2")
        .send(a)
        .await;
    assert_eq!(paid.status, 201, "{}", paid.text());
    assert_eq!(
        sms(&env, me, "order_shipped").await,
        [format!(
            "Đơn {c2} (5 kg Na) đã giao bưu điện (vnpost), mã vận đơn EB123456789VN. Có tin giao hàng sẽ báo qua \
             SMS."
        )]
    );
    let delivered = |code: &str, kg: i64, amount: &str| {
        format!(
            "Đơn {code} ({kg} kg Na) đã giao tới người mua. Khi nhận được {amount}, bấm *384#, chọn 3 (Thanh \
             toán) để xác nhận đã nhận tiền."
        )
    };
    assert_eq!(sms(&env, me, "order_delivered").await, [delivered(&c2, 5, "150.000đ")]);
    assert_eq!(
        sms(&env, me, "payment_received").await,
        [format!(
            "Đơn {c2} (5 kg Na) đã được thanh toán 150.000đ qua vnpay. Không cần xác nhận đã nhận tiền."
        )]
    );

    // The household's own moves tell it nothing; a delivery recorded otherwise does.
    let o3 = place("o3", 2).await;
    accept(o3, "a3").await.unwrap();
    env.market.move_order(&hh, key("s3"), leader.id, o3, OrderMove::Ship, Some("RR1VN")).await.unwrap();
    assert_eq!(sms(&env, me, "order_shipped").await.len(), 1);
    env.market.mark_delivered(&cli(), key("d3"), o3).await.unwrap();
    assert_eq!(
        sms(&env, me, "order_delivered").await,
        [delivered(&c2, 5, "150.000đ"), delivered(&format!("D{o3:06}"), 2, "60.000đ")]
    );
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM outbox WHERE text LIKE '%84912%'").await, 0);

    // A PIN reset: in Vietnamese, and in English for a household that reads English.
    let m = &env.market;
    let vi = m.register_household(&cli(), key("h-vi"), leader.id, "0912000002", "Vi Thị Hoa").await.unwrap();
    let en = Req::post(
        "/v1/admin/households",
        &json!({ "msisdn": "0912000003", "name": "Lý Văn Nam", "commune_code": CHI_LANG,
                 "village_name": "Thôn Nà Lầm", "language": "en" }),
    )
    .token(&admin)
    .send(a)
    .await;
    assert_eq!(en.status, 201, "{}", en.text());
    m.set_pin(&hh, key("leader-pin"), leader.id, "2580").await.unwrap();
    for (msisdn, k) in [(&vi.msisdn, "r-vi"), (&"84912000003".to_owned(), "r-en")] {
        m.reset_pin(&hh, key(k), leader.id, "2580", msisdn).await.unwrap();
    }
    assert_eq!(
        sms(&env, &vi.msisdn, "pin_reset").await,
        [
            "Tổ trưởng Hoàng Văn Tổ (0912000001) đã đặt lại mã PIN của bạn. Lần thanh toán tới, bấm *384#, chọn 3 \
          (Thanh toán) để tạo PIN mới. Nếu bạn không yêu cầu, hãy gọi tổ trưởng."
        ]
    );
    assert_eq!(
        sms(&env, "84912000003", "pin_reset").await,
        [
            "Your team leader Hoàng Văn Tổ (0912000001) reset your PIN. At your next payment, dial *384#, choose 3 \
          (Payments) to create a new one. If you did not ask for this, call your leader."
        ]
    );

    // In English, for a shop whose household reads English.
    let en_leader = m
        .register_leader(&cli(), key("l-en"), "0912000009", "Lường Văn B", BAC_SON, "Bản Chắt", Lang::En)
        .await
        .unwrap();
    let hoi = m.products().await.unwrap().iter().find(|p| p.code == "hoa_hoi").unwrap().id;
    let l2 = m.create_listing(&cli(), key("l-en:1"), en_leader.id, hoi, 20, 150_000).await.unwrap();
    let mut body = order_body(l2.id, 2);
    body["amount"] = json!(300_000);
    let o4 =
        Req::post("/v1/orders", &body).token(&shop).key("o4").send(a).await.json()["id"].as_i64().unwrap();
    let c4 = format!("D{o4:06}");
    let r = Req::post(format!("/v1/orders/{o4}/cancel"), &json!({ "reason": "Out of stock at the buyer" }))
        .token(&shop)
        .key("c4")
        .send(a)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let me = en_leader.msisdn.as_str();
    assert_eq!(
        sms(&env, me, "order_new").await,
        [format!(
            "New order {c4}: 2 kg star anise, 300,000 VND, buyer Nguyễn Văn Mua. Dial *384#, choose 2 (Orders) to \
             accept or reject it."
        )]
    );
    assert_eq!(
        sms(&env, me, "order_cancelled").await,
        [format!(
            "Order {c4} (2 kg star anise, 300,000 VND) was cancelled by shopee. Reason: Out of stock at the buyer. \
             Do not send the goods; the quantity is back on your listing."
        )]
    );
    env.stop().await;
}

async fn admin_should_create_update_and_list_households(db: TestDb) {
    let env = Env::start(db, "").await;
    let admin = env.token("ops", &[Scope::Admin]).await;
    let a = env.addr();
    let new = json!({ "msisdn": "0987 654 321", "name": "  Vi Thị  Hoa ", "commune_code": CHI_LANG,
                      "village_name": "Thôn Pò Lọi", "has_epay": true });
    let r = Req::post("/v1/admin/households", &new).token(&admin).send(a).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let h = r.json();
    assert_eq!(h["msisdn"], "84987654321");
    assert_eq!(h["name"], "Vi Thị Hoa");
    assert_eq!((h["has_epay"].as_bool(), h["pending"].as_bool()), (Some(true), Some(false)));
    assert_eq!(h["language"], "vi");
    assert_eq!(h["commune"]["name"], "Xã Chi Lăng");
    let id = h["id"].as_i64().unwrap();

    Req::post("/v1/admin/households", &new).token(&admin).send(a).await.error(
        409,
        "already_registered",
        Some("msisdn"),
    );
    let bad = |field: &str, v: Value| {
        let mut b = new.clone();
        b[field] = v;
        b
    };
    for (field, v) in [
        ("msisdn", json!("12345")),
        ("commune_code", json!(1)),
        ("name", json!("")),
        ("name", json!("+A1")),
        ("name", json!("-2+3")),
        ("name", json!("=HYPERLINK(\"x\")")),
        ("name", json!("Hoa \u{202E}abc")),
        ("name", json!("Hoa\u{7}")),
        ("village_name", json!("@SUM(A1)")),
        ("language", json!("fr")),
        ("has_epay", json!("yes")),
    ] {
        Req::post("/v1/admin/households", &bad(field, v.clone())).token(&admin).send(a).await.error(
            400,
            "invalid",
            Some(field),
        );
    }

    let one = Req::get(format!("/v1/admin/households/{id}")).token(&admin).send(a).await;
    assert_eq!((one.status, one.json()["id"].as_i64()), (200, Some(id)));
    Req::get("/v1/admin/households/424242").token(&admin).send(a).await.error(404, "not_found", None);
    Req::get("/v1/admin/households/x").token(&admin).send(a).await.error(400, "invalid", Some("id"));
    let list =
        Req::get(format!("/v1/admin/households?commune={CHI_LANG}")).token(&admin).send(a).await.json();
    assert_eq!(list["households"].as_array().unwrap().len(), 1);
    let none = Req::get(format!("/v1/admin/households?commune={BAC_SON}")).token(&admin).send(a).await.json();
    assert_eq!(none["households"].as_array().unwrap().len(), 0);
    let by_number = Req::get("/v1/admin/households?msisdn=%2B84987654321").token(&admin).send(a).await.json();
    assert_eq!(by_number["households"][0]["id"].as_i64(), Some(id));

    let patch = |body: Value| {
        Req::new("PATCH", format!("/v1/admin/households/{id}")).json(&body).token(&admin).send(a)
    };
    let changed = patch(json!({ "name": "Vi Thị Hoa B", "language": "en", "has_epay": false })).await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    let c = changed.json();
    assert_eq!(
        (c["name"].as_str(), c["language"].as_str(), c["has_epay"].as_bool()),
        (Some("Vi Thị Hoa B"), Some("en"), Some(false))
    );
    let moved = patch(json!({ "commune_code": BAC_SON, "village_name": "Bản Chắt" })).await.json();
    assert_eq!(moved["commune"]["code"], BAC_SON);
    patch(json!({})).await.error(400, "invalid", None);
    patch(json!({ "commune_code": BAC_SON })).await.error(400, "invalid", Some("village_name"));
    patch(json!({ "language": "fr" })).await.error(400, "invalid", Some("language"));
    Req::new("PATCH", "/v1/admin/households/424242")
        .json(&json!({ "name": "X" }))
        .token(&admin)
        .send(a)
        .await
        .error(404, "not_found", None);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM events WHERE kind = 'household_updated'").await, 2);
    env.stop().await;
}

async fn csv_import_should_be_all_or_nothing_and_report_existing_lines(db: TestDb) {
    let env = Env::start(db, "").await;
    let (leader, _) = seed(&env).await;
    let admin = env.token("ops", &[Scope::Admin]).await;
    let a = env.addr();
    let import = |csv: String| {
        let admin = admin.clone();
        async move {
            Req::new("POST", "/v1/admin/households/import").raw("text/csv", csv).token(&admin).send(a).await
        }
    };
    let good = format!(
        "\u{feff}msisdn,name,commune_code,village_name,has_epay\r\n\
         0912000101,Nông Văn Một,{CHI_LANG},Thôn Nà Lầm,1\r\n\
         0912000102,\"Hà Thị, Hai\",{BAC_SON},Bản Chắt,no\r\n\
         {},Hoàng Văn Tổ,{CHI_LANG},Thôn Nà Lầm,\r\n",
        leader.msisdn
    );
    let r = import(good.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!((v["created"].as_i64(), v["existing"].as_i64()), (Some(2), Some(1)));
    assert_eq!(v["rows"][1]["line"], 3);
    assert_eq!(v["rows"][2]["status"], "existing");
    assert_eq!(v["rows"][2]["household_id"], leader.id);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM households").await, 3);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM households WHERE has_epay").await, 1);
    let h = env.market.household_by_msisdn("0912000102").await.unwrap().unwrap();
    assert_eq!((h.name.as_str(), h.commune_code), ("Hà Thị, Hai", BAC_SON));

    // One bad line: nothing of the file is written, and the error names line and column.
    let bad =
        format!("msisdn,name,commune_code,village_name\n0912000201,A,{CHI_LANG},X\n0912,B,{CHI_LANG},X\n");
    import(bad).await.error(400, "invalid", Some("csv[3].msisdn"));
    import("msisdn,name,commune_code,village_name\n0912000201,A,1,X\n".to_owned()).await.error(
        400,
        "invalid",
        Some("csv[2].commune_code"),
    );
    import(format!(
        "msisdn,name,commune_code,village_name\n0912000201,A,{CHI_LANG},X\n0912000201,B,{CHI_LANG},X\n"
    ))
    .await
    .error(400, "invalid", Some("csv[3].msisdn"));
    import("msisdn,name,village_name\n".to_owned()).await.error(400, "invalid", Some("csv[1]"));
    import("msisdn,name,village,village_name\n".to_owned()).await.error(400, "invalid", Some("csv[1]"));
    import("msisdn,name,commune_code,village_name,colour\n".to_owned()).await.error(
        400,
        "invalid",
        Some("csv[1]"),
    );
    import(String::new()).await.error(400, "invalid", Some("csv"));
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM households").await, 3);
    // The command line's export names the column `village`.
    let exported =
        format!("msisdn,name,commune_code,village,language\n0912000401,D,{CHI_LANG},Thôn Nà Lầm,en\n");
    assert_eq!(import(exported).await.json()["created"], 1);
    let d = env.market.household_by_msisdn("0912000401").await.unwrap().unwrap();
    assert_eq!((d.village_name.as_str(), d.language), ("Thôn Nà Lầm", Lang::En));
    let r = Req::new("POST", "/v1/admin/households/import").json(&json!({})).token(&admin).send(a).await;
    r.error(415, "unsupported_media_type", None);
    // The same file again with a key, twice: the first answer both times.
    let with_key = |csv: String| {
        let admin = admin.clone();
        async move {
            Req::new("POST", "/v1/admin/households/import")
                .raw("text/csv", csv)
                .token(&admin)
                .key("import-1")
                .send(a)
                .await
        }
    };
    let first = with_key(good.clone()).await;
    assert_eq!(first.json()["existing"], 3);
    assert_eq!(with_key(good).await.body, first.body);
    env.stop().await;
}

async fn villages_teams_and_leaders_should_be_managed(db: TestDb) {
    let env = Env::start(db, "").await;
    let admin = env.token("ops", &[Scope::Admin]).await;
    let a = env.addr();
    let v = Req::post("/v1/admin/villages", &json!({ "commune_code": CHI_LANG, "name": "Thôn Khòn Pổng" }))
        .token(&admin)
        .send(a)
        .await;
    assert_eq!(v.status, 201, "{}", v.text());
    assert_eq!(v.json()["pending"], false);
    let again =
        Req::post("/v1/admin/villages", &json!({ "commune_code": CHI_LANG, "name": "thôn  khòn pổng" }))
            .token(&admin)
            .send(a)
            .await;
    assert_eq!((again.status, &again.json()["id"]), (200, &v.json()["id"]));
    Req::post("/v1/admin/villages", &json!({ "commune_code": 1, "name": "X" }))
        .token(&admin)
        .send(a)
        .await
        .error(400, "invalid", Some("commune_code"));
    Req::post("/v1/admin/villages", &json!({ "commune_code": CHI_LANG })).token(&admin).send(a).await.error(
        400,
        "invalid",
        Some("name"),
    );
    let list = Req::get(format!("/v1/admin/villages?commune={CHI_LANG}")).token(&admin).send(a).await.json();
    assert_eq!(list["villages"].as_array().unwrap().len(), 1);

    let leader = json!({ "msisdn": "0912000301", "name": "Hoàng Văn Tổ", "commune_code": CHI_LANG,
                         "village_name": "Thôn Khòn Pổng" });
    let team = Req::post("/v1/admin/leaders", &leader).token(&admin).send(a).await;
    assert_eq!(team.status, 201, "{}", team.text());
    let team = team.json();
    assert_eq!(team["leader"]["msisdn"], "84912000301");
    assert_eq!(team["members"], 1);
    let team_id = team["id"].as_i64().unwrap();
    let mut second = leader.clone();
    second["msisdn"] = json!("0912000302");
    Req::post("/v1/admin/leaders", &second).token(&admin).send(a).await.error(409, "conflict", None);
    let teams = Req::get("/v1/admin/teams").token(&admin).send(a).await.json();
    assert_eq!(teams["teams"].as_array().unwrap().len(), 1);

    let member = Req::post(
        "/v1/admin/households",
        &json!({ "msisdn": "0912000303", "name": "Lý Thị Na", "commune_code": CHI_LANG, "village_name": "Thôn Khòn Pổng" }),
    )
    .token(&admin)
    .send(a)
    .await
    .json();
    let outsider = Req::post(
        "/v1/admin/households",
        &json!({ "msisdn": "0912000304", "name": "Người Ngoài", "commune_code": BAC_SON, "village_name": "Bản Chắt" }),
    )
    .token(&admin)
    .send(a)
    .await
    .json();
    let add = |household: &Value| {
        Req::post(format!("/v1/admin/teams/{team_id}/members"), &json!({ "household_id": household["id"] }))
            .token(&admin)
            .send(a)
    };
    let added = add(&member).await;
    assert_eq!((added.status, added.json()["members"].as_i64()), (201, Some(2)));
    assert_eq!(add(&member).await.status, 200);
    add(&outsider).await.error(409, "conflict", None);
    Req::post("/v1/admin/teams/999999/members", &json!({ "household_id": member["id"] }))
        .token(&admin)
        .send(a)
        .await
        .error(404, "not_found", Some("team_id"));
    env.stop().await;
}

async fn reports_should_count_shares_orders_and_revenue_per_period(db: TestDb) {
    let env = Env::start(db, "").await;
    let (leader, listing) = seed(&env).await;
    let m = &env.market;
    // Chi Lăng: the leader (a listing) and one more (e-payment); Bắc Sơn: one household.
    let h2 = m
        .register_household(
            &Actor::new(leader.msisdn.clone(), Channel::Ussd),
            key("h2"),
            leader.id,
            "0912000002",
            "B",
        )
        .await
        .unwrap();
    m.set_epay(&cli(), key("h2:epay"), h2.id, true).await.unwrap();
    let bs =
        m.register_leader(&cli(), key("bs"), "0912000003", "C", BAC_SON, "Bản Chắt", Lang::Vi).await.unwrap();
    // Not counted: a self-registration its leader has not confirmed (it cannot sell), and a
    // listing no longer on sale.
    let pending = m
        .self_register(&cli(), key("pend"), "0912000004", CHI_LANG, "Thôn Nà Lầm", "Chờ Xác Nhận", Lang::Vi)
        .await
        .unwrap();
    m.set_epay(&cli(), key("pend:epay"), pending.id, true).await.unwrap();
    let r = m.create_listing(&cli(), key("pend:l"), pending.id, 1, 5, 30_000).await;
    assert!(matches!(r, Err(chogate::market::MarketError::NotAllowed(_))), "{r:?}");
    let l = m.create_listing(&cli(), key("bs:l"), bs.id, 1, 5, 30_000).await.unwrap();
    m.update_listing(&cli(), key("bs:stop"), bs.id, l.id, chogate::market::ListingChange::Stop)
        .await
        .unwrap();
    let shop = env.token("shopee", &[Scope::OrdersWrite]).await;
    let pay = env.token("vnpay", &[Scope::PaymentsWrite]).await;
    let officials = env.token("ubnd-tinh", &[Scope::ReportsRead]).await;
    let a = env.addr();
    let o = Req::post("/v1/orders", &order_body(listing, 10)).token(&shop).key("o").send(a).await.json();
    let id = o["id"].as_i64().unwrap();
    let u = Actor::new(leader.msisdn.clone(), Channel::Ussd);
    m.move_order(&u, key("a"), leader.id, id, OrderMove::Accept, None).await.unwrap();
    m.move_order(&u, key("s"), leader.id, id, OrderMove::Ship, None).await.unwrap();
    let paid = Req::post("/v1/payments", &json!({ "order_id": id, "amount": 300_000 }))
        .token(&pay)
        .key("p")
        .send(a)
        .await;
    assert_eq!(paid.status, 201);

    // A range around now (Vietnam days): everything counts.
    let today = chogate::time::vn_day(
        i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap(),
    );
    let (from, to) = (chogate::time::format_date(today - 1), chogate::time::format_date(today + 1));
    let r = Req::get(format!("/v1/reports/communes?from={from}&to={to}")).token(&officials).send(a).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!((v["from"].as_str(), v["to"].as_str()), (Some(from.as_str()), Some(to.as_str())));
    assert_eq!(v["targets"]["2025"], 0.5);
    assert_eq!(v["targets"]["2030"], 0.8);
    let communes = v["communes"].as_array().unwrap();
    assert_eq!(communes.len(), 65, "every commune of the 2025 list");
    let chi_lang = communes.iter().find(|c| c["commune_code"] == CHI_LANG).unwrap();
    assert_eq!(chi_lang["commune_name"], "Xã Chi Lăng");
    assert_eq!((chi_lang["households"].as_i64(), chi_lang["with_listing"].as_i64()), (Some(2), Some(1)));
    assert_eq!((chi_lang["with_epay"].as_i64(), chi_lang["with_epay_share"].as_f64()), (Some(1), Some(0.5)));
    assert_eq!(chi_lang["with_listing_share"], 0.5);
    assert_eq!((chi_lang["orders"].as_i64(), chi_lang["revenue"].as_i64()), (Some(1), Some(300_000)));
    let bac_son = communes.iter().find(|c| c["commune_code"] == BAC_SON).unwrap();
    assert_eq!(
        (bac_son["households"].as_i64(), bac_son["with_listing_share"].as_f64()),
        (Some(1), Some(0.0))
    );
    let empty = communes.iter().find(|c| c["households"] == 0).unwrap();
    assert_eq!(empty["with_listing_share"], Value::Null);
    assert_eq!((v["total"]["households"].as_i64(), v["total"]["revenue"].as_i64()), (Some(3), Some(300_000)));

    // A day long ago: nothing registered yet, nothing ordered.
    let old = Req::get("/v1/reports/communes?date=2021-06-01").token(&officials).send(a).await.json();
    assert_eq!((old["total"]["households"].as_i64(), old["total"]["orders"].as_i64()), (Some(0), Some(0)));
    assert_eq!(old["from"], "2021-06-01");
    // Today by default.
    let default = Req::get("/v1/reports/communes").token(&officials).send(a).await.json();
    assert_eq!(default["from"], chogate::time::format_date(today));

    // CSV for the spreadsheets that replace the hand-filled forms.
    let csv = Req::get(format!("/v1/reports/communes?from={from}&to={to}"))
        .token(&officials)
        .header("accept", "text/csv")
        .send(a)
        .await;
    assert_eq!(csv.status, 200);
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = csv.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 66);
    assert!(
        lines[0].starts_with("from,to,commune_code,commune_name,households,with_listing,with_listing_share")
    );
    assert!(
        lines.iter().any(|l| l.contains(&format!(",{CHI_LANG},Xã Chi Lăng,2,1,0.5,1,0.5,1,300000,0.5,0.8"))),
        "{text}"
    );

    // Villages of a commune.
    let villages = Req::get(format!("/v1/reports/villages?commune={CHI_LANG}&from={from}&to={to}"))
        .token(&officials)
        .send(a)
        .await;
    assert_eq!(villages.status, 200, "{}", villages.text());
    let vv = villages.json();
    assert_eq!(vv["commune"]["name"], "Xã Chi Lăng");
    assert_eq!(vv["villages"][0]["village_name"], "Thôn Nà Lầm");
    assert_eq!(vv["villages"][0]["households"], 2);
    let vcsv = Req::get(format!("/v1/reports/villages?commune={CHI_LANG}&date={from}"))
        .token(&officials)
        .header("accept", "text/csv")
        .send(a)
        .await
        .text();
    assert!(vcsv.starts_with("from,to,village_id,village_name,commune_code,households"), "{vcsv}");

    // Errors.
    let get = |q: &str| Req::get(format!("/v1/reports/{q}")).token(&officials).send(a);
    get("villages").await.error(400, "invalid", Some("commune"));
    get("villages?commune=1").await.error(404, "not_found", None);
    get("communes?date=2026-02-30").await.error(400, "invalid", Some("date"));
    get("communes?from=2026-02-03&to=2026-02-01").await.error(400, "invalid", Some("to"));
    get("communes?from=2026-02-03").await.error(400, "invalid", Some("to"));
    get("communes?date=2026-02-03&to=2026-02-04").await.error(400, "invalid", Some("date"));
    env.stop().await;
}

async fn bodies_over_the_limit_should_be_413(db: TestDb) {
    let env = Env::start(db, "[api]\nmax_body_bytes = 1024").await;
    let (_, listing) = seed(&env).await;
    let t = env.token("shopee", &[Scope::OrdersWrite]).await;
    let admin = env.token("ops", &[Scope::Admin]).await;
    let a = env.addr();
    let mut big = order_body(listing, 1);
    big["buyer_name"] = json!("x".repeat(2000));
    Req::post("/v1/orders", &big).token(&t).key("big").send(a).await.error(413, "too_large", None);
    let csv = format!(
        "msisdn,name,commune_code,village_name\n{}",
        format!("0912000101,A,{CHI_LANG},X\n").repeat(60)
    );
    Req::new("POST", "/v1/admin/households/import").raw("text/csv", csv).token(&admin).send(a).await.error(
        413,
        "too_large",
        None,
    );
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM orders").await, 0);
    // Under the limit it goes through.
    assert_eq!(
        Req::post("/v1/orders", &order_body(listing, 1)).token(&t).key("small").send(a).await.status,
        201
    );
    env.stop().await;
}

async fn a_token_past_its_rate_should_get_429(db: TestDb) {
    let env = Env::start(db, "[api]\nrate_per_sec = 1\nburst = 3").await;
    let t = env.token("shopee", &[Scope::OrdersWrite]).await;
    let other = env.token("lazada", &[Scope::OrdersWrite]).await;
    let a = env.addr();
    // The burst goes through, then 429 with Retry-After (a slow machine may earn a request
    // back meanwhile, so allow a few more before the refusal).
    let mut ok = 0;
    let refused = loop {
        let r = Req::get("/v1/listings").token(&t).send(a).await;
        if r.status == 429 {
            break r;
        }
        assert_eq!(r.status, 200);
        ok += 1;
        assert!(ok < 20, "never limited");
    };
    assert!(ok >= 3, "the burst of 3 went through ({ok})");
    refused.error(429, "rate_limited", None);
    assert!(refused.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // Another token has its own budget.
    assert_eq!(Req::get("/v1/listings").token(&other).send(a).await.status, 200);
    env.stop().await;
}

async fn unknown_routes_and_methods_should_be_json_404_and_405(db: TestDb) {
    let env = Env::start(db, "").await;
    let a = env.addr();
    Req::get("/v2/orders").send(a).await.error(404, "not_found", None);
    Req::new("DELETE", "/v1/orders").send(a).await.error(405, "method_not_allowed", None);
    Req::post("/v1/listings", &json!({})).send(a).await.error(405, "method_not_allowed", None);
    env.stop().await;
}

async fn metrics_should_count_pdus_dialogues_commits_and_the_outbox(db: TestDb) {
    let env = Env::start(db, "").await;
    let (_, listing) = seed(&env).await;
    let t = env.token("shopee", &[Scope::OrdersWrite]).await;
    assert_eq!(
        Req::post("/v1/orders", &order_body(listing, 1)).token(&t).key("m").send(env.addr()).await.status,
        201
    );
    // A dial from an unregistered number, then the subscriber hangs up.
    let mut ussdc = common::Ussdc::bind(env.td.smpp, common::Family::DeliverSm).await;
    let screen = ussdc.dial("84913999888", 7).await;
    assert!(!screen.is_final());
    ussdc.abort("84913999888", 7).await;

    let text = Req::get("/metrics").send(env.addr()).await.text();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    };
    assert!(
        value(r#"chogate_smpp_pdus_total{direction="in",command="bind_transceiver",status="ESME_ROK"}"#)
            >= 1.0
    );
    assert!(
        value(
            r#"chogate_smpp_pdus_total{direction="out",command="bind_transceiver_resp",status="ESME_ROK"}"#
        ) >= 1.0
    );
    assert!(
        value(r#"chogate_smpp_pdus_total{direction="in",command="deliver_sm",status="ESME_ROK"}"#) >= 2.0
    );
    assert!(value(r#"chogate_ussd_dialogues_total{outcome="opened"}"#) >= 1.0);
    assert!(value(r#"chogate_ussd_steps_total{outcome="screen"}"#) >= 1.0);
    // Every screen sent was timed before it was counted (other tests in this process add to
    // both: the screens are read first).
    let screens = value(r#"chogate_ussd_steps_total{outcome="screen"}"#);
    assert!(value("chogate_ussd_step_seconds_count") >= screens, "{screens}");
    assert!(value(r#"chogate_outbox_messages{status="queued"}"#) >= 1.0);
    assert!(value("chogate_db_commit_seconds_count") >= 1.0);
    assert!(value("chogate_db_action_seconds_count") >= 1.0);
    assert!(value("chogate_db_commits_total") >= 1.0);
    assert!(value(r#"chogate_http_responses_total{code="201"}"#) >= 1.0);
    assert!(value(r#"chogate_smpp_binds{peer="ussdc"}"#) >= 1.0);
    env.stop().await;
}

/// `chogate tokens create` prints the token once; `list` shows it without the secret;
/// `revoke` ends it. Backend-independent: SQLite only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_command_should_print_a_token_once_and_store_its_hash() {
    let db = sqlite_db();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("chogate.toml");
    std::fs::write(&config, format!("[database]\nurl = \"{}\"\n", db.url)).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_chogate"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let out =
        run(&["tokens", "create", "--name", "shopee", "--scope", "orders:write", "--scope", "reports:read"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("cg_") && token.len() == 3 + 12 + 1 + 64, "{token}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot be shown again") && !stderr.contains(&token));
    let public = &token[3..15];

    let list = run(&["tokens", "list"]);
    let listed = String::from_utf8(list.stdout).unwrap();
    assert!(listed.contains(public) && listed.contains("orders:write,reports:read"), "{listed}");
    assert!(!listed.contains(&token[16..]));
    let bad = run(&["tokens", "create", "--name", "x", "--scope", "orders:read"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope"));

    // The token works against the daemon on that database, until revoked.
    let env = Env::start(db, "").await;
    assert_eq!(Req::get("/v1/reports/communes").token(&token).send(env.addr()).await.status, 200);
    let row = env.market.api_token(public).await.unwrap().unwrap();
    assert_eq!(row.scopes, vec!["orders:write".to_owned(), "reports:read".to_owned()]);
    assert!(!row.token_hash.contains(&token[16..]));
    let revoked = run(&["tokens", "revoke", public]);
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    Req::get("/v1/reports/communes").token(&token).send(env.addr()).await.error(401, "unauthorized", None);
    env.stop().await;
}

/// `[api]` is validated like the rest of the configuration.
#[test]
fn api_config_should_default_and_be_range_checked() {
    let c = chogate::config::Config::from_toml_str("", "t", Vec::new()).unwrap();
    assert_eq!((c.api.max_body_bytes, c.api.rate_per_sec, c.api.burst), (65_536, 50, 100));
    for (text, key) in [
        ("[api]\nmax_body_bytes = 10", "api.max_body_bytes"),
        ("[api]\nrate_per_sec = 0", "api.rate_per_sec"),
        ("[api]\nburst = 0", "api.burst"),
        ("[api]\nlimit = 1", "api"),
    ] {
        let e = chogate::config::Config::from_toml_str(text, "t", Vec::new()).unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
}
