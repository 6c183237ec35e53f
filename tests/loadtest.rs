//! `chogate loadtest`: the real binary in each role against the real daemon (in process,
//! port 0, a fresh SQLite file) or against chogate's own client session. Figures are not
//! asserted (CI machines are noisy): only that the run works and its report says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use bytes::Bytes;
use chogate::smpp::pdu::{Address, Body, Sm, tag};
use chogate::smpp::session::SessionEnd;
use common::{ACCOUNT, PASSWORD, PATIENCE, TestDaemon, base_config, client_session, default_tuning};
use serde_json::Value;
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_chogate");

/// Every run is bounded by its --duration; this only turns a hang into a failure.
const PROCESS_PATIENCE: Duration = Duration::from_secs(90);

/// Self-registration whether the village exists yet or not: the commune by name, the first
/// village of its list ("another village" while there is none, then a village name; or the
/// village, then the household's name), a name (or a wrong key on the confirmation), yes.
const REGISTRATION: &str = "doan ket,1,1,Bản Chu,Hoàng Văn A,1";
const SELL: &str = "1,1,10,25000,1";

async fn daemon(extra: &str) -> (TestDaemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(extra);
    config.database.url = format!("sqlite://{}", dir.path().join("chogate.db").display());
    (TestDaemon::start(config).await, dir)
}

fn loadtest(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("loadtest").args(args).env_remove("CHOGATE_CONFIG").stdin(Stdio::null());
    c
}

/// Runs to the end without blocking the runtime the daemon runs on.
async fn output(mut cmd: Command) -> Output {
    let run = tokio::task::spawn_blocking(move || cmd.output());
    tokio::time::timeout(PROCESS_PATIENCE, run).await.expect("loadtest did not exit").unwrap().unwrap()
}

async fn wait(child: Child) -> Output {
    let run = tokio::task::spawn_blocking(move || child.wait_with_output());
    tokio::time::timeout(PROCESS_PATIENCE, run).await.expect("loadtest did not exit").unwrap().unwrap()
}

/// The one JSON line on stdout.
fn report(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line expected:\n{stdout}\nstderr:\n{stderr}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {}", lines[0]))
}

fn errors_should_be_empty(r: &Value) {
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
}

/// Starts a listening role on port 0 and reads the address it printed on stderr.
async fn spawn_listening(args: &[&str], marker: &'static str) -> (Child, SocketAddr) {
    let mut child = loadtest(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = String::new();
        while let Some(Ok(line)) = lines.next() {
            if let Some(rest) = line.split(marker).nth(1) {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != ';').collect();
                // Keep draining stderr so that progress lines never fill the pipe.
                std::thread::spawn(move || lines.for_each(drop));
                return addr.parse::<SocketAddr>().unwrap();
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        panic!("no {marker:?} on stderr:\n{seen}");
    });
    let addr = tokio::time::timeout(PATIENCE, read).await.expect("no address printed").unwrap();
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ussdc_role_should_register_subscribers_then_sell_without_errors() {
    let (d, _dir) = daemon("").await;
    let addr = d.smpp.to_string();
    let common = ["--role", "ussdc", "--connect", &addr, "--system-id", ACCOUNT, "--password", PASSWORD];
    let common = common.as_slice();

    // Unknown numbers: one registration dialogue each (the run ends when all are done).
    let mut cmd = loadtest(common);
    cmd.args(["--subscribers", "20", "--duration", "30", "--dialogues", "1", "--script", REGISTRATION]);
    let r = report(&output(cmd).await);
    assert_eq!(r["role"], "ussdc");
    assert_eq!(r["subscribers"], 20);
    assert_eq!(r["dialogues"], 20, "{r}");
    assert_eq!(r["steps"], 20 * 7, "{r}");
    errors_should_be_empty(&r);
    assert!(r["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{r}");

    // Their village's team leader confirms them.
    use chogate::market::{Actor, Channel, IdemKey, LeaderDecision};
    let m = d.daemon.as_ref().unwrap().market.clone();
    let cli = Actor::new("test", Channel::Cli);
    let leader = common::fixture::leader(&m, 6001).await;
    let pending = m.village_households(leader.id, true).await.unwrap();
    assert_eq!(pending.len(), 20, "every one in the one village");
    for h in pending {
        m.leader_decides(&cli, IdemKey(format!("c{}", h.id)), leader.id, h.id, LeaderDecision::Confirm)
            .await
            .unwrap();
    }

    // Now registered and confirmed: list produce for 2 s, with a little think time.
    let mut cmd = loadtest(common);
    cmd.args(["--subscribers", "20", "--duration", "2", "--script", SELL, "--think-ms", "5"]);
    let r = report(&output(cmd).await);
    assert!(r["steps"].as_u64().unwrap() > 0, "{r}");
    assert!(r["dialogues"].as_u64().unwrap() > 0, "{r}");
    assert!(r["steps_per_s"].as_f64().unwrap() > 0.0, "{r}");
    for p in ["p50", "p90", "p99", "max"] {
        assert!(r["latency_ms"][p].is_number(), "{r}");
    }
    errors_should_be_empty(&r);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ussdc_role_should_count_a_refused_bind_and_fail() {
    let (d, _dir) = daemon("").await;
    let addr = d.smpp.to_string();
    let out = output(loadtest(&[
        "--role",
        "ussdc",
        "--connect",
        &addr,
        "--system-id",
        ACCOUNT,
        "--password",
        "wrong",
        "--duration",
        "1",
    ]))
    .await;
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(r["errors"]["bind_failed"], 1, "{r}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ESME_RINVPASWD"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsc_role_should_run_dialogues_through_chogates_client_bind() {
    let args = [
        "--role",
        "smsc",
        "--listen",
        "127.0.0.1:0",
        "--system-id",
        "gw",
        "--password",
        "secret",
        "--subscribers",
        "10",
        "--duration",
        "30",
        "--dialogues",
        "1",
        "--script",
        REGISTRATION,
        "--msisdn-base",
        "84950000000",
    ];
    let (child, smsc) = spawn_listening(&args, "SMSC listening on ").await;
    let extra = format!(
        "[[smsc]]\nname = \"op\"\nhost = \"127.0.0.1\"\nport = {}\nsystem_id = \"gw\"\npassword = \"secret\"\n",
        smsc.port()
    );
    let (d, _dir) = daemon(&extra).await;
    let r = report(&wait(child).await);
    assert_eq!(r["role"], "smsc");
    assert_eq!(r["dialogues"], 10, "{r}");
    errors_should_be_empty(&r);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_gateway_should_serve_a_ussdc_run_to_its_final_screens() {
    // Two scripts of different lengths, taken round-robin by both sides.
    let scripts = ["--script", SELL, "--script", "9", "--msisdn-base", "84960000000"];
    let mut args = vec![
        "--role",
        "null-gateway",
        "--listen",
        "127.0.0.1:0",
        "--system-id",
        "ussdc",
        "--password",
        "pw",
        "--duration",
        "30",
    ];
    args.extend(scripts);
    let (child, gateway) = spawn_listening(&args, "listening on ").await;
    let addr = gateway.to_string();
    let mut args = vec!["--role", "ussdc", "--connect", &addr, "--system-id", "ussdc", "--password", "pw"];
    args.extend(["--subscribers", "10", "--duration", "30", "--dialogues", "3"]);
    args.extend(scripts);
    let r = report(&output(loadtest(&args)).await);
    assert_eq!(r["dialogues"], 30, "{r}");
    // Five subscribers with 6 steps a dialogue, five with 2.
    assert_eq!(r["steps"], 3 * (5 * 6 + 5 * 2), "{r}");
    errors_should_be_empty(&r);
    // The generator unbinds at its end, which ends the null gateway's run.
    let g = report(&wait(child).await);
    assert_eq!(g["role"], "null-gateway");
    assert_eq!(g["steps"], r["steps"], "{g}");
    assert_eq!(g["dialogues"], 30, "{g}");
    errors_should_be_empty(&g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mt_sink_should_answer_submits_and_send_receipts() {
    let args = [
        "--role",
        "mt-sink",
        "--listen",
        "127.0.0.1:0",
        "--system-id",
        "sink",
        "--password",
        "pw",
        "--duration",
        "3",
        "--receipt-delay-ms",
        "20",
    ];
    let (child, sink) = spawn_listening(&args, "listening on ").await;

    // A tiny ESME on chogate's own client session.
    let stream = tokio::net::TcpStream::connect(sink).await.unwrap();
    let (tx, mut receipts) = mpsc::channel(16);
    let (handle, run, shutdown) = client_session(stream, "sink", "pw", tx.into(), default_tuning());
    tokio::time::timeout(PATIENCE, handle.wait_bound()).await.unwrap().unwrap();

    let mut ids = Vec::new();
    for i in 0..5 {
        let sm = Sm {
            source: Address { ton: 5, npi: 0, addr: "CHO384".into() },
            dest: Address::international(format!("8491234560{i}")),
            esm_class: 0,
            registered_delivery: 1,
            data_coding: 0,
            short_message: Bytes::from_static(b"Don hang moi"),
            ..Sm::default()
        };
        let resp = handle.request(Body::SubmitSm(Box::new(sm))).await.unwrap();
        assert_eq!(resp.status, 0);
        let Body::SubmitSmResp(r) = resp.body else { panic!("{resp:?}") };
        assert!(!r.message_id.is_empty());
        ids.push(r.message_id);
    }
    let mut receipted = Vec::new();
    for _ in 0..5 {
        let req = tokio::time::timeout(PATIENCE, receipts.recv()).await.unwrap().unwrap();
        let Body::DeliverSm(sm) = &req.pdu.body else { panic!("{:?}", req.pdu) };
        assert_eq!(sm.esm_class, 0x04);
        assert_eq!(sm.dest.addr, "CHO384");
        assert_eq!(sm.tlvs.get_u8(tag::MESSAGE_STATE), Some(2));
        let id = sm.tlvs.get_cstr(tag::RECEIPTED_MESSAGE_ID).unwrap();
        let text = String::from_utf8_lossy(&sm.short_message).into_owned();
        assert!(text.starts_with(&format!("id:{id} sub:001 dlvr:001 submit date:")), "{text}");
        assert!(text.contains(" stat:DELIVRD err:000 text:"), "{text}");
        req.responder.respond(0, "").await;
        receipted.push(id);
    }
    receipted.sort();
    ids.sort();
    assert_eq!(receipted, ids);

    shutdown.cancel();
    let end = tokio::time::timeout(PATIENCE, run).await.unwrap().unwrap();
    assert_eq!(end, SessionEnd::Shutdown);
    let r = report(&wait(child).await);
    assert_eq!(r["role"], "mt-sink");
    assert_eq!((r["submits"].as_u64(), r["receipts"].as_u64()), (Some(5), Some(5)), "{r}");
    errors_should_be_empty(&r);
}

#[tokio::test]
async fn loadtest_should_refuse_addresses_that_are_not_loopback() {
    let out = output(loadtest(&[
        "--role",
        "ussdc",
        "--connect",
        "192.0.2.1:2775",
        "--system-id",
        "a",
        "--password",
        "b",
    ]))
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}
