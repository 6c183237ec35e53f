//! The `mt-sink` role: an SMSC that accepts every `submit_sm` (and `data_sm`) with a message
//! id and, when `registered_delivery` asks for it, sends the delivery receipt back as a
//! `deliver_sm` after a configurable delay.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::SimError;
use super::link::{BIND_WAIT, Listening, Uplink};
use super::loadtest::LoadOptions;
use super::stats::{Counters, SinkReport, Snapshot, every_second, kind, per_second, round3};
use crate::smpp::pdu::{Address, Body, Sm, Tlvs, tag};
use crate::smpp::session::{InboundRequest, SessionError};
use crate::smpp::status;

/// Receipts waiting for their time, at most (accepting submits waits beyond that).
const RECEIPT_QUEUE: usize = 65_536;
/// `message_state` of a delivered message.
const DELIVERED: u8 = 2;

/// A receipt to send.
struct Receipt {
    id: String,
    /// The receipt's source: the message's destination.
    from: Address,
    /// The receipt's destination: the message's source.
    to: Address,
    submitted: SystemTime,
    due: Instant,
}

/// Runs the sink for `opts.duration` once chogate (or any ESME with the credentials) binds.
pub async fn run(
    opts: &LoadOptions,
    listen: SocketAddr,
    receipt_delay: Duration,
    stop: CancellationToken,
    progress: &mut (dyn Write + Send),
) -> Result<SinkReport, SimError> {
    let counters = Arc::new(Counters::default());
    let (tx, inbound) = mpsc::channel(4096);
    let auth = opts.credentials();
    let listening =
        Listening::start(listen, auth, opts.tuning.clone(), tx.into(), TaskTracker::new()).await?;
    writeln!(progress, "mt-sink: listening on {} for system_id {}", listening.local, opts.system_id)?;
    progress.flush()?;
    let bound = listening.wait_bind(&opts.system_id, &stop).await;
    if bound.is_none() {
        writeln!(progress, "mt-sink: nobody bound within {} s", BIND_WAIT.as_secs())?;
        counters.error(kind::BIND_FAILED);
    }

    let work = CancellationToken::new();
    let (rtx, rrx) = mpsc::channel(RECEIPT_QUEUE);
    let accept = tokio::spawn(accept_messages(inbound, rtx, receipt_delay, counters.clone(), work.clone()));
    let label: Arc<str> = Arc::from(opts.system_id.as_str());
    let uplink = Uplink::Registry { registry: listening.registry.clone(), label };
    let send = tokio::spawn(send_receipts(rrx, uplink, opts.window as usize, counters.clone(), work.clone()));

    let (elapsed, at_end) = match bound {
        None => (Duration::ZERO, Snapshot::default()),
        Some(_) => {
            every_second(&counters, opts.duration, &stop, std::future::pending(), progress, |s, now, last| {
                format!(
                    "[{s:>4}s] submits/s {:>7}  receipts/s {:>7}  errors {:>5}  (submits {}, receipts {})",
                    now.submits - last.submits,
                    now.receipts - last.receipts,
                    now.errors - last.errors,
                    now.submits,
                    now.receipts,
                )
            })
            .await?
        }
    };
    work.cancel();
    let _ = accept.await;
    let _ = send.await;
    listening.close().await;
    Ok(SinkReport {
        role: "mt-sink",
        duration_s: round3(elapsed.as_secs_f64()),
        submits: at_end.submits,
        submits_per_s: per_second(at_end.submits, elapsed),
        receipts: at_end.receipts,
        receipts_per_s: per_second(at_end.receipts, elapsed),
        errors: counters.errors(),
    })
}

/// Answers every submit with a new message id and queues its receipt when asked for.
async fn accept_messages(
    mut inbound: mpsc::Receiver<InboundRequest>,
    receipts: mpsc::Sender<Receipt>,
    delay: Duration,
    counters: Arc<Counters>,
    cancel: CancellationToken,
) {
    let mut next_id: u64 = 0;
    loop {
        let req = tokio::select! {
            r = inbound.recv() => match r { Some(r) => r, None => break },
            () = cancel.cancelled() => break,
        };
        let (source, dest, registered_delivery) = match &req.pdu.body {
            Body::SubmitSm(sm) => (sm.source.clone(), sm.dest.clone(), sm.registered_delivery),
            Body::DataSm(d) => (d.source.clone(), d.dest.clone(), d.registered_delivery),
            _ => {
                // An SMSC takes no deliver_sm from an ESME.
                counters.error(kind::UNEXPECTED_PDU);
                req.responder.respond(status::ESME_RINVCMDID, "").await;
                continue;
            }
        };
        next_id += 1;
        let id = next_id.to_string();
        req.responder.respond(status::ESME_ROK, &id).await;
        counters.submits.fetch_add(1, Ordering::Relaxed);
        // Bits 1-0: 01 = receipt on success and failure (10 = on failure only: none here).
        if registered_delivery & 0x03 == 0x01 {
            let r = Receipt {
                id,
                from: dest,
                to: source,
                submitted: SystemTime::now(),
                due: Instant::now() + delay,
            };
            tokio::select! {
                sent = receipts.send(r) => if sent.is_err() { break },
                () = cancel.cancelled() => break,
            }
        }
    }
}

/// Sends receipts when they are due, at most `window` at a time.
async fn send_receipts(
    mut queue: mpsc::Receiver<Receipt>,
    uplink: Uplink,
    window: usize,
    counters: Arc<Counters>,
    cancel: CancellationToken,
) {
    let mut inflight: JoinSet<()> = JoinSet::new();
    'queue: loop {
        let r = tokio::select! {
            r = queue.recv() => match r { Some(r) => r, None => break },
            () = cancel.cancelled() => break,
            Some(_) = inflight.join_next(), if !inflight.is_empty() => continue,
        };
        tokio::select! {
            () = sleep_until(r.due) => {}
            () = cancel.cancelled() => break,
        }
        while inflight.len() >= window.max(1) {
            tokio::select! {
                _ = inflight.join_next() => {}
                () = cancel.cancelled() => break 'queue,
            }
        }
        let body = receipt_body(&r, SystemTime::now());
        let uplink = uplink.clone();
        let counters = counters.clone();
        inflight.spawn(async move {
            match uplink.request(body).await {
                Ok(pdu) if pdu.status == status::ESME_ROK && pdu.body != Body::GenericNack => {
                    counters.receipts.fetch_add(1, Ordering::Relaxed);
                }
                Ok(pdu) if pdu.body == Body::GenericNack => counters.error(kind::GENERIC_NACK),
                Ok(pdu) => counters.error(&status::name(pdu.status)),
                Err(SessionError::Timeout(_)) => counters.error(kind::RESPONSE_TIMEOUT),
                Err(SessionError::NotBound(_)) => counters.error(kind::NO_BIND),
                Err(e) => counters.error(&format!("send: {e}")),
            }
        });
    }
    // What is in flight finishes within the response timeout; nothing new starts.
    while inflight.join_next().await.is_some() {}
}

/// The receipt `deliver_sm`: esm_class 0x04, `receipted_message_id` and `message_state`
/// TLVs, and the customary text.
fn receipt_body(r: &Receipt, done: SystemTime) -> Body {
    let text = format!(
        "id:{} sub:001 dlvr:001 submit date:{} done date:{} stat:DELIVRD err:000 text:",
        r.id,
        smpp_date(r.submitted),
        smpp_date(done)
    );
    let mut tlvs = Tlvs::default();
    let mut id = r.id.clone().into_bytes();
    id.push(0);
    tlvs.set(tag::RECEIPTED_MESSAGE_ID, id);
    tlvs.set(tag::MESSAGE_STATE, vec![DELIVERED]);
    Body::DeliverSm(Box::new(Sm {
        source: r.from.clone(),
        dest: r.to.clone(),
        esm_class: 0x04,
        data_coding: 0,
        short_message: Bytes::from(text.into_bytes()),
        tlvs,
        ..Sm::default()
    }))
}

/// `YYMMDDhhmm` in UTC, as receipts write dates.
fn smpp_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (y, m, d) = crate::time::civil_from_days(days);
    let rem = secs % 86_400;
    format!("{:02}{:02}{:02}{:02}{:02}", y.rem_euclid(100), m, d, rem / 3600, (rem % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_should_be_utc_yymmddhhmm() {
        assert_eq!(smpp_date(UNIX_EPOCH), "7001010000");
        // 2000-02-29 12:34:56 UTC
        assert_eq!(smpp_date(UNIX_EPOCH + Duration::from_secs(951_827_696)), "0002291234");
        // 2026-11-23 01:59:00 UTC
        assert_eq!(smpp_date(UNIX_EPOCH + Duration::from_secs(1_795_399_140)), "2611230159");
    }

    #[test]
    fn receipt_should_carry_the_id_state_and_text() {
        let r = Receipt {
            id: "42".into(),
            from: Address::international("84912345678"),
            to: Address { ton: 5, npi: 0, addr: "CHO384".into() },
            submitted: UNIX_EPOCH,
            due: Instant::now(),
        };
        let Body::DeliverSm(sm) = receipt_body(&r, UNIX_EPOCH + Duration::from_secs(60)) else { panic!() };
        assert_eq!(sm.esm_class, 0x04);
        assert_eq!((sm.source.addr.as_str(), sm.dest.addr.as_str()), ("84912345678", "CHO384"));
        assert_eq!(sm.tlvs.get_cstr(tag::RECEIPTED_MESSAGE_ID).as_deref(), Some("42"));
        assert_eq!(sm.tlvs.get_u8(tag::MESSAGE_STATE), Some(2));
        assert_eq!(
            std::str::from_utf8(&sm.short_message).unwrap(),
            "id:42 sub:001 dlvr:001 submit date:7001010000 done date:7001010001 stat:DELIVRD err:000 text:"
        );
    }
}
