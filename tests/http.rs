//! The HTTP server's limits against the real daemon over real TCP: header and idle timeouts,
//! the request timeout, the connection limit, the rate limit of requests without a valid
//! token, the drain, and the operations listener. Backend-independent: SQLite only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chogate::api::auth::{Scope, create_token};
use chogate::config::HttpConfig;
use common::{PATIENCE, TestDaemon, base_config};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn parse(bytes: &[u8]) -> Raw {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response head: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    Raw { status, head: head.to_owned(), body: body.to_owned() }
}

/// Reads until the server closes the connection (bounded by PATIENCE); returns what came.
async fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server did not close the connection in time");
    out
}

/// One request on a fresh connection that asks to be closed after it.
async fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    parse(&read_to_eof(&mut stream).await)
}

async fn get(addr: SocketAddr, path: &str) -> Raw {
    request(addr, "GET", path, None).await
}

/// The daemon with `extra` appended to the test configuration and `[http]` set by `http`
/// (the test configuration has its own `[http]` table).
async fn start(extra: &str, http: impl FnOnce(&mut HttpConfig)) -> TestDaemon {
    let mut config = base_config(extra);
    http(&mut config.http);
    config.validate().unwrap();
    TestDaemon::start(config).await
}

fn ops_port(h: &mut HttpConfig) {
    h.ops_listen = Some("127.0.0.1:0".parse().unwrap());
}

async fn token(td: &TestDaemon, scopes: &[Scope]) -> String {
    create_token(&td.daemon.as_ref().unwrap().market, "shopee", scopes).await.unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_should_be_closed_within_the_timeouts() {
    let td = start("", |h| {
        h.header_timeout_secs = 1;
        h.idle_timeout_secs = 3;
        h.request_timeout_secs = 1;
    })
    .await;
    let addr = td.http;

    // A connection that sends nothing: closed after the header timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(read_to_eof(&mut silent).await.is_empty());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");

    // Half a request head: closed after the header timeout too.
    let started = Instant::now();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    read_to_eof(&mut half).await;
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    // A keep-alive connection: answered, then kept for the idle timeout (longer than the
    // header timeout), then closed.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(PATIENCE, kept.read(&mut buf)).await.unwrap().unwrap();
    let answered = Instant::now();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    read_to_eof(&mut kept).await;
    let idle = answered.elapsed();
    assert!(idle >= Duration::from_millis(2500) && idle < Duration::from_secs(6), "{idle:?}");

    // A body that stops coming: 408 after the request timeout, and the connection closes.
    let t = token(&td, &[Scope::OrdersWrite]).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nIdempotency-Key: slow\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"listing_id\":"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let r = parse(&read_to_eof(&mut slow).await);
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (408, Some("request_timeout")), "{r:?}");
    td.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_should_be_closed_at_once() {
    let td = start("", |h| h.max_connections = 2).await;
    let addr = td.http;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // Served: a request on it is answered and it stays open.
        s.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf)).await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // The third: closed at once, without an answer (well before any timeout).
    let started = Instant::now();
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(read_to_eof(&mut third).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
    // One closes; its place is free again once the server has seen it go.
    drop(held.pop());
    let metrics = tokio::time::timeout(PATIENCE, async {
        loop {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
            let got = read_to_eof(&mut s).await;
            if !got.is_empty() {
                return parse(&got);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(metrics.status, 200);
    let refused = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("chogate_http_connections_refused_total "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(refused.is_some_and(|n| n >= 1), "{refused:?}");
    td.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_should_be_limited_per_address() {
    let td = start("[api]\nunauthenticated_rate_per_sec = 1\nunauthenticated_burst = 3", |_| {}).await;
    let addr = td.http;
    let t = token(&td, &[Scope::OrdersWrite]).await;
    // The burst goes through (a slow machine may earn one back meanwhile), then 429.
    let mut ok = 0;
    let refused = loop {
        let r = get(addr, "/live").await;
        if r.status == 429 {
            break r;
        }
        assert_eq!(r.status, 200);
        ok += 1;
        assert!(ok < 20, "never limited");
    };
    assert!(ok >= 3, "{ok}");
    assert_eq!(refused.json()["error"]["code"], "rate_limited");
    let retry = refused
        .head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("retry-after: ").map(str::to_owned))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(retry.is_some_and(|s| s >= 1), "{}", refused.head);
    // A wrong token is no way around it.
    let fake = format!("cg_{}_{}", "0".repeat(12), "0".repeat(64));
    assert_eq!(request(addr, "GET", "/v1/listings", Some(&fake)).await.status, 429);
    assert_eq!(request(addr, "GET", "/v1/listings", Some("nonsense")).await.status, 429);
    // A valid token has its own budget.
    assert_eq!(request(addr, "GET", "/v1/listings", Some(&t)).await.status, 200);
    td.stop().await;
}

/// A partner call without a token is counted once against its address, not twice (by the
/// router's layer and again by the token check).
#[tokio::test]
async fn a_request_without_a_token_should_cost_its_address_one_request() {
    let td = start("[api]\nunauthenticated_rate_per_sec = 1\nunauthenticated_burst = 4", |_| {}).await;
    let mut unauthorized = 0;
    loop {
        let r = request(td.http, "GET", "/v1/listings", None).await;
        if r.status == 429 {
            break;
        }
        assert_eq!(r.status, 401);
        unauthorized += 1;
        assert!(unauthorized < 20, "never limited");
    }
    assert!(unauthorized >= 4, "the burst of 4 gave {unauthorized} answers");
    td.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_should_be_503_once_a_drain_starts_while_a_request_is_in_flight() {
    let td = start("", |h| {
        h.grace_secs = 3;
        ops_port(h);
    })
    .await;
    let addr = td.http;
    let ops = td.daemon.as_ref().unwrap().ops_addr.unwrap();
    assert_eq!(get(addr, "/ready").await.status, 200);
    let t = token(&td, &[Scope::OrdersWrite]).await;
    // Two requests in flight: their bodies have not all come.
    let slow_post = |key: &'static str| {
        let t = t.clone();
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nIdempotency-Key: {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            s
        }
    };
    let mut slow = slow_post("slow").await;
    let mut stuck = slow_post("stuck").await;
    // Until the server handles both (the operations /ready counts itself too).
    tokio::time::timeout(PATIENCE, async {
        while get(ops, "/ready").await.json()["http_requests_in_flight"].as_u64() < Some(3) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the slow requests never came in flight");
    td.shutdown.cancel();
    let drain_started = Instant::now();
    // The listener still accepts while requests are in flight, and says it is not ready.
    let ready = get(addr, "/ready").await;
    assert_eq!((ready.status, ready.json()["status"].as_str()), (503, Some("draining")), "{ready:?}");
    // A request in flight finishes within the grace: its body completes and it is answered.
    slow.write_all(b"}").await.unwrap();
    let answered = parse(&read_to_eof(&mut slow).await);
    assert_eq!(answered.status, 400, "{answered:?}");
    // The one still unfinished at the end of the grace is dropped, unanswered.
    assert!(read_to_eof(&mut stuck).await.is_empty());
    let dropped_after = drain_started.elapsed();
    assert!(
        dropped_after >= Duration::from_millis(2500) && dropped_after < Duration::from_secs(8),
        "{dropped_after:?}"
    );
    // Then the daemon stops, and the listener is closed.
    let mut td = td;
    let daemon = td.daemon.take().unwrap();
    tokio::time::timeout(PATIENCE, daemon.wait()).await.expect("daemon did not stop");
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_listen_should_take_metrics_and_account_names_off_the_public_port() {
    // Without an operations listener: /metrics stays public, /ready names no account.
    let td = start("", |_| {}).await;
    let _bound = common::Peer::bound(td.smpp).await;
    let ready = get(td.http, "/ready").await;
    assert_eq!(ready.status, 200);
    assert!(!ready.body.contains(common::ACCOUNT) && ready.json().get("binds").is_none(), "{}", ready.body);
    assert_eq!(get(td.http, "/metrics").await.status, 200);
    td.stop().await;

    let td = start("", ops_port).await;
    let ops = td.daemon.as_ref().unwrap().ops_addr.expect("an operations address");
    let _bound = common::Peer::bound(td.smpp).await;
    // Public: /live and a /ready without names; no /metrics.
    assert_eq!(get(td.http, "/live").await.status, 200);
    let ready = get(td.http, "/ready").await;
    assert_eq!(ready.status, 200);
    assert!(!ready.body.contains(common::ACCOUNT), "{}", ready.body);
    assert_eq!(get(td.http, "/metrics").await.status, 404);
    // Operations: /ready with the binds per account, /metrics.
    let ready = get(ops, "/ready").await;
    assert_eq!((ready.status, ready.json()["binds"][common::ACCOUNT].as_u64()), (200, Some(1)), "{ready:?}");
    let metrics = get(ops, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("chogate_http_responses_total"));
    // The partner API is not there.
    assert_eq!(get(ops, "/v1/listings").await.status, 404);
    td.stop().await;
}
