//! The SMPP binds of the simulator, made with chogate's own session engine: a USSD centre
//! binding to chogate's server (client role), or an SMSC accepting chogate's bind (server
//! role), and the routing of chogate's screens to the virtual subscribers by MSISDN.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::SimError;
use super::stats::{Counters, kind};
use super::ussd::Screen;
use crate::config::{Secret, SmppTuning};
use crate::logging::mask_msisdn;
use crate::smpp::pdu::{Bind, BindKind, Body, Pdu};
use crate::smpp::session::{
    self, Authenticator, BindDecision, Grant, Inbound, InboundRequest, Registry, RoleParams, SessionEnd,
    SessionError, SessionHandle, SessionParams, SessionState, Tuning,
};
use crate::smpp::status;

/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A bound USSD-centre session to chogate's SMPP server.
pub struct Link {
    /// Sends requests on the bind.
    pub handle: SessionHandle,
    run: JoinHandle<SessionEnd>,
    shutdown: CancellationToken,
    drain: Duration,
}

/// Binds as a transceiver to chogate at `addr` through chogate's client-role session.
/// Returns the bind and chogate's requests (the screens), of which at most
/// `inbound_capacity` wait for us.
pub async fn bind_ussdc(
    addr: SocketAddr,
    system_id: &str,
    password: &str,
    window: u32,
    tuning: &SmppTuning,
    inbound_capacity: usize,
) -> Result<(Link, mpsc::Receiver<InboundRequest>), SimError> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(error)) => return Err(SimError::Connect { addr, error }),
        Err(_) => {
            return Err(SimError::Connect { addr, error: std::io::ErrorKind::TimedOut.into() });
        }
    };
    let (tx, rx) = mpsc::channel(inbound_capacity.max(1));
    let shutdown = CancellationToken::new();
    let params = SessionParams {
        role: RoleParams::Client {
            bind: Bind::new(BindKind::Transceiver, system_id, password),
            label: Arc::from("chogate"),
            msisdn_prefixes: Arc::from([]),
        },
        tuning: Tuning::new(tuning, window),
        inbound: tx.into(),
        registry: Arc::new(Registry::default()),
        shutdown: shutdown.clone(),
    };
    let (handle, run) = session::start(stream, params);
    let mut run = tokio::spawn(run);
    // The session ends by itself when the bind is refused or times out (bind_timeout).
    let bound = tokio::select! {
        b = handle.wait_bound() => b,
        end = &mut run => return Err(bind_error(end.ok())),
    };
    match bound {
        Ok(_) => {
            let drain = tuning.drain_timeout() + Duration::from_secs(1);
            Ok((Link { handle, run, shutdown, drain }, rx))
        }
        Err(_) => Err(bind_error(run.await.ok())),
    }
}

fn bind_error(end: Option<SessionEnd>) -> SimError {
    match end {
        Some(SessionEnd::BindRejected(st)) => SimError::BindRefused(st),
        Some(SessionEnd::BindTimeout) => SimError::BindFailed("no bind_resp in time".into()),
        Some(other) => SimError::BindFailed(format!("{other:?}")),
        None => SimError::BindFailed("session task failed".into()),
    }
}

impl Link {
    /// Waits until the bind ends by itself (connection lost, peer unbound), with why.
    pub async fn lost(&self) -> String {
        self.handle.closed().await;
        "the SMPP connection to chogate was lost".to_owned()
    }

    /// Unbinds (draining what is in flight) and waits for the session to end.
    pub async fn close(self) -> Option<SessionEnd> {
        self.shutdown.cancel();
        let mut run = self.run;
        tokio::select! {
            end = &mut run => end.ok(),
            () = tokio::time::sleep(self.drain) => {
                run.abort();
                None
            }
        }
    }
}

/// Accepts binds with one system_id and password (the simulated SMSC's account).
pub struct Credentials {
    /// Expected system_id.
    pub system_id: String,
    /// Expected password.
    pub password: Secret,
    /// Outstanding requests we send on each bind.
    pub window: usize,
}

impl Authenticator for Credentials {
    fn authenticate(&self, peer: SocketAddr, bind: &Bind) -> BindDecision {
        if bind.system_id == self.system_id && bind.password == self.password.expose() {
            info!(%peer, kind = bind.kind.as_str(), "peer bound to the simulated SMSC");
            BindDecision::Accept(Grant {
                label: Arc::from(self.system_id.as_str()),
                system_id: "chogate-sim".to_owned(),
                window: self.window,
                guard: Box::new(()),
                delay: Duration::ZERO,
                msisdn_prefixes: Arc::from([]),
            })
        } else {
            warn!(%peer, system_id = %bind.system_id.escape_debug(), "bind refused: wrong system_id or password");
            BindDecision::Reject { status: status::ESME_RINVPASWD, delay: Duration::ZERO }
        }
    }
}

/// How long a listening role waits for the peer to bind.
pub const BIND_WAIT: Duration = Duration::from_secs(30);

/// A listening role (simulated SMSC, sink, null gateway): accepts binds with one account,
/// each served by chogate's server-role session, until closed.
pub struct Listening {
    /// Where it listens (the port the OS gave for port 0).
    pub local: SocketAddr,
    /// The bound sessions.
    pub registry: Arc<Registry>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    drain: Duration,
}

impl Listening {
    /// Listens on `addr`; requests of bound peers go to `inbound`. Sessions (and whatever
    /// the caller spawns on `tracker`) are waited for by [`Listening::close`].
    pub async fn start(
        addr: SocketAddr,
        auth: Credentials,
        tuning: SmppTuning,
        inbound: Inbound,
        tracker: TaskTracker,
    ) -> Result<Listening, SimError> {
        let listener = TcpListener::bind(addr).await.map_err(|error| SimError::Listen { addr, error })?;
        let local = listener.local_addr().map_err(|error| SimError::Listen { addr, error })?;
        let registry = Arc::new(Registry::default());
        let shutdown = CancellationToken::new();
        let drain = tuning.drain_timeout() + Duration::from_secs(1);
        tracker.spawn(accept_loop(
            listener,
            Arc::new(auth),
            tuning,
            inbound,
            registry.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));
        Ok(Listening { local, registry, shutdown, tracker, drain })
    }

    /// The first session bound with `label`, unless [`BIND_WAIT`] passes or `stop` comes first.
    pub async fn wait_bind(&self, label: &str, stop: &CancellationToken) -> Option<SessionHandle> {
        tokio::select! {
            h = self.registry.wait_for(label) => Some(h),
            () = tokio::time::sleep(BIND_WAIT) => None,
            () = stop.cancelled() => None,
        }
    }

    /// Unbinds every session and waits (at most the drain timeout) for them to end.
    pub async fn close(self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::select! {
            () = self.tracker.wait() => {}
            () = tokio::time::sleep(self.drain) => {}
        }
    }
}

/// Accepts connections on `listener` until `shutdown`, each served by chogate's
/// server-role session with `auth`. Sessions run on `tracker` and unbind on `shutdown`.
async fn accept_loop(
    listener: TcpListener,
    auth: Arc<Credentials>,
    tuning: SmppTuning,
    inbound: Inbound,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let auth: Arc<dyn Authenticator> = auth;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let params = SessionParams {
            role: RoleParams::Server(auth.clone()),
            tuning: Tuning::new(&tuning, 1),
            inbound: inbound.clone(),
            registry: registry.clone(),
            shutdown: shutdown.clone(),
        };
        let (_handle, run) = session::start(stream, params);
        tracker.spawn(run);
    }
}

/// Where subscriber PDUs go: one bind, or whichever bind of a label can carry a
/// `deliver_sm` to the ESME (the simulated SMSC, where chogate may bind twice).
#[derive(Clone)]
pub enum Uplink {
    /// A fixed session.
    Session(SessionHandle),
    /// A bound session of this label in the registry that the ESME receives on.
    Registry {
        /// The binds.
        registry: Arc<Registry>,
        /// The account.
        label: Arc<str>,
    },
}

impl Uplink {
    /// Sends a request on a suitable bind and waits for its response.
    pub async fn request(&self, body: Body) -> Result<Pdu, SessionError> {
        match self {
            Uplink::Session(h) => h.request(body).await,
            Uplink::Registry { registry, label } => {
                let handle = registry
                    .get(label)
                    .into_iter()
                    .find(|h| matches!(h.state(), SessionState::Bound(k) if k.esme_receives()));
                match handle {
                    Some(h) => h.request(body).await,
                    None => Err(SessionError::NotBound(SessionState::Closed)),
                }
            }
        }
    }
}

/// Screens for each virtual subscriber, by MSISDN.
pub type Routes = HashMap<String, mpsc::Sender<Screen>>;

/// Answers chogate's message PDUs (status 0) and hands each screen to its subscriber by
/// destination MSISDN. A screen for an unknown MSISDN is answered `ESME_RINVDSTADR`; one a
/// subscriber has no room for (or has stopped for) is dropped; both count as unexpected
/// PDUs, except after `winding_down`, when subscribers stop and abort their dialogues.
pub async fn route_screens(
    mut inbound: mpsc::Receiver<InboundRequest>,
    routes: Arc<Routes>,
    counters: Arc<Counters>,
    winding_down: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut ids: u64 = 0;
    loop {
        let req = tokio::select! {
            r = inbound.recv() => match r { Some(r) => r, None => break },
            () = shutdown.cancelled() => break,
        };
        let Some(screen) = Screen::from_pdu(&req.pdu, Instant::now()) else {
            counters.error(kind::UNEXPECTED_PDU);
            continue;
        };
        let Some(tx) = routes.get(&screen.msisdn) else {
            debug!(msisdn = %mask_msisdn(&screen.msisdn), "screen for an unknown subscriber");
            counters.error(kind::UNEXPECTED_PDU);
            req.responder.respond(status::ESME_RINVDSTADR, "").await;
            continue;
        };
        ids += 1;
        let id = if matches!(req.pdu.body, Body::DeliverSm(_)) { String::new() } else { ids.to_string() };
        req.responder.respond(status::ESME_ROK, &id).await;
        if let Err(e) = tx.try_send(screen) {
            debug!(error = %e, "subscriber has no room for a screen");
            if !winding_down.is_cancelled() {
                counters.error(kind::UNEXPECTED_PDU);
            }
        }
    }
}
