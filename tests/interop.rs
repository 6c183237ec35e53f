#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Interoperability: chogate against SMPP implementations that are not ours.
//!
//! Server role: a USSD centre written with Python's `smpplib` binds to chogate
//! (`tests/interop/smpplib_peer.py`). Client role: chogate binds to an SMSC written with
//! the npm package `smpp` (`tests/interop/smsc.js`). Each test starts the real daemon
//! in-process on port 0 and runs the foreign peer as a child process, asserting on the
//! lines it prints (one per protocol step) and on its exit status.
//!
//! The peers' libraries are pinned in `tests/interop/requirements.txt` and
//! `tests/interop/package-lock.json` and installed on first use under
//! `<target>/tmp/interop/` (pip `--target`, `npm ci`), so that a plain `cargo test` works
//! on a machine with python3, pip, node and npm. If they cannot be installed the tests
//! fail saying why; they never skip.

mod common;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use chogate::smpp::pdu::BindKind;
use chogate::smpp::session::SessionState;
use common::{ACCOUNT, PASSWORD, PATIENCE, TestDaemon, base_config, base_config_with};
use tokio::sync::mpsc;

/// Credentials chogate binds to the node SMSC with (the SMSC checks them).
const SMSC_NAME: &str = "node-smsc";
const SMSC_SYSTEM_ID: &str = "chogw";
const SMSC_PASSWORD: &str = "gwpass1";
const SMSC_SYSTEM_TYPE: &str = "USSDGW";

// ---------------------------------------------------------------------------------------
// Installing the foreign peers' libraries, once per test binary.
// ---------------------------------------------------------------------------------------

/// The scripts and the pinned dependency lists.
fn tls_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop")
}

fn install_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop")
}

/// Installs on first use (once per test binary), off the async runtime; panics, saying why,
/// if it cannot: a missing peer is a failed test, not a skipped one.
async fn installed(
    cell: &'static OnceLock<Result<PathBuf, String>>,
    what: &'static str,
    install: fn(&Path) -> Result<PathBuf, String>,
) -> &'static Path {
    let got = tokio::task::spawn_blocking(move || {
        cell.get_or_init(|| {
            let root = install_root();
            std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
            install(&root)
        })
        .as_ref()
    })
    .await
    .unwrap();
    match got {
        Ok(path) => path,
        Err(e) => panic!("{what} for the interop tests is not available: {e}"),
    }
}

/// For PYTHONPATH: a directory holding `smpplib`.
async fn python_path() -> &'static Path {
    static CELL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    installed(&CELL, "Python's smpplib", install_python).await
}

/// For NODE_PATH: a `node_modules` holding `smpp`.
async fn node_path() -> &'static Path {
    static CELL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    installed(&CELL, "the npm package smpp", install_node).await
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A directory name that changes whenever the pinned versions change.
fn keyed(prefix: &str, inputs: &[&[u8]]) -> String {
    let mut h = DefaultHasher::new();
    inputs.hash(&mut h);
    format!("{prefix}-{:016x}", h.finish())
}

/// Runs an installer or a check; Err carries its output.
fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}):\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Makes sure `dir` holds a good installation: keeps it if `check` passes, otherwise
/// installs into a fresh temporary directory with `fill` and renames that into place, so a
/// concurrent run (another test binary, another cargo) never sees a half-made one.
fn ensure_installed(
    dir: &Path,
    check: impl Fn(&Path) -> Result<(), String>,
    fill: impl Fn(&Path) -> Result<(), String>,
) -> Result<(), String> {
    if check(dir).is_ok() {
        return Ok(());
    }
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let filled = fill(&tmp);
    if let Err(e) = filled {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if std::fs::rename(&tmp, dir).is_err() {
        // Someone else finished first, or a broken installation is in the way.
        if check(dir).is_err() {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::rename(&tmp, dir)
                .map_err(|e| format!("cannot move {} to {}: {e}", tmp.display(), dir.display()))?;
        }
        let _ = std::fs::remove_dir_all(&tmp);
    }
    check(dir).map_err(|e| format!("installed into {} but still unusable: {e}", dir.display()))
}

/// `smpplib` (pinned in requirements.txt) via `pip install --target`.
fn install_python(root: &Path) -> Result<PathBuf, String> {
    let requirements = interop_dir().join("requirements.txt");
    let dir = root.join(keyed("py", &[&read(&requirements)?]));
    let check = |dir: &Path| {
        run(
            Command::new("python3").args(["-s", "-c", "import smpplib.client"]).env("PYTHONPATH", dir),
            "python3 -c 'import smpplib.client'",
        )
    };
    let fill = |tmp: &Path| {
        run(
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"])
                .arg("--target")
                .arg(tmp)
                .arg("-r")
                .arg(&requirements)
                .env("PIP_ROOT_USER_ACTION", "ignore"),
            "pip install -r tests/interop/requirements.txt",
        )
    };
    ensure_installed(&dir, check, fill)?;
    Ok(dir)
}

/// `smpp` (pinned in package-lock.json) via `npm ci` in a copy of the package files.
fn install_node(root: &Path) -> Result<PathBuf, String> {
    let src = interop_dir();
    let manifest = read(&src.join("package.json"))?;
    let lock = read(&src.join("package-lock.json"))?;
    let dir = root.join(keyed("node", &[&manifest, &lock]));
    let check = |dir: &Path| {
        run(
            Command::new("node")
                .args(["-e", "require('smpp')"])
                .env("NODE_PATH", dir.join("node_modules"))
                .current_dir(dir),
            "node -e \"require('smpp')\"",
        )
    };
    let fill = |tmp: &Path| {
        for (name, bytes) in [("package.json", &manifest), ("package-lock.json", &lock)] {
            std::fs::write(tmp.join(name), bytes).map_err(|e| format!("cannot write {name}: {e}"))?;
        }
        run(
            Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(tmp),
            "npm ci (tests/interop/package-lock.json)",
        )
    };
    ensure_installed(&dir, check, fill)?;
    Ok(dir.join("node_modules"))
}

// ---------------------------------------------------------------------------------------
// Running a foreign peer and reading what it prints.
// ---------------------------------------------------------------------------------------

/// A foreign peer running as a child process. Its stdout lines arrive on a channel fed by
/// a reader thread; its stderr is kept for failure reports. Killed if dropped unfinished.
struct Foreign {
    name: &'static str,
    child: Option<Child>,
    /// Held open: smsc.js exits when it closes.
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    transcript: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Foreign {
    fn spawn(name: &'static str, mut cmd: Command) -> Foreign {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let kept = Arc::new(Mutex::new(String::new()));
        let sink = kept.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap_or_else(PoisonError::into_inner);
                s.push_str(&line);
                s.push('\n');
            }
        });
        let stdin = child.stdin.take();
        Foreign { name, child: Some(child), stdin, lines, transcript: Vec::new(), stderr: kept }
    }

    /// What the peer printed so far, for failure messages.
    fn report(&self) -> String {
        let stderr = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        format!(
            "--- {} stdout\n{}\n--- {} stderr\n{}",
            self.name,
            self.transcript.join("\n"),
            self.name,
            stderr.as_str()
        )
    }

    /// The next stdout line, or None at end of output.
    async fn next_line(&mut self) -> Option<String> {
        let Ok(line) = tokio::time::timeout(PATIENCE, self.lines.recv()).await else {
            panic!("{} printed nothing within {PATIENCE:?}\n{}", self.name, self.report());
        };
        let line = line?;
        self.transcript.push(line.clone());
        Some(line)
    }

    /// Asserts that the next line starts with `prefix`; returns the rest of it.
    async fn expect_prefix(&mut self, prefix: &str) -> String {
        match self.next_line().await {
            Some(line) if line.starts_with(prefix) => line[prefix.len()..].to_owned(),
            Some(_) => panic!("{}: expected a line starting with {prefix:?}\n{}", self.name, self.report()),
            None => panic!("{} ended before printing {prefix:?}\n{}", self.name, self.report()),
        }
    }

    /// Asserts that the next line is `expected`.
    async fn expect(&mut self, expected: &str) {
        let rest = self.expect_prefix(expected).await;
        assert!(rest.is_empty(), "{}: expected the line {expected:?}\n{}", self.name, self.report());
    }

    /// Reads the rest of the output and waits for the process to exit.
    async fn finish(mut self) -> Finished {
        while self.next_line().await.is_some() {}
        drop(self.stdin.take());
        let mut child = self.child.take().unwrap();
        let status = tokio::time::timeout(PATIENCE, tokio::task::spawn_blocking(move || child.wait()))
            .await
            .unwrap_or_else(|_| panic!("{} closed stdout but did not exit\n{}", self.name, self.report()))
            .unwrap()
            .unwrap();
        Finished { status, report: self.report(), lines: std::mem::take(&mut self.transcript) }
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A foreign peer that has exited.
struct Finished {
    status: ExitStatus,
    lines: Vec<String>,
    report: String,
}

impl Finished {
    /// The one line starting with `prefix`, without the prefix.
    fn line(&self, prefix: &str) -> &str {
        let found: Vec<&str> = self.lines.iter().filter_map(|l| l.strip_prefix(prefix)).collect();
        assert_eq!(found.len(), 1, "expected one line starting with {prefix:?}\n{}", self.report);
        found[0]
    }

    /// Asserts that the one line starting with `prefix` ends with `suffix`.
    fn assert_line_ends(&self, prefix: &str, suffix: &str) {
        let rest = self.line(prefix);
        assert!(rest.ends_with(suffix), "line {prefix:?}... should end with {suffix:?}\n{}", self.report);
    }

    /// Asserts the steps, in order, by their first word (ignoring the answers to
    /// chogate's own enquire_links, which may or may not come).
    fn assert_steps(&self, steps: &[&str]) {
        let got: Vec<&str> = self
            .lines
            .iter()
            .map(|l| l.split(' ').next().unwrap_or(""))
            .filter(|w| *w != "ANSWERED_ENQUIRE_LINK")
            .collect();
        assert_eq!(got, steps, "unexpected steps\n{}", self.report);
    }
}

// ---------------------------------------------------------------------------------------
// Server role: smpplib binds to chogate.
// ---------------------------------------------------------------------------------------

/// Runs a script of tests/interop against the daemon's SMPP server (its address, then
/// `args`) with smpplib on its path, until it exits.
async fn run_smpplib_script(daemon: &TestDaemon, script: &'static str, args: &[&str]) -> Finished {
    run_smpplib_script_at(daemon.smpp, None, script, args).await
}

/// Like [`run_smpplib_script`], against `addr`, in TLS checked against `ca` when given.
async fn run_smpplib_script_at(
    addr: std::net::SocketAddr,
    ca: Option<PathBuf>,
    script: &'static str,
    args: &[&str],
) -> Finished {
    let python_path = python_path().await;
    let mut cmd = Command::new("python3");
    cmd.arg("-s")
        .arg(interop_dir().join(script))
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args(args)
        .env("PYTHONPATH", python_path)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    if let Some(ca) = ca {
        cmd.env("CHOGATE_TLS_CA", ca);
    }
    Foreign::spawn(script, cmd).finish().await
}

/// Runs one scenario of smpplib_peer.py against the daemon and asserts that it passed.
async fn smpplib(daemon: &TestDaemon, system_id: &str, password: &str, scenario: &str) -> Finished {
    let done = run_smpplib_script(daemon, "smpplib_peer.py", &[system_id, password, scenario]).await;
    assert!(done.status.success(), "smpplib scenario {scenario} failed ({})\n{}", done.status, done.report);
    assert_eq!(done.lines.last().map(String::as_str), Some(&*format!("PASS {scenario}")), "{}", done.report);
    done
}

/// Issue 4's proof through a peer that is not ours: 1 000 subscribers with their dialogues
/// open at once over one smpplib bind, each registering through the menus (dial, then six
/// answers). The script checks every screen: deliver_sm to the right number, op 2 while
/// inputs remain and 17 at the end, its_session_info echoed with the end bit exactly on the
/// final screen, every submit_sm_resp status 0.
#[tokio::test]
async fn smpplib_1000_concurrent_subscribers_should_register_with_correct_ops_and_sessions() {
    let daemon = TestDaemon::start(base_config("")).await;
    let done =
        run_smpplib_script(&daemon, "smpplib_load.py", &[ACCOUNT, PASSWORD, "1000", "84930000000"]).await;
    assert!(done.status.success(), "smpplib load failed ({})\n{}", done.status, done.report);
    let result = done.line("RESULT ");
    assert!(
        result.starts_with("completed=1000 of 1000 ") && result.ends_with("screens=7000 errors={}"),
        "{result}"
    );
    // Every one of them is registered now.
    let market = daemon.daemon.as_ref().unwrap().market.clone();
    for i in [0u64, 499, 999] {
        let msisdn = format!("{}", 84930000000u64 + i);
        assert!(market.household_by_msisdn(&msisdn).await.unwrap().is_some(), "{msisdn} not registered");
    }
    assert_eq!(market.stats().await.unwrap().households, 1000);
    daemon.stop().await;
}

fn assert_no_binds(daemon: &TestDaemon) {
    let registry = &daemon.daemon.as_ref().unwrap().registry;
    assert_eq!(registry.summary(), Vec::<(String, usize)>::new(), "a session outlived its connection");
}

#[tokio::test]
async fn smpplib_bind_should_succeed_and_unbind_cleanly() {
    let daemon = TestDaemon::start(base_config("")).await;

    let done = smpplib(&daemon, ACCOUNT, PASSWORD, "bind_ok").await;

    done.assert_steps(&[
        "CONNECTED",
        "BOUND",
        "ENQUIRE_LINK_RESP",
        "UNBIND_RESP",
        "CLOSED_BY_SERVER",
        "PASS",
    ]);
    // smpplib parsed chogate's bind_transceiver_resp, sc_interface_version TLV included, in
    // its strict mode (an unknown TLV would have failed it).
    done.assert_line_ends("BOUND ", " system_id=chogate sc_interface_version=0x34");
    done.assert_line_ends("UNBIND_RESP ", " status=0x00000000");
    // chogate closed the connection after unbind_resp, having unregistered the session.
    assert_no_binds(&daemon);
    daemon.stop().await;
}

#[tokio::test]
async fn smpplib_bad_password_should_get_invpaswd() {
    let daemon = TestDaemon::start(base_config("")).await;

    let done = smpplib(&daemon, ACCOUNT, "wrongpw", "bad_password").await;

    done.assert_steps(&["CONNECTED", "BIND_REFUSED", "CLOSED_BY_SERVER", "PASS"]);
    // smpplib raised PDUError carrying ESME_RINVPASWD, and described it by its own table.
    done.assert_line_ends(
        "BIND_REFUSED ",
        "status=0x0000000e ((14) bind_transceiver_resp: Invalid Password)",
    );
    assert_no_binds(&daemon);
    daemon.stop().await;
}

#[tokio::test]
async fn smpplib_submit_should_be_answered_on_the_same_bind() {
    smpplib_submit(false).await;
}

/// A USSD centre that speaks SMPP over TLS through Python's ssl (OpenSSL) binds to chogate's
/// TLS listener, checking its certificate against the test CA and the name `localhost`; the
/// USSD exchange is the same as in plain TCP.
#[tokio::test]
async fn smpplib_over_tls_should_bind_and_get_its_screen() {
    smpplib_submit(true).await;
}

/// smpplib_peer.py's submit scenario, in plain TCP or in TLS.
async fn smpplib_submit(tls: bool) {
    let mut config = base_config("");
    if tls {
        config.smpp_server.tls_listen = Some("127.0.0.1:0".parse().unwrap());
        config.smpp_server.tls_cert = Some(tls_fixture("server.pem"));
        config.smpp_server.tls_key = Some(tls_fixture("server.key"));
    }
    let daemon = TestDaemon::start(config).await;
    let addr =
        if tls { daemon.daemon.as_ref().unwrap().smpp_tls_addr.expect("TLS listener") } else { daemon.smpp };
    let ca = tls.then(|| tls_fixture("ca.pem"));
    let done = run_smpplib_script_at(addr, ca, "smpplib_peer.py", &[ACCOUNT, PASSWORD, "submit"]).await;
    assert!(done.status.success(), "smpplib submit (tls: {tls}) failed ({})\n{}", done.status, done.report);
    let mut steps = vec!["CONNECTED", "BOUND", "SUBMIT_SM", "SUBMIT_SM_RESP", "SCREEN"];
    steps.extend(["ENQUIRE_LINK_RESP", "UNBIND_RESP", "CLOSED_BY_SERVER", "PASS"]);
    if tls {
        steps.insert(1, "TLS");
        assert!(done.line("TLS ").starts_with("TLSv1."), "{}", done.report);
    }
    done.assert_steps(&steps);
    // The script checks this too; checked here again from what it printed.
    let seq = done.line("SUBMIT_SM seq=");
    assert_eq!(
        done.line("SUBMIT_SM_RESP "),
        format!("seq={seq} status=0x00000000"),
        "submit_sm_resp should carry the submit's sequence and status 0\n{}",
        done.report
    );
    // The registration screen (the number is not registered): op 2, session 0x12 echoed,
    // Vietnamese as UCS2.
    assert_eq!(done.line("SCREEN "), "op=2 its_session_info=0x1200 data_coding=8", "{}", done.report);
    assert_no_binds(&daemon);
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------
// Client role: chogate binds to a node-smpp SMSC.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn node_smpp_smsc_should_accept_chogate_bind_and_see_unbind_on_shutdown() {
    node_smsc_session(false).await;
}

/// The same through TLS: node's `tls` server (not rustls) with the test CA's certificate;
/// chogate checks it against `tls_ca` and the name `localhost`.
#[tokio::test]
async fn node_smpp_smsc_over_tls_should_accept_chogate_bind_and_see_unbind_on_shutdown() {
    node_smsc_session(true).await;
}

/// One session with smsc.js from bind to unbind, in TLS or not.
async fn node_smsc_session(tls: bool) {
    let node_path = node_path().await;
    let mut cmd = Command::new("node");
    cmd.arg(interop_dir().join("smsc.js"))
        .args([SMSC_SYSTEM_ID, SMSC_PASSWORD, SMSC_SYSTEM_TYPE])
        .env("NODE_PATH", node_path);
    if tls {
        cmd.env("SMSC_TLS_CERT", tls_fixture("server.pem")).env("SMSC_TLS_KEY", tls_fixture("server.key"));
    }
    let mut smsc = Foreign::spawn("smsc.js", cmd);
    let port: u16 = smsc.expect_prefix("LISTENING ").await.parse().expect("LISTENING <port>");

    // The response and drain timeouts are far beyond PATIENCE: `stop` below finishes in time
    // only if chogate takes node-smpp's unbind_resp as the answer to its unbind (without it,
    // chogate would wait for min(response, drain) timeout before closing).
    let extra = format!(
        r#"
[[smsc]]
name = "{SMSC_NAME}"
host = "127.0.0.1"
port = {port}
system_id = "{SMSC_SYSTEM_ID}"
password = "{SMSC_PASSWORD}"
system_type = "{SMSC_SYSTEM_TYPE}"
bind = "transceiver"
reconnect_min_ms = 50
reconnect_max_ms = 200
{tls}
"#,
        tls = if tls {
            format!(
                "tls = true\ntls_ca = \"{}\"\ntls_server_name = \"localhost\"",
                tls_fixture("ca.pem").display()
            )
        } else {
            String::new()
        }
    );
    let smpp = "response_timeout_secs = 120\ndrain_timeout_secs = 120";
    let daemon = TestDaemon::start(base_config_with(smpp, &extra)).await;

    smsc.expect(if tls { "SESSION 1 TLSv1.3" } else { "SESSION 1" }).await;
    // node-smpp decoded chogate's bind_transceiver: credentials, system_type, version 3.4.
    smsc.expect(&format!("BOUND {SMSC_SYSTEM_ID} 0x34")).await;
    smsc.expect("ENQUIRE_LINK_RESP").await;
    // The USSD deliver_sm was decoded and answered on the bind, then the first screen came
    // back as a submit_sm with op 2 and the session echoed.
    smsc.expect("DELIVER_SM_RESP 0").await;
    smsc.expect("SCREEN 2 1200").await;

    // chogate's side: it took node-smpp's bind_transceiver_resp (it answered the
    // enquire_link after it) and registered the bind under the SMSC's name.
    let registry = daemon.daemon.as_ref().unwrap().registry.clone();
    assert_eq!(registry.summary(), vec![(SMSC_NAME.to_owned(), 1)], "{}", smsc.report());
    assert_eq!(registry.get(SMSC_NAME)[0].state(), SessionState::Bound(BindKind::Transceiver));

    daemon.stop().await;
    assert_eq!(registry.summary(), Vec::<(String, usize)>::new(), "bind still registered after stop");

    smsc.expect("UNBIND").await;
    smsc.expect("CLOSED").await;
    let done = smsc.finish().await;
    assert!(done.status.success(), "smsc.js failed ({})\n{}", done.status, done.report);
    assert_eq!(done.lines.last().map(String::as_str), Some("CLOSED"), "{}", done.report);
}
