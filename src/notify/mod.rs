//! SMS notifications: the durable outbox drained to the SMSC binds.
//!
//! Messages are queued by the market in the same transaction as the action that caused
//! them. The notifier claims due messages with a lease (a crash makes them due again once
//! the lease runs out; another node never takes a claimed message), routes each by MSISDN
//! prefix to a bound SMSC (failing over when a bind is down), splits it into parts (UCS2
//! with UDH concatenation, or unaccented GSM), paces submissions to the SMSC's TPS within
//! its window, and records the outcome in batches: sent with the part ids, retried per the
//! error code's policy, failed, or expired (never sent after its validity).
//!
//! Delivery receipts are matched by id whatever base and padding the SMSC uses, whether
//! they arrive before or after the `submit_sm_resp`, and are answered only once recorded.
//! Texts from households that are neither USSD nor receipts are SMS keywords, the other
//! inbound channel ([`crate::keywords`]).

pub mod policy;
pub mod receipt;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::{Config, TextMode};
use crate::logging::mask_msisdn;
use crate::market::{Market, OutboxMessage, OutboxOutcome, ReceiptUpdate};
use crate::smpp::pdu::{Address, Body, Sm};
use crate::smpp::session::{InboundRequest, Registry, SessionHandle, SessionState};
use crate::smpp::status;
use crate::text;
use crate::time::now_ms;

use policy::{Decision, Pacer, RetryPolicy, Router};
use receipt::Outcome;

/// Messages claimed per round at most.
const CLAIM_BATCH: usize = 2000;
/// How often a claim also sweeps the whole queue for messages past their validity (due ones
/// are expired at every claim; the sweep catches those waiting for a retry).
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Idle poll interval of the outbox.
const POLL: Duration = Duration::from_millis(100);

/// One SMSC as the notifier sees it.
struct Smsc {
    text_mode: TextMode,
    receipt_ids: crate::config::ReceiptIds,
    pacer: std::sync::Mutex<Pacer>,
    next: std::sync::atomic::AtomicUsize,
}

/// A receipt waiting to be recorded, with the PDU it came in to answer afterwards.
struct PendingReceipt {
    smsc: String,
    update: ReceiptUpdate,
    responder: crate::smpp::session::Responder,
}

/// The notifier.
pub struct Notifier {
    market: Market,
    registry: Arc<Registry>,
    router: Router,
    policy: RetryPolicy,
    smscs: HashMap<String, Smsc>,
    source: Address,
    validity_ms: i64,
    /// How long a claimed message is ours before it becomes due again (crash safety):
    /// `[notify] lease_secs`.
    lease_ms: i64,
    /// Messages claimed at once: no more than can be in flight (see `drain_outbox`).
    claim_limit: usize,
    udh_ref: AtomicU8,
    outcomes: mpsc::Sender<OutboxOutcome>,
    receipts: mpsc::Sender<PendingReceipt>,
    in_flight: Arc<Semaphore>,
    /// Outcomes and receipts recorded so far (for whoever waits on progress).
    recorded: Arc<watch::Sender<u64>>,
}

/// Whether a bind to an SMSC can take submissions now.
fn transmits(h: &SessionHandle) -> bool {
    matches!(h.state(), SessionState::Bound(k) if k.esme_transmits())
}

/// The sender address: a short code (digits: TON 3 network-specific) or an alphanumeric
/// sender id (TON 5).
fn source_address(addr: &str) -> Address {
    let ton = if addr.bytes().all(|b| b.is_ascii_digit()) { 3 } else { 5 };
    Address { ton, npi: 0, addr: addr.to_owned() }
}

/// The parts of one message ready to submit.
fn submit_bodies(
    msg: &OutboxMessage,
    mode: TextMode,
    reference: u8,
    source: &Address,
) -> Result<Vec<Body>, text::TextError> {
    let (encoding, parts) = text::split_sms(&msg.text, mode == TextMode::Ucs2, reference)?;
    Ok(parts
        .into_iter()
        .map(|p| {
            Body::SubmitSm(Box::new(Sm {
                source: source.clone(),
                dest: Address::international(msg.msisdn.clone()),
                esm_class: if p.udhi { 0x40 } else { 0x00 },
                registered_delivery: 0x01,
                data_coding: encoding.data_coding(),
                short_message: Bytes::from(p.bytes),
                ..Sm::default()
            }))
        })
        .collect())
}

impl Notifier {
    /// Starts the notifier's tasks on `tracker`: the outbox loop, the outcome recorder and
    /// the receipt recorder. Returns the handle that inbound SMS and receipts go to.
    pub fn start(
        config: &Config,
        market: Market,
        registry: Arc<Registry>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Arc<Notifier> {
        let router = Router::new(
            config.smsc.iter().map(|s| (s.name.as_str(), s.route_prefixes.as_slice())),
            config.notify.default_smsc.as_deref(),
        );
        let smscs = config
            .smsc
            .iter()
            .map(|s| {
                let smsc = Smsc {
                    text_mode: s.text_mode,
                    receipt_ids: s.receipt_ids,
                    pacer: std::sync::Mutex::new(Pacer::new(s.tps)),
                    next: std::sync::atomic::AtomicUsize::new(0),
                };
                (s.name.clone(), smsc)
            })
            .collect();
        let window: usize = config.smsc.iter().map(|s| s.window as usize).sum::<usize>().max(1);
        // Messages being submitted at once: enough to fill every window twice.
        let slots = window * 2;
        let (outcomes, outcomes_rx) = mpsc::channel(8192);
        let recorded = Arc::new(watch::Sender::new(0u64));
        let (receipts, receipts_rx) = mpsc::channel(8192);
        let n = Arc::new(Notifier {
            market,
            registry,
            router,
            policy: RetryPolicy::from_config(&config.notify),
            smscs,
            source: source_address(&config.notify.source_addr),
            validity_ms: i64::try_from(config.notify.validity().as_millis()).unwrap_or(i64::MAX),
            lease_ms: i64::try_from(config.notify.lease().as_millis()).unwrap_or(i64::MAX),
            claim_limit: slots.min(CLAIM_BATCH),
            udh_ref: AtomicU8::new(0),
            outcomes,
            receipts,
            in_flight: Arc::new(Semaphore::new(slots)),
            recorded: recorded.clone(),
        });
        let in_flight = (n.in_flight.clone(), slots as u32);
        tracker.spawn(record_outcomes(
            n.market.clone(),
            outcomes_rx,
            recorded.clone(),
            shutdown.clone(),
            in_flight,
        ));
        tracker.spawn(record_receipts(n.market.clone(), receipts_rx, recorded, shutdown.clone()));
        if !config.smsc.is_empty() {
            tracker.spawn(n.clone().drain_outbox(shutdown, tracker.clone()));
        }
        n
    }

    /// Waits until at least `n` outcomes and receipts have been recorded in all.
    pub async fn wait_recorded(&self, n: u64) {
        let mut rx = self.recorded.subscribe();
        let _ = rx.wait_for(|&v| v >= n).await;
    }

    /// A bound session of `smsc` that may send (round robin over its binds).
    fn session_for(&self, smsc: &str) -> Option<SessionHandle> {
        self.registry.with(smsc, |handles| {
            let n = handles.iter().filter(|h| transmits(h)).count();
            if n == 0 {
                return None;
            }
            let i = self.smscs.get(smsc).map(|s| s.next.fetch_add(1, Ordering::Relaxed)).unwrap_or(0);
            handles.iter().filter(|h| transmits(h)).nth(i % n).cloned()
        })
    }

    fn is_up(&self, smsc: &str) -> bool {
        self.registry.with(smsc, |handles| handles.iter().any(transmits))
    }

    /// Claims due messages and submits them until shutdown.
    async fn drain_outbox(self: Arc<Self>, shutdown: CancellationToken, tracker: TaskTracker) {
        let mut swept: Option<Instant> = None;
        loop {
            let sweep = swept.is_none_or(|at| at.elapsed() >= SWEEP_EVERY);
            if sweep {
                swept = Some(Instant::now());
            }
            let batch = tokio::select! {
                () = shutdown.cancelled() => break,
                // No more than the slots: the last message of a batch then waits for one
                // round of sends, not for thousands (claimed 2000 at a time, the last ones
                // outlived their lease at a low `tps`, were claimed again while still under
                // way, and went out twice).
                b = self.market.outbox_claim(self.claim_limit, self.lease_ms, sweep) => b,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    warn!(error = %e, "cannot claim outbox messages");
                    Vec::new()
                }
            };
            let full = batch.len() == self.claim_limit;
            for msg in batch {
                let permit = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => {
                        // Claimed but not sent: due again at once for the next start.
                        let _ = self.outcomes.send(OutboxOutcome::Release { id: msg.id }).await;
                        continue;
                    }
                    p = self.in_flight.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                };
                let me = self.clone();
                let stop = shutdown.clone();
                tracker.spawn(async move {
                    let outcome = me.send(&msg, &stop).await;
                    // Hand the outcome over before giving the slot back: the recorder waits
                    // for every slot at shutdown, so no acknowledged send goes unrecorded.
                    let _ = me.outcomes.send(outcome).await;
                    drop(permit);
                });
            }
            if !full {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        }
        info!("outbox drain stopped");
    }

    /// Submits one message (all its parts); the outcome to record.
    async fn send(&self, msg: &OutboxMessage, shutdown: &CancellationToken) -> OutboxOutcome {
        let attempts = msg.attempts + 1;
        let retry_transport = |error: String| OutboxOutcome::Retry {
            id: msg.id,
            attempts,
            next_at_ms: after_ms(self.policy.on_transport(attempts)),
            error,
        };
        // Never sent after its validity: the message's own, capped by [notify] validity_secs.
        if now_ms() >= msg.expires_at_ms.min(msg.created_at_ms.saturating_add(self.validity_ms)) {
            return OutboxOutcome::Expired { id: msg.id };
        }
        let Some(smsc_name) = self.router.pick(&msg.msisdn, |n| self.is_up(n)).map(str::to_owned) else {
            return retry_transport("no SMSC bound".into());
        };
        let Some(smsc) = self.smscs.get(&smsc_name) else {
            return retry_transport(format!("unknown SMSC {smsc_name}"));
        };
        let reference = self.udh_ref.fetch_add(1, Ordering::Relaxed);
        let bodies = match submit_bodies(msg, smsc.text_mode, reference, &self.source) {
            Ok(b) => b,
            Err(e) => return OutboxOutcome::Failed { id: msg.id, attempts, error: e.to_string() },
        };
        let mut part_ids = Vec::with_capacity(bodies.len());
        for body in bodies {
            let at = smsc.pacer.lock().map(|mut p| p.reserve()).unwrap_or(None);
            if let Some(at) = at {
                tokio::select! {
                    () = shutdown.cancelled() => return OutboxOutcome::Release { id: msg.id },
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            let Some(session) = self.session_for(&smsc_name) else {
                return retry_transport(format!("{smsc_name}: bind lost"));
            };
            match session.request(body).await {
                Ok(resp) if resp.status == status::ESME_ROK => match resp.body {
                    Body::SubmitSmResp(r) => part_ids.push(receipt::canonical(&r.message_id)),
                    other => {
                        return retry_transport(format!("unexpected response {:?}", other.command_id()));
                    }
                },
                Ok(resp) => {
                    let error = format!("{smsc_name}: {}", status::name(resp.status));
                    debug!(msisdn = %mask_msisdn(&msg.msisdn), %error, "submit refused");
                    return match self.policy.on_status(resp.status, attempts) {
                        Decision::Retry(after) => {
                            OutboxOutcome::Retry { id: msg.id, attempts, next_at_ms: after_ms(after), error }
                        }
                        Decision::Fail => OutboxOutcome::Failed { id: msg.id, attempts, error },
                    };
                }
                Err(e) => return retry_transport(format!("{smsc_name}: {e}")),
            }
        }
        OutboxOutcome::Sent { id: msg.id, smsc: smsc_name, part_ids, attempts, at_ms: now_ms() }
    }

    /// A delivery receipt (see [`is_receipt`]): recorded once committed, then answered.
    pub async fn handle_receipt(&self, req: InboundRequest) {
        let InboundRequest { pdu, session, responder } = req;
        let (Body::DeliverSm(sm) | Body::SubmitSm(sm)) = &pdu.body else {
            responder.respond(status::ESME_RINVCMDID, "").await;
            return;
        };
        if session.role() != crate::smpp::session::Role::Client {
            // chogate sends SMS through [[smsc]] binds only: a receipt from a peer bound
            // to it can match nothing.
            crate::metrics::smpp_refused(crate::metrics::Refusal::Receipt);
            responder.respond(status::ESME_RINVESMCLASS, "").await;
            return;
        }
        let Some(r) = receipt::parse(sm) else {
            warn!("receipt without an id or a state; acknowledged and dropped");
            responder.respond(status::ESME_ROK, "").await;
            return;
        };
        if r.outcome == Outcome::Pending {
            responder.respond(status::ESME_ROK, "").await;
            return;
        }
        let smsc = session.label().to_string();
        let ids = self.smscs.get(&smsc).map(|s| s.receipt_ids).unwrap_or_default();
        let Some(form) = receipt::response_form(&r.message_id, ids) else {
            warn!(%smsc, id = %r.message_id.escape_debug(), ?ids, "receipt id does not read in the configured base; dropped");
            responder.respond(status::ESME_ROK, "").await;
            return;
        };
        let update = ReceiptUpdate {
            message_id: form,
            delivered: r.outcome == Outcome::Delivered,
            state: r.state,
            at_ms: now_ms(),
        };
        let pending = PendingReceipt { smsc, update, responder };
        if let Err(mpsc::error::SendError(p)) = self.receipts.send(pending).await {
            p.responder.respond(status::ESME_RX_T_APPN, "").await;
        }
    }
}

/// Whether a request from a peer is a delivery receipt (for the notifier) rather than a
/// household's text (for [`crate::keywords`]).
pub fn is_receipt(pdu: &crate::smpp::Pdu) -> bool {
    matches!(&pdu.body, Body::DeliverSm(sm) | Body::SubmitSm(sm) if receipt::is_receipt(sm))
}

/// Records send outcomes in batches (one group commit for many).
async fn record_outcomes(
    market: Market,
    mut rx: mpsc::Receiver<OutboxOutcome>,
    recorded: Arc<watch::Sender<u64>>,
    shutdown: CancellationToken,
    (in_flight, slots): (Arc<Semaphore>, u32),
) {
    let mut batch = Vec::with_capacity(1024);
    let mut stopping = false;
    loop {
        if stopping {
            if rx.try_recv().map(|o| batch.push(o)).is_err() {
                break;
            }
            while batch.len() < 4096 {
                match rx.try_recv() {
                    Ok(o) => batch.push(o),
                    Err(_) => break,
                }
            }
        } else {
            tokio::select! {
                n = rx.recv_many(&mut batch, 4096) => if n == 0 { break },
                () = shutdown.cancelled() => {
                    // Every send still under way hands its outcome over first.
                    let _all = in_flight.acquire_many(slots).await;
                    stopping = true;
                    continue;
                }
            }
        }
        let outcomes = std::mem::take(&mut batch);
        let n = outcomes.len();
        match market.outbox_record(outcomes).await {
            Ok(()) => {
                recorded.send_modify(|v| *v += n as u64);
            }
            // The messages stay claimed until their lease ends, then go out again.
            Err(e) => warn!(error = %e, n, "cannot record outbox outcomes"),
        }
    }
}

/// Records receipts in batches and answers their PDUs once committed. A receipt that
/// matches no sent part yet (its submit_sm_resp is still on its way) is kept by the store
/// and applied when that part is recorded as sent.
async fn record_receipts(
    market: Market,
    mut rx: mpsc::Receiver<PendingReceipt>,
    recorded: Arc<watch::Sender<u64>>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(1024);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, 4096) => if n == 0 { break },
            // Receipts not recorded by now are answered with a temporary error when their
            // responders drop: the SMSC sends them again.
            () = shutdown.cancelled() => break,
        }
        let pending = std::mem::take(&mut batch);
        let updates: Vec<(String, ReceiptUpdate)> =
            pending.iter().map(|p| (p.smsc.clone(), p.update.clone())).collect();
        let answer = match market.outbox_receipts(updates).await {
            Ok(unmatched) => {
                if unmatched > 0 {
                    debug!(unmatched, "receipts kept until their submit_sm_resp is recorded");
                }
                status::ESME_ROK
            }
            Err(e) => {
                warn!(error = %e, "cannot record receipts; the SMSC will send them again");
                status::ESME_RX_T_APPN
            }
        };
        let n = pending.len() as u64;
        for p in pending {
            p.responder.respond(answer, "").await;
        }
        if answer == status::ESME_ROK {
            recorded.send_modify(|v| *v += n);
        }
    }
}

/// The clock in milliseconds `d` from now (saturating: a configured backoff never wraps).
fn after_ms(d: std::time::Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
