//! The `chogate` binary itself: configuration checks, start-up log, SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

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

#[tokio::test]
async fn serve_should_log_its_addresses_and_unbind_peers_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        "[http]\nlisten = \"127.0.0.1:0\"\n[smpp_server]\nlisten = \"127.0.0.1:0\"\n\
         [[smpp_server.accounts]]\nsystem_id = \"ussdc\"\npassword = \"secret1\"\n[smpp]\ndrain_timeout_secs = 2\n",
    );
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .env("CHOGATE_USSD__MENUS_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/menus"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = tokio::time::timeout(common::PATIENCE, rx.recv()).await.unwrap().expect("daemon exited");
        log.push(line.clone());
        if line.contains("SMPP server listening")
            && let Some(a) = line.split("addr=").nth(1)
        {
            break a.split_whitespace().next().unwrap().parse::<std::net::SocketAddr>().unwrap();
        }
    };
    let mut peer = Peer::bound(addr).await;
    peer.ping().await;

    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let unbind = peer.recv().await.unwrap();
    assert_eq!(unbind.body, Body::Unbind);
    peer.send(&Pdu::new(unbind.sequence, Body::UnbindResp)).await;
    peer.expect_closed().await;
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit {status:?}");
    while let Ok(line) = rx.try_recv() {
        log.push(line);
    }
    let log = log.join("\n");
    assert!(log.contains("HTTP listening"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("secret1"), "password in the log:\n{log}");
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

#[test]
fn menus_check_should_pass_the_shipped_menus_and_name_file_line_and_reason() {
    let out = Command::new(BIN)
        .args(["menus", "check", concat!(env!("CARGO_MANIFEST_DIR"), "/menus")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = bad_menus();
    let out = Command::new(BIN).args(["menus", "check"]).arg(bad.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("10-household.toml:24: screen `sell_qty`: goto = \"sell_prise\": no such screen"),
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
    assert!(err.contains("invalid menus") && err.contains("10-household.toml:24"), "{err}");
}
