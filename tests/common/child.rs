//! The real `chogate serve` binary as a child process: its log lines as events to wait on,
//! SIGKILL and SIGTERM, and the addresses it logged.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::PATIENCE;

pub const BIN: &str = env!("CARGO_BIN_EXE_chogate");

/// A `chogate serve` child and its log.
pub struct Served {
    pub child: Option<Child>,
    log: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every line read so far (also those a wait skipped), for failure messages.
    pub seen: Arc<Mutex<Vec<String>>>,
    /// Where its SMPP server listens.
    pub smpp: SocketAddr,
    /// Where its HTTP server listens.
    pub http: SocketAddr,
}

fn addr_in(line: &str) -> Option<SocketAddr> {
    line.split("addr=").nth(1)?.split_whitespace().next()?.parse().ok()
}

/// Starts `chogate serve --config path` in the working directory `dir` (the menus built in),
/// and waits until it has logged both of its addresses.
pub async fn serve(dir: &Path, config: &Path) -> Served {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, log) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut s = Served {
        child: Some(child),
        log,
        seen: Arc::default(),
        smpp: "0.0.0.0:0".parse().unwrap(),
        http: "0.0.0.0:0".parse().unwrap(),
    };
    let mut smpp = None;
    let mut http = None;
    while smpp.is_none() || http.is_none() {
        let line = s.wait_log(|l| l.contains("SMPP server listening") || l.contains("HTTP listening")).await;
        if line.contains("SMPP server listening") {
            smpp = addr_in(&line);
        } else {
            http = addr_in(&line);
        }
    }
    s.smpp = smpp.unwrap();
    s.http = http.unwrap();
    s
}

impl Served {
    /// The next log line that `matches` (lines before it are kept in `seen`); fails when
    /// none comes within PATIENCE or the daemon exits first.
    pub async fn wait_log(&mut self, matches: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.log.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!("the daemon exited; its log:\n{}", self.log_text()),
                Err(_) => panic!("no such log line in time; the log:\n{}", self.log_text()),
            };
            self.seen.lock().unwrap().push(line.clone());
            if matches(&line) {
                return line;
            }
        }
    }

    /// What it logged so far.
    pub fn log_text(&mut self) -> String {
        while let Ok(line) = self.log.try_recv() {
            self.seen.lock().unwrap().push(line);
        }
        self.seen.lock().unwrap().join("\n")
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("not running").id();
        let ok = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    }

    /// Sends SIGTERM without waiting: the daemon unbinds its peers and drains.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Waits for the daemon to exit; its status.
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("not running");
        tokio::time::timeout(PATIENCE, tokio::task::spawn_blocking(move || child.wait()))
            .await
            .expect("the daemon did not stop")
            .unwrap()
            .unwrap()
    }

    /// SIGKILL, and waits until it is gone.
    pub async fn kill(&mut self) {
        self.signal("-KILL");
        self.exited().await;
    }

    /// SIGTERM, and waits for it to exit (successfully).
    pub async fn stop(&mut self) {
        self.terminate();
        let status = self.exited().await;
        assert!(status.success(), "exit {status:?}:\n{}", self.log_text());
    }

    /// Every line it logged, once it has exited: read to the end of its output.
    pub async fn whole_log(&mut self) -> Vec<String> {
        assert!(self.child.is_none(), "still running");
        while let Some(line) =
            tokio::time::timeout(PATIENCE, self.log.recv()).await.expect("output not closed")
        {
            self.seen.lock().unwrap().push(line);
        }
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Served {
    /// A failed test leaves no daemon behind.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` every 20 ms until it holds, failing after `bound`: for states that show
/// only in the database (a row's status), where there is no line or PDU to wait on.
pub async fn until<F, Fut>(what: &str, bound: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "still not so after {bound:?}: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
