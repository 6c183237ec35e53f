//! A throwaway PostgreSQL cluster of a test's own (one it may restart), made like
//! scripts/test.sh makes the suite's: the machine's binaries, a data directory in a temporary
//! folder, 127.0.0.1 on a free port, trust auth, no fsync; as root, run as the postgres user.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_root: bool,
    pub port: u16,
}

/// The newest `/usr/lib/postgresql/*/bin`; its absence is a failure, never a skip.
fn pg_bin() -> PathBuf {
    let mut bins: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    bins.sort();
    bins.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL binaries under /usr/lib/postgresql/*/bin: this test runs a PostgreSQL \
             cluster of its own, to restart it. Run scripts/test.sh, which installs them \
             (Debian's postgresql package), or apt-get install postgresql."
        )
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl PgCluster {
    /// initdb and start; fails the test with the server's log when it cannot.
    pub fn start() -> PgCluster {
        let bin = pg_bin();
        let dir = tempfile::Builder::new().prefix("chogate-pg").tempdir().unwrap();
        let as_root = is_root();
        if as_root {
            let ok = Command::new("chown").arg("postgres:").arg(dir.path()).status().unwrap();
            assert!(ok.success(), "chown postgres {}", dir.path().display());
        }
        let mut c = PgCluster { bin, dir, as_root, port: 0 };
        let data = c.data();
        let out = c.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"],
        );
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        for _ in 0..10 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let opts = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=100",
                c.dir.path().display()
            );
            let log = format!("{}/server.log", c.dir.path().display());
            let out = c.run("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "-o", &opts, "start"]);
            if out.status.success() {
                c.port = port;
                return c;
            }
        }
        panic!("PostgreSQL did not start: {}", c.server_log());
    }

    fn data(&self) -> String {
        format!("{}/data", self.dir.path().display())
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.args(args).current_dir(Path::new("/")).output().unwrap()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl restart -m fast`: every connection is cut, the server is down for a moment and
    /// up again (with the options it was started with) when this returns.
    pub fn restart(&self) {
        let data = self.data();
        // Its output to the log file: a server holding our pipes would never let this return.
        let log = format!("{}/server.log", self.dir.path().display());
        let out = self.run("pg_ctl", &["-D", &data, "-l", &log, "-m", "fast", "-w", "-t", "60", "restart"]);
        assert!(
            out.status.success(),
            "pg_ctl restart failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            self.server_log()
        );
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
    }
}
