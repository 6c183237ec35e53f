//! `chogate loadtest`: N virtual subscribers against chogate, as the USSD centre bound to
//! chogate's server (`ussdc`) or as the operator's SMSC chogate binds to (`smsc`); or an SMSC
//! that only accepts messages and sends receipts (`mt-sink`, see [`super::sink`]).
//!
//! Progress goes to a writer (stderr) every second; the result is one report.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::SimError;
use super::link::{self, BIND_WAIT, Credentials, Listening, Routes, Uplink};
use super::stats::{
    Counters, GatewayReport, Histogram, SinkReport, Snapshot, UssdReport, kind, per_second, round3,
};
use super::subscriber::{self, Script, Stop, Subscriber};
use crate::config::{Secret, SmppTuning};
use crate::smpp::session::InboundRequest;

/// Most virtual subscribers in one run.
pub const MAX_SUBSCRIBERS: usize = 100_000;
/// Longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// How long subscribers may take to finish their open dialogues at the end.
const WIND_DOWN: Duration = Duration::from_secs(5);
/// How long they may then take to abort what is still open.
const ABORT_WAIT: Duration = Duration::from_secs(2);
/// Screens waiting for one subscriber, at most.
const SCREENS_PER_SUBSCRIBER: usize = 4;

/// Which part the load generator plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The USSD centre: binds to chogate's SMPP server.
    Ussdc {
        /// chogate's SMPP server.
        connect: SocketAddr,
    },
    /// The operator's SMSC + USSD centre: chogate (client role) binds to it.
    Smsc {
        /// Where to listen.
        listen: SocketAddr,
    },
    /// A gateway that does no work: the USSD centre binds to it as to chogate's server, and
    /// each PDU is answered at once with the next screen (see [`super::null_gateway`]).
    NullGateway {
        /// Where to listen.
        listen: SocketAddr,
    },
    /// An SMSC that accepts submits and sends delivery receipts.
    MtSink {
        /// Where to listen.
        listen: SocketAddr,
        /// Delay between accepting a message and its receipt.
        receipt_delay: Duration,
    },
}

impl Role {
    /// The name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Ussdc { .. } => "ussdc",
            Role::Smsc { .. } => "smsc",
            Role::MtSink { .. } => "mt-sink",
            Role::NullGateway { .. } => "null-gateway",
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Role::Ussdc { connect } => *connect,
            Role::Smsc { listen } | Role::MtSink { listen, .. } | Role::NullGateway { listen } => *listen,
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The part played.
    pub role: Role,
    /// system_id: ours (ussdc) or the one chogate must bind with (smsc, mt-sink).
    pub system_id: String,
    /// The password that goes with it.
    pub password: Secret,
    /// Virtual subscribers.
    pub subscribers: usize,
    /// How long to run.
    pub duration: Duration,
    /// Scripts, assigned round-robin to subscribers.
    pub scripts: Vec<Script>,
    /// Pause between a screen and the answer.
    pub think: Duration,
    /// First dials spread over this long.
    pub ramp: Duration,
    /// Subscriber i has MSISDN `msisdn_base + i`.
    pub msisdn_base: u64,
    /// What subscribers dial.
    pub service_code: String,
    /// Outstanding requests we send on a bind.
    pub window: u32,
    /// Dialogues per subscriber at most (0: as many as fit in the duration).
    pub dialogues: u64,
    /// Engine settings of our binds.
    pub tuning: SmppTuning,
}

impl LoadOptions {
    /// Checks the bounds: loopback only, at most [`MAX_SUBSCRIBERS`] for at most
    /// [`MAX_DURATION`], MSISDNs that are Vietnamese mobile numbers.
    pub fn validate(&self) -> Result<(), SimError> {
        let addr = self.role.addr();
        if !addr.ip().is_loopback() {
            return Err(SimError::NotLoopback(addr));
        }
        if self.subscribers == 0 || self.subscribers > MAX_SUBSCRIBERS {
            return Err(SimError::Invalid(format!("--subscribers must be 1..={MAX_SUBSCRIBERS}")));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(SimError::Invalid(format!("--duration must be 1..={} s", MAX_DURATION.as_secs())));
        }
        if self.window == 0 {
            return Err(SimError::Invalid("--window must be at least 1".into()));
        }
        if matches!(self.role, Role::MtSink { .. }) {
            return Ok(());
        }
        if self.scripts.is_empty() {
            return Err(SimError::Invalid("at least one --script is needed".into()));
        }
        let last = self.msisdn_base.checked_add(self.subscribers as u64 - 1);
        for n in [Some(self.msisdn_base), last] {
            let s = n.map(|n| n.to_string()).unwrap_or_default();
            if crate::msisdn::normalize(&s).as_deref() != Some(s.as_str()) {
                return Err(SimError::Invalid(format!(
                    "--msisdn-base {} with {} subscribers gives {s:?}, not a canonical Vietnamese mobile number (84 + 9 digits)",
                    self.msisdn_base, self.subscribers
                )));
            }
        }
        Ok(())
    }

    /// The account a listening role accepts binds with.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            system_id: self.system_id.clone(),
            password: self.password.clone(),
            window: self.window as usize,
        }
    }

    fn subscriber_tuning(&self) -> SmppTuning {
        let mut t = self.tuning.clone();
        // Every subscriber may have a screen in flight towards us.
        let n = u32::try_from(self.subscribers.saturating_mul(2)).unwrap_or(u32::MAX);
        t.inbound_window = t.inbound_window.max(n);
        t
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub enum Report {
    /// Roles ussdc and smsc.
    Ussd(UssdReport),
    /// Role mt-sink.
    Sink(SinkReport),
    /// Role null-gateway.
    Gateway(GatewayReport),
}

impl Report {
    /// The report as one JSON line (no newline).
    pub fn to_json(&self) -> String {
        let r = match self {
            Report::Ussd(r) => serde_json::to_string(r),
            Report::Sink(r) => serde_json::to_string(r),
            Report::Gateway(r) => serde_json::to_string(r),
        };
        r.unwrap_or_else(|e| format!("{{\"error\":\"cannot serialise the report: {e}\"}}"))
    }

    /// Whether nothing could be measured because no bind came up.
    pub fn bind_failed(&self) -> bool {
        let errors = match self {
            Report::Ussd(r) => &r.errors,
            Report::Sink(r) => &r.errors,
            Report::Gateway(r) => &r.errors,
        };
        errors.contains_key(kind::BIND_FAILED)
    }
}

/// Runs the load as `opts` says, writing progress to `progress`, until the duration is
/// over or `stop` is cancelled (the report covers the time until then).
pub async fn run(
    opts: LoadOptions,
    stop: CancellationToken,
    progress: &mut (dyn Write + Send),
) -> Result<Report, SimError> {
    opts.validate()?;
    match opts.role.clone() {
        Role::Ussdc { connect } => run_ussdc(&opts, connect, stop, progress).await,
        Role::Smsc { listen } => run_smsc(&opts, listen, stop, progress).await,
        Role::MtSink { listen, receipt_delay } => {
            super::sink::run(&opts, listen, receipt_delay, stop, progress).await.map(Report::Sink)
        }
        Role::NullGateway { listen } => {
            super::null_gateway::run(&opts, listen, stop, progress).await.map(Report::Gateway)
        }
    }
}

fn bind_failed_report(opts: &LoadOptions, counters: &Counters) -> Report {
    counters.error(kind::BIND_FAILED);
    Report::Ussd(UssdReport {
        role: opts.role.name(),
        subscribers: opts.subscribers,
        duration_s: 0.0,
        steps: 0,
        steps_per_s: 0.0,
        dialogues: 0,
        dialogues_per_s: 0.0,
        latency_ms: Histogram::default().latency_ms(),
        errors: counters.errors(),
    })
}

async fn run_ussdc(
    opts: &LoadOptions,
    connect: SocketAddr,
    stop: CancellationToken,
    progress: &mut (dyn Write + Send),
) -> Result<Report, SimError> {
    let counters = Arc::new(Counters::default());
    let tuning = opts.subscriber_tuning();
    let capacity = opts.subscribers.saturating_mul(2).max(1024);
    let bound =
        link::bind_ussdc(connect, &opts.system_id, opts.password.expose(), opts.window, &tuning, capacity)
            .await;
    let (link, inbound) = match bound {
        Ok(x) => x,
        Err(e) => {
            writeln!(progress, "loadtest: {e}")?;
            return Ok(bind_failed_report(opts, &counters));
        }
    };
    writeln!(progress, "loadtest: bound to chogate at {connect} as {}", opts.system_id)?;
    let uplink = Uplink::Session(link.handle.clone());
    let handle = link.handle.clone();
    let lost = async move { handle.closed().await };
    let report = drive(opts, uplink, inbound, counters, lost, stop, progress).await;
    link.close().await;
    report
}

async fn run_smsc(
    opts: &LoadOptions,
    listen: SocketAddr,
    stop: CancellationToken,
    progress: &mut (dyn Write + Send),
) -> Result<Report, SimError> {
    let counters = Arc::new(Counters::default());
    let capacity = opts.subscribers.saturating_mul(2).max(1024);
    let (tx, inbound) = mpsc::channel(capacity);
    let auth = opts.credentials();
    let listening =
        Listening::start(listen, auth, opts.subscriber_tuning(), tx.into(), TaskTracker::new()).await?;
    writeln!(
        progress,
        "loadtest: SMSC listening on {}; waiting for chogate to bind as {}",
        listening.local, opts.system_id
    )?;
    let report = match listening.wait_bind(&opts.system_id, &stop).await {
        None => {
            writeln!(progress, "loadtest: chogate did not bind within {} s", BIND_WAIT.as_secs())?;
            Ok(bind_failed_report(opts, &counters))
        }
        Some(h) => {
            writeln!(progress, "loadtest: chogate bound from {}", h.peer())?;
            let registry = listening.registry.clone();
            let uplink = Uplink::Registry { registry, label: Arc::from(opts.system_id.as_str()) };
            // chogate may come back after a lost bind: only the duration ends this role.
            drive(opts, uplink, inbound, counters, std::future::pending(), stop, progress).await
        }
    };
    listening.close().await;
    report
}

/// Runs the subscribers for the duration over a bind, printing progress every second.
async fn drive(
    opts: &LoadOptions,
    uplink: Uplink,
    inbound: mpsc::Receiver<InboundRequest>,
    counters: Arc<Counters>,
    lost: impl Future<Output = ()>,
    stop: CancellationToken,
    progress: &mut (dyn Write + Send),
) -> Result<Report, SimError> {
    let halt = Stop::default();
    let service_code: Arc<str> = Arc::from(opts.service_code.as_str());
    let scripts: Vec<Arc<Script>> = opts.scripts.iter().cloned().map(Arc::new).collect();
    let mut routes: Routes = HashMap::with_capacity(opts.subscribers);
    let mut subscribers = Vec::with_capacity(opts.subscribers);
    for i in 0..opts.subscribers {
        let msisdn = (opts.msisdn_base + i as u64).to_string();
        let (tx, rx) = mpsc::channel(SCREENS_PER_SUBSCRIBER);
        routes.insert(msisdn.clone(), tx);
        let script = scripts[i % scripts.len()].clone();
        let sub = Subscriber {
            msisdn,
            service_code: service_code.clone(),
            script,
            think: opts.think,
            ramp: opts.ramp,
            max_dialogues: opts.dialogues,
        };
        subscribers.push((sub, rx));
    }
    let router_stop = CancellationToken::new();
    let router = tokio::spawn(link::route_screens(
        inbound,
        Arc::new(routes),
        counters.clone(),
        halt.now.clone(),
        router_stop.clone(),
    ));

    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (sub, rx) in subscribers {
        tasks.spawn(subscriber::run(sub, uplink.clone(), rx, counters.clone(), halt.clone()));
    }
    let mut hist = Histogram::default();
    let end = start + opts.duration;
    let mut tick = start + Duration::from_secs(1);
    let mut last = Snapshot::default();
    tokio::pin!(lost);
    loop {
        tokio::select! {
            () = sleep_until(end) => break,
            () = stop.cancelled() => break,
            () = sleep_until(tick) => {
                let now = counters.snapshot();
                writeln!(
                    progress,
                    "[{:>4}s] steps/s {:>7}  dialogues/s {:>6}  open {:>6}  errors {:>5}  (steps {}, dialogues {})",
                    (tick - start).as_secs(),
                    now.steps - last.steps,
                    now.dialogues - last.dialogues,
                    now.open,
                    now.errors - last.errors,
                    now.steps,
                    now.dialogues,
                )?;
                last = now;
                tick += Duration::from_secs(1);
            }
            () = &mut lost => {
                counters.error(kind::CONNECTION_LOST);
                writeln!(progress, "loadtest: the SMPP connection was lost; stopping")?;
                break;
            }
            done = tasks.join_next() => match done {
                Some(Ok(h)) => hist.merge(&h),
                Some(Err(e)) => {
                    counters.error("task_failed");
                    writeln!(progress, "loadtest: a subscriber task failed: {e}")?;
                }
                None => break,
            },
        }
    }
    let elapsed = start.elapsed();
    let at_end = counters.snapshot();
    // Let open dialogues finish (nothing left for chogate to offer to resume), then abort
    // what is still open, then give up on the tasks.
    halt.dialling.cancel();
    let mut phase_end = Instant::now() + WIND_DOWN;
    let mut aborting = false;
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(Ok(h)) => hist.merge(&h),
                Some(Err(_)) => counters.error("task_failed"),
                None => break,
            },
            () = sleep_until(phase_end) => {
                if aborting {
                    tasks.abort_all();
                    break;
                }
                halt.now.cancel();
                aborting = true;
                phase_end = Instant::now() + ABORT_WAIT;
            }
        }
    }
    router_stop.cancel();
    let _ = router.await;
    Ok(Report::Ussd(UssdReport {
        role: opts.role.name(),
        subscribers: opts.subscribers,
        duration_s: round3(elapsed.as_secs_f64()),
        steps: at_end.steps,
        steps_per_s: per_second(at_end.steps, elapsed),
        dialogues: at_end.dialogues,
        dialogues_per_s: per_second(at_end.dialogues, elapsed),
        latency_ms: hist.latency_ms(),
        errors: counters.errors(),
    }))
}
