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
    prefixes: RwLock<Arc<[String]>>,
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
        let prefixes = self.shared.prefixes.read().unwrap_or_else(PoisonError::into_inner);
        crate::msisdn::allowed(&prefixes, msisdn)
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
        // Server: we send to the ESME, which must be bound to receive. Client: we are the
        // ESME, and must be bound to transmit.
        let allowed = match self.shared.role {
            Role::Server => kind.esme_receives(),
            Role::Client => kind.esme_transmits(),
        };
        if is_message && !allowed {
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

/// Writes all of `buf`, failing if the peer takes none of it for `stall`. Most writes fit in
/// the socket's buffer at once and need no timer.
async fn write_or_stall(w: &mut WriteSide, buf: &[u8], stall: Duration) -> std::io::Result<()> {
    let mut off = 0;
    while off < buf.len() {
        match w.try_write(&buf[off..]) {
            Ok(0) => break,
            Ok(n) => off += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    while off < buf.len() {
        let n = tokio::select! {
            biased;
            n = w.write(&buf[off..]) => n?,
            () = tokio::time::sleep(stall) => {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the peer takes nothing"));
            }
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        off += n;
    }
    // TLS keeps what it could not send yet in its own buffer: push it out (nothing for TCP).
    if w.buffers() {
        tokio::select! {
            biased;
            r = w.flush() => r?,
            () = tokio::time::sleep(stall) => {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the peer takes nothing"));
            }
        }
    }
    Ok(())
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

/// How many warnings about what a peer sends are written per connection: the first few,
/// then one every [`WarnBudget::EVERY`] (with the count of those left out), so that a peer
/// sending garbage in a loop fills neither the log nor the disk.
#[derive(Debug, Default)]
struct WarnBudget {
    seen: u64,
    written: u64,
}

impl WarnBudget {
    /// Warnings written in full.
    const FIRST: u64 = 5;
    /// Then one in this many.
    const EVERY: u64 = 1000;

    /// Whether to write this warning.
    fn take(&mut self) -> bool {
        self.seen += 1;
        let write = self.seen <= Self::FIRST || self.seen % Self::EVERY == 0;
        if write {
            let left_out = self.seen - self.written - 1;
            if left_out > 0 {
                warn!(left_out, "warnings about this peer's PDUs left out");
            }
            self.written = self.seen;
        }
        write
    }

    /// Writes how many were left out since the last one written (at the end of a session).
    fn flush(&mut self) {
        let left_out = self.seen - self.written;
        if left_out > 0 {
            warn!(left_out, "warnings about this peer's PDUs left out");
            self.written = self.seen;
        }
    }
}

/// Where the reader is.
enum Phase {
    /// Server: waiting for a bind until the deadline.
    AwaitBind,
    /// Client: waiting for the response to our bind.
    Binding { seq: u32 },
    /// Bound.
    Bound(BindKind),
    /// Waiting for in-flight requests before unbinding (ours, or answering the peer's).
    Draining { peer_unbind_seq: Option<u32> },
    /// Our unbind is out; waiting for unbind_resp.
    Unbinding { seq: u32 },
}

/// Starts a session on a connected socket. Returns its handle and the future that runs it
/// until it ends; the caller spawns that future on its task tracker.
pub fn start(
    conn: impl Into<Conn>,
    params: SessionParams,
) -> (SessionHandle, impl Future<Output = SessionEnd> + Send) {
    let conn = conn.into();
    let peer = conn.peer_addr();
    let (read_half, write_half) = conn.split();
    let role = match params.role {
        RoleParams::Server(_) => Role::Server,
        RoleParams::Client { .. } => Role::Client,
    };
    let label: Arc<str> = match &params.role {
        RoleParams::Server(_) => peer.to_string().into(),
        RoleParams::Client { label, .. } => label.clone(),
    };
    let prefixes = match &params.role {
        RoleParams::Client { msisdn_prefixes, .. } => msisdn_prefixes.clone(),
        RoleParams::Server(_) => Arc::from([]),
    };
    let t = &params.tuning;
    // Room for every response we may owe and every request we may have out, plus control PDUs.
    let (outbox, outbox_rx) = mpsc::channel(t.window + t.inbound_window + 64);
    let (state, _) = watch::channel(SessionState::Open);
    let shared = Arc::new(Shared {
        id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
        role,
        peer,
        label: RwLock::new(label.clone()),
        prefixes: RwLock::new(prefixes),
        seq: AtomicU32::new(1),
        pending: Mutex::new(HashMap::default()),
        window: Arc::new(Semaphore::new(t.window)),
        window_size: AtomicU32::new(t.window as u32),
        outbox,
        state,
        done: CancellationToken::new(),
        response_timeout: t.response_timeout,
    });
    let handle = SessionHandle { shared: shared.clone() };
    let span = info_span!("smpp", id = shared.id, %peer, role = ?role);
    let done = shared.done.clone();
    let next_sweep = Instant::now() + sweep_every(t.response_timeout);
    let stall = t.response_timeout;
    let reader = Reader {
        frames: FrameReader::new(read_half, t.max_pdu_len),
        inbound_permits: Arc::new(Semaphore::new(t.inbound_window)),
        handle: handle.clone(),
        params,
        label,
        _guard: None,
        warnings: WarnBudget::default(),
        last_rx: Instant::now(),
        enquire_out: None,
        deadline: None,
        next_sweep,
    };
    let fut = async move {
        let write = write_loop(write_half, outbox_rx, done, stall);
        let (end, ()) = tokio::join!(reader.run(), write);
        end
    }
    .instrument(span);
    (handle, fut)
}

struct Reader {
    frames: FrameReader<ReadSide>,
    inbound_permits: Arc<Semaphore>,
    handle: SessionHandle,
    params: SessionParams,
    label: Arc<str>,
    _guard: Option<Box<dyn Send + Sync>>,
    /// Warnings about what the peer sends, so that garbage cannot flood the log.
    warnings: WarnBudget,
    last_rx: Instant,
    /// Our enquire_link awaiting its response: sequence and when it was sent.
    enquire_out: Option<(u32, Instant)>,
    /// Deadline of the current phase (bind, drain, unbind).
    deadline: Option<Instant>,
    /// When the requests waiting for a response are next checked for their timeout.
    next_sweep: Instant,
}

enum Step {
    Continue,
    Phase(Phase),
    End(SessionEnd),
}

impl Reader {
    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    async fn run(mut self) -> SessionEnd {
        let t = self.params.tuning.clone();
        let mut phase = match &self.params.role {
            RoleParams::Server(_) => {
                self.deadline = Some(Instant::now() + t.bind_timeout);
                Phase::AwaitBind
            }
            RoleParams::Client { bind, .. } => {
                let seq = self.shared().next_seq();
                let bind = bind.clone();
                self.send(Pdu::new(seq, Body::Bind(bind))).await;
                self.deadline = Some(Instant::now() + t.bind_timeout);
                Phase::Binding { seq }
            }
        };
        let mut drain: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(std::future::pending());
        let shutdown = self.params.shutdown.clone();
        let done = self.shared().done.clone();
        // One of each for the whole session rather than one per frame: the cancellation
        // waits may be polled again after they fire, and the timer is armed at the earliest
        // deadline and moved on lazily (see the end of the loop).
        let done_wait = done.cancelled();
        let shutdown_wait = shutdown.cancelled();
        let timer = sleep_until(self.next_timer(&phase, &t));
        tokio::pin!(done_wait, shutdown_wait, timer);
        let end = loop {
            let step = tokio::select! {
                biased;
                () = &mut done_wait => Step::End(SessionEnd::Io("write failed".into())),
                () = &mut shutdown_wait, if !matches!(phase, Phase::Draining { .. } | Phase::Unbinding { .. }) => {
                    match phase {
                        Phase::Bound(_) => {
                            info!("shutting down: draining, then unbind");
                            Step::Phase(Phase::Draining { peer_unbind_seq: None })
                        }
                        _ => Step::End(SessionEnd::Shutdown),
                    }
                }
                () = &mut drain => self.drained(&phase).await,
                frame = self.frames.next() => match frame {
                    Ok(Some(frame)) => {
                        self.last_rx = Instant::now();
                        let mut step = self.on_frame(frame, &phase).await;
                        // The frames that came in the same read are taken now, without a
                        // turn of the select each: they are as received as the first.
                        while let Step::Continue = step {
                            step = match self.frames.buffered() {
                                Ok(Some(frame)) => self.on_frame(frame, &phase).await,
                                Ok(None) => break,
                                Err(e) => self.on_frame_error(e).await,
                            };
                        }
                        step
                    }
                    Ok(None) => Step::End(SessionEnd::PeerClosed),
                    Err(e) => self.on_frame_error(e).await,
                },
                () = &mut timer => {
                    if Instant::now() < self.phase_due(&phase, &t) {
                        // The requests' sweep was due (it runs below), or traffic moved the
                        // deadline on since the timer was armed; it is armed again below.
                        Step::Continue
                    } else {
                        self.on_timer(&phase, &t).await
                    }
                }
            };
            match step {
                Step::Continue => {}
                Step::End(end) => break end,
                Step::Phase(next) => {
                    if let Phase::Draining { .. } = next {
                        self.shared().state.send_replace(SessionState::Unbinding);
                        self.deadline = Some(Instant::now() + t.drain_timeout);
                        drain = Box::pin(wait_all(
                            self.shared().window.clone(),
                            self.shared().window_size.load(Ordering::Relaxed),
                            self.inbound_permits.clone(),
                            t.inbound_window as u32,
                        ));
                    } else {
                        drain = Box::pin(std::future::pending());
                    }
                    if let Phase::Unbinding { .. } = next {
                        // Shutdown as a whole stays within the drain timeout.
                        self.deadline = Some(Instant::now() + t.response_timeout.min(t.drain_timeout));
                    }
                    phase = next;
                }
            }
            // The requests' sweep, here rather than in the timer's branch: under a steady
            // stream of frames the biased select may not poll the timer, and timeouts must
            // not wait for a lull.
            let now = Instant::now();
            if now >= self.next_sweep {
                self.sweep_pending(now);
                self.next_sweep = now + sweep_every(t.response_timeout);
            }
            // A deadline may have come nearer (a new phase, an enquire_link sent) or the timer
            // may have fired: arm it again. A later deadline waits until the timer fires.
            let due = self.next_timer(&phase, &t);
            if due < timer.deadline() || timer.is_elapsed() {
                timer.as_mut().reset(due);
            }
        };
        self.finish(&end);
        end
    }

    /// When the timer is next due: the phase's deadline or the sweep of the requests.
    fn next_timer(&self, phase: &Phase, t: &Tuning) -> Instant {
        self.phase_due(phase, t).min(self.next_sweep)
    }

    /// Answers `None` (timed out) to the requests past their time.
    fn sweep_pending(&self, now: Instant) {
        let expired: Vec<Waiting> = {
            let mut pending = self.shared().pending();
            let due: Vec<u32> = pending.iter().filter(|(_, w)| w.until <= now).map(|(&seq, _)| seq).collect();
            due.iter().filter_map(|seq| pending.remove(seq)).collect()
        };
        for w in expired {
            let _ = w.tx.send(None);
        }
    }

    /// The deadline of the phase: the bind, the drain, the unbind, or when bound the next
    /// enquire_link or its response.
    fn phase_due(&self, phase: &Phase, t: &Tuning) -> Instant {
        match phase {
            Phase::Bound(_) => match self.enquire_out {
                Some((_, sent)) => sent + t.response_timeout,
                None => self.last_rx + t.enquire_link,
            },
            _ => self.deadline.unwrap_or_else(|| Instant::now() + t.bind_timeout),
        }
    }

    async fn on_timer(&mut self, phase: &Phase, t: &Tuning) -> Step {
        match phase {
            Phase::AwaitBind => {
                info!("no bind within {:?}, closing", t.bind_timeout);
                Step::End(SessionEnd::BindTimeout)
            }
            Phase::Binding { .. } => {
                warn!("no bind_resp within {:?}", t.bind_timeout);
                Step::End(SessionEnd::BindTimeout)
            }
            Phase::Bound(_) => match self.enquire_out {
                Some((_, sent)) if self.last_rx < sent => {
                    warn!("enquire_link unanswered for {:?}, closing", t.response_timeout);
                    Step::End(SessionEnd::LinkDead)
                }
                _ => {
                    let seq = self.shared().next_seq();
                    self.send(Pdu::new(seq, Body::EnquireLink)).await;
                    self.enquire_out = Some((seq, Instant::now()));
                    Step::Continue
                }
            },
            Phase::Draining { .. } => {
                warn!("drain timed out after {:?}", t.drain_timeout);
                self.drained(phase).await
            }
            Phase::Unbinding { .. } => {
                warn!("no unbind_resp, closing");
                Step::End(SessionEnd::Shutdown)
            }
        }
    }

    /// In-flight work is done (or the drain timed out): finish the unbind.
    async fn drained(&mut self, phase: &Phase) -> Step {
        match phase {
            Phase::Draining { peer_unbind_seq: Some(seq) } => {
                self.send(Pdu::new(*seq, Body::UnbindResp)).await;
                Step::End(SessionEnd::PeerUnbound)
            }
            Phase::Draining { peer_unbind_seq: None } => {
                let seq = self.shared().next_seq();
                self.send(Pdu::new(seq, Body::Unbind)).await;
                Step::Phase(Phase::Unbinding { seq })
            }
            _ => Step::Continue,
        }
    }

    async fn on_frame_error(&mut self, e: FrameError) -> Step {
        match e {
            FrameError::Unframeable { len, header } => {
                if self.warnings.take() {
                    warn!(len, "unframeable command_length, closing");
                }
                let seq = header.map(|h| h.sequence).unwrap_or(0);
                self.nack(seq, status::ESME_RINVCMDLEN).await;
                Step::End(SessionEnd::Unframeable)
            }
            FrameError::UnexpectedEof(n) => {
                debug!(buffered = n, "peer closed inside a PDU");
                Step::End(SessionEnd::PeerClosed)
            }
            FrameError::Io(e) => Step::End(SessionEnd::Io(e.to_string())),
        }
    }

    async fn on_frame(&mut self, frame: Frame, phase: &Phase) -> Step {
        let bytes = match frame {
            Frame::Pdu(bytes) => bytes,
            Frame::Oversized(h) => {
                if self.warnings.take() {
                    warn!(
                        len = h.command_length,
                        max = self.params.tuning.max_pdu_len,
                        "oversized PDU discarded"
                    );
                }
                if !h.is_response() {
                    self.nack(h.sequence, status::ESME_RINVCMDLEN).await;
                }
                return Step::Continue;
            }
        };
        let pdu = match Pdu::decode(&bytes) {
            Ok(pdu) => pdu,
            Err(fail) => {
                let Some(h) = fail.header else { return Step::Continue };
                if self.warnings.take() {
                    warn!(command = command_name(h.command_id), seq = h.sequence, error = %fail.error, "malformed PDU");
                }
                if h.is_response() {
                    // Whoever waits for it learns that it came back unusable.
                    self.complete(Pdu {
                        status: status::ESME_RINVCMDLEN,
                        sequence: h.sequence,
                        body: Body::GenericNack,
                    });
                } else {
                    self.nack(h.sequence, fail.error.nack_status()).await;
                }
                return Step::Continue;
            }
        };
        super::counters::pdu(super::counters::Direction::In, pdu.command_id(), pdu.status);
        if pdu.is_response() {
            return self.on_response(pdu, phase);
        }
        self.on_request(pdu, phase).await
    }

    fn on_response(&mut self, pdu: Pdu, phase: &Phase) -> Step {
        match (&pdu.body, phase) {
            (Body::BindResp(_), Phase::Binding { seq }) | (Body::GenericNack, Phase::Binding { seq })
                if pdu.sequence == *seq =>
            {
                // A generic_nack answers a bind it could not read: a refusal whatever its status.
                if pdu.status != status::ESME_ROK || pdu.body == Body::GenericNack {
                    warn!(status = %status::name(pdu.status), "bind refused by the SMSC");
                    let st = if pdu.status == status::ESME_ROK { status::ESME_RBINDFAIL } else { pdu.status };
                    return Step::End(SessionEnd::BindRejected(st));
                }
                let kind = match &self.params.role {
                    RoleParams::Client { bind, .. } => bind.kind,
                    RoleParams::Server(_) => BindKind::Transceiver,
                };
                self.bound(kind);
                Step::Phase(Phase::Bound(kind))
            }
            (Body::UnbindResp, Phase::Unbinding { seq }) if pdu.sequence == *seq => {
                Step::End(SessionEnd::Shutdown)
            }
            (Body::EnquireLinkResp, _) if self.enquire_out.is_some_and(|(s, _)| s == pdu.sequence) => {
                self.enquire_out = None;
                Step::Continue
            }
            _ => {
                self.complete(pdu);
                Step::Continue
            }
        }
    }

    /// Hands a response to the request waiting for it.
    fn complete(&self, pdu: Pdu) {
        let waiter = self.shared().pending().remove(&pdu.sequence);
        match waiter {
            Some(w) => {
                let _ = w.tx.send(Some(pdu));
            }
            None => {
                if self.enquire_out.is_some_and(|(s, _)| s == pdu.sequence) {
                    return;
                }
                debug!(
                    command = command_name(pdu.command_id()),
                    seq = pdu.sequence,
                    "response to no pending request"
                );
            }
        }
    }

    async fn on_request(&mut self, pdu: Pdu, phase: &Phase) -> Step {
        let seq = pdu.sequence;
        let command_id = pdu.command_id();
        match pdu.body {
            Body::EnquireLink => {
                self.send(Pdu::new(seq, Body::EnquireLinkResp)).await;
                Step::Continue
            }
            Body::Bind(bind) => match phase {
                Phase::AwaitBind => self.on_bind(seq, bind).await,
                Phase::Bound(_) => {
                    self.answer(seq, command_id, status::ESME_RALYBND).await;
                    Step::Continue
                }
                _ => {
                    self.answer(seq, command_id, status::ESME_RINVBNDSTS).await;
                    Step::Continue
                }
            },
            Body::Unbind => match phase {
                Phase::Bound(_) => {
                    info!("peer unbinds");
                    Step::Phase(Phase::Draining { peer_unbind_seq: Some(seq) })
                }
                Phase::Unbinding { .. } | Phase::Draining { .. } => {
                    // Both sides unbinding at once: answer and close.
                    self.send(Pdu::new(seq, Body::UnbindResp)).await;
                    Step::End(SessionEnd::PeerUnbound)
                }
                _ => {
                    self.answer(seq, command_id, status::ESME_RINVBNDSTS).await;
                    Step::Continue
                }
            },
            Body::Outbind(_) => {
                self.nack(seq, status::ESME_RINVBNDSTS).await;
                Step::Continue
            }
            body @ (Body::SubmitSm(_) | Body::DeliverSm(_) | Body::DataSm(_)) => {
                let kind = match phase {
                    Phase::Bound(kind) => *kind,
                    Phase::Draining { .. } | Phase::Unbinding { .. } => {
                        self.answer(seq, command_id, status::ESME_RTHROTTLED).await;
                        return Step::Continue;
                    }
                    _ => {
                        self.answer(seq, command_id, status::ESME_RINVBNDSTS).await;
                        return Step::Continue;
                    }
                };
                let allowed = match self.shared().role {
                    Role::Server => kind.esme_transmits(),
                    Role::Client => kind.esme_receives(),
                };
                if !allowed {
                    self.answer(seq, command_id, status::ESME_RINVBNDSTS).await;
                    return Step::Continue;
                }
                self.dispatch(Pdu { status: pdu.status, sequence: seq, body }).await;
                Step::Continue
            }
            // Responses never reach here.
            Body::BindResp(_)
            | Body::UnbindResp
            | Body::EnquireLinkResp
            | Body::GenericNack
            | Body::SubmitSmResp(_)
            | Body::DeliverSmResp(_)
            | Body::DataSmResp(_) => Step::Continue,
        }
    }

    async fn dispatch(&mut self, pdu: Pdu) {
        let seq = pdu.sequence;
        let command_id = pdu.command_id();
        let Ok(permit) = self.inbound_permits.clone().try_acquire_owned() else {
            self.answer(seq, command_id, status::ESME_RTHROTTLED).await;
            return;
        };
        let responder = Responder {
            sequence: seq,
            command_id,
            outbox: self.shared().outbox.clone(),
            _permit: permit,
            answered: false,
            received: self.last_rx,
        };
        let req = InboundRequest { pdu, session: self.handle.clone(), responder };
        let tx = match &self.params.inbound {
            Inbound::Handler(handle) => return handle(req),
            Inbound::Queue(tx) => tx,
        };
        if let Err((responder, st)) = try_queue(tx, req) {
            responder.respond(st, "").await;
        }
    }

    async fn on_bind(&mut self, seq: u32, bind: Bind) -> Step {
        let RoleParams::Server(auth) = &self.params.role else {
            self.answer(seq, Body::Bind(bind).command_id(), status::ESME_RINVBNDSTS).await;
            return Step::Continue;
        };
        let kind = bind.kind;
        match auth.authenticate(self.shared().peer, &bind) {
            BindDecision::Accept(grant) => {
                if !self.wait_or_shutdown(grant.delay).await {
                    return Step::End(SessionEnd::Shutdown);
                }
                let resp =
                    Body::BindResp(BindResp { kind, system_id: grant.system_id.clone(), tlvs: sc_version() });
                self.send(Pdu::new(seq, resp)).await;
                info!(system_id = %bind.system_id.escape_debug(), kind = kind.as_str(), "bound");
                self.label = grant.label.clone();
                *self.shared().prefixes.write().unwrap_or_else(PoisonError::into_inner) =
                    grant.msisdn_prefixes;
                *self.shared().label.write().unwrap_or_else(PoisonError::into_inner) = grant.label;
                self.resize_window(grant.window);
                self._guard = Some(grant.guard);
                self.bound(kind);
                Step::Phase(Phase::Bound(kind))
            }
            BindDecision::Reject { status: st, delay } => {
                if self.warnings.take() {
                    warn!(system_id = %bind.system_id.escape_debug(), status = %status::name(st), "bind refused");
                }
                // Shutdown during the wait closes without an answer, as for a right bind.
                if !self.wait_or_shutdown(delay).await {
                    return Step::End(SessionEnd::Shutdown);
                }
                let resp = Body::BindResp(BindResp { kind, system_id: String::new(), tlvs: Tlvs::default() });
                self.send(Pdu { status: st, sequence: seq, body: resp }).await;
                Step::End(SessionEnd::BindRejected(st))
            }
        }
    }

    /// Waits until `delay` after the PDU being answered came in, or less if shutdown comes
    /// first (then `false`).
    async fn wait_or_shutdown(&self, delay: Duration) -> bool {
        if delay.is_zero() {
            return true;
        }
        tokio::select! {
            () = sleep_until(self.last_rx + delay) => true,
            () = self.params.shutdown.cancelled() => false,
        }
    }

    fn resize_window(&self, window: usize) {
        let s = self.shared();
        let current = s.window_size.load(Ordering::Relaxed) as usize;
        if window > current {
            s.window.add_permits(window - current);
        } else if window < current {
            s.window.forget_permits(current - window);
        }
        s.window_size.store(window as u32, Ordering::Relaxed);
    }

    fn bound(&mut self, kind: BindKind) {
        self.deadline = None;
        self.shared().state.send_replace(SessionState::Bound(kind));
        self.params.registry.add(&self.label, self.handle.clone());
    }

    fn finish(&mut self, end: &SessionEnd) {
        self.warnings.flush();
        let s = self.shared();
        s.state.send_replace(SessionState::Closed);
        s.done.cancel();
        s.pending().clear();
        self.params.registry.remove(&self.label, s.id);
        info!(?end, label = %self.label, "session ended");
    }

    /// Answers a request with an error (or plain) status and the matching empty response.
    async fn answer(&self, seq: u32, command_id: u32, st: u32) {
        match empty_response(command_id) {
            Some(body) => self.send(Pdu { status: st, sequence: seq, body }).await,
            None => self.nack(seq, st).await,
        }
    }

    async fn nack(&self, seq: u32, st: u32) {
        self.send(Pdu { status: st, sequence: seq, body: Body::GenericNack }).await;
    }

    async fn send(&self, pdu: Pdu) {
        super::counters::pdu(super::counters::Direction::Out, pdu.command_id(), pdu.status);
        match pdu.to_bytes() {
            Ok(bytes) => {
                let _ = self.shared().outbox.send(bytes).await;
            }
            Err(e) => warn!(error = %e, command = command_name(pdu.command_id()), "cannot encode"),
        }
    }
}

fn sc_version() -> Tlvs {
    let mut t = Tlvs::default();
    t.set(super::pdu::tag::SC_INTERFACE_VERSION, vec![0x34u8]);
    t
}

/// Completes once every permit of both semaphores is free: nothing is in flight.
async fn wait_all(window: Arc<Semaphore>, n: u32, inbound: Arc<Semaphore>, m: u32) {
    let a = window.acquire_many_owned(n.max(1)).await;
    let b = inbound.acquire_many_owned(m.max(1)).await;
    // Keep the permits: nothing new may start once drained.
    std::mem::forget((a, b));
}

/// Appends what is queued in `rx` to `buf`, until `buf` holds `limit` bytes or more.
fn take_queued(rx: &mut mpsc::Receiver<Bytes>, buf: &mut BytesMut, limit: usize) {
    while buf.len() < limit {
        match rx.try_recv() {
            Ok(more) => buf.extend_from_slice(&more),
            Err(_) => break,
        }
    }
}

/// Writes what the session sends, coalescing PDUs that queue up into one write.
/// Writes what the session queues, in batches, until the session is done. A peer that takes
/// nothing for `stall` (the response timeout) is gone: the session ends, rather than every
/// task that queues a PDU for it waiting for room forever.
async fn write_loop(
    mut w: WriteSide,
    mut rx: mpsc::Receiver<Bytes>,
    done: CancellationToken,
    stall: Duration,
) {
    const BATCH: usize = 64 * 1024;
    let mut buf = BytesMut::with_capacity(BATCH);
    loop {
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(first) => {
                    buf.extend_from_slice(&first);
                    take_queued(&mut rx, &mut buf, BATCH);
                    if buf.len() < BATCH {
                        // Let the tasks that are ready run first: under load they queue more
                        // PDUs, which then leave in this same write (one syscall, one TCP
                        // segment, instead of several); idle, it costs one pass of the
                        // scheduler.
                        tokio::task::yield_now().await;
                        take_queued(&mut rx, &mut buf, BATCH);
                    }
                    if let Err(e) = write_or_stall(&mut w, &buf, stall).await {
                        debug!(error = %e, "write failed");
                        done.cancel();
                        return;
                    }
                    buf.clear();
                }
                None => break,
            },
            () = done.cancelled() => break,
        }
    }
    // Flush what was queued before the end (the last unbind_resp, say), then close.
    take_queued(&mut rx, &mut buf, usize::MAX);
    let flush = async {
        if !buf.is_empty() {
            w.write_all(&buf).await?;
        }
        w.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
}

#[cfg(test)]
mod tests {
    //! The session over an in-memory pipe (`tokio::io::duplex`), the test driving the other
    //! end with the codec; timers on a paused clock.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::smpp::frame::{Frame, FrameReader};
    use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

    struct Far {
        frames: FrameReader<ReadHalf<DuplexStream>>,
        w: WriteHalf<DuplexStream>,
    }

    impl Far {
        async fn recv(&mut self) -> Option<Pdu> {
            match self.frames.next().await.unwrap() {
                Some(Frame::Pdu(b)) => Some(Pdu::decode(&b).unwrap()),
                Some(Frame::Oversized(h)) => panic!("{h:?}"),
                None => None,
            }
        }

        async fn send(&mut self, pdu: Pdu) {
            self.w.write_all(&pdu.to_bytes().unwrap()).await.unwrap();
        }
    }

    fn tuning() -> Tuning {
        Tuning {
            enquire_link: Duration::from_secs(30),
            response_timeout: Duration::from_secs(10),
            bind_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(1),
            max_pdu_len: 65536,
            window: 2,
            inbound_window: 4,
        }
    }

    /// A client session (chogate binds to the far end) over a pipe, bound as a transceiver.
    async fn bound_client() -> (SessionHandle, Far, tokio::task::JoinHandle<SessionEnd>, CancellationToken) {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let (inbound, _rx) = mpsc::channel(16);
        std::mem::forget(_rx);
        let shutdown = CancellationToken::new();
        let params = SessionParams {
            role: RoleParams::Client {
                bind: Bind::new(BindKind::Transceiver, "gw", "pw"),
                label: Arc::from("smsc"),
                msisdn_prefixes: Arc::from([]),
            },
            tuning: tuning(),
            inbound: inbound.into(),
            registry: Arc::new(Registry::default()),
            shutdown: shutdown.clone(),
        };
        let conn = Conn::Stream { io: Box::new(near), peer: SocketAddr::from(([127, 0, 0, 1], 1)) };
        let (handle, run) = start(conn, params);
        let run = tokio::spawn(run);
        let (r, w) = tokio::io::split(far);
        let mut far = Far { frames: FrameReader::new(r, 65536), w };
        let bind = far.recv().await.unwrap();
        let Body::Bind(b) = &bind.body else { panic!("{bind:?}") };
        let resp = BindResp { kind: b.kind, system_id: "smsc".into(), tlvs: Tlvs::default() };
        far.send(Pdu::new(bind.sequence, Body::BindResp(resp))).await;
        assert_eq!(handle.wait_bound().await.unwrap(), BindKind::Transceiver);
        (handle, far, run, shutdown)
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_should_time_out_after_the_response_timeout_and_free_its_room() {
        let (handle, mut far, _run, _shutdown) = bound_client().await;
        let started = Instant::now();
        let waiting = tokio::spawn({
            let h = handle.clone();
            async move { h.request(Body::EnquireLink).await }
        });
        let sent = far.recv().await.unwrap();
        assert_eq!(sent.body, Body::EnquireLink);
        let result = waiting.await.unwrap();
        assert_eq!(result, Err(SessionError::Timeout(Duration::from_secs(10))));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(10) && waited <= Duration::from_millis(11_250), "{waited:?}");
        // The room in the window came back: two more fit at once.
        let _a = handle.reserve().await.unwrap();
        let _b = handle.reserve().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_should_hold_a_third_request_until_a_response_comes() {
        let (handle, mut far, _run, _shutdown) = bound_client().await;
        let mut waiting = tokio::task::JoinSet::new();
        for _ in 0..3 {
            let h = handle.clone();
            waiting.spawn(async move { h.request(Body::EnquireLink).await });
        }
        let first = far.recv().await.unwrap();
        let second = far.recv().await.unwrap();
        // The third is not out while two wait: answering one lets it go.
        assert_eq!(handle.shared.pending().len(), 2);
        far.send(Pdu::new(first.sequence, Body::EnquireLinkResp)).await;
        let third = far.recv().await.unwrap();
        assert_ne!(third.sequence, second.sequence);
        far.send(Pdu::new(second.sequence, Body::EnquireLinkResp)).await;
        far.send(Pdu::new(third.sequence, Body::EnquireLinkResp)).await;
        while let Some(r) = waiting.join_next().await {
            assert_eq!(r.unwrap().unwrap().body, Body::EnquireLinkResp);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_enquire_link_should_end_the_session_as_dead() {
        let (_handle, mut far, run, _shutdown) = bound_client().await;
        // Idle for enquire_link: the session asks, and nobody answers.
        let probe = far.recv().await.unwrap();
        assert_eq!(probe.body, Body::EnquireLink);
        assert_eq!(run.await.unwrap(), SessionEnd::LinkDead);
    }

    #[tokio::test(start_paused = true)]
    async fn the_peers_unbind_should_be_answered_and_end_the_session() {
        let (handle, mut far, run, _shutdown) = bound_client().await;
        far.send(Pdu::new(7, Body::Unbind)).await;
        assert_eq!(far.recv().await.unwrap(), Pdu::new(7, Body::UnbindResp));
        assert_eq!(run.await.unwrap(), SessionEnd::PeerUnbound);
        assert_eq!(handle.state(), SessionState::Closed);
    }
}
