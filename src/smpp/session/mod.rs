//! One SMPP session, either role: bind, sequence numbers, a window of outstanding requests
//! with a response timeout, enquire_link when idle, `generic_nack` for what cannot be
//! decoded, unbind both ways and a graceful drain on shutdown.
//!
//! The session is two loops joined in one future: a reader that owns the protocol state
//! and a writer that coalesces encoded PDUs into few socket writes. Requests that the
//! application sends go through a cloneable [`SessionHandle`]; requests that arrive are
//! handed to the application as [`InboundRequest`]s over a bounded channel, each with a
//! [`Responder`] that answers on the same connection whenever the application is done.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::frame::{Frame, FrameError, FrameReader};
use super::pdu::{Bind, BindKind, BindResp, Body, Pdu, Tlvs, command_name, empty_response};
use super::status;
use super::transport::{Conn, ReadSide, WriteSide};
use crate::config::SmppTuning;

/// Which side of the bind this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// chogate is the SMSC: the peer (a USSD centre) binds to it.
    Server,
    /// chogate is the ESME: it binds to the peer (an operator's SMSC).
    Client,
}

/// Which way a message goes, seen from chogate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// From the peer to chogate.
    In,
    /// From chogate to the peer.
    Out,
}

/// Whether a bind of `kind` carries messages (`submit_sm`, `deliver_sm`, `data_sm`) this way:
/// the one permission rule of a bound session (SMPP 3.4 §2.2: a transmitter bind carries
/// messages from the ESME to the SMSC, a receiver bind from the SMSC to the ESME, a
/// transceiver both). chogate is the SMSC in the server role and the ESME in the client role.
/// Which of the three a peer uses is not checked: USSD centres send their subscribers'
/// messages as any of them.
pub fn carries(kind: BindKind, role: Role, way: Way) -> bool {
    let from_esme = matches!((role, way), (Role::Server, Way::In) | (Role::Client, Way::Out));
    if from_esme { kind.esme_transmits() } else { kind.esme_receives() }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Connected, no bind yet.
    Open,
    /// Bound; the kind is the ESME's bind.
    Bound(BindKind),
    /// Unbinding or draining: no new requests.
    Unbinding,
    /// Closed.
    Closed,
}

/// Timers and limits of one session.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Send enquire_link after this long without receiving anything.
    pub enquire_link: Duration,
    /// How long a request waits for its response. The session's reader sweeps its
    /// requests every eighth of this (at least every 10 ms), so a request times out between
    /// once and 1⅛ times it (plus up to 10 ms for timeouts under 80 ms).
    pub response_timeout: Duration,
    /// Server: how long a connection may stay unbound. Client: how long to wait for bind_resp.
    pub bind_timeout: Duration,
    /// Graceful shutdown: how long in-flight requests may take.
    pub drain_timeout: Duration,
    /// Largest PDU accepted.
    pub max_pdu_len: u32,
    /// Outstanding requests chogate sends.
    pub window: usize,
    /// Unanswered requests accepted from the peer before ESME_RTHROTTLED.
    pub inbound_window: usize,
}

impl Tuning {
    /// The engine settings with a per-peer window.
    pub fn new(t: &SmppTuning, window: u32) -> Self {
        Tuning {
            enquire_link: t.enquire_link(),
            response_timeout: t.response_timeout(),
            bind_timeout: t.bind_timeout(),
            drain_timeout: t.drain_timeout(),
            max_pdu_len: t.max_pdu_len,
            window: window.max(1) as usize,
            inbound_window: t.inbound_window.max(1) as usize,
        }
    }
}

/// The server's answer to a bind.
pub enum BindDecision {
    /// Bind accepted.
    Accept(Grant),
    /// Bind refused with this status, answered after `delay` (slows down guessing).
    Reject {
        /// command_status of the bind_resp.
        status: u32,
        /// wait before answering.
        delay: Duration,
    },
}

/// An accepted bind.
pub struct Grant {
    /// Name of the account, for logs and the registry.
    pub label: Arc<str>,
    /// The system_id chogate answers with.
    pub system_id: String,
    /// Outstanding requests chogate may send on this bind.
    pub window: usize,
    /// Released when the session ends (counts binds per account).
    pub guard: Box<dyn Send + Sync>,
    /// Wait before answering (the same as a refusal from this address would wait).
    pub delay: Duration,
    /// The subscribers the peer may speak for (empty: any).
    pub msisdn_prefixes: Arc<[String]>,
}

/// Decides binds in the server role.
pub trait Authenticator: Send + Sync + 'static {
    /// Accept or refuse a bind from `peer`.
    fn authenticate(&self, peer: SocketAddr, bind: &Bind) -> BindDecision;
}

/// The role-specific part of starting a session.
pub enum RoleParams {
    /// Accept one bind, checked by the authenticator.
    Server(Arc<dyn Authenticator>),
    /// Send this bind first.
    Client {
        /// The bind PDU.
        bind: Bind,
        /// Name of the SMSC, for logs and the registry.
        label: Arc<str>,
        /// The numbers the SMSC may deliver messages from (empty: any).
        msisdn_prefixes: Arc<[String]>,
    },
}

/// Everything a session needs besides the socket.
pub struct SessionParams {
    /// Role and its parameters.
    pub role: RoleParams,
    /// Timers and limits.
    pub tuning: Tuning,
    /// Where requests from the peer go.
    pub inbound: Inbound,
    /// Bound sessions register here, by label.
    pub registry: Arc<Registry>,
    /// Cancelled on daemon shutdown: the session unbinds gracefully.
    pub shutdown: CancellationToken,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The peer closed the connection.
    PeerClosed,
    /// The peer unbound.
    PeerUnbound,
    /// We unbound on shutdown.
    Shutdown,
    /// The peer refused our bind, or we refused theirs.
    BindRejected(u32),
    /// No bind (server) or no bind_resp (client) in time.
    BindTimeout,
    /// enquire_link went unanswered.
    LinkDead,
    /// The byte stream could not be framed any more.
    Unframeable,
    /// Socket error.
    Io(String),
}

/// Why a request through a [`SessionHandle`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The session is not bound (yet or any more).
    #[error("session is not bound ({0:?})")]
    NotBound(SessionState),
    /// The bind does not allow this PDU in this direction.
    #[error("a {kind} bind does not allow sending {command}")]
    NotPermitted {
        /// the bind kind.
        kind: &'static str,
        /// the command.
        command: &'static str,
    },
    /// The session closed before the response came.
    #[error("session closed")]
    Closed,
    /// No response within the response timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The PDU could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(super::pdu::PduError),
}

// The cause is in the message, so it is not a source too (`{:#}` would print it twice).
impl From<super::pdu::PduError> for SessionError {
    fn from(e: super::pdu::PduError) -> Self {
        SessionError::Encode(e)
    }
}

/// Where a session hands the peer's requests.
#[derive(Clone)]
pub enum Inbound {
    /// A bounded queue the application reads; a full queue answers `ESME_RTHROTTLED`.
    Queue(mpsc::Sender<InboundRequest>),
    /// Called by the session's reader for each request. It must not wait: it starts the work
    /// (a task) and returns. What is under way stays bounded by the inbound window, whose
    /// place each request holds until it is answered.
    Handler(Arc<dyn Fn(InboundRequest) + Send + Sync>),
}

impl From<mpsc::Sender<InboundRequest>> for Inbound {
    fn from(tx: mpsc::Sender<InboundRequest>) -> Self {
        Inbound::Queue(tx)
    }
}

/// Hands a request to a bounded queue without waiting. When it cannot, gives back what answers
/// the request with the status to answer: `ESME_RTHROTTLED` for a full queue,
/// `ESME_RX_T_APPN` for a closed one (the application is stopping).
pub fn try_queue(tx: &mpsc::Sender<InboundRequest>, req: InboundRequest) -> Result<(), (Responder, u32)> {
    match tx.try_send(req) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(req)) => Err((req.responder, status::ESME_RTHROTTLED)),
        Err(mpsc::error::TrySendError::Closed(req)) => Err((req.responder, status::ESME_RX_T_APPN)),
    }
}

/// A request from the peer, handed to the application.
pub struct InboundRequest {
    /// The request.
    pub pdu: Pdu,
    /// The session it came on (to send requests back on the same bind).
    pub session: SessionHandle,
    /// Answers it.
    pub responder: Responder,
}

/// Answers one inbound request on its connection. Dropping it unanswered answers
/// `ESME_RX_T_APPN` so the peer is never left waiting.
pub struct Responder {
    sequence: u32,
    command_id: u32,
    outbox: mpsc::Sender<Bytes>,
    _permit: OwnedSemaphorePermit,
    answered: bool,
    /// When the read that brought the request in returned.
    received: Instant,
}

impl Responder {
    /// The sequence number being answered.
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    /// When the read that brought the request in returned.
    pub fn received(&self) -> Instant {
        self.received
    }

    /// Answers with a status and message id (empty for deliver_sm_resp).
    pub async fn respond(self, status: u32, message_id: &str) {
        let body = self.answer_body(message_id);
        self.respond_with(status, body).await;
    }

    /// The response body to this request with `message_id` (a generic_nack for a request
    /// that has no response of its own).
    fn answer_body(&self, message_id: &str) -> Body {
        let mut body = empty_response(self.command_id).unwrap_or(Body::GenericNack);
        if let Body::SubmitSmResp(r) | Body::DeliverSmResp(r) | Body::DataSmResp(r) = &mut body
            && !message_id.is_empty()
        {
            r.message_id = message_id.to_owned();
        }
        body
    }

    /// Answers with a status and a body of one's own making.
    pub async fn respond_with(mut self, status: u32, body: Body) {
        let mut out = BytesMut::new();
        self.encode(status, body, &mut out);
        if !out.is_empty() {
            // The session may be gone; then there is nobody to answer.
            let _ = self.outbox.send(out.freeze()).await;
        }
    }

    /// Writes the answer into `out` (nothing if it cannot be encoded); the request counts
    /// as answered (its place in the inbound window is given back when this is dropped).
    fn encode(&mut self, status: u32, body: Body, out: &mut BytesMut) {
        self.answered = true;
        let pdu = Pdu { status, sequence: self.sequence, body };
        super::counters::pdu(super::counters::Direction::Out, pdu.command_id(), status);
        if let Err(e) = pdu.encode_into(out) {
            warn!(error = %e, "cannot encode response");
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            let body = self.answer_body("");
            let mut out = BytesMut::new();
            self.encode(status::ESME_RX_T_APPN, body, &mut out);
            if !out.is_empty() && self.outbox.try_send(out.freeze()).is_err() {
                warn!(
                    seq = self.sequence,
                    "request dropped unanswered and the session cannot take the answer"
                );
            }
        }
    }
}

/// Bound sessions by label (account system_id or SMSC name), for whoever sends on them.
#[derive(Default)]
pub struct Registry {
    binds: RwLock<HashMap<Arc<str>, Vec<SessionHandle>>>,
    changed: tokio::sync::Notify,
}

impl Registry {
    fn add(&self, label: &Arc<str>, handle: SessionHandle) {
        {
            let mut map = self.binds.write().unwrap_or_else(PoisonError::into_inner);
            map.entry(label.clone()).or_default().push(handle);
        }
        self.changed.notify_waiters();
    }

    /// Waits until a session is bound under `label` and returns it.
    pub async fn wait_for(&self, label: &str) -> SessionHandle {
        loop {
            if let Some(h) = self.wait_for_count(label, 1).await.into_iter().next() {
                return h;
            }
        }
    }

    /// Waits until at least `n` sessions (at least one) are bound under `label` and returns
    /// them all.
    pub async fn wait_for_count(&self, label: &str, n: usize) -> Vec<SessionHandle> {
        loop {
            let changed = self.changed.notified();
            let all = self.get(label);
            if all.len() >= n.max(1) {
                return all;
            }
            changed.await;
        }
    }

    fn remove(&self, label: &str, id: u64) {
        let mut map = self.binds.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = map.get_mut(label) {
            v.retain(|h| h.shared.id != id);
            if v.is_empty() {
                map.remove(label);
            }
        }
    }

    /// Runs `f` over the bound sessions under a label, without copying them.
    pub fn with<R>(&self, label: &str, f: impl FnOnce(&[SessionHandle]) -> R) -> R {
        let map = self.binds.read().unwrap_or_else(PoisonError::into_inner);
        f(map.get(label).map(Vec::as_slice).unwrap_or_default())
    }

    /// The bound sessions under a label.
    pub fn get(&self, label: &str) -> Vec<SessionHandle> {
        let map = self.binds.read().unwrap_or_else(PoisonError::into_inner);
        map.get(label).cloned().unwrap_or_default()
    }

    /// Every label with how many sessions are bound under it.
    pub fn summary(&self) -> Vec<(String, usize)> {
        let map = self.binds.read().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = map.iter().map(|(k, v)| (k.to_string(), v.len())).collect();
        v.sort();
        v
    }
}

static NEXT_SESSION_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

struct Shared {
    id: u64,
    role: Role,
    peer: SocketAddr,
    label: RwLock<Arc<str>>,
    /// The subscribers the peer may speak for (empty: any): the account's once bound, the
    /// SMSC's from the start.
    prefixes: std::sync::OnceLock<Arc<[String]>>,
    seq: AtomicU32,
    /// Requests waiting for their response, with when they time out. The reader answers
    /// them: `Some` with the response, `None` when its sweep finds them past their time.
    pending: Mutex<HashMap<u32, Waiting, foldhash::fast::RandomState>>,
    window: Arc<Semaphore>,
    window_size: AtomicU32,
    outbox: mpsc::Sender<Bytes>,
    state: watch::Sender<SessionState>,
    done: CancellationToken,
    response_timeout: Duration,
}

impl Shared {
    fn next_seq(&self) -> u32 {
        // 1..=0x7FFFFFFF, wrapping.
        loop {
            let s = self.seq.fetch_add(1, Ordering::Relaxed) & 0x7FFF_FFFF;
            if s != 0 {
                return s;
            }
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Waiting, foldhash::fast::RandomState>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A request waiting for its response.
struct Waiting {
    tx: oneshot::Sender<Option<Pdu>>,
    until: Instant,
}

/// Sends requests on a session and watches its state. Cheap to clone.
#[derive(Clone)]
pub struct SessionHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.shared.id)
            .field("label", &self.label())
            .field("peer", &self.shared.peer)
            .field("state", &self.state())
            .finish()
    }
}

impl SessionHandle {
    /// The session's role.
    pub fn role(&self) -> Role {
        self.shared.role
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }

    /// Account system_id (server) or SMSC name (client); the peer address before bind.
    pub fn label(&self) -> Arc<str> {
        self.shared.label.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether the peer may speak for this subscriber (canonical MSISDN): its account's or
    /// SMSC's `msisdn_prefixes`, empty for any. Checked by the services that take a
    /// subscriber's word from the peer (USSD, SMS keywords), not for delivery receipts, whose
    /// number is the recipient of chogate's own SMS.
    pub fn may_speak_for(&self, msisdn: &str) -> bool {
        self.shared.prefixes.get().is_none_or(|prefixes| crate::msisdn::allowed(prefixes, msisdn))
    }

    /// Requests sent (or being sent) on this session that wait for their response: never
    /// more than the window.
    pub fn in_flight(&self) -> usize {
        self.shared.pending().len()
    }

    /// Current state.
    pub fn state(&self) -> SessionState {
        *self.shared.state.borrow()
    }

    /// Waits until the session is bound (returns the bind kind) or ends.
    pub async fn wait_bound(&self) -> Result<BindKind, SessionError> {
        let mut rx = self.shared.state.subscribe();
        loop {
            match *rx.borrow_and_update() {
                SessionState::Bound(kind) => return Ok(kind),
                SessionState::Open => {}
                other => return Err(SessionError::NotBound(other)),
            }
            if rx.changed().await.is_err() {
                return Err(SessionError::Closed);
            }
        }
    }

    /// Waits until the session has ended.
    pub async fn closed(&self) {
        self.shared.done.cancelled().await;
    }

    /// Sends a request and waits for its response (which may carry an error status, or be a
    /// generic_nack). Waits for room in the window first.
    pub async fn request(&self, body: Body) -> Result<Pdu, SessionError> {
        self.check_may_send(&body)?;
        self.reserve().await?.request(body).await
    }

    /// Waits for room in the window and holds it: a request sent with the [`Slot`] does not
    /// wait again. A caller that must answer its peer before sending (a USSD screen after
    /// the subscriber's PDU) reserves first, so that work waiting for the window stays
    /// bounded by the window.
    pub async fn reserve(&self) -> Result<Slot<'_>, SessionError> {
        let s = &self.shared;
        let permit = tokio::select! {
            p = s.window.clone().acquire_owned() => p.map_err(|_| SessionError::Closed)?,
            () = s.done.cancelled() => return Err(SessionError::Closed),
        };
        Ok(Slot { handle: self, permit })
    }

    fn check_may_send(&self, body: &Body) -> Result<(), SessionError> {
        let kind = match self.state() {
            SessionState::Bound(kind) => kind,
            other => return Err(SessionError::NotBound(other)),
        };
        let is_message = matches!(body, Body::SubmitSm(_) | Body::DeliverSm(_) | Body::DataSm(_));
        if is_message && !carries(kind, self.shared.role, Way::Out) {
            return Err(SessionError::NotPermitted {
                kind: kind.as_str(),
                command: command_name(body.command_id()),
            });
        }
        Ok(())
    }
}

/// Room for one request in a session's window ([`SessionHandle::reserve`]).
pub struct Slot<'a> {
    handle: &'a SessionHandle,
    permit: tokio::sync::OwnedSemaphorePermit,
}

impl Slot<'_> {
    /// Sends a request and waits for its response (or the response timeout, or the session's
    /// end); the room in the window is given back then.
    pub async fn request(self, body: Body) -> Result<Pdu, SessionError> {
        self.send_and_wait(BytesMut::new(), body).await
    }

    /// Answers an inbound request with `ESME_ROK` and sends a request in the same write (a
    /// USSD screen after the subscriber's PDU): one wake-up of the socket writer and one
    /// segment instead of two. The answer goes out even when the request cannot be sent.
    pub async fn answer_then_request(self, mut answer: Responder, body: Body) -> Result<Pdu, SessionError> {
        let mut out = BytesMut::with_capacity(512);
        let body_of_answer = answer.answer_body("");
        answer.encode(status::ESME_ROK, body_of_answer, &mut out);
        drop(answer);
        self.send_and_wait(out, body).await
    }

    async fn send_and_wait(self, mut out: BytesMut, body: Body) -> Result<Pdu, SessionError> {
        let Slot { handle, permit } = self;
        let s = &handle.shared;
        let answer_len = out.len();
        // The state may have changed while waiting for the window.
        let command_id = body.command_id();
        let encoded = handle.check_may_send(&body).and_then(|()| {
            let seq = s.next_seq();
            Pdu::new(seq, body).encode_into(&mut out)?;
            super::counters::pdu(super::counters::Direction::Out, command_id, status::ESME_ROK);
            Ok(seq)
        });
        let seq = match encoded {
            Ok(seq) => seq,
            Err(e) => {
                out.truncate(answer_len);
                if !out.is_empty() {
                    let _ = s.outbox.send(out.freeze()).await;
                }
                return Err(e);
            }
        };
        let (tx, rx) = oneshot::channel();
        // No timer per request: the reader's sweep answers `None` once this is past its time
        // (a timer each cost registering and cancelling it in the runtime's timer wheel).
        s.pending().insert(seq, Waiting { tx, until: Instant::now() + s.response_timeout });
        // Whatever ends this wait (response, timeout, or the caller dropping the future), the
        // entry goes with it.
        let _forget = Forget { shared: s, seq };
        // The reader may have ended since the state was checked: it cancels `done` before it
        // drops what is waiting, so an entry put in after that is seen here, not left waiting.
        if s.done.is_cancelled() {
            return Err(SessionError::Closed);
        }
        if s.outbox.send(out.freeze()).await.is_err() {
            return Err(SessionError::Closed);
        }
        let result = match rx.await {
            Ok(Some(pdu)) => Ok(pdu),
            Ok(None) => Err(SessionError::Timeout(s.response_timeout)),
            // The session ended (its reader drops what is still waiting).
            Err(_) => Err(SessionError::Closed),
        };
        drop(permit);
        result
    }
}

/// How often a session checks its requests for their timeout: an eighth of the timeout, at
/// least every 10 ms.
fn sweep_every(response_timeout: Duration) -> Duration {
    (response_timeout / 8).max(Duration::from_millis(10))
}

/// Removes a request's pending entry when its wait ends, however it ends.
struct Forget<'a> {
    shared: &'a Shared,
    seq: u32,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.shared.pending().remove(&self.seq);
    }
}

mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use reader::start;
