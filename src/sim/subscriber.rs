//! A virtual subscriber: dials the service code, answers each screen with the next input
//! of its script, checks what comes back, and starts over until told to stop.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::link::Uplink;
use super::stats::{Counters, Histogram, OpenDialogue, kind};
use super::ussd::{Action, Screen, op};
use crate::logging::mask_msisdn;
use crate::smpp::pdu::Body;
use crate::smpp::session::SessionError;
use crate::smpp::status;

/// A screen must arrive within this long after a dial or an input.
pub const SCREEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait after a failed dialogue before the next dial, so a refusing gateway is not hammered.
const ERROR_PAUSE: Duration = Duration::from_millis(100);
/// The user abort that closes a failed or interrupted dialogue waits at most this long.
const ABORT_TIMEOUT: Duration = Duration::from_secs(1);

/// The inputs a subscriber sends, one per screen, after dialling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The answers, in order; the screen after the last must be final.
    pub inputs: Vec<String>,
}

impl FromStr for Script {
    type Err = std::convert::Infallible;

    /// `"1,1,10,25000,1"`: comma-separated answers; `""` is a dial with no answers.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let inputs =
            if s.is_empty() { Vec::new() } else { s.split(',').map(|i| i.trim().to_owned()).collect() };
        Ok(Script { inputs })
    }
}

impl std::fmt::Display for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.inputs.join(","))
    }
}

/// One virtual subscriber.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Its MSISDN.
    pub msisdn: String,
    /// What it dials.
    pub service_code: Arc<str>,
    /// What it answers.
    pub script: Arc<Script>,
    /// Mean pause between a screen and the answer (each pause is drawn uniformly from half
    /// to one and a half times this; zero: answer at once).
    pub think: Duration,
    /// The first dial comes at a random point within this long (zero: at once).
    pub ramp: Duration,
    /// Dialogues to run at most (0: until cancelled).
    pub max_dialogues: u64,
}

/// How a dialogue ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The script ran to a final screen.
    Completed,
    /// Something was wrong (counted); the next dialogue follows after a pause.
    Failed,
    /// The run is over.
    Cancelled,
}

/// How a run ends: first no new dialogues (the open ones finish, so that chogate is left
/// with nothing to resume), then, if that takes too long, at once (open dialogues are
/// aborted).
#[derive(Debug, Clone)]
pub struct Stop {
    /// Cancelled: dial no more.
    pub dialling: CancellationToken,
    /// Cancelled: abort the open dialogue and stop (implies `dialling`).
    pub now: CancellationToken,
}

impl Default for Stop {
    fn default() -> Self {
        let now = CancellationToken::new();
        Stop { dialling: now.child_token(), now }
    }
}

/// Runs dialogues until `stop` or `max_dialogues`; screens for this subscriber arrive on
/// `screens`. Returns the step latencies.
pub async fn run(
    sub: Subscriber,
    uplink: Uplink,
    mut screens: mpsc::Receiver<Screen>,
    counters: Arc<Counters>,
    stop: Stop,
) -> Histogram {
    let cancel = stop.now;
    let mut hist = Histogram::default();
    let mut session: u8 = 0;
    let mut dialled: u64 = 0;
    let mut think = Think::new(sub.think, &sub.msisdn);
    // People do not all dial in the same millisecond: with a ramp, each subscriber starts at
    // a random point of it.
    let start = sub.ramp.mul_f64(think.fraction());
    if !start.is_zero() {
        tokio::select! {
            () = stop.dialling.cancelled() => return hist,
            () = sleep(start) => {}
        }
    }
    while !stop.dialling.is_cancelled() && (sub.max_dialogues == 0 || dialled < sub.max_dialogues) {
        // A screen that arrived after its dialogue gave up belongs to no dialogue.
        while screens.try_recv().is_ok() {
            counters.error(kind::UNEXPECTED_PDU);
        }
        session = session.wrapping_add(1);
        dialled += 1;
        let mut d = Dialogue {
            sub: &sub,
            uplink: &uplink,
            screens: &mut screens,
            counters: &counters,
            hist: &mut hist,
            session,
            cancel: &cancel,
            think: &mut think,
        };
        match d.run().await {
            Outcome::Completed => {
                counters.dialogues.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed => {
                tokio::select! {
                    () = stop.dialling.cancelled() => break,
                    () = sleep(ERROR_PAUSE) => {}
                }
            }
            Outcome::Cancelled => break,
        }
    }
    hist
}

struct Dialogue<'a> {
    sub: &'a Subscriber,
    uplink: &'a Uplink,
    screens: &'a mut mpsc::Receiver<Screen>,
    counters: &'a Counters,
    hist: &'a mut Histogram,
    session: u8,
    cancel: &'a CancellationToken,
    think: &'a mut Think,
}

/// A subscriber's pauses: uniform between half and one and a half times the mean, from a
/// generator seeded with its number (runs are repeatable; subscribers do not move in step).
#[derive(Debug, Clone)]
pub struct Think {
    mean: Duration,
    state: u64,
}

impl Think {
    /// The pauses of the subscriber with this MSISDN.
    pub fn new(mean: Duration, msisdn: &str) -> Think {
        let seed = msisdn
            .bytes()
            .fold(0x9E37_79B9_7F4A_7C15_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3));
        Think { mean, state: seed }
    }

    /// splitmix64: a uniform u64.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform fraction in [0, 1).
    pub fn fraction(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next pause: zero when the mean is zero.
    pub fn pause(&mut self) -> Duration {
        if self.mean.is_zero() {
            return Duration::ZERO;
        }
        self.mean.mul_f64(0.5 + self.fraction())
    }
}

impl Dialogue<'_> {
    async fn run(&mut self) -> Outcome {
        let _open = OpenDialogue::new(self.counters);
        let dial = self.sub.service_code.clone();
        let mut screen = match self.step(op::PSSR_INDICATION, &dial).await {
            Ok(s) => s,
            Err(outcome) => return outcome,
        };
        let script = self.sub.script.clone();
        for input in &script.inputs {
            if !screen.expects_input() {
                debug!(msisdn = %mask_msisdn(&self.sub.msisdn), op = ?screen.op, "dialogue ended before the script");
                self.counters.error(kind::WRONG_OP);
                if !screen.is_final() {
                    self.abort().await;
                }
                return Outcome::Failed;
            }
            let pause = self.think.pause();
            if !pause.is_zero() {
                tokio::select! {
                    () = self.cancel.cancelled() => return self.cancelled().await,
                    () = sleep(pause) => {}
                }
            }
            screen = match self.step(op::USSR_CONFIRM, input).await {
                Ok(s) => s,
                Err(outcome) => return outcome,
            };
        }
        if !screen.is_final() {
            debug!(msisdn = %mask_msisdn(&self.sub.msisdn), op = ?screen.op, "no final screen after the script");
            self.counters.error(kind::WRONG_OP);
            self.abort().await;
            return Outcome::Failed;
        }
        if !screen.end_bit() {
            self.counters.error(kind::END_BIT_MISSING);
            return Outcome::Failed;
        }
        Outcome::Completed
    }

    /// Sends one subscriber action and waits for the screen that answers it.
    async fn step(&mut self, op: u8, text: &str) -> Result<Screen, Outcome> {
        let body = self.body(op, text);
        let sent = Instant::now();
        let resp = tokio::select! {
            () = self.cancel.cancelled() => return Err(self.cancelled().await),
            r = self.uplink.request(body) => r,
        };
        let failed = match resp {
            Ok(pdu) if pdu.status == status::ESME_ROK && pdu.body != Body::GenericNack => None,
            Ok(pdu) if pdu.body == Body::GenericNack => Some(kind::GENERIC_NACK.to_owned()),
            Ok(pdu) => Some(status::name(pdu.status).into_owned()),
            Err(SessionError::Timeout(_)) => Some(kind::RESPONSE_TIMEOUT.to_owned()),
            Err(SessionError::Encode(e)) => Some(format!("encode: {e}")),
            Err(SessionError::NotBound(_) | SessionError::Closed | SessionError::NotPermitted { .. }) => {
                if self.cancel.is_cancelled() {
                    return Err(Outcome::Cancelled);
                }
                Some(kind::CONNECTION_LOST.to_owned())
            }
        };
        if let Some(k) = failed {
            self.counters.error(&k);
            // A refused dial opened nothing; a refused answer leaves a dialogue to close.
            if op != op::PSSR_INDICATION {
                self.abort().await;
            }
            return Err(Outcome::Failed);
        }
        let deadline = sent + SCREEN_TIMEOUT;
        let screen = tokio::select! {
            () = self.cancel.cancelled() => return Err(self.cancelled().await),
            () = sleep_until(deadline) => {
                self.counters.error(kind::TIMEOUT);
                self.abort().await;
                return Err(Outcome::Failed);
            }
            s = self.screens.recv() => match s {
                Some(s) => s,
                None => return Err(Outcome::Cancelled),
            },
        };
        if screen.session_number() != Some(self.session) {
            debug!(
                msisdn = %mask_msisdn(&self.sub.msisdn),
                sent = self.session,
                got = ?screen.session_number(),
                "its_session_info not echoed"
            );
            self.counters.error(kind::SESSION_INFO_NOT_ECHOED);
            self.abort().await;
            return Err(Outcome::Failed);
        }
        if !screen.expects_input() && !screen.is_final() {
            self.counters.error(kind::WRONG_OP);
            self.abort().await;
            return Err(Outcome::Failed);
        }
        self.hist.record(screen.received.saturating_duration_since(sent));
        self.counters.steps.fetch_add(1, Ordering::Relaxed);
        Ok(screen)
    }

    fn body(&self, op: u8, text: &str) -> Body {
        Action { msisdn: &self.sub.msisdn, dial: &self.sub.service_code, op, session: self.session, text }
            .to_body()
    }

    /// Closes the dialogue on chogate's side with a user abort; its outcome does not matter.
    async fn abort(&self) {
        let body = self.body(op::USER_ABORT, "");
        let _ = tokio::time::timeout(ABORT_TIMEOUT, self.uplink.request(body)).await;
    }

    async fn cancelled(&self) -> Outcome {
        self.abort().await;
        Outcome::Cancelled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_times_should_spread_around_the_mean_and_differ_between_subscribers() {
        let mean = Duration::from_millis(1000);
        let mut a = Think::new(mean, "84900000001");
        let pauses: Vec<Duration> = (0..1000).map(|_| a.pause()).collect();
        assert!(pauses.iter().all(|p| *p >= mean / 2 && *p < mean * 3 / 2));
        let avg = pauses.iter().sum::<Duration>() / 1000;
        assert!(avg > Duration::from_millis(950) && avg < Duration::from_millis(1050), "{avg:?}");
        let mut b = Think::new(mean, "84900000002");
        assert_ne!(Think::new(mean, "84900000001").pause(), b.pause());
        assert!((0.0..1.0).contains(&a.fraction()));
        let mut none = Think::new(Duration::ZERO, "84900000001");
        assert_eq!(none.pause(), Duration::ZERO);
    }

    #[test]
    fn script_should_split_on_commas() {
        let s: Script = "1, 1,10,25000,1".parse().unwrap();
        assert_eq!(s.inputs, vec!["1", "1", "10", "25000", "1"]);
        assert_eq!(s.to_string(), "1,1,10,25000,1");
        let empty: Script = "".parse().unwrap();
        assert!(empty.inputs.is_empty());
    }
}
