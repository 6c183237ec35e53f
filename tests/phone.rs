//! `chogate phone`: the real binary, bound as a USSD centre to the real daemon (in process,
//! port 0, a fresh SQLite file), driven through a pipe on stdin, one answer per line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{ACCOUNT, PASSWORD, TestDaemon, base_config};

const BIN: &str = env!("CARGO_BIN_EXE_chogate");

/// The phone bounds every wait itself (bind, screens: 10 s); this only turns a hang into a
/// failure.
const PROCESS_PATIENCE: Duration = Duration::from_secs(60);

async fn daemon() -> (TestDaemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config("");
    config.database.url = format!("sqlite://{}", dir.path().join("chogate.db").display());
    (TestDaemon::start(config).await, dir)
}

/// Runs `chogate phone MSISDN --connect .. --system-id .. --password ..` with `input` on
/// stdin (then end of input), while the daemon keeps running on this runtime.
async fn phone(d: &TestDaemon, dir: &tempfile::TempDir, msisdn: &str, password: &str, input: &str) -> Output {
    let mut child = Command::new(BIN)
        .args([
            "phone",
            msisdn,
            "--connect",
            &d.smpp.to_string(),
            "--system-id",
            ACCOUNT,
            "--password",
            password,
        ])
        // No configuration is needed when everything is given: run where there is none.
        .current_dir(dir.path())
        .env_remove("CHOGATE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let wait = tokio::task::spawn_blocking(move || child.wait_with_output());
    tokio::time::timeout(PROCESS_PATIENCE, wait).await.expect("phone did not exit").unwrap().unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_should_show_the_registration_screen_with_its_encoding_to_an_unknown_number() {
    let (d, dir) = daemon().await;
    // Enter dials *384#; x aborts the dialogue; q quits.
    let out = phone(&d, &dir, "84912345678", PASSWORD, "\nx\nq\n").await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    assert!(stdout.contains("Enter = dial *384#"), "{stdout}");
    assert!(stdout.contains("Chợ 384: đăng ký bán hàng"), "{stdout}");
    let encoding = stdout.lines().find(|l| l.starts_with("[UCS2 ")).expect("an encoding line");
    assert!(encoding.ends_with("/80]"), "{encoding}");
    assert!(stdout.contains("(dialogue aborted)"), "{stdout}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_should_register_then_show_the_main_menu_on_the_next_dial() {
    let (d, dir) = daemon().await;
    // A whole registration dialogue, then a second dial, then end of input (which aborts).
    let out = phone(&d, &dir, "0912345679", PASSWORD, "\ndoan ket\n1\n1\nBản Chu\nHoàng Văn A\n1\n\n").await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    assert!(stdout.contains("Bound to chogate") && stdout.contains("phone number 84912345679"), "{stdout}");
    let end = stdout.find("(end of dialogue)").expect("the registration ends on a final screen");
    assert!(stdout[..end].contains("Đã gửi đăng ký."), "{stdout}");
    assert!(
        stdout[end..].contains("Đăng ký chờ xác nhận"),
        "waits for its leader on the next dial: {stdout}"
    );
    assert!(stdout.trim_end().ends_with("Unbinding."), "{stdout}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_should_report_a_refused_bind_by_status_name() {
    let (d, dir) = daemon().await;
    let out = phone(&d, &dir, "84912345678", "wrong", "\n").await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bind refused") && stderr.contains("ESME_RINVPASWD"), "{stderr}");
    d.stop().await;
}

#[tokio::test]
async fn phone_should_refuse_a_number_that_is_not_vietnamese_mobile() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["phone", "12345", "--connect", "127.0.0.1:9", "--system-id", "a", "--password", "b"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not a Vietnamese mobile number"), "{}", text(&out.stderr));
}
