//! The database commands as a person runs them: the real `chogate` binary (`migrate`,
//! `households import|export`, `seed-demo`, `stats`) against a fresh SQLite file in a
//! temporary folder (`sqlite::…`) and a fresh PostgreSQL database (`postgres::…`) created
//! through `CHOGATE_TEST_POSTGRES_URL`, which `scripts/test.sh` sets. The database is given
//! as `CHOGATE_DATABASE__URL`, as an operator would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chogate::market::{Actor, Channel, IdemKey};
use common::{Family, TestDaemon, Ussdc, base_config};
use serde_json::Value;

// ---- harness ---------------------------------------------------------------------------

use common::db::TestDb;

both_backends!(
    migrate_should_apply_every_migration_once_and_list_the_versions,
    import_of_a_good_file_should_write_every_line_and_print_the_counts,
    import_with_one_bad_line_should_name_it_and_write_nothing,
    import_with_a_line_the_database_refuses_should_write_nothing,
    import_of_the_same_file_twice_should_report_every_line_already_registered,
    export_should_round_trip_through_import_into_a_fresh_database,
    export_should_neutralise_formula_cells_and_write_its_file_0600,
    import_should_refuse_names_a_spreadsheet_would_run_or_that_read_backwards,
    seed_demo_twice_should_leave_the_same_stats,
    stats_should_print_a_table_or_one_json_object,
    stats_after_new_listing_dialogues_should_show_exactly_that_many_more_listings,
);

/// The finished run of `chogate ARGS` on the database (its URL in the environment, and a
/// configuration file that names no database).
fn chogate(db: &TestDb, args: &[&str]) -> Output {
    let config = db.path("chogate.toml");
    if !config.exists() {
        std::fs::write(&config, "[log]\nfilter = \"warn\"\n").unwrap();
    }
    // A blocking wait in an async test: the runtime has a second worker meanwhile.
    Command::new(env!("CARGO_BIN_EXE_chogate"))
        .arg("--config")
        .arg(&config)
        .args(args)
        .env("CHOGATE_DATABASE__URL", &db.url)
        .env_remove("CHOGATE_CONFIG")
        .env_remove("RUST_LOG")
        .current_dir(db.dir.path())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the command and checks it exited 0; returns its stdout.
fn ok(db: &TestDb, args: &[&str]) -> String {
    let out = chogate(db, args);
    assert!(
        out.status.success(),
        "chogate {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn stats(db: &TestDb) -> Value {
    let out = ok(db, &["stats", "--json"]);
    assert_eq!(out.lines().count(), 1, "one JSON object on one line: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("stats --json is not JSON ({e}): {out}"))
}

fn n(v: &Value, path: &[&str]) -> i64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_i64().unwrap_or_else(|| panic!("{path:?} is not a number in {v}"))
}

fn write(db: &TestDb, name: &str, content: &str) -> PathBuf {
    let p = db.path(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Two villages (a leader each, in any order in the file), households with quotes and
/// commas in their names, an English one, e-payment accounts, a pending self-registration.
const GOOD_CSV: &str = "\
msisdn,name,commune_code,village,language,leader,has_epay,pending
0912300011,\"Nông Thị \"\"Hoa\"\", bà\",6463,Thôn Nà Lầm,vi,no,yes,no
0912300001,Hoàng Văn Sơn,6463,Thôn Nà Lầm,vi,yes,yes,no
+84 912 300 012,Vi Văn Hùng,6463,thôn  nà lầm,en,0,0,0
0912300002,Dương Văn Tài,6325,Thôn Pác Cáp,,1,,
0912300021,Hà Văn Long,6325,Thôn Pác Cáp,,,1,
0912300031,Lộc Thị Hiền,6505,Thôn Mới,vi,no,no,yes
";

// ---- tests -----------------------------------------------------------------------------

async fn migrate_should_apply_every_migration_once_and_list_the_versions(db: TestDb) {
    let first = ok(&db, &["migrate"]);
    assert!(first.contains("0001 init (applied now)"), "{first}");
    let versions: Vec<&str> = first.lines().skip(1).collect();
    assert!(!versions.is_empty(), "{first}");
    assert!(versions.iter().all(|v| v.ends_with(" (applied now)")), "a new database: {first}");
    let second = ok(&db, &["migrate"]);
    assert!(!second.contains("applied now"), "nothing left to apply: {second}");
    assert_eq!(second.lines().count(), first.lines().count(), "{first}\n{second}");
    assert!(second.contains("0001 init\n"), "{second}");
}

async fn import_of_a_good_file_should_write_every_line_and_print_the_counts(db: TestDb) {
    let file = write(&db, "good.csv", GOOD_CSV);
    let out = ok(&db, &["households", "import", arg(&file)]);
    assert!(
        out.contains("imported 6 households (2 team leaders, 1 pending, 3 with e-payment), 3 new villages"),
        "{out}"
    );
    let s = stats(&db);
    assert_eq!(n(&s, &["households"]), 6);
    assert_eq!(n(&s, &["events_by_kind", "leader_registered"]), 2);
    assert_eq!(n(&s, &["events_by_kind", "household_imported"]), 4);
    assert_eq!(n(&s, &["events_by_kind", "village_created"]), 3);
    // The quoted name and the village written another way arrived as meant.
    let csv = ok(&db, &["households", "export"]);
    assert!(csv.contains("84912300011,\"Nông Thị \"\"Hoa\"\", bà\",6463,Thôn Nà Lầm,vi,no,yes,no"), "{csv}");
    assert!(csv.contains("84912300012,Vi Văn Hùng,6463,Thôn Nà Lầm,en,no,no,no"), "{csv}");
    assert!(csv.contains("84912300031,Lộc Thị Hiền,6505,Thôn Mới,vi,no,no,yes"), "{csv}");
}

async fn import_with_one_bad_line_should_name_it_and_write_nothing(db: TestDb) {
    ok(&db, &["migrate"]);
    let before = stats(&db);
    let bad = GOOD_CSV.replace("0912300021,Hà Văn Long", "091230002,Hà Văn Long");
    let file = write(&db, "bad.csv", &bad);
    let out = chogate(&db, &["households", "import", arg(&file)]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bad.csv:6: bad MSISDN \"091230002\""), "{err}");
    assert!(err.contains("1 of 6 lines refused; nothing was imported"), "{err}");
    assert_eq!(err.matches("bad.csv:").count(), 2, "only line 6 is named: {err}");
    assert_eq!(stats(&db), before, "nothing written");
    // Saved by a spreadsheet: CRLF line ends and a blank line; the line is still line 6
    // (7 after the blank one).
    let crlf = bad.replace('\n', "\r\n").replacen("\r\n", "\r\n\r\n", 1);
    let file = write(&db, "crlf.csv", &crlf);
    let err = text(&chogate(&db, &["households", "import", arg(&file)]).stderr);
    assert!(err.contains("crlf.csv:7: bad MSISDN \"091230002\""), "{err}");
}

async fn import_with_a_line_the_database_refuses_should_write_nothing(db: TestDb) {
    ok(&db, &["migrate"]);
    let before = stats(&db);
    // The last line's commune does not exist, and a household of a village nobody leads.
    let bad = format!(
        "{GOOD_CSV}0912300041,Mã Văn Toàn,9999,Thôn Xa,vi,no,no,no\n0912300042,Lý Thị Thơm,6505,Thôn Khác,,,,\n"
    );
    let file = write(&db, "bad.csv", &bad);
    let out = chogate(&db, &["households", "import", arg(&file)]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bad.csv:8: unknown commune code 9999"), "{err}");
    assert!(err.contains("bad.csv:9: village \"Thôn Khác\" of commune 6505 has no team leader"), "{err}");
    assert!(err.contains("2 of 8 lines refused; nothing was imported"), "{err}");
    assert_eq!(stats(&db), before, "nothing written, not even the good lines");
}

async fn import_of_the_same_file_twice_should_report_every_line_already_registered(db: TestDb) {
    let file = write(&db, "good.csv", GOOD_CSV);
    ok(&db, &["households", "import", arg(&file)]);
    let before = stats(&db);
    let out = chogate(&db, &["households", "import", arg(&file)]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for line in 2..=7 {
        assert!(err.contains(&format!("good.csv:{line}: already registered\n")), "line {line}: {err}");
    }
    assert!(err.contains("6 of 6 lines refused"), "{err}");
    assert_eq!(stats(&db), before);
}

async fn export_should_round_trip_through_import_into_a_fresh_database(db: TestDb) {
    ok(&db, &["seed-demo"]);
    let file = write(&db, "import.csv", GOOD_CSV);
    ok(&db, &["households", "import", arg(&file)]);
    let exported = ok(&db, &["households", "export"]);
    assert_eq!(
        exported.lines().next(),
        Some("msisdn,name,commune_code,village,language,leader,has_epay,pending")
    );
    assert_eq!(exported.lines().count(), 1 + 31 + 6, "{exported}");

    let other = db.fresh().await;
    let file = write(&other, "export.csv", &exported);
    let out = ok(&other, &["households", "import", arg(&file)]);
    assert!(
        out.contains("imported 37 households (7 team leaders, 2 pending, 17 with e-payment), 8 new villages"),
        "{out}"
    );
    assert_eq!(ok(&other, &["households", "export"]), exported, "the same households, the same way");
}

/// A village named like a formula (written before names were checked, or by hand) goes out
/// as text a spreadsheet shows; the file `--output` writes is the owner's alone.
async fn export_should_neutralise_formula_cells_and_write_its_file_0600(db: TestDb) {
    use std::os::unix::fs::PermissionsExt;
    let file = write(&db, "good.csv", GOOD_CSV);
    ok(&db, &["households", "import", arg(&file)]);
    {
        let store = chogate::store::Store::connect(&db.config()).await.unwrap();
        let mut w = store.writer().await.unwrap();
        let changed = w
            .conn()
            .execute(
                "UPDATE villages SET name = '=HYPERLINK(\"x\")' WHERE name = 'Thôn Pác Cáp'",
                chogate::args![],
            )
            .await
            .unwrap();
        assert_eq!(changed, 1);
        w.close().await;
        store.close().await;
    }
    let out = db.path("export.csv");
    assert_eq!(ok(&db, &["households", "export", "--output", arg(&out)]), "");
    let exported = std::fs::read_to_string(&out).unwrap();
    assert!(exported.contains(",\"'=HYPERLINK(\"\"x\"\")\","), "{exported}");
    assert!(!exported.contains(",=HYPERLINK"), "{exported}");
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    // The same on standard output.
    assert!(ok(&db, &["households", "export"]).contains("'=HYPERLINK"));
}

async fn import_should_refuse_names_a_spreadsheet_would_run_or_that_read_backwards(db: TestDb) {
    let csv = "msisdn,name,commune_code,village\n\
               0912300101,+A1,6463,Thôn Nà Lầm\n\
               0912300102,-2+3,6463,Thôn Nà Lầm\n\
               0912300103,Hoa \u{202E}abc,6463,Thôn Nà Lầm\n\
               0912300104,Lý Thị Hoa,6463,@SUM(A1)\n";
    let file = write(&db, "bad.csv", csv);
    let out = chogate(&db, &["households", "import", arg(&file)]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    for line in 2..=5 {
        assert!(err.contains(&format!("bad.csv:{line}:")), "line {line}: {err}");
    }
    assert!(err.contains("must not start with"), "{err}");
    assert!(err.contains("control or bidirectional"), "{err}");
}

async fn seed_demo_twice_should_leave_the_same_stats(db: TestDb) {
    let out = ok(&db, &["seed-demo"]);
    assert!(out.contains("chogate phone 84912200001"), "a household to try: {out}");
    assert!(out.contains("chogate phone 84912100001"), "a leader to try: {out}");
    let first = stats(&db);
    assert_eq!(n(&first, &["households"]), 31);
    assert_eq!(n(&first, &["listings"]), 16);
    for status in ["new", "accepted", "shipped", "delivered", "paid", "rejected"] {
        assert!(n(&first, &["orders", status]) >= 1, "an order {status}: {first}");
    }
    assert_eq!(n(&first, &["payments"]), 2);
    assert!(n(&first, &["outbox", "queued"]) >= 8, "{first}");
    let again = ok(&db, &["seed-demo"]);
    assert_eq!(again, out);
    assert_eq!(stats(&db), first, "running it again changes nothing");
}

async fn stats_should_print_a_table_or_one_json_object(db: TestDb) {
    ok(&db, &["seed-demo"]);
    let table = ok(&db, &["stats"]);
    for label in [
        "households",
        "listings",
        "orders",
        "  paid",
        "payments",
        "USSD dialogues",
        "outbox SMS",
        "audit events",
    ] {
        assert!(table.lines().any(|l| l.starts_with(label)), "{label}: {table}");
    }
    let s = stats(&db);
    let orders: i64 = s["orders"].as_object().unwrap().values().map(|v| v.as_i64().unwrap()).sum();
    assert_eq!(n(&s, &["orders_total"]), orders);
    let events: i64 = s["events_by_kind"].as_object().unwrap().values().map(|v| v.as_i64().unwrap()).sum();
    assert_eq!(n(&s, &["events"]), events);
    assert_eq!(n(&s, &["dialogues"]), 0);
}

/// Issue 5's proof: after N completed new-listing dialogues (dial, 1, 1, 10, 25000, 1),
/// `chogate stats` shows exactly N more listings and their events.
async fn stats_after_new_listing_dialogues_should_show_exactly_that_many_more_listings(db: TestDb) {
    const N: u8 = 20;
    const HOUSEHOLD: &str = "84912345678";
    let mut config = base_config("");
    config.database.url = db.url.clone();
    let d = TestDaemon::start(config).await;
    let m = d.daemon.as_ref().unwrap().market.clone();
    let cli = Actor::new("test", Channel::Cli);
    let leader = common::fixture::leader(&m, 6463).await;
    m.register_household(&cli, IdemKey("h1".into()), leader.id, HOUSEHOLD, "Lý Thị Mai").await.unwrap();
    // Read by the binary while the daemon runs (a second process on SQLite, a second
    // client on PostgreSQL).
    let before = stats(&db);

    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    for session in 1..=N {
        let screens = u.run(HOUSEHOLD, session, &["1", "1", "10", "25000", "1"]).await;
        let last = screens.last().unwrap();
        assert!(last.is_final() && last.text == "Đã đăng bán 10kg Na. Có đơn sẽ báo SMS.", "{last:?}");
    }
    d.stop().await;

    let after = stats(&db);
    let n_ = i64::from(N);
    assert_eq!(n(&after, &["listings"]), n(&before, &["listings"]) + n_);
    assert_eq!(n(&after, &["listings_active"]), n(&before, &["listings_active"]) + n_);
    let kind = |s: &Value, k: &str| s["events_by_kind"][k].as_i64().unwrap_or(0);
    assert_eq!(kind(&after, "listing_created"), kind(&before, "listing_created") + n_, "{after}");
    assert_eq!(n(&after, &["dialogues"]), n(&before, &["dialogues"]) + n_);
    assert_eq!(kind(&after, "dialogue_closed"), kind(&before, "dialogue_closed") + n_, "{after}");
    // Nothing else was written meanwhile: every new event is one of these.
    assert_eq!(n(&after, &["events"]), n(&before, &["events"]) + 2 * n_, "{before}\n{after}");
    assert_eq!(n(&after, &["households"]), n(&before, &["households"]));
}
