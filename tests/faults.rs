//! Issue 18: faults with the real binary (`chogate serve` as a child process).
//!
//! - The SMSC gone, then back: nothing lost, nothing sent past its validity.
//! - PostgreSQL restarted under USSD load: dialogues continue, nothing applied twice.
//! - SIGKILL while the outbox drains: none lost, and no message sent again once its
//!   acknowledgement was committed.
//!
//! "Minutes" are scaled down by configuration (`[notify] validity_secs`, `lease_secs`,
//! `[[smsc]] reconnect_*_ms`); the tests wait on events (log lines, PDUs, database rows),
//! each wait bounded by a multiple of `common::PATIENCE` that only fails a hang.
//!
//! What the code guarantees, from `src/notify/mod.rs` and `src/market/outbox.rs`: a message
//! is claimed with a lease, submitted part by part, and recorded `sent` (with the ids of the
//! `submit_sm_resp`s) in a later group commit. Anything that ends an attempt without every
//! part answered (a bind lost, no bind, a response timeout) is a transport failure: the
//! message is retried, from its first part, until its validity (its own, capped by
//! `validity_secs`) has passed; then it is marked `expired` and never submitted. A message
//! recorded `sent` is never claimed again. So a submit that was answered is submitted again
//! only when its outcome was not committed (the daemon died between the `submit_sm_resp`
//! and the commit, or a later part of the same message went unanswered): at most once per
//! committed acknowledgement, at least once per message within its validity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chogate::market::{Actor, Channel, IdemKey, Lang, Market};
use chogate::smpp::pdu::{BindResp, Body, MessageIdResp, Pdu, Sm, Tlvs};
use common::child::{serve, until};
use common::{PATIENCE, Peer};
use tokio::net::TcpListener;

const HOUSEHOLD: &str = "84912345678";

fn cli() -> Actor {
    Actor::new("test", Channel::Cli)
}

/// Opens the market on `url` (applying the migrations), runs `f`, and closes it: the state a
/// daemon then starts from.
async fn prepare<T>(url: &str, f: impl AsyncFnOnce(&Market) -> T) -> T {
    let cfg = chogate::config::DatabaseConfig { url: url.to_owned(), ..Default::default() };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let market = Market::open(&cfg, shutdown.clone()).await.unwrap();
    let out = f(&market).await;
    shutdown.cancel();
    market.stopped().await;
    out
}

fn write_config(dir: &Path, db_url: &str, extra: &str) -> PathBuf {
    let path = dir.join("chogate.toml");
    let text = format!(
        "[database]\nurl = \"{db_url}\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [smpp_server]\nlisten = \"127.0.0.1:0\"\n\
         [[smpp_server.accounts]]\nsystem_id = \"ussdc\"\npassword = \"secret1\"\nwindow = 50\n\
         [smpp]\ndrain_timeout_secs = 2\n{extra}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `[[smsc]]` at 127.0.0.1:`port`: unaccented GSM (one part for the texts here), a window of
/// `window`, reconnecting every 20 to 100 ms.
fn smsc_config(port: u16, window: u32) -> String {
    format!(
        "[[smsc]]\nname = \"viettel\"\nhost = \"127.0.0.1\"\nport = {port}\nsystem_id = \"gw\"\n\
         password = \"secret\"\nwindow = {window}\ntext_mode = \"gsm\"\n\
         reconnect_min_ms = 20\nreconnect_max_ms = 100\n"
    )
}

// ---- a fake SMSC, speaking chogate's own codec ------------------------------------------

/// Accepts chogate's bind and answers it.
async fn accept(listener: &TcpListener) -> Peer {
    let (stream, _) = tokio::time::timeout(PATIENCE, listener.accept()).await.expect("no bind").unwrap();
    let mut p = Peer::from_stream(stream);
    let bind = p.recv().await.expect("closed before bind");
    let Body::Bind(b) = &bind.body else { panic!("not a bind: {bind:?}") };
    let resp = BindResp { kind: b.kind, system_id: "smsc".into(), tlvs: Tlvs::default() };
    p.send(&Pdu::new(bind.sequence, Body::BindResp(resp))).await;
    p
}

/// The next submit_sm (its sequence number and text), or None once the connection is gone.
/// enquire_link is answered on the way, unbind answered and the connection then ends.
async fn next_submit(p: &mut Peer) -> Option<(u32, String)> {
    loop {
        let pdu = p.recv_skip_enquire().await?;
        match pdu.body {
            Body::SubmitSm(sm) => return Some((pdu.sequence, text_of(&sm))),
            Body::Unbind => p.send(&Pdu::new(pdu.sequence, Body::UnbindResp)).await,
            _ => {}
        }
    }
}

fn text_of(sm: &Sm) -> String {
    assert_eq!(sm.esm_class & 0x40, 0, "a text of one part expected: {sm:?}");
    chogate::text::decode_short_message(sm.data_coding, &sm.short_message)
}

async fn ack(p: &mut Peer, seq: u32, id: &str) {
    let body = Body::SubmitSmResp(MessageIdResp { message_id: id.into(), tlvs: Tlvs::default() });
    p.send(&Pdu::new(seq, body)).await;
}

/// One submit as the SMSC saw it: which connection, the text, the id it answered with (None:
/// never answered).
#[derive(Debug, Clone)]
struct Seen {
    text: String,
    id: Option<String>,
}

/// Answers every submit on `p` with a fresh id until the connection ends, recording each.
async fn answer_all(mut p: Peer, conn: u32, seen: Arc<Mutex<Vec<Seen>>>) {
    while let Some((seq, text)) = next_submit(&mut p).await {
        let id = format!("{conn}-{}", seen.lock().unwrap().len());
        ack(&mut p, seq, &id).await;
        seen.lock().unwrap().push(Seen { text, id: Some(id) });
    }
}

// ---- the outbox, read from the SQLite file ----------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Row {
    status: String,
    smsc_message_id: Option<String>,
    attempts: i64,
}

/// Every outbox row by text.
fn outbox(db: &Path) -> HashMap<String, Row> {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(PATIENCE).unwrap();
    let mut st = c.prepare("SELECT text, status, smsc_message_id, attempts FROM outbox").unwrap();
    st.query_map([], |r| {
        Ok((r.get(0)?, Row { status: r.get(1)?, smsc_message_id: r.get(2)?, attempts: r.get(3)? }))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

// ---- 1. the SMSC gone for a while, then back --------------------------------------------

/// A partner's order over the HTTP API; returns its code.
async fn post_order(http: std::net::SocketAddr, token: &str, key: &str, listing: i64) -> String {
    use http_body_util::{BodyExt, Full};
    let body = serde_json::json!({
        "listing_id": listing, "buyer_name": "B", "buyer_phone": "0913456789",
        "quantity_kg": 1, "amount": 30_000,
        "delivery": { "name": "B", "phone": "0913456789", "address": "Số 1", "commune_code": 6463 },
    });
    let stream = tokio::net::TcpStream::connect(http).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/v1/orders")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {token}"))
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let resp = tokio::time::timeout(PATIENCE, sender.send_request(req)).await.unwrap().unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 201, "{v}");
    v["code"].as_str().unwrap().to_owned()
}

/// Messages queued before start are drained until the SMSC drops the connection with some
/// submits unanswered and goes away. While it is gone, those not answered pass their
/// validity (`validity_secs = 3`): they are marked `expired` and never reach it. Orders
/// placed over the HTTP API while it is gone queue new messages; when it is back, each of
/// them is submitted exactly once, and nothing answered before is submitted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsc_gone_then_back_should_lose_nothing_and_send_nothing_past_its_validity() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("smsc.db");
    let url = format!("sqlite://{}", db.display());
    const EARLY: usize = 8;
    const LATE: usize = 6;
    let early: Vec<String> = (0..EARLY).map(|i| format!("Tin som {i}")).collect();
    let (listing, token) = prepare(&url, async |m| {
        let hh = m
            .register_leader(&cli(), IdemKey("l".into()), HOUSEHOLD, "Lý Thị Mai", 6463, "Bản Chu", Lang::Vi)
            .await
            .unwrap();
        let na = m.products().await.unwrap()[0].id;
        let listing = m.create_listing(&cli(), IdemKey("c".into()), hh.id, na, 1000, 30_000).await.unwrap();
        let token = chogate::api::auth::create_token(m, "shopee", &[chogate::api::auth::Scope::OrdersWrite])
            .await
            .unwrap()
            .1;
        for (i, text) in early.iter().enumerate() {
            m.queue_sms(&cli(), IdemKey(format!("q{i}")), HOUSEHOLD, text, Lang::Vi, "test").await.unwrap();
        }
        (listing.id, token)
    })
    .await;
    // The welcome SMS of registration is not ours: out of the way.
    let welcome: BTreeSet<String> = outbox(&db).into_keys().filter(|t| !early.contains(t)).collect();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config =
        write_config(dir.path(), &url, &format!("[notify]\nvalidity_secs = 3\n{}", smsc_config(port, 3)));
    let mut d = serve(dir.path(), &config).await;

    // Connection 1: three submits answered, three more read and left unanswered, then the
    // SMSC is gone (the connection dropped, nobody listening on its port).
    let mut seen: Vec<Seen> = Vec::new();
    let mut p = accept(&listener).await;
    while seen.len() < 6 {
        let (seq, text) = next_submit(&mut p).await.expect("connection 1 closed");
        let id = (seen.len() < 3).then(|| format!("1-{}", seen.len()));
        if let Some(id) = &id {
            ack(&mut p, seq, id).await;
        }
        seen.push(Seen { text, id });
    }
    drop(p);
    drop(listener);
    let answered: BTreeMap<String, String> =
        seen.iter().filter_map(|s| Some((s.text.clone(), s.id.clone()?))).collect();
    let not_answered: Vec<String> = early.iter().filter(|t| !answered.contains_key(*t)).cloned().collect();
    assert_eq!((answered.len(), not_answered.len()), (3, EARLY - 3), "{seen:?}");
    d.wait_log(|l| l.contains("bind lost")).await;

    // Gone: what was not answered is tried again and again while its validity passes.
    until("the unanswered messages expired while the SMSC was gone", 2 * PATIENCE, || {
        let rows = outbox(&db);
        let done = not_answered.iter().all(|t| rows[t].status == "expired");
        async move { done }
    })
    .await;
    // New orders while it is gone: tried once, to no SMSC.
    let mut late = Vec::new();
    for i in 0..LATE {
        late.push(post_order(d.http, &token, &format!("o{i}"), listing).await);
    }
    // Stored in Vietnamese; the SMSC gets it unaccented (`text_mode = "gsm"`): told apart
    // by the order code.
    let late_text = |code: &str| {
        let rows = outbox(&db);
        rows.keys().find(|t| t.contains(code)).cloned().unwrap_or_else(|| panic!("no SMS for {code}"))
    };
    let codes = late;
    let late: Vec<String> = codes.iter().map(|c| late_text(c)).collect();
    until("the new orders' SMS were tried while the SMSC was gone", PATIENCE, || {
        let rows = outbox(&db);
        let tried = late.iter().all(|t| rows[t].attempts >= 1 && rows[t].status == "queued");
        async move { tried }
    })
    .await;

    // Back, on the same port.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let p = accept(&listener).await;
    let seen2 = Arc::new(Mutex::new(Vec::new()));
    let smsc = tokio::spawn(answer_all(p, 2, seen2.clone()));
    until("every new order's SMS sent", PATIENCE, || {
        let rows = outbox(&db);
        let sent = late.iter().all(|t| rows[t].status == "sent");
        async move { sent }
    })
    .await;
    d.stop().await;
    tokio::time::timeout(PATIENCE, smsc).await.unwrap().unwrap();

    let rows = outbox(&db);
    let seen2 = seen2.lock().unwrap().clone();
    let mut back: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
    for s in &seen2 {
        back.entry(s.text.as_str()).or_default().push(s);
    }
    // Nothing lost: every new order's SMS reached the SMSC once, recorded with its id.
    for (code, t) in codes.iter().zip(&late) {
        let got: Vec<&Seen> = seen2.iter().filter(|s| s.text.contains(code.as_str())).collect();
        assert_eq!(got.len(), 1, "{code} submitted {} times after the SMSC came back: {seen2:?}", got.len());
        assert_eq!(rows[t].smsc_message_id, got[0].id, "{t}: {:?}", rows[t]);
    }
    // Nothing past its validity: the unanswered never came again, and are expired.
    for t in &not_answered {
        assert!(!back.contains_key(t.as_str()), "{t} submitted past its validity: {seen2:?}");
        assert_eq!(rows[t].status, "expired", "{t}: {:?}", rows[t]);
    }
    // Nothing answered was submitted again; it is recorded with the id it was answered with.
    for (t, id) in &answered {
        assert!(!back.contains_key(t.as_str()), "{t} was answered, and submitted again: {seen2:?}");
        assert_eq!(
            (rows[t].status.as_str(), rows[t].smsc_message_id.as_deref()),
            ("sent", Some(id.as_str()))
        );
    }
    // And nothing else came (the welcome SMS went out in connection 1 or 2, once).
    let others: Vec<&Seen> =
        seen2.iter().filter(|s| !codes.iter().any(|c| s.text.contains(c.as_str()))).collect();
    assert!(others.iter().all(|s| welcome.contains(&s.text)), "{others:?}");
}

// ---- 3. SIGKILL while the outbox drains ---------------------------------------------------

/// Hundreds of messages queued; the SMSC answers every submit; the daemon is killed with
/// SIGKILL after the 100th answer, started again on the same file, and left to finish.
/// Every message reaches the SMSC and ends `sent` with an id the SMSC gave it; a message
/// recorded `sent` at the kill is never submitted again; a message is submitted a second time
/// only if its first submit's outcome was not committed when the daemon died (answered or
/// not), and never a third time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_the_outbox_drains_should_send_each_message_at_most_once_per_acknowledgement_and_lose_none()
 {
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("drain.db");
    let url = format!("sqlite://{}", db.display());
    let texts: Vec<String> = (0..N).map(|i| format!("Tin {i:04}")).collect();
    prepare(&url, async |m| {
        m.register_leader(&cli(), IdemKey("l".into()), HOUSEHOLD, "Lý Thị Mai", 6463, "Bản Chu", Lang::Vi)
            .await
            .unwrap();
        for (i, text) in texts.iter().enumerate() {
            m.queue_sms(&cli(), IdemKey(format!("q{i}")), HOUSEHOLD, text, Lang::Vi, "test").await.unwrap();
        }
    })
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // A lease of a second: what the killed daemon claimed is due again a second later.
    let config =
        write_config(dir.path(), &url, &format!("[notify]\nlease_secs = 1\n{}", smsc_config(port, 10)));

    // Run 1: every submit answered at once; SIGKILL right after the 100th answer.
    let mut d = serve(dir.path(), &config).await;
    let mut p = accept(&listener).await;
    let mut seen: Vec<Seen> = Vec::new();
    while seen.len() < 100 {
        let (seq, text) = next_submit(&mut p).await.expect("run 1 closed");
        let id = format!("1-{}", seen.len());
        ack(&mut p, seq, &id).await;
        seen.push(Seen { text, id: Some(id) });
    }
    d.kill().await;
    // What it had written before it died: submitted, never answered.
    while let Some((_, text)) = next_submit(&mut p).await {
        seen.push(Seen { text, id: None });
    }
    drop(p);
    let at_kill = outbox(&db);
    let committed: BTreeSet<&str> =
        texts.iter().filter(|t| at_kill[*t].status == "sent").map(String::as_str).collect();
    assert!(committed.len() < N, "killed after the drain, not during it");
    // Only what was answered is recorded sent, with the id it was answered with.
    for t in &committed {
        let ids: Vec<_> = seen.iter().filter(|s| s.text == *t).filter_map(|s| s.id.clone()).collect();
        assert!(
            ids.iter().any(|id| at_kill[*t].smsc_message_id.as_ref() == Some(id)),
            "{t} recorded {:?}, answered {ids:?}",
            at_kill[*t]
        );
    }

    // Run 2 on the same file.
    let mut d = serve(dir.path(), &config).await;
    let p = accept(&listener).await;
    let seen2 = Arc::new(Mutex::new(Vec::new()));
    let smsc = tokio::spawn(answer_all(p, 2, seen2.clone()));
    until("every message sent", 3 * PATIENCE, || {
        let rows = outbox(&db);
        let all = texts.iter().all(|t| rows[t].status == "sent");
        async move { all }
    })
    .await;
    d.stop().await;
    tokio::time::timeout(PATIENCE, smsc).await.unwrap().unwrap();

    let rows = outbox(&db);
    let seen2 = seen2.lock().unwrap().clone();
    let count = |v: &[Seen], t: &str| v.iter().filter(|s| s.text == t).count();
    let mut again = 0;
    for t in &texts {
        let (first, second) = (count(&seen, t), count(&seen2, t));
        // None lost: recorded sent with an id the SMSC gave this message.
        let ids: Vec<_> =
            seen.iter().chain(&seen2).filter(|s| &s.text == t).filter_map(|s| s.id.clone()).collect();
        assert!(
            rows[t].status == "sent" && ids.iter().any(|id| rows[t].smsc_message_id.as_ref() == Some(id)),
            "{t}: {:?}, answered {ids:?}",
            rows[t]
        );
        // At most once per committed acknowledgement.
        assert!(first <= 1 && second <= 1, "{t} submitted {first} times in run 1, {second} in run 2");
        if committed.contains(t.as_str()) {
            assert_eq!(second, 0, "{t} was recorded sent before the kill, and submitted again");
        }
        if first == 1 && second == 1 {
            again += 1;
        }
    }
    let answered_uncommitted =
        seen.iter().filter(|s| s.id.is_some() && !committed.contains(s.text.as_str())).count();
    println!(
        "{N} messages: {} answered and {} unanswered in run 1, {} committed at the kill; \
         {answered_uncommitted} answered but not committed; {again} submitted again in run 2",
        seen.iter().filter(|s| s.id.is_some()).count(),
        seen.iter().filter(|s| s.id.is_none()).count(),
        committed.len(),
    );
}

// ---- 2. PostgreSQL restarted under USSD load ---------------------------------------------

/// How one dialogue ended.
#[derive(Debug, Clone)]
struct Ended {
    price: i64,
    /// Dialled after the restart had completed.
    after_restart: bool,
    /// The final screen (or the first, when it was not the main menu).
    text: String,
}

const SOLD: &str = "Đã đăng bán";
const BUSY: &str = "Hệ thống bận, vui lòng thử lại sau.";

/// Four USSD centres list produce for four households over real SMPP, each listing with a
/// price of its own; PostgreSQL is restarted (`pg_ctl restart -m fast`) in the middle.
/// Dialogues continue after it; a step that hit the outage ends on the "system busy, try
/// again later" screen; every listing a dialogue saw confirmed exists exactly once, none
/// twice, and each has its audit event (nothing half-applied).
///
/// What the daemon does meanwhile (its log, printed): reads wait in the connection pool,
/// which retries while the server is down or starting, and go on after it; the writer's
/// group under way when the connections are cut fails, and each group until the server is
/// back fails at once (it opens its connection without waiting): those steps end on "busy,
/// try again later"; a dial whose household could not be read ends the same way (it was
/// offered the sign-up menu before). Nothing crashes or hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_ussd_load_should_continue_dialogues_and_apply_nothing_twice() {
    use common::{Family, Ussdc};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const BINDS: usize = 4;
    let pg = tokio::task::spawn_blocking(common::pg::PgCluster::start).await.unwrap();
    let url = pg.url();
    let msisdns: Vec<String> = (0..BINDS).map(|b| format!("8491230000{b}")).collect();
    prepare(&url, async |m| {
        let leader = common::fixture::leader(m, 6463).await;
        for (i, n) in msisdns.iter().enumerate() {
            m.register_household(&cli(), IdemKey(format!("h{i}")), leader.id, n, "Hoàng Văn A")
                .await
                .unwrap();
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &url, "");
    let mut d = serve(dir.path(), &config).await;
    let addr = d.smpp;

    let restarted = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let sold_before = Arc::new(AtomicUsize::new(0));
    let sold_after: Arc<Vec<AtomicUsize>> = Arc::new((0..BINDS).map(|_| AtomicUsize::new(0)).collect());
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    for (b, msisdn) in msisdns.iter().cloned().enumerate() {
        let (restarted, stop, sold_before, sold_after, progress) =
            (restarted.clone(), stop.clone(), sold_before.clone(), sold_after.clone(), progress.clone());
        tasks.spawn(async move {
            let mut u = Ussdc::bind(addr, Family::DeliverSm).await;
            let mut ended = Vec::new();
            for i in 0..900u16 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let price = 10_000 + (b as i64) * 1000 + i64::from(i);
                let session = (i % 250) as u8;
                let after_restart = restarted.load(Ordering::SeqCst);
                let mut screen = u.dial(&msisdn, session).await;
                if !screen.text.contains("Đăng bán hàng") {
                    // Not the household's main menu: how the daemon greets a dial during
                    // the outage. Recorded, and the dialogue left.
                    if !screen.is_final() {
                        u.abort(&msisdn, session).await;
                    }
                    ended.push(Ended { price, after_restart, text: screen.text });
                    continue;
                }
                for input in ["1", "1", "10", &price.to_string(), "1"] {
                    screen = u.answer(&msisdn, session, input).await;
                    if screen.is_final() {
                        break;
                    }
                }
                assert!(screen.is_final(), "bind {b} dialogue {i} did not end: {screen:?}");
                if screen.text.starts_with(SOLD) {
                    if after_restart {
                        sold_after[b].fetch_add(1, Ordering::SeqCst);
                    } else {
                        sold_before.fetch_add(1, Ordering::SeqCst);
                    }
                    progress.notify_one();
                }
                ended.push(Ended { price, after_restart, text: screen.text });
            }
            ended
        });
    }
    // Load on; the restart once 20 listings are confirmed.
    let bound = 3 * PATIENCE;
    tokio::time::timeout(bound, async {
        while sold_before.load(Ordering::SeqCst) < 20 {
            progress.notified().await;
        }
    })
    .await
    .expect("no load before the restart");
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    restarted.store(true, Ordering::SeqCst);
    // Every bind goes on: three listings each, dialled after the restart.
    tokio::time::timeout(bound, async {
        while sold_after.iter().any(|n| n.load(Ordering::SeqCst) < 3) {
            progress.notified().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("dialogues did not continue after the restart:\n{}", d.log_text()));
    stop.store(true, Ordering::SeqCst);
    let mut ended: Vec<Ended> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        ended.extend(r.unwrap());
    }
    d.stop().await;
    let log = d.log_text();
    let lines = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    println!(
        "the daemon's log: {} \"cannot read household\", {} \"group transaction failed\", {} \"cannot \
         open the writer connection\", {} \"market error in a dialogue\"",
        lines("cannot read household"),
        lines("group transaction failed"),
        lines("cannot open the writer connection"),
        lines("market error in a dialogue"),
    );

    // Every dialogue ended on the listing confirmed, or on "busy, try again later".
    let odd: Vec<&Ended> = ended.iter().filter(|e| !e.text.starts_with(SOLD) && e.text != BUSY).collect();
    assert!(odd.is_empty(), "dialogues that ended elsewhere: {odd:#?}");
    // In the database: each confirmed listing once, none twice, each with its event.
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let per_price: HashMap<i64, i64> =
        sqlx::query_as::<_, (i64, i64)>("SELECT price_per_kg, COUNT(*) FROM listings GROUP BY price_per_kg")
            .fetch_all(&mut c)
            .await
            .unwrap()
            .into_iter()
            .collect();
    for e in &ended {
        let n = per_price.get(&e.price).copied().unwrap_or(0);
        if e.text.starts_with(SOLD) {
            assert_eq!(n, 1, "{e:?}: {n} listings");
        } else {
            assert!(n <= 1, "{e:?}: {n} listings");
        }
    }
    let twice: Vec<_> = per_price.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "listings applied twice: {twice:?}");
    let (listings, events): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM listings), \
         (SELECT COUNT(*) FROM events e JOIN listings l ON e.subject = 'listing:' || l.id \
          WHERE e.kind = 'listing_created')",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(listings, events, "a listing without its event, or an event twice");
    let orphan: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events e WHERE e.kind = 'listing_created' \
         AND NOT EXISTS (SELECT 1 FROM listings l WHERE e.subject = 'listing:' || l.id)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(orphan, 0, "an event for a listing that does not exist");
    c.close().await.unwrap();
    let busy = ended.iter().filter(|e| e.text == BUSY).count();
    let sold = ended.len() - busy;
    println!(
        "{} dialogues: {sold} listings confirmed ({} dialled after the restart), {busy} ended \
         \"busy, try again\"",
        ended.len(),
        ended.iter().filter(|e| e.after_restart && e.text.starts_with(SOLD)).count()
    );
    drop(pg);
}
