//! The server role: USSD centres (and other ESMEs) bind to chogate.
//!
//! Accounts come from `[[smpp_server.accounts]]`. A wrong system_id or password is refused
//! with `ESME_RINVPASWD` (the same status for both, so nothing tells which system_ids
//! exist), after a delay that doubles with each consecutive failure from the same address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::pdu::Bind;
use super::session::{
    self, Authenticator, BindDecision, Grant, Inbound, Registry, RoleParams, SessionParams, Tuning,
};
use super::status;
use crate::config::{ServerAccount, SmppTuning};

/// The system_id chogate answers binds with.
pub const SYSTEM_ID: &str = "chogate";

/// After this long without a failure an address starts again from the base delay.
const FAILURE_MEMORY: Duration = Duration::from_secs(600);
/// Addresses remembered at most (oldest forgotten first).
const FAILURE_TABLE_MAX: usize = 10_000;

struct Account {
    config: ServerAccount,
    binds: Arc<AtomicU32>,
}

/// Checks binds against the configured accounts and slows down repeated failures.
pub struct Accounts {
    accounts: HashMap<String, Account>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    base_delay: Duration,
    max_delay: Duration,
}

struct BindCount(Arc<AtomicU32>);

impl Drop for BindCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Compares two strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Accounts {
    /// Accounts from configuration.
    pub fn new(accounts: &[ServerAccount], tuning: &SmppTuning) -> Self {
        Accounts {
            accounts: accounts
                .iter()
                .map(|a| {
                    (a.system_id.clone(), Account { config: a.clone(), binds: Arc::new(AtomicU32::new(0)) })
                })
                .collect(),
            failures: Mutex::new(HashMap::new()),
            base_delay: tuning.failed_bind_delay(),
            max_delay: tuning.failed_bind_max_delay(),
        }
    }

    fn failure_delay(&self, ip: IpAddr) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if failures.len() >= FAILURE_TABLE_MAX {
            failures.retain(|_, (_, at)| now.duration_since(*at) < FAILURE_MEMORY);
            if failures.len() >= FAILURE_TABLE_MAX {
                failures.clear();
            }
        }
        let entry = failures.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURE_MEMORY {
            entry.0 = 0;
        }
        let n = entry.0.min(16);
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        if n == 0 {
            return self.base_delay.min(self.max_delay);
        }
        self.base_delay.saturating_mul(1u32 << n).min(self.max_delay)
    }

    fn forget_failures(&self, ip: IpAddr) {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).remove(&ip);
    }
}

impl Authenticator for Accounts {
    fn authenticate(&self, peer: SocketAddr, bind: &Bind) -> BindDecision {
        let account = self.accounts.get(&bind.system_id);
        let ok = match account {
            Some(a) => constant_time_eq(a.config.password.expose().as_bytes(), bind.password.as_bytes()),
            None => {
                // Spend the same time as for a known account.
                let _ = constant_time_eq(bind.password.as_bytes(), bind.password.as_bytes());
                false
            }
        };
        let Some(account) = account.filter(|_| ok) else {
            let delay = self.failure_delay(peer.ip());
            return BindDecision::Reject { status: status::ESME_RINVPASWD, delay };
        };
        self.forget_failures(peer.ip());
        let n = account.binds.fetch_add(1, Ordering::AcqRel);
        let guard = BindCount(account.binds.clone());
        if n >= account.config.max_binds {
            drop(guard);
            warn!(system_id = %bind.system_id, max = account.config.max_binds, "too many binds for account");
            return BindDecision::Reject { status: status::ESME_RBINDFAIL, delay: Duration::ZERO };
        }
        BindDecision::Accept(Grant {
            label: Arc::from(account.config.system_id.as_str()),
            system_id: SYSTEM_ID.to_owned(),
            window: account.config.window as usize,
            guard: Box::new(guard),
        })
    }
}

/// What the accept loop needs.
pub struct ServerContext {
    /// Bind checks.
    pub accounts: Arc<Accounts>,
    /// Engine settings.
    pub tuning: SmppTuning,
    /// Where peers' requests go.
    pub inbound: Inbound,
    /// Bound sessions.
    pub registry: Arc<Registry>,
}

/// Accepts connections until shutdown; every session runs on `tracker` and unbinds
/// gracefully when `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    ctx: ServerContext,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let auth: Arc<dyn Authenticator> = ctx.accounts.clone();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                warn!(error = %e, "accept failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        info!(%peer, "SMPP connection");
        let params = SessionParams {
            role: RoleParams::Server(auth.clone()),
            tuning: Tuning::new(&ctx.tuning, 1),
            inbound: ctx.inbound.clone(),
            registry: ctx.registry.clone(),
            shutdown: shutdown.clone(),
        };
        let (_handle, run) = session::start(stream, params);
        tracker.spawn(run);
    }
    info!("SMPP server stopped accepting");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::smpp::pdu::BindKind;

    fn accounts() -> Accounts {
        let acct = ServerAccount {
            system_id: "ussdc".into(),
            password: Secret::new("pw"),
            max_binds: 1,
            window: 10,
            reply_pdu: Default::default(),
            dialogue_key: Default::default(),
            text_mode: Default::default(),
        };
        let tuning =
            SmppTuning { failed_bind_delay_ms: 100, failed_bind_max_delay_ms: 1000, ..SmppTuning::default() };
        Accounts::new(&[acct], &tuning)
    }

    fn peer() -> SocketAddr {
        "10.1.2.3:5000".parse().unwrap()
    }

    #[test]
    fn wrong_password_and_unknown_system_id_should_both_be_invpaswd() {
        let a = accounts();
        for bind in
            [Bind::new(BindKind::Transceiver, "ussdc", "nope"), Bind::new(BindKind::Transceiver, "who", "pw")]
        {
            match a.authenticate(peer(), &bind) {
                BindDecision::Reject { status, .. } => assert_eq!(status, status::ESME_RINVPASWD),
                BindDecision::Accept(_) => panic!("accepted"),
            }
        }
    }

    #[test]
    fn repeated_failures_should_double_the_delay_up_to_the_cap() {
        let a = accounts();
        let bad = Bind::new(BindKind::Transceiver, "ussdc", "nope");
        let delays: Vec<_> = (0..6)
            .map(|_| match a.authenticate(peer(), &bad) {
                BindDecision::Reject { delay, .. } => delay.as_millis(),
                BindDecision::Accept(_) => panic!(),
            })
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn max_binds_should_be_enforced_and_released_on_drop() {
        let a = accounts();
        let good = Bind::new(BindKind::Transceiver, "ussdc", "pw");
        let BindDecision::Accept(grant) = a.authenticate(peer(), &good) else { panic!() };
        assert!(matches!(
            a.authenticate(peer(), &good),
            BindDecision::Reject { status: status::ESME_RBINDFAIL, .. }
        ));
        drop(grant);
        assert!(matches!(a.authenticate(peer(), &good), BindDecision::Accept(_)));
    }

    #[test]
    fn constant_time_eq_should_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
