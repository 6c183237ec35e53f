//! The server role: USSD centres (and other ESMEs) bind to chogate.
//!
//! Accounts come from `[[smpp_server.accounts]]`. A wrong system_id or password is refused
//! with `ESME_RINVPASWD` (the same status for both, so nothing tells which system_ids
//! exist), and so is a right one from an address the account does not allow. Guessing is
//! slowed and then stopped per address (an IPv6 /64 counts as one):
//! - every answer to a bind, right or wrong, waits the same delay, which grows with the
//!   address's recent failures (none: at once; then the base delay, doubling up to a cap), so
//!   the time of an answer tells nothing before its status does;
//! - after `failed_bind_limit` failures within `failed_bind_window_secs` the address is
//!   refused (`ESME_RBINDFAIL`) for `failed_bind_cooldown_secs` whatever it sends;
//! - the table of addresses is bounded; when full the address seen longest ago goes.
//!
//! Connections are limited in all (`max_connections`, a semaphore taken before `accept`) and
//! per address (`max_connections_per_ip`, checked before a session starts).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::pdu::Bind;
use super::session::{
    self, Authenticator, BindDecision, Grant, Inbound, Registry, RoleParams, SessionParams, Tuning,
};
use super::status;
use super::transport::Conn;
use crate::config::{ServerAccount, SmppServerConfig, SmppTuning};
use crate::metrics::{self, Refusal};

/// The system_id chogate answers binds with.
pub const SYSTEM_ID: &str = "chogate";

/// Addresses remembered at most (the one seen longest ago forgotten first).
const FAILURE_TABLE_MAX: usize = 10_000;

struct Account {
    config: ServerAccount,
    binds: Arc<AtomicU32>,
    prefixes: Arc<[String]>,
}

/// What is known of one address's failed binds.
#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Failures since `since`.
    count: u32,
    /// Start of the window they are counted in.
    since: Instant,
    /// Last time the address bound or tried to (for eviction).
    seen: Instant,
    /// Refused whatever it sends until then.
    locked_until: Option<Instant>,
}

/// The limits on failed binds.
#[derive(Debug, Clone, Copy)]
struct BindLimits {
    base_delay: Duration,
    max_delay: Duration,
    limit: u32,
    window: Duration,
    cooldown: Duration,
}

/// Checks binds against the configured accounts and slows down, then stops, guessing.
pub struct Accounts {
    accounts: HashMap<String, Account>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    limits: BindLimits,
}

struct BindCount(Arc<AtomicU32>);

impl Drop for BindCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether two secrets are equal, in time that depends on neither (both are hashed first, so
/// not even on their lengths).
fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

/// The key an address's failures and connections are counted under: the address, or its
/// /64 for IPv6 (one host is given a /64; counting its addresses one by one limits nothing).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// What `Accounts::decide` makes of one bind before the account's bind count is taken.
enum Verdict<'a> {
    Locked,
    Wrong,
    Right(&'a Account),
}

impl Accounts {
    /// Accounts from configuration.
    pub fn new(accounts: &[ServerAccount], tuning: &SmppTuning) -> Self {
        Accounts {
            accounts: accounts
                .iter()
                .map(|a| {
                    let account = Account {
                        config: a.clone(),
                        binds: Arc::new(AtomicU32::new(0)),
                        prefixes: a.msisdn_prefixes.clone().into(),
                    };
                    (a.system_id.clone(), account)
                })
                .collect(),
            failures: Mutex::new(HashMap::new()),
            limits: BindLimits {
                base_delay: tuning.failed_bind_delay(),
                max_delay: tuning.failed_bind_max_delay(),
                limit: tuning.failed_bind_limit.max(1),
                window: tuning.failed_bind_window(),
                cooldown: tuning.failed_bind_cooldown(),
            },
        }
    }

    /// The delay before answering an address with `count` recent failures.
    fn delay(&self, count: u32) -> Duration {
        let l = &self.limits;
        match count {
            0 => Duration::ZERO,
            n => crate::time::doubling(l.base_delay, l.max_delay, n - 1),
        }
    }

    /// Frees a place in a full table: first every entry that no longer counts (unlocked, its
    /// window over), then the unlocked address seen longest ago, and only when every entry is
    /// locked the locked one seen longest ago (so that failing from many addresses does not
    /// flush a lock).
    fn make_room(&self, table: &mut HashMap<IpAddr, Failures>, now: Instant) {
        let window = self.limits.window;
        table.retain(|_, f| f.locked_until.is_some_and(|u| u > now) || now.duration_since(f.since) < window);
        if table.len() < FAILURE_TABLE_MAX {
            return;
        }
        let oldest = table.iter().min_by_key(|(_, f)| (f.locked_until.is_some(), f.seen)).map(|(k, _)| *k);
        if let Some(oldest) = oldest {
            table.remove(&oldest);
        }
    }

    /// Judges a bind from `peer` and records a failure; returns the verdict and how long the
    /// answer waits (decided before the password is looked at).
    fn decide(&self, peer: SocketAddr, bind: &Bind) -> (Verdict<'_>, Duration) {
        let key = address_key(peer.ip());
        let now = Instant::now();
        let mut table = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if !table.contains_key(&key) && table.len() >= FAILURE_TABLE_MAX {
            self.make_room(&mut table, now);
        }
        let entry =
            table.entry(key).or_insert(Failures { count: 0, since: now, seen: now, locked_until: None });
        entry.seen = now;
        if entry.locked_until.is_some_and(|until| until <= now) {
            *entry = Failures { count: 0, since: now, seen: now, locked_until: None };
        }
        if now.duration_since(entry.since) >= self.limits.window && entry.locked_until.is_none() {
            entry.count = 0;
            entry.since = now;
        }
        if entry.locked_until.is_some() {
            drop(table);
            metrics::smpp_refused(Refusal::BindLocked);
            return (Verdict::Locked, self.limits.max_delay);
        }
        let delay = self.delay(entry.count);
        let account = self.accounts.get(&bind.system_id);
        let password_ok = match account {
            Some(a) => secret_eq(a.config.password.expose().as_bytes(), bind.password.as_bytes()),
            None => {
                // Spend the same time as for a known account.
                let _ = secret_eq(bind.password.as_bytes(), bind.password.as_bytes());
                false
            }
        };
        let from_elsewhere = account.filter(|_| password_ok).is_some_and(|a| {
            !(a.config.allowed_ips.is_empty() || a.config.allowed_ips.iter().any(|c| c.contains(peer.ip())))
        });
        let right = account.filter(|_| password_ok && !from_elsewhere);
        if let Some(account) = right {
            if entry.count == 0 {
                table.remove(&key);
            }
            return (Verdict::Right(account), delay);
        }
        entry.count = entry.count.saturating_add(1);
        let locked = entry.count >= self.limits.limit;
        if locked {
            entry.locked_until = Some(now + self.limits.cooldown);
        }
        let failures = entry.count;
        // What is logged is logged once the table is free: a slow log must not hold up binds.
        drop(table);
        if from_elsewhere {
            metrics::smpp_refused(Refusal::BindAddress);
            warn!(system_id = %bind.system_id.escape_debug(), %peer, "bind from an address the account does not allow");
        }
        if locked {
            warn!(%peer, failures, cooldown = ?self.limits.cooldown, "too many failed binds; address refused");
        }
        (Verdict::Wrong, delay)
    }
}

impl Authenticator for Accounts {
    fn authenticate(&self, peer: SocketAddr, bind: &Bind) -> BindDecision {
        let (verdict, delay) = self.decide(peer, bind);
        let account = match verdict {
            Verdict::Locked => return BindDecision::Reject { status: status::ESME_RBINDFAIL, delay },
            Verdict::Wrong => return BindDecision::Reject { status: status::ESME_RINVPASWD, delay },
            Verdict::Right(account) => account,
        };
        let n = account.binds.fetch_add(1, Ordering::AcqRel);
        let guard = BindCount(account.binds.clone());
        if n >= account.config.max_binds {
            drop(guard);
            warn!(system_id = %bind.system_id.escape_debug(), max = account.config.max_binds, "too many binds for account");
            return BindDecision::Reject { status: status::ESME_RBINDFAIL, delay };
        }
        BindDecision::Accept(Grant {
            label: Arc::from(account.config.system_id.as_str()),
            system_id: SYSTEM_ID.to_owned(),
            window: account.config.window as usize,
            guard: Box::new(guard),
            delay,
            msisdn_prefixes: account.prefixes.clone(),
        })
    }
}

/// Connections open at once, in all and per address.
pub struct Connections {
    total: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    max_per_ip: u32,
}

/// One connection's place, given back when it closes.
pub struct ConnectionSlot {
    _total: OwnedSemaphorePermit,
    key: IpAddr,
    owner: Arc<Connections>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_ip = self.owner.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = per_ip.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.remove(&self.key);
            }
        }
    }
}

impl Connections {
    /// Limits from `[smpp_server]`.
    pub fn new(config: &SmppServerConfig) -> Arc<Self> {
        Arc::new(Connections {
            total: Arc::new(Semaphore::new(config.max_connections.max(1) as usize)),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip: config.max_connections_per_ip.max(1),
        })
    }

    /// Waits for room for one more connection (before `accept`).
    async fn room(&self) -> Option<OwnedSemaphorePermit> {
        self.total.clone().acquire_owned().await.ok()
    }

    /// Takes the place of a connection from `ip`; `None` when that address has its fill.
    fn admit(self: &Arc<Self>, permit: OwnedSemaphorePermit, ip: IpAddr) -> Option<ConnectionSlot> {
        let key = address_key(ip);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let n = per_ip.entry(key).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot { _total: permit, key, owner: self.clone() })
    }
}

/// What the accept loops need.
#[derive(Clone)]
pub struct ServerContext {
    /// Bind checks.
    pub accounts: Arc<Accounts>,
    /// Connection limits, shared by the plain and the TLS listener.
    pub connections: Arc<Connections>,
    /// Engine settings.
    pub tuning: SmppTuning,
    /// Where peers' requests go.
    pub inbound: Inbound,
    /// Bound sessions.
    pub registry: Arc<Registry>,
}

/// Accepts connections on the plain listener and, when given, the TLS one until shutdown;
/// every session runs on `tracker` and unbinds gracefully when `shutdown` is cancelled. One
/// loop for both, so that the place taken before `accept` serves whichever listener a peer
/// comes to.
pub async fn serve(
    plain: TcpListener,
    tls: Option<(TcpListener, TlsAcceptor)>,
    ctx: ServerContext,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let auth: Arc<dyn Authenticator> = ctx.accounts.clone();
    loop {
        let room = tokio::select! {
            () = shutdown.cancelled() => break,
            r = ctx.connections.room() => r,
        };
        let Some(room) = room else { break };
        let tls_accept = async {
            match &tls {
                Some((listener, acceptor)) => (listener.accept().await, Some(acceptor.clone())),
                None => std::future::pending().await,
            }
        };
        let (accepted, acceptor) = tokio::select! {
            () = shutdown.cancelled() => break,
            a = plain.accept() => (a, None),
            a = tls_accept => a,
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
        let Some(slot) = ctx.connections.admit(room, peer.ip()) else {
            metrics::smpp_refused(Refusal::ConnectionsPerIp);
            debug!(%peer, "too many connections from this address; closed");
            continue;
        };
        info!(%peer, tls = acceptor.is_some(), "SMPP connection");
        let mut params = SessionParams {
            role: RoleParams::Server(auth.clone()),
            tuning: Tuning::new(&ctx.tuning, 1),
            inbound: ctx.inbound.clone(),
            registry: ctx.registry.clone(),
            shutdown: shutdown.clone(),
        };
        let Some(acceptor) = acceptor else {
            let (_handle, run) = session::start(stream, params);
            tracker.spawn(async move {
                run.await;
                drop(slot);
            });
            continue;
        };
        tracker.spawn(async move {
            // The handshake and the bind share one bind timeout.
            let started = Instant::now();
            let timeout = params.tuning.bind_timeout;
            let conn = tokio::select! {
                r = acceptor.accept(stream) => r,
                () = tokio::time::sleep(timeout) => {
                    info!(%peer, "no TLS handshake within {timeout:?}, closing");
                    return;
                }
                () = params.shutdown.cancelled() => return,
            };
            match conn {
                Ok(conn) => {
                    params.tuning.bind_timeout = timeout.saturating_sub(started.elapsed());
                    let (_handle, run) = session::start(Conn::tls(conn.into()), params);
                    run.await;
                }
                Err(e) => info!(%peer, error = %e, "TLS handshake failed"),
            }
            drop(slot);
        });
    }
    info!("SMPP server stopped accepting");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::smpp::pdu::BindKind;

    fn account(allowed_ips: &[&str]) -> ServerAccount {
        ServerAccount {
            system_id: "ussdc".into(),
            password: Secret::new("pw"),
            max_binds: 1,
            window: 10,
            reply_pdu: Default::default(),
            dialogue_key: Default::default(),
            text_mode: Default::default(),
            allowed_ips: allowed_ips.iter().map(|c| c.parse().unwrap()).collect(),
            msisdn_prefixes: vec![],
        }
    }

    fn accounts_with(acct: ServerAccount, limit: u32) -> Accounts {
        let tuning = SmppTuning {
            failed_bind_delay_ms: 100,
            failed_bind_max_delay_ms: 1000,
            failed_bind_limit: limit,
            ..SmppTuning::default()
        };
        Accounts::new(&[acct], &tuning)
    }

    fn accounts() -> Accounts {
        accounts_with(account(&[]), 100)
    }

    fn peer() -> SocketAddr {
        "10.1.2.3:5000".parse().unwrap()
    }

    /// The status and delay of an answer.
    fn answer(a: &Accounts, peer: SocketAddr, password: &str) -> (u32, u128) {
        match a.authenticate(peer, &Bind::new(BindKind::Transceiver, "ussdc", password)) {
            BindDecision::Reject { status, delay } => (status, delay.as_millis()),
            BindDecision::Accept(g) => (status::ESME_ROK, g.delay.as_millis()),
        }
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
        let delays: Vec<_> = (0..7).map(|_| answer(&a, peer(), "nope").1).collect();
        assert_eq!(delays, vec![0, 100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn right_and_wrong_passwords_should_wait_the_same_after_a_failure() {
        let a = accounts();
        assert_eq!(answer(&a, peer(), "nope"), (status::ESME_RINVPASWD, 0));
        // One failure: the right password waits what a second wrong one would.
        let (st, right) = answer(&a, peer(), "pw");
        assert_eq!((st, right), (status::ESME_ROK, 100));
        let b = accounts();
        answer(&b, peer(), "nope");
        assert_eq!(answer(&b, peer(), "nope"), (status::ESME_RINVPASWD, 100));
        // A right bind does not wipe the failures: the next wrong one waits for two.
        assert_eq!(answer(&a, peer(), "nope"), (status::ESME_RINVPASWD, 100));
        assert_eq!(answer(&a, peer(), "nope"), (status::ESME_RINVPASWD, 200));
        let other: SocketAddr = "10.9.9.9:1".parse().unwrap();
        assert_eq!(answer(&a, other, "nope").1, 0, "another address starts afresh");
    }

    #[test]
    fn an_address_over_the_limit_should_be_refused_whatever_it_sends() {
        let a = accounts_with(account(&[]), 3);
        for _ in 0..3 {
            assert_eq!(answer(&a, peer(), "nope").0, status::ESME_RINVPASWD);
        }
        assert_eq!(answer(&a, peer(), "pw").0, status::ESME_RBINDFAIL);
        assert_eq!(answer(&a, peer(), "nope").0, status::ESME_RBINDFAIL);
        let other: SocketAddr = "10.9.9.9:1".parse().unwrap();
        assert_eq!(answer(&a, other, "pw").0, status::ESME_ROK);
    }

    #[test]
    fn ipv6_addresses_of_one_64_should_count_as_one() {
        let a = accounts_with(account(&[]), 2);
        answer(&a, "[2001:db8:1:2::1]:1".parse().unwrap(), "nope");
        answer(&a, "[2001:db8:1:2::ffff]:1".parse().unwrap(), "nope");
        assert_eq!(answer(&a, "[2001:db8:1:2:abcd::9]:1".parse().unwrap(), "pw").0, status::ESME_RBINDFAIL);
        assert_eq!(answer(&a, "[2001:db8:1:3::1]:1".parse().unwrap(), "pw").0, status::ESME_ROK);
    }

    #[test]
    fn the_failure_table_should_evict_the_address_seen_longest_ago() {
        let a = accounts_with(account(&[]), 100);
        answer(&a, "10.0.0.1:1".parse().unwrap(), "nope");
        for i in 0..FAILURE_TABLE_MAX as u32 {
            let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i);
            answer(&a, SocketAddr::new(ip.into(), 1), "nope");
        }
        let table = a.failures.lock().unwrap();
        assert_eq!(table.len(), FAILURE_TABLE_MAX);
        assert!(!table.contains_key(&"10.0.0.1".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn failing_from_many_addresses_should_not_flush_a_lock() {
        let a = accounts_with(account(&[]), 2);
        let locked: SocketAddr = "10.0.0.1:1".parse().unwrap();
        answer(&a, locked, "nope");
        answer(&a, locked, "nope");
        for i in 0..(FAILURE_TABLE_MAX as u32 + 100) {
            let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i);
            answer(&a, SocketAddr::new(ip.into(), 1), "nope");
        }
        assert_eq!(answer(&a, locked, "pw").0, status::ESME_RBINDFAIL);
    }

    #[test]
    fn a_right_password_from_an_address_not_allowed_should_look_wrong() {
        let a = accounts_with(account(&["192.0.2.0/24", "2001:db8::/32"]), 100);
        assert_eq!(answer(&a, peer(), "pw").0, status::ESME_RINVPASWD);
        assert_eq!(answer(&a, "192.0.2.77:1".parse().unwrap(), "pw").0, status::ESME_ROK);
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
    fn secret_eq_should_compare() {
        assert!(secret_eq(b"abc", b"abc"));
        assert!(!secret_eq(b"abc", b"abd"));
        assert!(!secret_eq(b"abc", b"ab"));
    }

    #[tokio::test]
    async fn connections_should_be_limited_per_address() {
        let config =
            SmppServerConfig { max_connections: 10, max_connections_per_ip: 2, ..Default::default() };
        let c = Connections::new(&config);
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        let one = c.admit(c.room().await.unwrap(), ip).unwrap();
        let _two = c.admit(c.room().await.unwrap(), ip).unwrap();
        assert!(c.admit(c.room().await.unwrap(), ip).is_none());
        assert!(c.admit(c.room().await.unwrap(), "10.1.1.2".parse().unwrap()).is_some());
        drop(one);
        assert!(c.admit(c.room().await.unwrap(), ip).is_some());
    }
}
