//! The `chogate` binary itself: configuration checks, start-up log, SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use chogate::smpp::pdu::{Body, Pdu};
use common::Peer;

const BIN: &str = env!("CARGO_BIN_EXE_chogate");

fn write_config(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("chogate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_config_should_accept_the_shipped_configuration() {
    let out = Command::new(BIN)
        .args(["check-config", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/chogate.toml")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn check_config_should_fail_naming_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        "[[smsc]]\nname = \"a\"\nhost = \"h\"\nport = 0\nsystem_id = \"s\"\npassword = \"p\"\n",
    );
    let out = Command::new(BIN).args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("smsc[0].port"), "{err}");

    let path = write_config(&dir, "[smpp_server]\nlisten = \"127.0.0.1:0\"\ncolour = 1\n");
    let out = Command::new(BIN).args(["check-config", "--config"]).arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("smpp_server.colour"), "{err}");

    let out = Command::new(BIN)
        .args(["check-config", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/chogate.toml")])
        .env("CHOGATE_SMPP__ENQUIRE_LINK_SECS", "soon")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("CHOGATE_SMPP__ENQUIRE_LINK_SECS"), "{err}");
}

/// A TLS certificate or key that cannot be used is named with its setting, its file and the
/// reason, by `check-config` and at start.
#[test]
fn tls_files_that_cannot_be_used_should_be_named_by_check_config_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let cases = [
        (
            format!("{fixtures}/missing.pem"),
            format!("{fixtures}/server.key"),
            "smpp_server.tls_cert",
            "missing.pem",
        ),
        (
            format!("{fixtures}/server.key"),
            format!("{fixtures}/server.key"),
            "smpp_server.tls_cert",
            "no CERTIFICATE",
        ),
        (format!("{fixtures}/server.pem"), format!("{fixtures}/ca.pem"), "smpp_server.tls_key", "ca.pem"),
    ];
    for (cert, key, setting, reason) in cases {
        let path = write_config(
            &dir,
            &format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n[smpp_server]\nlisten = \"127.0.0.1:0\"\n\
                 tls_listen = \"127.0.0.1:0\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n"
            ),
        );
        for args in [&["check-config", "--config"][..], &["serve", "--config"][..]] {
            let out = Command::new(BIN).args(args).arg(&path).current_dir(dir.path()).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} accepted {cert} / {key}");
            assert!(err.contains(setting) && err.contains(reason), "{args:?}: {err}");
        }
    }
}

#[test]
fn the_service_files_should_agree_with_each_other_and_systemd() {
    let root = env!("CARGO_MANIFEST_DIR");
    let config_path = format!("{root}/contrib/chogate.toml");
    let out = Command::new(BIN).args(["check-config", "--config", &config_path]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = chogate::config::Config::load(std::path::Path::new(&config_path)).unwrap();
    let unit = std::fs::read_to_string(format!("{root}/contrib/chogate.service")).unwrap();
    let setting = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .unwrap_or_else(|| panic!("{key} missing from the unit"))
            .trim()
            .to_owned()
    };
    // The state where the unit lets the service write, named absolutely.
    assert_eq!(setting("StateDirectory"), "chogate");
    assert_eq!(config.database.url, "sqlite:///var/lib/chogate/chogate.db");
    // systemd waits for the drain before it kills.
    let stop: u64 = setting("TimeoutStopSec").parse().unwrap();
    assert!(stop > config.smpp.drain_timeout_secs + 5, "TimeoutStopSec {stop}");
    for (key, value) in [
        ("KillSignal", "SIGTERM"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("MemoryDenyWriteExecute", "yes"),
        ("UMask", "0077"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(setting(key), value, "{key}");
    }
    // systemd's own check, where systemd is installed (ExecStart pointed at this build).
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else { return };
    if !probe.status.success() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("chogate.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/chogate", BIN)).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `chogate serve` with the configuration at `path`, in `dir` (the menus built in).
async fn serve(dir: &tempfile::TempDir, path: &std::path::Path) -> common::child::Served {
    common::child::serve(dir.path(), path).await
}

#[tokio::test]
async fn serve_should_log_its_addresses_and_unbind_peers_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        "[http]\nlisten = \"127.0.0.1:0\"\n[smpp_server]\nlisten = \"127.0.0.1:0\"\n\
         [[smpp_server.accounts]]\nsystem_id = \"ussdc\"\npassword = \"secret1\"\n[smpp]\ndrain_timeout_secs = 2\n",
    );
    let mut served = serve(&dir, &path).await;
    let mut peer = Peer::bound(served.smpp).await;
    peer.ping().await;

    served.terminate();
    let unbind = peer.recv().await.unwrap();
    assert_eq!(unbind.body, Body::Unbind);
    peer.send(&Pdu::new(unbind.sequence, Body::UnbindResp)).await;
    peer.expect_closed().await;
    let status = served.exited().await;
    assert!(status.success(), "exit {status:?}");
    let log = served.whole_log().await.join("\n");
    assert!(log.contains("HTTP listening"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("secret1"), "password in the log:\n{log}");
}

/// Garbage sent before binding is answered PDU by PDU, but the log gets a few warnings and
/// a count, not one line per PDU; a system_id with a line break cannot forge a log line.
#[tokio::test]
async fn garbage_before_bind_should_write_a_few_warnings_and_escape_what_the_peer_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        "[http]\nlisten = \"127.0.0.1:0\"\n[smpp_server]\nlisten = \"127.0.0.1:0\"\n\
         [[smpp_server.accounts]]\nsystem_id = \"ussdc\"\npassword = \"secret1\"\n[smpp]\ndrain_timeout_secs = 1\n",
    );
    let mut served = serve(&dir, &path).await;
    let addr = served.smpp;
    let mut peer = Peer::connect(addr).await;
    // 200 submit_sm whose body ends inside its first field: each is malformed.
    let mut garbage = Vec::new();
    for seq in 1..=200u32 {
        garbage.extend_from_slice(&common::raw_pdu(0x0000_0004, seq, b"USSD", None));
    }
    peer.send_raw(&garbage).await;
    for _ in 0..200 {
        let nack = peer.recv().await.expect("the connection lives on");
        assert_eq!(nack.body, Body::GenericNack);
    }
    drop(peer);
    // A bind whose system_id carries a line break and a fake log line.
    let mut peer = Peer::connect(addr).await;
    let resp = peer.bind(chogate::smpp::pdu::BindKind::Transceiver, "x\nINFO forged", "nope").await;
    assert_eq!(resp.status, chogate::smpp::status::ESME_RINVPASWD);
    peer.expect_closed().await;

    served.stop().await;
    let log = served.whole_log().await;
    let malformed = log.iter().filter(|l| l.contains("malformed PDU")).count();
    assert!(malformed <= 5, "{malformed} warnings for 200 bad PDUs:\n{}", log.join("\n"));
    assert!(log.iter().any(|l| l.contains("left out")), "{}", log.join("\n"));
    assert!(!log.iter().any(|l| l.starts_with("INFO forged")), "{}", log.join("\n"));
    assert!(log.iter().any(|l| l.contains(r"x\nINFO forged")), "{}", log.join("\n"));
}

const LISTEN_ANYWHERE: &str = "[http]\nlisten = \"127.0.0.1:0\"\n[smpp_server]\nlisten = \"127.0.0.1:0\"\n\
     [[smpp_server.accounts]]\nsystem_id = \"ussdc\"\npassword = \"secret1\"\n";

#[tokio::test]
async fn serve_from_another_folder_should_keep_its_files_beside_the_configuration() {
    use common::{Family, Ussdc};
    let etc = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir(etc.path().join("state")).unwrap();
    let path =
        write_config(&etc, &format!("[database]\nurl = \"sqlite://state/chogate.db\"\n{LISTEN_ANYWHERE}"));
    // No menu files anywhere: the built-in menus answer.
    let mut served = common::child::serve(cwd.path(), &path).await;
    let screen = Ussdc::bind(served.smpp, Family::DeliverSm).await.dial("84911111111", 1).await;
    assert!(screen.text.starts_with("Chợ 384: đăng ký bán hàng."), "{}", screen.text);
    assert!(served.log_text().contains("built-in menus loaded"), "{}", served.log_text());
    served.stop().await;
    assert!(etc.path().join("state/chogate.db").is_file(), "the database beside the configuration");
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing in the working directory: {left:?}");

    // A path from the environment is the working directory's; a menu folder of the file
    // is the file's folder's.
    let menus = etc.path().join("my-menus");
    std::fs::create_dir(&menus).unwrap();
    for (name, text) in chogate::menu::BUILT_IN {
        std::fs::write(menus.join(name), text).unwrap();
    }
    let path = write_config(&etc, "[ussd]\nmenus_dir = \"my-menus\"\n");
    let out = Command::new(BIN)
        .args(["migrate", "--config"])
        .arg(&path)
        .current_dir(cwd.path())
        .env("CHOGATE_DATABASE__URL", "sqlite://from-env.db")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(cwd.path().join("from-env.db").is_file());
    let out = Command::new(BIN)
        .args(["menus", "check", "--config"])
        .arg(&path)
        .current_dir(cwd.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.starts_with(&format!("{}: ok", menus.display())), "{stdout}");
}

#[test]
fn startup_errors_should_say_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = |config: &str| {
        let path = write_config(&dir, config);
        let out = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        err.lines().last().unwrap_or_default().to_owned()
    };
    let once = |err: &str, cause: &str| {
        assert_eq!(err.matches(cause).count(), 1, "{cause:?} once in: {err}");
    };
    let db = dir.path().join("missing/chogate.db");
    let err = run(&format!("[database]\nurl = \"sqlite://{}\"\n{LISTEN_ANYWHERE}", db.display()));
    assert_eq!(
        err,
        format!(
            "chogate: cannot open the database: {}: No such file or directory (os error 2)",
            db.display()
        )
    );
    once(&err, "No such file or directory");

    let err = run(&format!("[ussd]\nmenus_dir = \"no-menus\"\n{LISTEN_ANYWHERE}"));
    let menus = dir.path().join("no-menus");
    assert!(
        err.starts_with(&format!(
            "chogate: invalid menus: {}: cannot read menu directory: ",
            menus.display()
        )),
        "{err}"
    );
    once(&err, "No such file or directory");

    let out = Command::new(BIN).args(["serve", "--config", "/nonexistent/chogate.toml"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        "chogate: cannot read /nonexistent/chogate.toml: No such file or directory (os error 2)"
    );
}

fn bad_menus() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/menus")).unwrap() {
        let path = entry.unwrap().path();
        let text =
            std::fs::read_to_string(&path).unwrap().replace("goto = \"sell_price\"", "goto = \"sell_prise\"");
        std::fs::write(dir.path().join(path.file_name().unwrap()), text).unwrap();
    }
    dir
}

/// The line of the shipped `[screen.sell_qty]` table.
fn sell_qty_line() -> usize {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/menus/10-household.toml")).unwrap();
    text.lines().position(|l| l.trim() == "[screen.sell_qty]").unwrap() + 1
}

#[test]
fn menus_check_should_pass_the_shipped_menus_and_name_file_line_and_reason() {
    let out = Command::new(BIN)
        .args(["menus", "check", concat!(env!("CARGO_MANIFEST_DIR"), "/menus")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // No folder and no configuration: the menus built into the binary.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).args(["menus", "check"]).current_dir(empty.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.starts_with("built-in menus: ok"), "{stdout}");
    let bad = bad_menus();
    let out = Command::new(BIN).args(["menus", "check"]).arg(bad.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "10-household.toml:{}: screen `sell_qty`: goto = \"sell_prise\": no such screen",
            sell_qty_line()
        )),
        "{err}"
    );
}

#[test]
fn serve_should_refuse_to_start_on_an_invalid_menu() {
    let bad = bad_menus();
    let dir = tempfile::tempdir().unwrap();
    let path =
        write_config(&dir, "[http]\nlisten = \"127.0.0.1:0\"\n[smpp_server]\nlisten = \"127.0.0.1:0\"\n");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .env("CHOGATE_USSD__MENUS_DIR", bad.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid menus") && err.contains(&format!("10-household.toml:{}", sell_qty_line())),
        "{err}"
    );
}

/// Issue 5: killed with SIGKILL in the middle of a load and opened again, the database has a
/// listing for every dialogue that received its final screen, none twice, and opens cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_should_keep_every_completed_listing_exactly_once() {
    use chogate::market::{Market, Stats};
    use common::{Family, Ussdc};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kill.db");
    let path = write_config(
        &dir,
        &format!(
            "[database]\nurl = \"sqlite://{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[smpp_server]\nlisten = \"127.0.0.1:0\"\n\
             [[smpp_server.accounts]]\nsystem_id = \"ussdc\"\npassword = \"secret1\"\nwindow = 50\n",
            db.display()
        ),
    );
    // A household its team leader registered (so it can sell), in the file the daemon opens.
    {
        use chogate::market::{Actor, Channel, IdemKey};
        let cfg = chogate::config::DatabaseConfig {
            url: format!("sqlite://{}", db.display()),
            ..Default::default()
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        let market = Market::open(&cfg, shutdown.clone()).await.unwrap();
        let cli = Actor::new("test", Channel::Cli);
        let leader = common::fixture::leader(&market, 6001).await;
        market
            .register_household(&cli, IdemKey("h".into()), leader.id, "84912345678", "Hoàng Văn A")
            .await
            .unwrap();
        shutdown.cancel();
        market.stopped().await;
    }
    let mut served = serve(&dir, &path).await;
    let addr = served.smpp;
    // List produce from four binds at once.
    let completed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (enough_tx, enough_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for b in 0..4u8 {
        let completed = completed.clone();
        let enough_tx = enough_tx.clone();
        tasks.spawn(async move {
            let mut u = Ussdc::bind(addr, Family::DeliverSm).await;
            for i in 0..250u8 {
                // Each dialogue its own session number; the kill ends this loop with a panic
                // in the harness when the connection goes, which the task absorbs.
                let session = b.wrapping_mul(64).wrapping_add(i);
                let run = tokio::spawn(async move {
                    let s = u.run("84912345678", session, &["1", "1", "10", "25000", "1"]).await;
                    (u, s)
                });
                let Ok((back, screens)) = run.await else { return };
                u = back;
                if screens.last().is_some_and(|s| s.is_final()) {
                    let n = completed.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    if n >= 30 {
                        let _ = enough_tx.send(true);
                    }
                }
            }
        });
    }
    let mut enough = enough_rx;
    tokio::time::timeout(common::PATIENCE, enough.wait_for(|e| *e)).await.unwrap().unwrap();
    served.kill().await;
    let acknowledged = completed.load(std::sync::atomic::Ordering::SeqCst);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}

    // Opened again: migrations find the schema, the data is all there, once.
    let cfg =
        chogate::config::DatabaseConfig { url: format!("sqlite://{}", db.display()), ..Default::default() };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let market = Market::open(&cfg, shutdown.clone()).await.unwrap();
    let stats: Stats = market.stats().await.unwrap();
    let listings = stats.listings as usize;
    assert!(listings >= acknowledged, "{listings} listings for {acknowledged} final screens");
    // Never more listings than dialogues that reached the confirmation (at most one per
    // bind was cut in flight).
    assert!(listings <= acknowledged + 4, "{listings} listings for {acknowledged} final screens");
    let h = market.household_by_msisdn("84912345678").await.unwrap().unwrap();
    let mine = market.listings(h.id).await.unwrap();
    let mut codes: Vec<&str> = mine.iter().map(|l| l.code.as_str()).collect();
    codes.dedup();
    assert_eq!(codes.len(), mine.len(), "a listing exists twice");
    shutdown.cancel();
    market.stopped().await;
}
