//! The `null-gateway` role: a USSD gateway that does no work, the reference point of the
//! benchmarks.
//!
//! The load generator (role `ussdc`) binds to it as it binds to chogate's SMPP server. Each
//! subscriber PDU is answered and followed at once by a fixed screen: op 2 (expects input)
//! until the subscriber's script has been answered, then op 17 with the end bit of
//! `its_session_info` set. No menus, no text decoding, no database. It runs on chogate's own
//! SMPP engine, with the path chogate's server takes: the bind's reader starts a task per
//! request, the task takes room in the window, then the answer and the screen leave in one
//! write. What the generator measures against it is therefore the ceiling of the benchmark
//! on this machine (the generator, loopback TCP and the SMPP engine sharing the cores);
//! chogate's figures are read against it.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::SimError;
use super::link::{BIND_WAIT, Listening};
use super::loadtest::LoadOptions;
use super::stats::{Counters, GatewayReport, Snapshot, every_second, kind, per_second, round3};
use super::subscriber::Script;
use super::ussd::op;
use crate::smpp::pdu::{Body, Pdu, Sm, Tlvs, tag};
use crate::smpp::session::{Inbound, InboundRequest};
use crate::smpp::status;

/// The screen that expects an answer (GSM 03.38, one page).
const MENU: &[u8] = b"1. Ban hang\n2. Don hang\n3. Thanh toan\n0. Thoat";
/// The final screen.
const DONE: &[u8] = b"Da ghi nhan. Cam on!";

/// Where each subscriber's dialogue stands, and what its script is.
struct Dialogues {
    /// Answers taken so far in the open dialogue, by MSISDN.
    answers: DashMap<u64, usize, foldhash::fast::RandomState>,
    /// Answers each script has: subscriber i runs script i mod n, as the generator assigns.
    lengths: Vec<usize>,
    msisdn_base: u64,
    counters: Arc<Counters>,
}

impl Dialogues {
    /// How many answers the dialogue of `msisdn` takes before its final screen.
    fn script_length(&self, msisdn: u64) -> Option<usize> {
        let i = usize::try_from(msisdn.checked_sub(self.msisdn_base)?).ok()?;
        self.lengths.get(i % self.lengths.len().max(1)).copied()
    }

    /// Moves the dialogue for one subscriber PDU; returns the screen to send (`Some(end)`)
    /// or `None` when nothing follows (an abort).
    fn advance(&self, msisdn: u64, service_op: Option<u8>) -> Result<Option<bool>, u32> {
        let length = self.script_length(msisdn).ok_or(status::ESME_RINVSRCADR)?;
        match service_op {
            Some(op::PSSR_INDICATION) if length == 0 => {
                self.answers.remove(&msisdn);
                Ok(Some(true))
            }
            Some(op::PSSR_INDICATION) => {
                self.answers.insert(msisdn, 0);
                Ok(Some(false))
            }
            Some(op::USSR_CONFIRM) => {
                let mut n = self.answers.get_mut(&msisdn).ok_or(status::ESME_RINVSRCADR)?;
                *n += 1;
                let end = *n >= length;
                drop(n);
                if end {
                    self.answers.remove(&msisdn);
                }
                Ok(Some(end))
            }
            Some(op::USER_ABORT) => {
                self.answers.remove(&msisdn);
                Ok(None)
            }
            _ => Err(status::ESME_RINVOPTPARAMVAL),
        }
    }
}

/// The screen for `req`'s subscriber, as chogate's server sends it: a `deliver_sm` from the
/// dialled code to the subscriber, `its_session_info` echoed with the end bit on the final
/// screen.
fn screen(req: &Sm, end: bool) -> Body {
    let mut tlvs = Tlvs(Vec::with_capacity(2));
    let service_op: &'static [u8] = if end { &[op::PSSR_RESPONSE] } else { &[op::USSR_REQUEST] };
    tlvs.set(tag::USSD_SERVICE_OP, Bytes::from_static(service_op));
    if let Some([n, flags]) =
        req.tlvs.get(tag::ITS_SESSION_INFO).and_then(|v| <[u8; 2]>::try_from(v.as_ref()).ok())
    {
        tlvs.set(tag::ITS_SESSION_INFO, vec![n, (flags & 0xFE) | u8::from(end)]);
    }
    Body::DeliverSm(Box::new(Sm {
        service_type: "USSD".into(),
        source: req.dest.clone(),
        dest: req.source.clone(),
        esm_class: 0,
        data_coding: 0,
        short_message: Bytes::from_static(if end { DONE } else { MENU }),
        tlvs,
        ..Sm::default()
    }))
}

/// One subscriber PDU: the answer and the next screen in one write, or an error status.
async fn step(dialogues: Arc<Dialogues>, req: InboundRequest) {
    let InboundRequest { pdu, session, responder } = req;
    let Pdu { body: Body::DeliverSm(sm) | Body::SubmitSm(sm), .. } = pdu else {
        dialogues.counters.error(kind::UNEXPECTED_PDU);
        responder.respond(status::ESME_RINVCMDID, "").await;
        return;
    };
    let msisdn = sm.source.addr.parse::<u64>().unwrap_or(0);
    let end = match dialogues.advance(msisdn, sm.tlvs.get_u8(tag::USSD_SERVICE_OP)) {
        Ok(Some(end)) => end,
        Ok(None) => {
            responder.respond(status::ESME_ROK, "").await;
            return;
        }
        Err(st) => {
            dialogues.counters.error(kind::UNEXPECTED_PDU);
            responder.respond(st, "").await;
            return;
        }
    };
    let body = screen(&sm, end);
    let sent = match session.reserve().await {
        Ok(slot) => slot.answer_then_request(responder, body).await,
        Err(e) => {
            responder.respond(status::ESME_RX_T_APPN, "").await;
            Err(e)
        }
    };
    match sent {
        Ok(resp) if resp.status == status::ESME_ROK => {
            dialogues.counters.steps.fetch_add(1, Ordering::Relaxed);
            if end {
                dialogues.counters.dialogues.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(resp) => dialogues.counters.error(&status::name(resp.status)),
        Err(_) => dialogues.counters.error(kind::CONNECTION_LOST),
    }
}

/// Runs the null gateway until `opts.duration` has passed since the USSD centre bound, the
/// bind ends, or `stop`.
pub async fn run(
    opts: &LoadOptions,
    listen: SocketAddr,
    stop: CancellationToken,
    progress: &mut (dyn Write + Send),
) -> Result<GatewayReport, SimError> {
    let counters = Arc::new(Counters::default());
    let dialogues = Arc::new(Dialogues {
        answers: DashMap::with_capacity_and_hasher(opts.subscribers, foldhash::fast::RandomState::default()),
        lengths: opts.scripts.iter().map(|s: &Script| s.inputs.len()).collect(),
        msisdn_base: opts.msisdn_base,
        counters: counters.clone(),
    });
    let tracker = TaskTracker::new();
    let steps = tracker.clone();
    let handler = Inbound::Handler(Arc::new(move |req: InboundRequest| {
        steps.spawn(step(dialogues.clone(), req));
    }));
    let auth = opts.credentials();
    let listening = Listening::start(listen, auth, opts.tuning.clone(), handler, tracker).await?;
    writeln!(progress, "null-gateway: listening on {} for system_id {}", listening.local, opts.system_id)?;
    progress.flush()?;
    let (elapsed, at_end) = match listening.wait_bind(&opts.system_id, &stop).await {
        None => {
            writeln!(progress, "null-gateway: nobody bound within {} s", BIND_WAIT.as_secs())?;
            counters.error(kind::BIND_FAILED);
            (Duration::ZERO, Snapshot::default())
        }
        Some(handle) => {
            writeln!(progress, "null-gateway: bound from {}", handle.peer())?;
            // The USSD centre unbinding at the end of its run ends this one.
            every_second(&counters, opts.duration, &stop, handle.closed(), progress, |s, now, last| {
                format!(
                    "[{s:>4}s] steps/s {:>7}  dialogues/s {:>6}  errors {:>5}  (steps {}, dialogues {})",
                    now.steps - last.steps,
                    now.dialogues - last.dialogues,
                    now.errors - last.errors,
                    now.steps,
                    now.dialogues,
                )
            })
            .await?
        }
    };
    listening.close().await;
    Ok(GatewayReport {
        role: "null-gateway",
        duration_s: round3(elapsed.as_secs_f64()),
        steps: at_end.steps,
        steps_per_s: per_second(at_end.steps, elapsed),
        dialogues: at_end.dialogues,
        dialogues_per_s: per_second(at_end.dialogues, elapsed),
        errors: counters.errors(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smpp::pdu::Address;

    fn dialogues(lengths: &[usize]) -> Dialogues {
        Dialogues {
            answers: DashMap::default(),
            lengths: lengths.to_vec(),
            msisdn_base: 84_900_000_000,
            counters: Arc::new(Counters::default()),
        }
    }

    #[test]
    fn a_dialogue_should_end_after_its_scripts_last_answer() {
        // Subscriber 0 runs the 2-answer script, subscriber 1 the one with none.
        let d = dialogues(&[2, 0]);
        assert_eq!(d.advance(84_900_000_000, Some(op::PSSR_INDICATION)), Ok(Some(false)));
        assert_eq!(d.advance(84_900_000_000, Some(op::USSR_CONFIRM)), Ok(Some(false)));
        assert_eq!(d.advance(84_900_000_000, Some(op::USSR_CONFIRM)), Ok(Some(true)));
        assert_eq!(d.advance(84_900_000_001, Some(op::PSSR_INDICATION)), Ok(Some(true)));
        // Subscriber 2 runs script 0 again.
        assert_eq!(d.advance(84_900_000_002, Some(op::PSSR_INDICATION)), Ok(Some(false)));
        assert_eq!(d.advance(84_900_000_002, Some(op::USER_ABORT)), Ok(None));
        assert!(d.answers.is_empty());
    }

    #[test]
    fn an_answer_without_a_dial_or_a_stranger_should_be_refused() {
        let d = dialogues(&[2]);
        assert_eq!(d.advance(84_900_000_000, Some(op::USSR_CONFIRM)), Err(status::ESME_RINVSRCADR));
        assert_eq!(d.advance(84_800_000_000, Some(op::PSSR_INDICATION)), Err(status::ESME_RINVSRCADR));
        assert_eq!(d.advance(84_900_000_000, None), Err(status::ESME_RINVOPTPARAMVAL));
    }

    #[test]
    fn a_final_screen_should_echo_the_session_with_the_end_bit() {
        let mut tlvs = Tlvs::default();
        tlvs.set(tag::ITS_SESSION_INFO, vec![7, 0]);
        let req = Sm {
            source: Address::international("84900000000"),
            dest: Address { ton: 0, npi: 1, addr: "*384#".into() },
            tlvs,
            ..Sm::default()
        };
        let Body::DeliverSm(sm) = screen(&req, true) else { panic!("deliver_sm expected") };
        assert_eq!(sm.dest.addr, "84900000000");
        assert_eq!(sm.source.addr, "*384#");
        assert_eq!(sm.tlvs.get_u8(tag::USSD_SERVICE_OP), Some(op::PSSR_RESPONSE));
        assert_eq!(sm.tlvs.get(tag::ITS_SESSION_INFO).map(|v| v.to_vec()), Some(vec![7, 1]));
        assert_eq!(sm.esm_class, 0);
    }
}
