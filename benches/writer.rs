//! The group-commit writer's throughput: `create_listing` actions per second through
//! [`Market`] with K concurrent callers (1, 64, 512), on a SQLite file (synchronous = full,
//! the default: one fsync per commit; and synchronous = normal, no fsync at commit, to show
//! what the fsync costs) and, when `CHOGATE_TEST_POSTGRES_URL` is set, on a fresh
//! PostgreSQL database of that server.
//!
//! One iteration = K callers each sending one action and waiting for its commit; divan
//! reports the time per iteration and, with the item counter, actions per second. After
//! each case the writer's counters give the mean group size (actions per commit).
//!
//! ```sh
//! cargo bench --bench writer                               # SQLite only
//! CHOGATE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench writer
//! cargo test --bench writer                                # each case once (a smoke test)
//! ```
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chogate::config::{DatabaseConfig, SqliteSynchronous};
use chogate::market::{Actor, Channel, IdemKey, Market};
use divan::Bencher;
use divan::counter::ItemsCount;
use tokio_util::sync::CancellationToken;

/// Fresh databases on both backends, as the tests make them.
#[path = "../tests/common/db.rs"]
mod db;
#[path = "../tests/common/fixture.rs"]
mod fixture;

/// One line per case: the writer's group sizes, printed after divan's table.
static GROUPS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn main() {
    divan::main();
    let groups = GROUPS.lock().unwrap();
    if !groups.is_empty() {
        println!("\ngroup commit (all iterations of each case):");
        for g in groups.iter() {
            println!("  {g}");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// SQLite, `synchronous = full` (the default): the WAL is fsynced at every commit.
    Sqlite,
    /// SQLite, `synchronous = normal`: no fsync at commit; shows what the fsync costs.
    SqliteNormal,
    Postgres,
}

/// One benchmark case: a backend and a number of concurrent callers.
#[derive(Debug, Clone, Copy)]
struct Case {
    backend: Backend,
    callers: usize,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::SqliteNormal => "sqlite-normal",
            Backend::Postgres => "postgres",
        };
        write!(f, "{b} K={}", self.callers)
    }
}

const CALLERS: [usize; 3] = [1, 64, 512];

/// SQLite always; PostgreSQL when the test server's URL is set.
fn cases() -> Vec<Case> {
    let mut backends = vec![Backend::Sqlite, Backend::SqliteNormal];
    if std::env::var_os("CHOGATE_TEST_POSTGRES_URL").is_some() {
        backends.push(Backend::Postgres);
    }
    backends.iter().flat_map(|&backend| CALLERS.map(|callers| Case { backend, callers })).collect()
}

/// A market with one household to list for; the SQLite file lives as long as this.
struct Fixture {
    market: Market,
    shutdown: CancellationToken,
    household_id: i64,
    product_id: i64,
    _db: db::TestDb,
}

impl Fixture {
    async fn open(backend: Backend) -> Fixture {
        let db = match backend {
            Backend::Sqlite | Backend::SqliteNormal => db::sqlite_db(),
            Backend::Postgres => db::postgres_db().await,
        };
        let sqlite_synchronous = if backend == Backend::SqliteNormal {
            SqliteSynchronous::Normal
        } else {
            SqliteSynchronous::Full
        };
        let cfg = DatabaseConfig { sqlite_synchronous, ..db.config() };
        let shutdown = CancellationToken::new();
        let market = Market::open(&cfg, shutdown.clone()).await.unwrap();
        let leader = fixture::leader(&market, 6463).await;
        let product_id = market.products().await.unwrap()[0].id;
        Fixture { market, shutdown, household_id: leader.id, product_id, _db: db }
    }

    /// K callers, one action each, all waiting for their commits.
    async fn round(&self, callers: usize) {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..callers {
            let m = self.market.clone();
            let (h, p) = (self.household_id, self.product_id);
            let key = IdemKey(format!("bench:{}", NEXT.fetch_add(1, Ordering::Relaxed)));
            tasks.spawn(async move {
                let actor = Actor::new("84987000001", Channel::Ussd);
                m.create_listing(&actor, key, h, p, 10, 25_000).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
    }

    async fn close(self) {
        self.shutdown.cancel();
        self.market.stopped().await;
        self.market.store().close().await;
    }
}

#[divan::bench(args = cases(), sample_count = 30)]
fn create_listing(bencher: Bencher, case: &Case) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let fixture = rt.block_on(Fixture::open(case.backend));
    let before = fixture.market.writer_counters();
    bencher.counter(ItemsCount::new(case.callers)).bench_local(|| rt.block_on(fixture.round(case.callers)));
    let after = fixture.market.writer_counters();
    let (actions, commits) = (after.actions - before.actions, after.commits - before.commits);
    if commits > 0 {
        GROUPS.lock().unwrap().push(format!(
            "{:<20} {actions:>7} actions in {commits:>6} commits: {:>6.1} per commit, largest group {}",
            case.to_string(),
            actions as f64 / commits as f64,
            after.largest_group
        ));
    }
    rt.block_on(fixture.close());
}
