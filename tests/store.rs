//! The market and its durable store, against real databases: every test runs twice, on a
//! fresh SQLite file in a temporary folder (`sqlite::…`) and on a fresh PostgreSQL database
//! (`postgres::…`) created through `CHOGATE_TEST_POSTGRES_URL`, which `scripts/test.sh`
//! sets after starting a throwaway cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::BufRead;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chogate::args;
use chogate::config::DatabaseConfig;
use chogate::market::{
    Actor, Channel, Household, IdemKey, Lang, ListingChange, ListingStatus, Market, MarketError, Order,
    OrderMove, OrderStatus, ReceiptUpdate,
};
use chogate::store::{Arg, StoreError};
use tokio_util::sync::CancellationToken;

/// A safety net for waits on things that should happen: a hang fails the test instead of
/// blocking CI. Never used to let time pass.
const PATIENCE: Duration = Duration::from_secs(60);

/// Xã Chi Lăng (2025 list).
const CHI_LANG: u32 = 6463;
/// Xã Bắc Sơn (2025 list).
const BAC_SON: u32 = 6325;

// ---- harness ---------------------------------------------------------------------------

use common::db::TestDb;

both_backends!(
    seeds_should_be_present_once,
    any_written_msisdn_should_find_the_same_household,
    each_action_should_record_its_event_with_the_change,
    a_refused_action_should_leave_nothing_and_not_disturb_its_group,
    idempotent_repeat_should_return_the_first_outcome_and_create_nothing,
    order_state_machine_should_allow_only_the_households_moves,
    listing_changes_and_orders_should_track_quantity,
    pin_should_be_set_checked_counted_locked_and_reset,
    self_registration_should_create_the_village_once_and_be_idempotent,
    leader_only_actions_should_be_refused_for_others,
    a_pin_reset_should_need_the_leaders_own_pin_counted_and_locked_as_payments_are,
    concurrent_actions_should_all_commit_in_fewer_transactions,
    stats_should_count_everything,
    a_stopped_writer_should_commit_what_it_had_and_refuse_the_rest,
    a_killed_process_should_leave_every_acknowledged_action_exactly_once,
    two_nodes_sharing_the_database_should_apply_each_key_once,
    messages_past_their_validity_should_be_expired_and_never_claimed,
    unmatched_receipts_should_be_kept_for_their_part_then_dropped_by_the_sweep,
    records_past_the_retention_should_be_pruned_and_the_audit_kept,
    a_pin_hashed_before_the_pepper_should_verify_be_upgraded_and_need_the_pepper,
);

struct Env {
    market: Market,
    shutdown: CancellationToken,
    db: TestDb,
}

impl Env {
    async fn open(db: TestDb) -> Env {
        init_logs();
        let shutdown = CancellationToken::new();
        let market = Market::open(&db.config(), shutdown.clone()).await.unwrap();
        Env { market, shutdown, db }
    }

    /// `SELECT COUNT(*) AS n ...` through the read pool.
    async fn count(&self, sql: &'static str, args: Vec<Arg>) -> i64 {
        let mut r = self.market.store().read().await.unwrap();
        r.conn().fetch_one(sql, args).await.unwrap().int("n").unwrap()
    }

    async fn events(&self, subject: &str) -> Vec<String> {
        let mut r = self.market.store().read().await.unwrap();
        let rows = r
            .conn()
            .fetch_all("SELECT kind FROM events WHERE subject = $1 ORDER BY id", args![subject])
            .await
            .unwrap();
        rows.iter().map(|row| row.text("kind").unwrap()).collect()
    }

    async fn close(self) -> TestDb {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.market.stopped()).await.expect("writer did not stop");
        self.market.store().close().await;
        self.db
    }
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

fn cli() -> Actor {
    Actor::new("test-operator", Channel::Cli)
}

fn ussd(h: &Household) -> Actor {
    Actor::new(h.msisdn.clone(), Channel::Ussd)
}

fn partner() -> Actor {
    Actor::new("vnpost", Channel::Http)
}

fn key(s: impl Into<String>) -> IdemKey {
    IdemKey(s.into())
}

/// A village in Chi Lăng with its leader and one registered household.
async fn village(env: &Env) -> (Household, Household) {
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
    let member = m
        .register_household(&ussd(&leader), key("seed:member"), leader.id, "0912000002", "Lý Thị Na")
        .await
        .unwrap();
    (leader, member)
}

/// An order of `household`'s, moved up to Shipped.
async fn shipped_order(env: &Env, h: &Household, tag: &str) -> Order {
    let m = &env.market;
    let na = m.products().await.unwrap()[0].id;
    let listing = m.create_listing(&ussd(h), key(format!("{tag}:l")), h.id, na, 100, 30_000).await.unwrap();
    let order =
        m.place_order(&partner(), key(format!("{tag}:o")), listing.id, "Shopee", 10, 300_000).await.unwrap();
    m.move_order(&ussd(h), key(format!("{tag}:a")), h.id, order.id, OrderMove::Accept, None).await.unwrap();
    m.move_order(&ussd(h), key(format!("{tag}:s")), h.id, order.id, OrderMove::Ship, None).await.unwrap()
}

fn not_leader<T>(r: &Result<T, MarketError>) -> bool {
    matches!(r, Err(MarketError::NotAllowed(_)))
}

// ---- tests -----------------------------------------------------------------------------

async fn seeds_should_be_present_once(db: TestDb) {
    let env = Env::open(db).await;
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM communes", args![]).await, 65);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM communes WHERE kind = 'phường'", args![]).await, 4);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM districts_2024", args![]).await, 11);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM communes_2024", args![]).await, 194);
    let commune = env.market.commune(CHI_LANG).await.unwrap().unwrap();
    assert_eq!((commune.name.as_str(), commune.kind.as_str()), ("Xã Chi Lăng", "xã"));
    assert_eq!(env.market.commune(5977).await.unwrap().unwrap().kind, "phường");
    assert_eq!(env.market.commune(1).await.unwrap(), None);

    let products = env.market.products().await.unwrap();
    let codes: Vec<&str> = products.iter().map(|p| p.code.as_str()).collect();
    assert_eq!(&codes[..6], ["na", "hoa_hoi", "thach_den", "rau_bo_khai", "lap_suon", "che_van_linh"]);
    assert_eq!((products[0].name_vi.as_str(), products[0].name_en.as_str()), ("Na", "Custard apple"));
    assert!(products.iter().all(|p| p.min_price < p.max_price));
    let unit = |code: &str| products.iter().find(|p| p.code == code).map(|p| p.unit.clone());
    assert_eq!(
        (unit("na"), unit("mat_ong"), unit("rau_bo_khai")),
        (Some("kg".into()), Some("lít".into()), Some("bó".into()))
    );

    // Opening again migrates nothing and seeds nothing twice.
    let db = env.close().await;
    let env = Env::open(db).await;
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM communes", args![]).await, 65);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM communes_2024", args![]).await, 194);
    assert_eq!(env.market.products().await.unwrap().len(), products.len());
    let embedded: Vec<i64> =
        chogate::store::migrations(env.market.backend()).iter().map(|(version, _, _)| *version).collect();
    assert_eq!(env.market.store().applied_migrations().await.unwrap(), embedded);
    env.close().await;
}

async fn any_written_msisdn_should_find_the_same_household(db: TestDb) {
    let env = Env::open(db).await;
    let m = &env.market;
    let leader = m
        .register_leader(
            &cli(),
            key("l"),
            "+84 912 345 678",
            "Hoàng Văn Tổ",
            CHI_LANG,
            "Thôn Nà Lầm",
            Lang::Vi,
        )
        .await
        .unwrap();
    assert_eq!(leader.msisdn, "84912345678");
    for form in ["0912345678", "+84912345678", "84912345678", "84 912 345 678", "0912.345.678"] {
        assert_eq!(m.household_by_msisdn(form).await.unwrap().as_ref(), Some(&leader), "{form}");
    }
    assert_eq!(m.household_by_msisdn("0987654321").await.unwrap(), None);
    assert!(matches!(
        m.household_by_msisdn("12345").await,
        Err(MarketError::Invalid { field: "msisdn", .. })
    ));
    // The same number written differently is one registration.
    let again = m.register_household(&cli(), key("h"), leader.id, "0912 345 678", "Someone").await;
    assert!(matches!(again, Err(MarketError::AlreadyRegistered)), "{again:?}");
    env.close().await;
}

async fn each_action_should_record_its_event_with_the_change(db: TestDb) {
    let env = Env::open(db).await;
    let m = &env.market;
    let (leader, h) = village(&env).await;
    assert_eq!(env.events(&format!("household:{}", leader.id)).await, ["leader_registered"]);
    assert_eq!(env.events(&format!("household:{}", h.id)).await, ["household_registered"]);

    let na = m.products().await.unwrap()[0].id;
    let listing = m.create_listing(&ussd(&h), key("k1"), h.id, na, 200, 35_000).await.unwrap();
    m.update_listing(&ussd(&h), key("k2"), h.id, listing.id, ListingChange::Price(40_000)).await.unwrap();
    let order = m.place_order(&partner(), key("k3"), listing.id, "Shopee", 50, 2_000_000).await.unwrap();
    m.move_order(&ussd(&h), key("k4"), h.id, order.id, OrderMove::Accept, None).await.unwrap();
    m.move_order(&ussd(&h), key("k5"), h.id, order.id, OrderMove::Ship, None).await.unwrap();
    m.mark_delivered(&partner(), key("k6"), order.id).await.unwrap();
    m.set_pin(&ussd(&h), key("k7"), h.id, "2468").await.unwrap();
    m.confirm_payment(&ussd(&h), key("k8"), h.id, order.id, "2468").await.unwrap();
    m.set_pin(&ussd(&leader), key("k9p"), leader.id, "1357").await.unwrap();
    m.reset_pin(&ussd(&leader), key("k9"), leader.id, "1357", &h.msisdn).await.unwrap();

    assert_eq!(
        env.events(&format!("listing:{}", listing.id)).await,
        ["listing_created", "listing_price_changed"]
    );
    assert_eq!(
        env.events(&format!("order:{}", order.id)).await,
        ["order_placed", "order_accepted", "order_shipped", "order_delivered", "order_paid"]
    );
    assert_eq!(
        env.events(&format!("household:{}", h.id)).await,
        ["household_registered", "pin_set", "pin_reset"]
    );
    // The SMS to the household (its welcome, the new order; the delivery and the PIN
    // reset, which others did) were queued with their events.
    let mut r = m.store().read().await.unwrap();
    let kinds: Vec<String> = r
        .conn()
        .fetch_all("SELECT kind, msisdn FROM outbox ORDER BY id", args![])
        .await
        .unwrap()
        .iter()
        .map(|row| {
            assert_eq!(row.text("msisdn").unwrap(), h.msisdn);
            row.text("kind").unwrap()
        })
        .collect();
    drop(r);
    assert_eq!(kinds, ["welcome", "order_new", "order_delivered", "pin_reset"]);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM events WHERE kind = 'sms_queued'", args![]).await, 4);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM payments", args![]).await, 1);

    // Who, channel, when.
    let mut r = m.store().read().await.unwrap();
    let row = r
        .conn()
        .fetch_one(
            "SELECT actor, channel, at_ms FROM events WHERE kind = 'order_accepted' AND subject = $1",
            args![format!("order:{}", order.id)],
        )
        .await
        .unwrap();
    assert_eq!(row.text("actor").unwrap(), h.msisdn);
    assert_eq!(row.text("channel").unwrap(), "ussd");
    assert!(row.int("at_ms").unwrap() >= order.created_at_ms);
    let row = r
        .conn()
        .fetch_one("SELECT actor, channel FROM events WHERE kind = 'order_placed'", args![])
        .await
        .unwrap();
    assert_eq!(
        (row.text("actor").unwrap().as_str(), row.text("channel").unwrap().as_str()),
        ("vnpost", "http")
    );
    drop(r);

    // The audit log is append-only.
    let mut r = m.store().read().await.unwrap();
    assert!(r.conn().execute("UPDATE events SET kind = 'x'", args![]).await.is_err());
    assert!(r.conn().execute("DELETE FROM events", args![]).await.is_err());
    drop(r);
    env.close().await;
}

async fn a_refused_action_should_leave_nothing_and_not_disturb_its_group(db: TestDb) {
    let env = Env::open(db).await;
    let (_, h) = village(&env).await;
    let na = env.market.products().await.unwrap()[0].id;
    let events_before = env.count("SELECT COUNT(*) AS n FROM events", args![]).await;
    // Good and bad actions interleaved and concurrent, so that they share groups.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60_i64 {
        let m = env.market.clone();
        let actor = ussd(&h);
        let hid = h.id;
        tasks.spawn(async move {
            let product = if i % 2 == 0 { na } else { 999_999 };
            (i, m.create_listing(&actor, key(format!("mixed:{i}")), hid, product, 10 + i, 20_000).await)
        });
    }
    let mut good = 0;
    while let Some(r) = tasks.join_next().await {
        let (i, result) = r.unwrap();
        if i % 2 == 0 {
            assert_eq!(result.unwrap().quantity_kg, 10 + i);
            good += 1;
        } else {
            assert!(matches!(result, Err(MarketError::NotFound("product"))), "{result:?}");
        }
    }
    assert_eq!(good, 30);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM listings", args![]).await, 30);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM events", args![]).await, events_before + 30);
    // Refusals are not remembered: the keys of the refused ones are free.
    assert_eq!(
        env.count("SELECT COUNT(*) AS n FROM idempotency_keys WHERE idem_key LIKE 'mixed:%'", args![]).await,
        30
    );
    let retried = env.market.create_listing(&ussd(&h), key("mixed:1"), h.id, na, 5, 20_000).await.unwrap();
    assert_eq!(retried.quantity_kg, 5);
    // Validation refusals never reach the writer.
    for (q, p) in [(0, 20_000), (100_001, 20_000), (10, 999), (10, 100_000_001)] {
        let r = env.market.create_listing(&ussd(&h), key(format!("bad:{q}:{p}")), h.id, na, q, p).await;
        assert!(matches!(r, Err(MarketError::Invalid { .. })), "{q} {p}: {r:?}");
    }
    let r = env.market.create_listing(&ussd(&h), key("nobody"), 999_999, na, 10, 20_000).await;
    assert!(matches!(r, Err(MarketError::NotFound("household"))), "{r:?}");
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM listings", args![]).await, 31);
    assert_eq!(env.market.writer_counters().failed_groups, 0);
    env.close().await;
}

async fn idempotent_repeat_should_return_the_first_outcome_and_create_nothing(db: TestDb) {
    let env = Env::open(db).await;
    let m = &env.market;
    let (_, h) = village(&env).await;
    let na = m.products().await.unwrap()[0].id;
    let first = m.create_listing(&ussd(&h), key("dialogue-7:step-3"), h.id, na, 100, 30_000).await.unwrap();
    assert_eq!(first.code, format!("L{:06}", first.id));
    assert_eq!(first.status, ListingStatus::Active);
    let events = env.count("SELECT COUNT(*) AS n FROM events", args![]).await;
    let by_kind = m.events_by_kind().await.unwrap();
    // A retransmitted step, even with other arguments, returns the first listing.
    let again = m.create_listing(&ussd(&h), key("dialogue-7:step-3"), h.id, na, 999, 99_000).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM listings", args![]).await, 1);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM events", args![]).await, events);
    assert_eq!(m.events_by_kind().await.unwrap(), by_kind, "a replay counted its events");

    // Many copies at once (they share a group): one listing.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (m, actor, hid) = (m.clone(), ussd(&h), h.id);
        tasks.spawn(
            async move { m.create_listing(&actor, key("burst"), hid, na, 7, 30_000).await.unwrap().id },
        );
    }
    let ids: HashSet<i64> = tasks.join_all().await.into_iter().collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM listings", args![]).await, 2);

    // The repeat re-reads: it shows the listing as it is now.
    m.update_listing(&ussd(&h), key("stop"), h.id, first.id, ListingChange::Stop).await.unwrap();
    let replay = m.create_listing(&ussd(&h), key("dialogue-7:step-3"), h.id, na, 100, 30_000).await.unwrap();
    assert_eq!((replay.id, replay.status), (first.id, ListingStatus::Stopped));
    // A repeat that running again would refuse (the listing is stopped now) replays as well.
    let stopped_again =
        m.update_listing(&ussd(&h), key("stop"), h.id, first.id, ListingChange::Stop).await.unwrap();
    assert_eq!((stopped_again.id, stopped_again.status), (first.id, ListingStatus::Stopped));
    // And a new key is refused.
    let refused = m.update_listing(&ussd(&h), key("stop-2"), h.id, first.id, ListingChange::Stop).await;
    assert!(matches!(refused, Err(MarketError::NotAllowed(_))), "{refused:?}");

    // A key belongs to one action.
    let other =
        m.update_listing(&ussd(&h), key("dialogue-7:step-3"), h.id, first.id, ListingChange::Stop).await;
    assert!(matches!(other, Err(MarketError::NotAllowed(_))), "{other:?}");

    // Orders too: a partner's retried call places one order and queues one SMS.
    let listing = m.create_listing(&ussd(&h), key("l2"), h.id, na, 100, 30_000).await.unwrap();
    let o1 = m.place_order(&partner(), key("shopee:req-1"), listing.id, "Shopee", 10, 300_000).await.unwrap();
    let o2 = m.place_order(&partner(), key("shopee:req-1"), listing.id, "Shopee", 10, 300_000).await.unwrap();
    assert_eq!(o1, o2);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM orders", args![]).await, 1);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'order_new'", args![]).await, 1);
    assert_eq!(m.listing(h.id, listing.id).await.unwrap().quantity_kg, 90);

    // Registration: the same household back.
    let leader = m.household_by_msisdn("0912000001").await.unwrap().unwrap();
    let a = m.register_household(&cli(), key("reg"), leader.id, "0912000003", "A").await.unwrap();
    let b = m.register_household(&cli(), key("reg"), leader.id, "0912000003", "A").await.unwrap();
    assert_eq!(a, b);
    // Keys survive a restart.
    let db = env.close().await;
    let env = Env::open(db).await;
    let replay =
        env.market.create_listing(&ussd(&h), key("dialogue-7:step-3"), h.id, na, 1, 1000).await.unwrap();
    assert_eq!(replay.id, first.id);
    env.close().await;
}

async fn order_state_machine_should_allow_only_the_households_moves(db: TestDb) {
    use OrderStatus::*;
    let env = Env::open(db).await;
    let m = &env.market;
    let (leader, h) = village(&env).await;
    let na = m.products().await.unwrap()[0].id;
    let listing = m.create_listing(&ussd(&h), key("l"), h.id, na, 100, 30_000).await.unwrap();
    let o1 = m.place_order(&partner(), key("o1"), listing.id, "Shopee", 10, 300_000).await.unwrap();
    let o2 = m.place_order(&partner(), key("o2"), listing.id, "Lazada", 20, 600_000).await.unwrap();
    assert_eq!((o1.status, o1.code.clone()), (New, format!("D{:06}", o1.id)));
    let open: Vec<i64> = m.open_orders(h.id).await.unwrap().iter().map(|o| o.id).collect();
    assert_eq!(open, [o2.id, o1.id], "newest first");

    let mv = |k: &str, o: &Order, to| {
        let (m, a, k, hid, oid) = (m.clone(), ussd(&h), key(k), h.id, o.id);
        async move { m.move_order(&a, k, hid, oid, to, None).await }
    };
    let refused = |r: Result<Order, MarketError>| matches!(r, Err(MarketError::OrderState { .. }));
    assert!(refused(mv("a", &o1, OrderMove::Ship).await));
    assert!(refused(mv("c", &o1, OrderMove::Deliver).await));
    assert!(matches!(mv("b", &o1, OrderMove::Pay).await, Err(MarketError::NotAllowed(_))));
    assert!(matches!(
        mv("e", &o1, OrderMove::Cancel).await,
        Err(MarketError::Invalid { field: "reason", .. })
    ));
    assert_eq!(mv("f", &o1, OrderMove::Accept).await.unwrap().status, Accepted);
    assert!(refused(mv("g", &o1, OrderMove::Accept).await));
    assert!(refused(mv("h", &o1, OrderMove::Reject).await));
    assert_eq!(mv("i", &o1, OrderMove::Ship).await.unwrap().status, Shipped);
    assert!(m.open_orders(h.id).await.unwrap().iter().all(|o| o.id != o1.id));
    assert_eq!(m.orders_awaiting_payment(h.id).await.unwrap()[0].id, o1.id);
    // Only a shipped order can be delivered.
    let r = m.mark_delivered(&partner(), key("j"), o2.id).await;
    assert!(matches!(r, Err(MarketError::OrderState { .. })), "{r:?}");
    assert_eq!(m.mark_delivered(&partner(), key("k"), o1.id).await.unwrap().status, Delivered);
    let r = mv("l2", &o1, OrderMove::Ship).await;
    assert!(matches!(r, Err(MarketError::OrderState { .. })), "{r:?}");
    // Rejecting puts the quantity back on offer.
    assert_eq!(m.listing(h.id, listing.id).await.unwrap().quantity_kg, 70);
    assert_eq!(mv("m", &o2, OrderMove::Reject).await.unwrap().status, Rejected);
    assert_eq!(m.listing(h.id, listing.id).await.unwrap().quantity_kg, 90);
    assert!(refused(mv("n", &o2, OrderMove::Accept).await));
    // Someone else's order does not exist for this household.
    let r = m.move_order(&ussd(&leader), key("o"), leader.id, o1.id, OrderMove::Accept, None).await;
    assert!(matches!(r, Err(MarketError::NotFound("order"))), "{r:?}");
    assert!(matches!(m.order(leader.id, o1.id).await, Err(MarketError::NotFound("order"))));
    assert_eq!(m.order(h.id, o1.id).await.unwrap().status, Delivered);
    let r = m.move_order(&ussd(&h), key("p"), h.id, 999_999, OrderMove::Accept, None).await;
    assert!(matches!(r, Err(MarketError::NotFound("order"))), "{r:?}");
    env.close().await;
}

async fn listing_changes_and_orders_should_track_quantity(db: TestDb) {
    let env = Env::open(db).await;
    let m = &env.market;
    let (leader, h) = village(&env).await;
    let products = m.products().await.unwrap();
    let anise = products.iter().find(|p| p.code == "hoa_hoi").unwrap();
    let l = m.create_listing(&ussd(&h), key("l"), h.id, anise.id, 30, 120_000).await.unwrap();
    assert_eq!((l.product_name_vi.as_str(), l.product_name_en.as_str()), ("Hoa hồi", "Star anise"));
    let l = m.update_listing(&ussd(&h), key("p"), h.id, l.id, ListingChange::Price(110_000)).await.unwrap();
    assert_eq!(l.price_per_kg, 110_000);
    let r = m.update_listing(&ussd(&h), key("bad"), h.id, l.id, ListingChange::Price(10)).await;
    assert!(matches!(r, Err(MarketError::Invalid { field: "price_per_kg", .. })), "{r:?}");
    // Not this household's listing.
    let r = m.update_listing(&ussd(&leader), key("x"), leader.id, l.id, ListingChange::Stop).await;
    assert!(matches!(r, Err(MarketError::NotFound("listing"))), "{r:?}");
    // Ordering more than is on offer is refused; all of it sells the listing out.
    let r = m.place_order(&partner(), key("o0"), l.id, "Shopee", 31, 1_000_000).await;
    assert!(matches!(r, Err(MarketError::Invalid { field: "quantity_kg", .. })), "{r:?}");
    // The amount is the listing's price (110.000đ/kg, as changed) times the quantity.
    let r = m.place_order(&partner(), key("o-cheap"), l.id, "Shopee", 30, 3_600_000).await;
    assert!(
        matches!(&r, Err(MarketError::Invalid { field: "amount", reason }) if reason.contains("3300000")),
        "{r:?}"
    );
    let o = m.place_order(&partner(), key("o1"), l.id, "Shopee", 30, 3_300_000).await.unwrap();
    assert_eq!((o.unit.as_str(), o.buyer_phone.as_ref(), o.delivery.as_ref()), ("kg", None, None));
    assert_eq!(m.listing(h.id, l.id).await.unwrap().status, ListingStatus::SoldOut);
    assert!(m.listings(h.id).await.unwrap().is_empty());
    let r = m.place_order(&partner(), key("o2"), l.id, "Shopee", 1, 110_000).await;
    assert!(matches!(r, Err(MarketError::NotAllowed(_))), "{r:?}");
    // The household hears of the order in its language.
    let mut r = m.store().read().await.unwrap();
    let row = r
        .conn()
        .fetch_one("SELECT msisdn, text, lang, status FROM outbox WHERE kind = 'order_new'", args![])
        .await
        .unwrap();
    drop(r);
    assert_eq!(row.text("msisdn").unwrap(), h.msisdn);
    assert_eq!(row.text("lang").unwrap(), "vi");
    assert_eq!(row.text("status").unwrap(), "queued");
    let text = row.text("text").unwrap();
    assert!(text.contains(&o.code) && text.contains("Hoa hồi") && text.contains("3.300.000"), "{text}");
    // More stock makes it active again; rejecting adds the order's quantity back.
    let l = m.update_listing(&ussd(&h), key("q"), h.id, l.id, ListingChange::Quantity(5)).await.unwrap();
    assert_eq!((l.quantity_kg, l.status), (5, ListingStatus::Active));
    m.move_order(&ussd(&h), key("rej"), h.id, o.id, OrderMove::Reject, None).await.unwrap();
    assert_eq!(m.listing(h.id, l.id).await.unwrap().quantity_kg, 35);
    let listed: Vec<i64> = m.listings(h.id).await.unwrap().iter().map(|l| l.id).collect();
    assert_eq!(listed, [l.id]);
    // A stopped listing is off the list and cannot change.
    let stopped = m.update_listing(&ussd(&h), key("s"), h.id, l.id, ListingChange::Stop).await.unwrap();
    assert_eq!(stopped.status, ListingStatus::Stopped);
    assert!(m.listings(h.id).await.unwrap().is_empty());
    let r = m.update_listing(&ussd(&h), key("s2"), h.id, l.id, ListingChange::Quantity(3)).await;
    assert!(matches!(r, Err(MarketError::NotAllowed(_))), "{r:?}");
    env.close().await;
}

async fn pin_should_be_set_checked_counted_locked_and_reset(db: TestDb) {
    let env = Env::open(db).await;
    let m = &env.market;
    let (leader, h) = village(&env).await;
    let a = ussd(&h);
    let o1 = shipped_order(&env, &h, "o1").await;
    let o2 = shipped_order(&env, &h, "o2").await;
    let o3 = shipped_order(&env, &h, "o3").await;

    let r = m.confirm_payment(&a, key("c0"), h.id, o1.id, "1357").await;
    assert!(matches!(r, Err(MarketError::PinNotSet)), "{r:?}");
    for bad in ["123", "12345", "12a4", ""] {
        let r = m.set_pin(&a, key(format!("bad:{bad}")), h.id, bad).await;
        assert!(matches!(r, Err(MarketError::Invalid { field: "pin", .. })), "{bad}: {r:?}");
    }
    m.set_pin(&a, key("pin"), h.id, "1357").await.unwrap();
    m.set_pin(&a, key("pin"), h.id, "1357").await.unwrap(); // a repeat is fine
    assert!(m.household(h.id).await.unwrap().unwrap().has_pin);
    let r = m.set_pin(&a, key("pin2"), h.id, "2468").await;
    assert!(matches!(r, Err(MarketError::NotAllowed(_))), "{r:?}");

    // Wrong PINs are counted durably; a repeated step is not counted twice.
    let r = m.confirm_payment(&a, key("w1"), h.id, o1.id, "0000").await;
    assert!(matches!(r, Err(MarketError::PinWrong { remaining: 4 })), "{r:?}");
    let r = m.confirm_payment(&a, key("w1"), h.id, o1.id, "0000").await;
    assert!(matches!(r, Err(MarketError::PinWrong { remaining: 4 })), "{r:?}");
    let r = m.confirm_payment(&a, key("w2"), h.id, o1.id, "9999").await;
    assert!(matches!(r, Err(MarketError::PinWrong { remaining: 3 })), "{r:?}");
    // The right PIN pays and starts the count afresh.
    let paid = m.confirm_payment(&a, key("ok1"), h.id, o1.id, "1357").await.unwrap();
    assert_eq!(paid.status, OrderStatus::Paid);
    // The household's earnings (sums read back as integers on both backends).
    let sales = m.sales(h.id).await.unwrap();
    assert_eq!((sales.month_orders, sales.month_amount, sales.all_orders), (1, paid.amount, 1));
    assert_eq!(sales.all_amount, paid.amount);
    assert_eq!(m.confirm_payment(&a, key("ok1"), h.id, o1.id, "1357").await.unwrap(), paid);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM payments", args![]).await, 1);
    let r = m.confirm_payment(&a, key("again"), h.id, o1.id, "1357").await;
    assert!(matches!(r, Err(MarketError::OrderState { .. })), "paid twice: {r:?}");

    // Five wrong in a row lock payment confirmation for 15 minutes.
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    for (i, remaining) in [4, 3, 2, 1].into_iter().enumerate() {
        let r = m.confirm_payment(&a, key(format!("x{i}")), h.id, o2.id, "1111").await;
        assert!(matches!(r, Err(MarketError::PinWrong { remaining: n }) if n == remaining), "{r:?}");
    }
    let r = m.confirm_payment(&a, key("x4"), h.id, o2.id, "1111").await;
    let Err(MarketError::PinLocked { until_ms }) = r else { panic!("expected PinLocked, got {r:?}") };
    assert!(until_ms >= before + 15 * 60 * 1000 && until_ms < before + 16 * 60 * 1000, "{until_ms}");
    // Locked: even the right PIN is refused, and nothing is counted.
    let r = m.confirm_payment(&a, key("x5"), h.id, o2.id, "1357").await;
    assert!(matches!(r, Err(MarketError::PinLocked { .. })), "{r:?}");
    // The lock is durable.
    let db = env.close().await;
    let env = Env::open(db).await;
    let m = &env.market;
    let r = m.confirm_payment(&a, key("x6"), h.id, o2.id, "1357").await;
    assert!(matches!(r, Err(MarketError::PinLocked { .. })), "{r:?}");
    let r = m.confirm_payment(&a, key("x4"), h.id, o2.id, "1111").await;
    assert!(matches!(r, Err(MarketError::PinLocked { until_ms: u }) if u == until_ms), "replayed: {r:?}");

    // The leader resets it, with their own PIN: hash, count and lock gone; a new PIN works.
    let r = m.reset_pin(&ussd(&h), key("r0"), h.id, "1357", &leader.msisdn).await;
    assert!(matches!(r, Err(MarketError::NotAllowed(_))), "not a leader: {r:?}");
    m.set_pin(&ussd(&leader), key("lp"), leader.id, "2580").await.unwrap();
    m.reset_pin(&ussd(&leader), key("r1"), leader.id, "2580", &h.msisdn).await.unwrap();
    assert!(!m.household(h.id).await.unwrap().unwrap().has_pin);
    let r = m.confirm_payment(&a, key("y0"), h.id, o2.id, "1357").await;
    assert!(matches!(r, Err(MarketError::PinNotSet)), "{r:?}");
    m.set_pin(&a, key("pin3"), h.id, "8642").await.unwrap();
    assert_eq!(
        m.confirm_payment(&a, key("y1"), h.id, o2.id, "8642").await.unwrap().status,
        OrderStatus::Paid
    );
    // A delivered order is payable too.
    m.mark_delivered(&partner(), key("d3"), o3.id).await.unwrap();
    assert_eq!(
        m.confirm_payment(&a, key("y2"), h.id, o3.id, "8642").await.unwrap().status,
        OrderStatus::Paid
    );

    // No PIN anywhere but as a salted hash.
    let mut r = m.store().read().await.unwrap();
    let hash = r
        .conn()
        .fetch_one("SELECT pin_hash FROM households WHERE id = $1", args![h.id])
        .await
        .unwrap()
        .text("pin_hash")
        .unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains("8642"), "{hash}");
    let rows = r.conn().fetch_all("SELECT CAST(data AS TEXT) AS data FROM events", args![]).await.unwrap();
    drop(r);
    for row in rows {
        let data = row.text("data").unwrap();
        assert!(!data.contains("\"pin\""), "PIN in the audit log: {data}");
        for pin in ["1357", "8642", "1111", "0000", "9999"] {
            assert!(!data.contains(&format!("\"{pin}\"")), "PIN in the audit log: {data}");
        }
    }
    env.close().await;
}

async fn self_registration_should_create_the_village_once_and_be_idempotent(db: TestDb) {
    let env = Env::open(db).await;
    let m = &env.market;
    let who = |msisdn: &str| Actor::new(msisdn, Channel::Ussd);
    let a = m
        .self_register(
            &who("84983000001"),
            key("d1:s5"),
            "0983000001",
            BAC_SON,
            "Thôn  Khuổi  Bó",
            "Nông Văn A",
            Lang::En,
        )
        .await
        .unwrap();
    assert_eq!((a.msisdn.as_str(), a.village_name.as_str()), ("84983000001", "Thôn Khuổi Bó"));
    assert_eq!((a.commune_code, a.commune_name.as_str()), (BAC_SON, "Xã Bắc Sơn"));
    assert_eq!((a.language, a.is_leader, a.has_pin, a.has_epay), (Lang::En, false, false, false));
    // The resumed dialogue repeats the step: the same household, nothing new.
    let again = m
        .self_register(
            &who("84983000001"),
            key("d1:s5"),
            "0983000001",
            BAC_SON,
            "Thôn Khuổi Bó",
            "Nông Văn A",
            Lang::En,
        )
        .await
        .unwrap();
    assert_eq!(again, a);
    // Another spelling of the village is the same village.
    let b = m
        .self_register(
            &who("84983000002"),
            key("d2:s5"),
            "0983000002",
            BAC_SON,
            "thôn khuổi bó",
            "Nông Thị B",
            Lang::Vi,
        )
        .await
        .unwrap();
    assert_eq!(b.village_id, a.village_id);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM villages", args![]).await, 1);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM households", args![]).await, 2);
    assert_eq!(
        env.count("SELECT COUNT(*) AS n FROM events WHERE kind = 'village_created'", args![]).await,
        1
    );
    assert_eq!(
        env.count("SELECT COUNT(*) AS n FROM events WHERE kind = 'household_self_registered'", args![]).await,
        2
    );
    // Pending until the village has a leader who confirms.
    let pending = "SELECT COUNT(*) AS n FROM villages WHERE pending = $1";
    assert_eq!(env.count(pending, args![true]).await, 1);
    assert_eq!(m.leader_of(a.id).await.unwrap(), None);
    // The same village in another commune is another village.
    let c = m
        .self_register(
            &who("84983000003"),
            key("d3:s5"),
            "0983000003",
            CHI_LANG,
            "Thôn Khuổi Bó",
            "C",
            Lang::Vi,
        )
        .await
        .unwrap();
    assert_ne!(c.village_id, a.village_id);

    let r = m
        .self_register(&who("x"), key("d4"), "0983000001", BAC_SON, "Thôn Khuổi Bó", "Again", Lang::Vi)
        .await;
    assert!(matches!(r, Err(MarketError::AlreadyRegistered)), "{r:?}");
    let r = m.self_register(&who("x"), key("d5"), "0983000009", 1, "Thôn X", "X", Lang::Vi).await;
    assert!(matches!(r, Err(MarketError::NotFound("commune"))), "{r:?}");
    let r = m.self_register(&who("x"), key("d6"), "0983000009", BAC_SON, "   ", "X", Lang::Vi).await;
    assert!(matches!(r, Err(MarketError::Invalid { field: "village_name", .. })), "{r:?}");
    let r = m.self_register(&who("x"), key("d7"), "12345", BAC_SON, "Thôn X", "X", Lang::Vi).await;
    assert!(matches!(r, Err(MarketError::Invalid { field: "msisdn", .. })), "{r:?}");

    // A leader for the village: the households see their leader; the village is confirmed.
    let leader = m
        .register_leader(&cli(), key("lead"), "0983000010", "Tổ trưởng", BAC_SON, "THÔN KHUỔI BÓ", Lang::Vi)
        .await
        .unwrap();
    assert_eq!(leader.village_id, a.village_id);
    assert!(leader.is_leader);
    assert_eq!(env.count(pending, args![true]).await, 1, "only Chi Lăng's is still pending");
    let seen = m.leader_of(a.id).await.unwrap().unwrap();
    assert_eq!((seen.name.as_str(), seen.msisdn.as_str()), ("Tổ trưởng", "84983000010"));
    // A later self-registration names the leader in its event.
    let d = m
        .self_register(&who("84983000004"), key("d8"), "0983000004", BAC_SON, "Thôn Khuổi Bó", "D", Lang::Vi)
        .await
        .unwrap();
    let mut r = m.store().read().await.unwrap();
    let data = r
        .conn()
        .fetch_one(
            "SELECT CAST(data AS TEXT) AS data FROM events WHERE kind = 'household_self_registered' AND subject = $1",
            args![format!("household:{}", d.id)],
        )
        .await
        .unwrap()
        .text("data")
        .unwrap();
    drop(r);
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["leader_household_id"], leader.id);
    env.close().await;
}

async fn leader_only_actions_should_be_refused_for_others(db: TestDb) {
    let env = Env::open(db).await;
    let m = &env.market;
    let (leader, h) = village(&env).await;
    assert!(leader.is_leader && !h.is_leader);
    let r = m.register_household(&ussd(&h), key("a"), h.id, "0912000009", "X").await;
    assert!(not_leader(&r), "{r:?}");
    let r = m.reset_pin(&ussd(&h), key("b"), h.id, "1234", &leader.msisdn).await;
    assert!(not_leader(&r), "{r:?}");
    let r = m.village_progress(h.id).await;
    assert!(not_leader(&r), "{r:?}");
    assert!(matches!(m.village_progress(999_999).await, Err(MarketError::NotFound("household"))));
    // A second leader for the village is refused; a leader elsewhere leads only there.
    let r =
        m.register_leader(&cli(), key("c"), "0912000005", "Other", CHI_LANG, "thôn nà lầm", Lang::Vi).await;
    assert!(not_leader(&r), "{r:?}");
    let r =
        m.register_leader(&cli(), key("c2"), "0912000001", "Same", CHI_LANG, "Thôn Nà Lầm", Lang::Vi).await;
    assert!(matches!(r, Err(MarketError::AlreadyRegistered)), "{r:?}");
    let other = m
        .register_leader(&cli(), key("d"), "0912000006", "Bế Văn Tổ", BAC_SON, "Bản Chắt", Lang::Vi)
        .await
        .unwrap();
    let r = m.reset_pin(&ussd(&other), key("e"), other.id, "1234", &h.msisdn).await;
    assert!(not_leader(&r), "other village: {r:?}");
    let r = m.reset_pin(&ussd(&leader), key("f"), leader.id, "1234", "0999999999").await;
    assert!(matches!(r, Err(MarketError::NotFound("household"))), "{r:?}");
    let r = m.register_household(&ussd(&leader), key("g"), leader.id, &h.msisdn, "Again").await;
    assert!(matches!(r, Err(MarketError::AlreadyRegistered)), "{r:?}");
    // A household of the village can be made its leader... once the village has none.
    let r = m.register_household(&ussd(&other), key("h"), other.id, "0912000007", "Member").await.unwrap();
    assert_eq!(r.village_id, other.village_id);

    // The leader's view.
    let na = m.products().await.unwrap()[0].id;
    m.create_listing(&ussd(&h), key("l1"), h.id, na, 10, 30_000).await.unwrap();
    m.create_listing(&ussd(&h), key("l2"), h.id, na, 10, 30_000).await.unwrap();
    let with_epay = m.set_epay(&cli(), key("epay"), h.id, true).await.unwrap();
    assert!(with_epay.has_epay);
    let r = m.set_epay(&cli(), key("epay2"), 999_999, true).await;
    assert!(matches!(r, Err(MarketError::NotFound("household"))), "{r:?}");
    let p = m.village_progress(leader.id).await.unwrap();
    assert_eq!(
        (p.village_name.as_str(), p.households, p.with_listing, p.with_epay),
        ("Thôn Nà Lầm", 2, 1, 1)
    );
    let all: Vec<i64> = m.households().await.unwrap().iter().map(|h| h.id).collect();
    assert_eq!(all.len(), 4);
    assert!(all.contains(&h.id) && all.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(m.leader_of(h.id).await.unwrap().unwrap().msisdn, leader.msisdn);
    assert_eq!(m.leader_of(leader.id).await.unwrap().unwrap().msisdn, leader.msisdn);
    env.close().await;
}

async fn a_pin_reset_should_need_the_leaders_own_pin_counted_and_locked_as_payments_are(db: TestDb) {
    let env = Env::open(db).await;
    let m = &env.market;
    let (leader, h) = village(&env).await;
    let l = ussd(&leader);
    m.set_pin(&ussd(&h), key("hp"), h.id, "4321").await.unwrap();
    let has_pin = |id| async move { m.household(id).await.unwrap().unwrap().has_pin };
    // A leader without a PIN cannot reset one.
    let r = m.reset_pin(&l, key("n0"), leader.id, "1234", &h.msisdn).await;
    assert!(matches!(r, Err(MarketError::PinNotSet)), "{r:?}");
    m.set_pin(&l, key("lp"), leader.id, "2580").await.unwrap();
    // A wrong PIN resets nothing and is counted; the right one resets and clears the count.
    let r = m.reset_pin(&l, key("w"), leader.id, "0000", &h.msisdn).await;
    assert!(matches!(r, Err(MarketError::PinWrong { remaining: 4 })), "{r:?}");
    assert!(has_pin(h.id).await);
    m.reset_pin(&l, key("ok"), leader.id, "2580", &h.msisdn).await.unwrap();
    assert!(!has_pin(h.id).await);
    m.set_pin(&ussd(&h), key("hp2"), h.id, "4321").await.unwrap();
    // Wrong PINs (the household's own among them) are counted afresh, durably, and a
    // repeat is replayed, not checked again.
    for (i, (pin, remaining)) in [("4321", 4), ("0000", 3), ("25801", 2), ("abcd", 1)].into_iter().enumerate()
    {
        let r = m.reset_pin(&l, key(format!("w{i}")), leader.id, pin, &h.msisdn).await;
        assert!(matches!(r, Err(MarketError::PinWrong { remaining: n }) if n == remaining), "{pin}: {r:?}");
    }
    let r = m.reset_pin(&l, key("w3"), leader.id, "2580", &h.msisdn).await;
    assert!(matches!(r, Err(MarketError::PinWrong { remaining: 1 })), "replayed: {r:?}");
    let r = m.reset_pin(&l, key("w4"), leader.id, "1111", &h.msisdn).await;
    assert!(matches!(r, Err(MarketError::PinLocked { .. })), "the fifth locks: {r:?}");
    // Locked: the right PIN is refused too, for resets and payments alike.
    let r = m.reset_pin(&l, key("w5"), leader.id, "2580", &h.msisdn).await;
    assert!(matches!(r, Err(MarketError::PinLocked { .. })), "{r:?}");
    let o = shipped_order(&env, &leader, "lo").await;
    let r = m.confirm_payment(&l, key("w6"), leader.id, o.id, "2580").await;
    assert!(matches!(r, Err(MarketError::PinLocked { .. })), "{r:?}");
    assert!(has_pin(h.id).await);
    let pin_events: Vec<String> = env
        .events(&format!("household:{}", leader.id))
        .await
        .into_iter()
        .filter(|k| k.starts_with("pin_"))
        .collect();
    assert_eq!(
        pin_events,
        ["pin_set", "pin_wrong", "pin_wrong", "pin_wrong", "pin_wrong", "pin_wrong", "pin_locked"]
    );
    env.close().await;
}

async fn concurrent_actions_should_all_commit_in_fewer_transactions(db: TestDb) {
    const N: i64 = 500;
    let env = Env::open(db).await;
    let (_, h) = village(&env).await;
    let na = env.market.products().await.unwrap()[0].id;
    let before = env.market.writer_counters();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let (m, actor, hid) = (env.market.clone(), ussd(&h), h.id);
        tasks.spawn(
            async move { m.create_listing(&actor, key(format!("c:{i}")), hid, na, 1 + i, 25_000).await },
        );
    }
    let ids: HashSet<i64> = tokio::time::timeout(PATIENCE, tasks.join_all())
        .await
        .expect("actions did not finish")
        .into_iter()
        .map(|r| r.unwrap().id)
        .collect();
    let elapsed = started.elapsed();
    let after = env.market.writer_counters();
    assert_eq!(ids.len() as i64, N);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM listings", args![]).await, N);
    assert_eq!(
        env.count("SELECT COUNT(*) AS n FROM events WHERE kind = 'listing_created'", args![]).await,
        N
    );
    let commits = after.commits - before.commits;
    let actions = after.actions - before.actions;
    eprintln!(
        "{:?}: {N} concurrent create_listing in {elapsed:?}: {commits} commits, largest group {}",
        env.market.backend(),
        after.largest_group
    );
    assert_eq!(actions, N as u64);
    assert!(commits < N as u64, "group commit did not batch: {commits} commits for {N} actions");
    assert!(after.largest_group > 1);
    env.close().await;
}

async fn stats_should_count_everything(db: TestDb) {
    let env = Env::open(db).await;
    let m = &env.market;
    assert_eq!(m.stats().await.unwrap().households, 0);
    let (leader, h) = village(&env).await;
    m.record_dialogue("0912000002", 1_000, 5, "completed").await;
    m.record_dialogue("0912000001", 2_000, 0, "timeout").await;
    let o = shipped_order(&env, &h, "a").await; // its actions were queued after the dialogue events
    m.set_pin(&ussd(&h), key("pin"), h.id, "1234").await.unwrap();
    m.confirm_payment(&ussd(&h), key("pay"), h.id, o.id, "1234").await.unwrap();
    let na = m.products().await.unwrap()[0].id;
    let l = m.create_listing(&ussd(&leader), key("l"), leader.id, na, 5, 30_000).await.unwrap();
    m.update_listing(&ussd(&leader), key("stop"), leader.id, l.id, ListingChange::Stop).await.unwrap();
    let l2 = m.create_listing(&ussd(&leader), key("l2"), leader.id, na, 5, 30_000).await.unwrap();
    m.place_order(&partner(), key("o2"), l2.id, "Tiki", 1, 30_000).await.unwrap();

    let s = m.stats().await.unwrap();
    assert_eq!(s.households, 2);
    assert_eq!((s.listings, s.listings_active), (3, 2));
    assert_eq!(s.orders_by_status, [("new".to_owned(), 1), ("paid".to_owned(), 1)]);
    assert_eq!(s.payments, 1);
    assert_eq!(s.dialogues, 2);
    // The two orders' SMS and the registered household's welcome.
    assert_eq!(s.outbox_by_status, [("queued".to_owned(), 3)]);
    assert_eq!(s.events, env.count("SELECT COUNT(*) AS n FROM events", args![]).await);
    assert_eq!(s.events as u64, m.writer_counters().events);
    // The counts by kind are those of the events themselves.
    let mut r = m.store().read().await.unwrap();
    let rows = r
        .conn()
        .fetch_all("SELECT kind, COUNT(*) AS n FROM events GROUP BY kind ORDER BY kind", args![])
        .await
        .unwrap();
    drop(r);
    let counted: Vec<(String, i64)> =
        rows.iter().map(|r| (r.text("kind").unwrap(), r.int("n").unwrap())).collect();
    assert_eq!(m.events_by_kind().await.unwrap(), counted);
    assert!(counted.iter().any(|(k, n)| k == "dialogue_closed" && *n == 2), "{counted:?}");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["households"], 2);
    env.close().await;
}

async fn a_stopped_writer_should_commit_what_it_had_and_refuse_the_rest(db: TestDb) {
    let env = Env::open(db).await;
    let (_, h) = village(&env).await;
    let na = env.market.products().await.unwrap()[0].id;
    let m = env.market.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (m, actor, hid) = (m.clone(), ussd(&h), h.id);
        tasks.spawn(async move { m.create_listing(&actor, key(format!("s:{i}")), hid, na, 1, 25_000).await });
    }
    env.shutdown.cancel();
    tokio::time::timeout(PATIENCE, m.stopped()).await.expect("writer did not stop");
    let mut acknowledged = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(_) => acknowledged += 1,
            Err(MarketError::Store(StoreError::Closed)) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    // Whatever was acknowledged is there; nothing else is.
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM listings", args![]).await, acknowledged);
    let r = m.create_listing(&ussd(&h), key("late"), h.id, na, 1, 25_000).await;
    assert!(matches!(r, Err(MarketError::Store(StoreError::Closed))), "{r:?}");
    env.close().await;
}

async fn two_nodes_sharing_the_database_should_apply_each_key_once(db: TestDb) {
    const KEYS: i64 = 100;
    let a = Env::open(db).await;
    let (_, h) = village(&a).await;
    let na = a.market.products().await.unwrap()[0].id;
    // A second gateway node (or the CLI next to the daemon) with its own writer.
    let b_shutdown = CancellationToken::new();
    let b = Market::open(&a.db.config(), b_shutdown.clone()).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..KEYS {
        for node in [a.market.clone(), b.clone()] {
            let (actor, hid) = (ussd(&h), h.id);
            tasks.spawn(async move {
                // The contract when a whole transaction fails (e.g. PostgreSQL breaking a
                // deadlock between the two writers): repeat with the same key.
                for _ in 0..10 {
                    match node
                        .create_listing(&actor, key(format!("shared:{i}")), hid, na, 1 + i, 25_000)
                        .await
                    {
                        Err(MarketError::Store(StoreError::TransactionFailed(_))) => continue,
                        other => return (i, other.unwrap().id),
                    }
                }
                panic!("shared:{i} failed ten times");
            });
        }
    }
    let mut by_key = std::collections::HashMap::new();
    for (i, id) in tokio::time::timeout(PATIENCE, tasks.join_all()).await.expect("nodes did not finish") {
        let first = *by_key.entry(i).or_insert(id);
        assert_eq!(first, id, "shared:{i} applied twice");
    }
    assert_eq!(by_key.len() as i64, KEYS);
    assert_eq!(a.count("SELECT COUNT(*) AS n FROM listings", args![]).await, KEYS);
    assert_eq!(
        a.count("SELECT COUNT(*) AS n FROM events WHERE kind = 'listing_created'", args![]).await,
        KEYS
    );
    b_shutdown.cancel();
    b.stopped().await;
    a.close().await;
}

// ---- crash safety ------------------------------------------------------------------------

/// Environment variable telling [`crash_child_should_ack_listings_until_killed`] where to write.
const CRASH_URL: &str = "CHOGATE_TEST_CRASH_URL";
/// The household the crash child lists for.
const CRASH_HOUSEHOLD: &str = "CHOGATE_TEST_CRASH_HOUSEHOLD";
/// Acknowledged actions to wait for before the kill.
const CRASH_AFTER_ACKS: usize = 300;

/// Not a test by itself: the process that the crash test starts and SIGKILLs mid-load. It
/// creates listings from 16 tasks at once and prints `ack KEY ID` for each acknowledged one.
/// Bounded: it stops by itself after 20000 actions or 60 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by a_killed_process_should_leave_every_acknowledged_action_exactly_once"]
async fn crash_child_should_ack_listings_until_killed() {
    let (Ok(url), Ok(household)) = (std::env::var(CRASH_URL), std::env::var(CRASH_HOUSEHOLD)) else {
        return;
    };
    let household: i64 = household.parse().unwrap();
    let cfg = DatabaseConfig { url, ..DatabaseConfig::default() };
    let market = Market::open(&cfg, CancellationToken::new()).await.unwrap();
    let na = market.products().await.unwrap()[0].id;
    let deadline = Instant::now() + Duration::from_secs(60);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (market, next) = (market.clone(), next.clone());
        tasks.spawn(async move {
            let actor = Actor::new("84912000002", Channel::Ussd);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= 20_000 || Instant::now() > deadline {
                    return;
                }
                let k = format!("crash:{i}");
                let listing =
                    market.create_listing(&actor, key(k.clone()), household, na, 1, 20_000).await.unwrap();
                // One write per line: the parent reads whole lines.
                println!("ack {k} {}", listing.id);
            }
        });
    }
    tasks.join_all().await;
}

async fn a_killed_process_should_leave_every_acknowledged_action_exactly_once(db: TestDb) {
    let env = Env::open(db).await;
    let (_, h) = village(&env).await;
    let db = env.close().await;

    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "crash_child_should_ack_listings_until_killed",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CRASH_URL, &db.url)
        .env(CRASH_HOUSEHOLD, h.id.to_string())
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let acks = tokio::task::spawn_blocking(move || {
        let mut acks = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("ack ") {
                let (k, id) = rest.split_once(' ').unwrap();
                acks.push((k.to_owned(), id.parse::<i64>().unwrap()));
                if acks.len() == CRASH_AFTER_ACKS {
                    break;
                }
            }
        }
        acks
    });
    let acks =
        tokio::time::timeout(PATIENCE, acks).await.expect("the child acknowledged too little").unwrap();
    child.kill().unwrap(); // SIGKILL, mid-load
    child.wait().unwrap();
    assert_eq!(acks.len(), CRASH_AFTER_ACKS, "the child stopped early");

    // The database opens cleanly and holds every acknowledged action exactly once.
    let env = Env::open(db).await;
    let listed = "SELECT COUNT(*) AS n FROM listings";
    let created = "SELECT COUNT(*) AS n FROM events WHERE kind = 'listing_created'";
    let keyed = "SELECT COUNT(*) AS n FROM idempotency_keys WHERE kind = 'create_listing' AND outcome = 'ok'";
    let total = env.count(listed, args![]).await;
    assert!(total >= CRASH_AFTER_ACKS as i64, "{total}");
    eprintln!(
        "{:?}: killed after {} acknowledged actions; {total} committed",
        env.market.backend(),
        acks.len()
    );
    assert_eq!(env.count(created, args![]).await, total, "a listing without its event, or the reverse");
    assert_eq!(env.count(keyed, args![]).await, total, "a listing without its key, or the reverse");
    assert_eq!(
        env.count("SELECT COUNT(*) AS n FROM idempotency_keys WHERE outcome = 'pending'", args![]).await,
        0
    );
    for (k, id) in &acks {
        let events = env.events(&format!("listing:{id}")).await;
        assert_eq!(events, ["listing_created"], "{k}");
        let n = env
            .count(
                "SELECT COUNT(*) AS n FROM idempotency_keys WHERE idem_key = $1 AND result_id = $2",
                args![k, *id],
            )
            .await;
        assert_eq!(n, 1, "{k}");
    }
    // Repeating acknowledged actions (a gateway retrying after its restart) applies nothing.
    for (k, id) in acks.iter().take(20) {
        let again = env.market.create_listing(&ussd(&h), key(k.clone()), h.id, 1, 1, 20_000).await.unwrap();
        assert_eq!(again.id, *id);
    }
    assert_eq!(env.count(listed, args![]).await, total);
    if env.market.backend() == chogate::store::Backend::Sqlite {
        let mut r = env.market.store().read().await.unwrap();
        let row = r.conn().fetch_one("PRAGMA integrity_check", args![]).await.unwrap();
        assert_eq!(row.text("integrity_check").unwrap(), "ok");
    }
    env.close().await;
}

// ---- SQLite specifics --------------------------------------------------------------------

#[tokio::test]
async fn sqlite_url_should_create_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new").with_extension("db");
    assert!(!path.exists());
    let cfg = DatabaseConfig { url: format!("sqlite://{}", path.display()), ..DatabaseConfig::default() };
    let shutdown = CancellationToken::new();
    let market = Market::open(&cfg, shutdown.clone()).await.unwrap();
    assert!(path.exists());
    let mut r = market.store().read().await.unwrap();
    let mode =
        r.conn().fetch_one("PRAGMA journal_mode", args![]).await.unwrap().text("journal_mode").unwrap();
    assert_eq!(mode, "wal");
    let fk = r.conn().fetch_one("PRAGMA foreign_keys", args![]).await.unwrap().int("foreign_keys").unwrap();
    assert_eq!(fk, 1);
    let sync = r.conn().fetch_one("PRAGMA synchronous", args![]).await.unwrap().int("synchronous").unwrap();
    assert_eq!(sync, 2, "FULL");
    drop(r);
    shutdown.cancel();
    market.stopped().await;
}

#[tokio::test]
async fn sqlite_commits_should_reach_the_database_file_through_the_checkpointer() {
    let env = Env::open(common::db::sqlite_db()).await;
    let (_, h) = village(&env).await;
    let m = &env.market;
    let na = m.products().await.unwrap()[0].id;
    for i in 0..40 {
        m.create_listing(&ussd(&h), key(format!("ck:{i}")), h.id, na, 10, 20_000).await.unwrap();
    }
    // Far fewer pages than the writer's own threshold: only the checkpointer copies them.
    tokio::time::timeout(PATIENCE, m.store().checkpointed()).await.expect("never checkpointed");
    // The database file alone (immutable: the WAL is not read) holds every listing.
    let file = rusqlite::Connection::open_with_flags(
        format!("file:{}?immutable=1", env.db.path("chogate.db").display()),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    let n: i64 = file.query_row("SELECT COUNT(*) FROM listings", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 40);
    drop(file);
    env.close().await;
}

#[tokio::test]
async fn in_memory_sqlite_should_be_refused_with_a_reason() {
    let cfg = DatabaseConfig { url: "sqlite::memory:".into(), ..DatabaseConfig::default() };
    match Market::open(&cfg, CancellationToken::new()).await {
        Err(MarketError::Store(StoreError::Url(reason))) => assert!(reason.contains("file"), "{reason}"),
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(_) => panic!("opened an in-memory database"),
    }
}

async fn messages_past_their_validity_should_be_expired_and_never_claimed(db: TestDb) {
    let env = Env::open(db).await;
    let m = &env.market;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    // (msisdn, expires, next attempt): due and past validity; waiting for a retry and past
    // validity; due and valid.
    let rows = [
        ("84911000001", now - 1, now - 10),
        ("84911000002", now - 1, now + 60_000),
        ("84911000003", now + 60_000, now - 10),
    ];
    let mut ids = Vec::new();
    {
        let mut r = m.store().read().await.unwrap();
        for (msisdn, expires, due) in rows {
            let id = r
                .conn()
                .insert(
                    "INSERT INTO outbox (msisdn, text, lang, kind, status, created_at_ms, expires_at_ms, next_attempt_at_ms) \
                     VALUES ($1, 'x', 'vi', 'test', 'queued', $2, $3, $4)",
                    args![msisdn, now - 100, expires, due],
                )
                .await
                .unwrap();
            ids.push(id);
        }
    }
    let status = |id: i64| async move { m.message(id).await.unwrap().unwrap().status };
    // A claim without the sweep: the due expired one is expired, never handed out; the one
    // waiting for its retry is left for the sweep.
    let claimed = m.outbox_claim(10, 60_000, false).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), [ids[2]]);
    assert_eq!(status(ids[0]).await, "expired");
    assert_eq!(status(ids[1]).await, "queued");
    // The sweep expires it; nothing more is handed out (the valid one is leased).
    assert!(m.outbox_claim(10, 60_000, true).await.unwrap().is_empty());
    assert_eq!(status(ids[1]).await, "expired");
    assert!(m.message(ids[1]).await.unwrap().unwrap().done_at_ms.is_some());
    assert_eq!(status(ids[2]).await, "queued");
    env.close().await;
}

async fn unmatched_receipts_should_be_kept_for_their_part_then_dropped_by_the_sweep(db: TestDb) {
    let env = Env::open(db).await;
    let m = &env.market;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let receipt = |id: &str, at_ms: i64| {
        (
            "smsc-a".to_owned(),
            ReceiptUpdate { message_id: id.into(), delivered: true, state: "DELIVRD".into(), at_ms },
        )
    };
    // One just arrived (its part may still be recorded), one an hour old, for ids nobody sent.
    let unmatched = m
        .outbox_receipts(vec![
            receipt("A1", now),
            receipt("B2", now - chogate::market::PENDING_RECEIPT_MS - 1),
        ])
        .await
        .unwrap();
    assert_eq!(unmatched, 2);
    let kept = "SELECT COUNT(*) AS n FROM receipts_pending";
    assert_eq!(env.count(kept, args![]).await, 2);
    // A claim without the sweep leaves them; the sweep drops the old one only.
    m.outbox_claim(10, 60_000, false).await.unwrap();
    assert_eq!(env.count(kept, args![]).await, 2);
    m.outbox_claim(10, 60_000, true).await.unwrap();
    assert_eq!(
        env.count("SELECT COUNT(*) AS n FROM receipts_pending WHERE message_id = 'A1'", args![]).await,
        1
    );
    assert_eq!(env.count(kept, args![]).await, 1);
    env.close().await;
}

/// The SQLite database, its WAL and its shared-memory file are the owner's alone (0600),
/// whatever the umask, and a database file found wider is narrowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_should_be_created_0600() {
    use std::os::unix::fs::PermissionsExt;
    let db = common::db::sqlite_db();
    // Made wider by hand before the start: narrowed.
    std::fs::write(db.path("chogate.db"), b"").unwrap();
    std::fs::set_permissions(db.path("chogate.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let env = Env::open(db).await;
    // Writes: the WAL and the shared memory exist.
    village(&env).await;
    for name in ["chogate.db", "chogate.db-wal", "chogate.db-shm"] {
        let mode = std::fs::metadata(env.db.path(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    env.close().await;
}

/// Idempotency keys and API request records older than the retention go, in batches; newer
/// ones and every audit event stay, and a key pruned is a key free again.
async fn records_past_the_retention_should_be_pruned_and_the_audit_kept(db: TestDb) {
    let env = Env::open(db).await;
    let (leader, _) = village(&env).await;
    let day_ms: i64 = 86_400_000;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let old = chogate::market::PRUNE_BATCH + 7;
    {
        let mut r = env.market.store().read().await.unwrap();
        let mut c = r.conn();
        // More old rows than one batch, so that the loop is exercised.
        for i in 0..old {
            c.execute(
                "INSERT INTO idempotency_keys (idem_key, kind, result_id, outcome, at_ms) VALUES ($1, 'x', NULL, 'ok', $2)",
                args![format!("old:{i}"), now - 31 * day_ms - i],
            )
            .await
            .unwrap();
        }
        for (i, at) in [now - 40 * day_ms, now - 31 * day_ms, now - day_ms].into_iter().enumerate() {
            c.execute(
                "INSERT INTO api_requests (partner, idem_key, request_hash, status, response, created_at_ms) \
                 VALUES ('shopee', $1, 'h', 201, '{}', $2)",
                args![format!("k{i}"), at],
            )
            .await
            .unwrap();
        }
    }
    let keys_before = env.count("SELECT COUNT(*) AS n FROM idempotency_keys", args![]).await;
    let events_before = env.count("SELECT COUNT(*) AS n FROM events", args![]).await;
    let pruned = env.market.prune(Duration::from_secs(30 * 86_400)).await.unwrap();
    assert_eq!((pruned.keys, pruned.requests), (old as u64, 2));
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM idempotency_keys", args![]).await, keys_before - old);
    assert_eq!(
        env.count("SELECT COUNT(*) AS n FROM idempotency_keys WHERE idem_key LIKE 'old:%'", args![]).await,
        0
    );
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM api_requests", args![]).await, 1);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM events", args![]).await, events_before);
    // The recent keys (the village's own) still answer repeats: the same outcome, nothing new.
    let (again, _) = village(&env).await;
    assert_eq!(again.id, leader.id);
    assert_eq!(env.count("SELECT COUNT(*) AS n FROM events", args![]).await, events_before);
    // Nothing more to prune.
    assert_eq!(env.market.prune(Duration::from_secs(30 * 86_400)).await.unwrap(), Default::default());
    env.close().await;
}

/// Opens the market of `db` with its PIN pepper in the test folder's file `pepper`.
async fn open_peppered(db: TestDb, pepper: &str) -> Result<Env, MarketError> {
    let security = chogate::config::SecurityConfig { pin_pepper_file: Some(db.path(pepper)) };
    let shutdown = CancellationToken::new();
    let market = Market::open_with(&db.config(), &security, shutdown.clone()).await?;
    Ok(Env { market, shutdown, db })
}

/// A PIN hash from before the pepper still pays, and is replaced by a peppered one in the
/// payment's transaction; the database with another pepper file (a copy elsewhere) does
/// not take the PIN; without its pepper file the market does not start.
async fn a_pin_hashed_before_the_pepper_should_verify_be_upgraded_and_need_the_pepper(db: TestDb) {
    use argon2::PasswordHasher;
    use std::os::unix::fs::PermissionsExt;
    init_logs();
    let env = open_peppered(db, "pepper_a").await.unwrap();
    let pepper_mode = std::fs::metadata(env.db.path("pepper_a")).unwrap().permissions().mode() & 0o777;
    assert_eq!(pepper_mode, 0o600);
    let (_, h) = village(&env).await;
    let a = ussd(&h);
    let orders = [shipped_order(&env, &h, "o1").await, shipped_order(&env, &h, "o2").await];
    // Written as chogate did before the pepper: Argon2id, no secret.
    let salt = argon2::password_hash::SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let old = argon2::Argon2::default().hash_password(b"1357", &salt).unwrap().to_string();
    let stored = |env: &Env| {
        let market = env.market.clone();
        async move {
            let mut r = market.store().read().await.unwrap();
            r.conn()
                .fetch_one("SELECT pin_hash FROM households WHERE id = $1", args![h.id])
                .await
                .unwrap()
                .text("pin_hash")
                .unwrap()
        }
    };
    {
        let mut r = env.market.store().read().await.unwrap();
        r.conn()
            .execute("UPDATE households SET pin_hash = $2 WHERE id = $1", args![h.id, old.clone()])
            .await
            .unwrap();
    }
    let r = env.market.confirm_payment(&a, key("wrong"), h.id, orders[0].id, "1358").await;
    assert!(matches!(r, Err(MarketError::PinWrong { remaining: 4 })), "{r:?}");
    assert_eq!(stored(&env).await, old, "a wrong PIN upgrades nothing");
    let paid = env.market.confirm_payment(&a, key("right"), h.id, orders[0].id, "1357").await.unwrap();
    assert_eq!(paid.status, OrderStatus::Paid);
    let upgraded = stored(&env).await;
    assert!(upgraded != old && upgraded.contains("keyid="), "{upgraded}");
    let db = env.close().await;

    // The database elsewhere, with another node's pepper: the right PIN does not verify.
    std::fs::write(db.path("pepper_b"), [7u8; 32]).unwrap();
    let env = open_peppered(db, "pepper_b").await.unwrap();
    let r = env.market.confirm_payment(&a, key("b"), h.id, orders[1].id, "1357").await;
    assert!(matches!(r, Err(MarketError::PinWrong { .. })), "{r:?}");
    let db = env.close().await;

    // Without a pepper file, but with peppered PINs: refused, naming the file.
    match open_peppered(db.fresh().await, "unused").await {
        Ok(fresh) => drop(fresh.close().await),
        Err(e) => panic!("a fresh database makes its pepper: {e}"),
    }
    let e = match open_peppered(db, "missing").await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started without its pepper"),
    };
    assert!(e.contains("missing") && e.contains("restore"), "{e}");
}
