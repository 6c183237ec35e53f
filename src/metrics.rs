//! Process-wide counters of the daemon, on the ground floor: every layer counts here (one
//! relaxed `fetch_add` per event, cheap enough for every PDU and step), nothing here imports
//! another module of chogate. Labels are enums, so a misspelt outcome cannot compile. The
//! HTTP API renders them at `/metrics` ([`render`], with the SMPP layer's PDU counts and what
//! it reads at scrape time).
//!
//! The counters are process-wide: several daemons in one process (tests) add to the same.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

// ---- USSD ----------------------------------------------------------------------------------

/// How a USSD dialogue began or ended, as `chogate_ussd_dialogues_total{outcome=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialogue {
    /// A dialogue opened.
    Opened,
    /// It reached a final screen.
    Completed,
    /// The subscriber (or the network) aborted it.
    UserAbort,
    /// A new dial cut it.
    Redial,
    /// A screen could not be delivered.
    Undelivered,
    /// Nothing came within the session timeout.
    Timeout,
    /// The bind it was on went away.
    BindLost,
    /// A dial refused on a full dialogue table.
    Refused,
    /// The daemon stopped with it open.
    Shutdown,
}

impl Dialogue {
    /// Every outcome, in the order they are rendered.
    pub const ALL: [Dialogue; 9] = [
        Dialogue::Opened,
        Dialogue::Completed,
        Dialogue::UserAbort,
        Dialogue::Redial,
        Dialogue::Undelivered,
        Dialogue::Timeout,
        Dialogue::BindLost,
        Dialogue::Refused,
        Dialogue::Shutdown,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Dialogue::Opened => "opened",
            Dialogue::Completed => "completed",
            Dialogue::UserAbort => "user_abort",
            Dialogue::Redial => "redial",
            Dialogue::Undelivered => "undelivered",
            Dialogue::Timeout => "timeout",
            Dialogue::BindLost => "bind_lost",
            Dialogue::Refused => "refused",
            Dialogue::Shutdown => "shutdown",
        }
    }
}

static DIALOGUES: [AtomicU64; 9] = [const { AtomicU64::new(0) }; 9];

/// A dialogue opened, ended, or was refused.
pub fn dialogue(outcome: Dialogue) {
    DIALOGUES[outcome as usize].fetch_add(1, Relaxed);
}

static STEP_SECONDS: Seconds = Seconds::new();

/// A subscriber's PDU took this long, from the read that brought it in to its answer and
/// next screen being sent (the step's work and the wait for room in the window).
pub fn step_latency(d: Duration) {
    STEP_SECONDS.record(d);
}

const STEP_OUTCOMES: [&str; 3] = ["screen", "final", "undelivered"];
static STEPS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// A screen sent to a subscriber: delivered expecting input, delivered final, or not
/// delivered.
pub fn step(delivered: bool, end: bool) {
    let i = match (delivered, end) {
        (true, false) => 0,
        (true, true) => 1,
        (false, _) => 2,
    };
    STEPS[i].fetch_add(1, Relaxed);
}

// ---- SMPP ----------------------------------------------------------------------------------

/// Why chogate refused an SMPP peer something, as `chogate_smpp_refused_total{reason=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A bind from an address locked out after too many failed binds.
    BindLocked,
    /// A bind with the right password from an address the account does not allow.
    BindAddress,
    /// A connection over `max_connections_per_ip`.
    ConnectionsPerIp,
    /// A message for a number outside the peer's `msisdn_prefixes`.
    MsisdnPrefix,
    /// A delivery receipt from a peer that is not an SMSC chogate sends SMS to.
    Receipt,
}

impl Refusal {
    /// Every reason.
    pub const ALL: [Refusal; 5] = [
        Refusal::BindLocked,
        Refusal::BindAddress,
        Refusal::ConnectionsPerIp,
        Refusal::MsisdnPrefix,
        Refusal::Receipt,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::BindLocked => "bind_locked",
            Refusal::BindAddress => "bind_address",
            Refusal::ConnectionsPerIp => "connections_per_ip",
            Refusal::MsisdnPrefix => "msisdn_prefix",
            Refusal::Receipt => "receipt",
        }
    }
}

static REFUSED: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// chogate refused an SMPP peer something.
pub fn smpp_refused(reason: Refusal) {
    REFUSED[reason as usize].fetch_add(1, Relaxed);
}

// ---- database ------------------------------------------------------------------------------

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 13] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// A latency histogram over [`BUCKETS`]: a relaxed `fetch_add` per observation.
struct Seconds {
    /// Per bucket (not cumulative), plus one for +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Seconds {
    /// An empty histogram.
    const fn new() -> Self {
        Seconds { counts: [const { AtomicU64::new(0) }; BUCKETS.len() + 1], sum_micros: AtomicU64::new(0) }
    }

    /// One observation.
    fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// The histogram in the exposition format, buckets cumulative.
    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, "histogram", help);
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.counts[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

static COMMITS: Seconds = Seconds::new();

/// One group commit of the writer took this long (from its first statement to COMMIT).
pub fn commit_latency(d: Duration) {
    COMMITS.record(d);
}

static CHECKPOINTS: AtomicU64 = AtomicU64::new(0);

/// SQLite's checkpointer ran a checkpoint.
pub fn checkpoint() {
    CHECKPOINTS.fetch_add(1, Relaxed);
}

static ACTIONS: Seconds = Seconds::new();

/// One action took this long as its caller saw it: the wait for room in the writer's queue,
/// for the group before its own, and its own group's commit.
pub fn action_latency(d: Duration) {
    ACTIONS.record(d);
}

// ---- HTTP ----------------------------------------------------------------------------------

const HTTP_CODES: [u16; 15] = [200, 201, 400, 401, 403, 404, 405, 408, 409, 413, 415, 429, 500, 503, 0];
static HTTP: [AtomicU64; 15] = [const { AtomicU64::new(0) }; 15];

/// An HTTP response went out with this status.
pub fn http_response(code: u16) {
    let i = HTTP_CODES.iter().position(|c| *c == code).unwrap_or(HTTP_CODES.len() - 1);
    HTTP[i].fetch_add(1, Relaxed);
}

static HTTP_REFUSED: AtomicU64 = AtomicU64::new(0);
static HTTP_HEAD_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// A connection was closed at once: the listener was at `[http] max_connections`.
pub fn http_connection_refused() {
    HTTP_REFUSED.fetch_add(1, Relaxed);
}

/// A connection was closed: its request head did not arrive within `header_timeout_secs`.
pub fn http_connection_timed_out() {
    HTTP_HEAD_TIMEOUTS.fetch_add(1, Relaxed);
}

// ---- rendering -----------------------------------------------------------------------------

/// Writes a metric's HELP and TYPE lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Every counter of this module in the text exposition format.
pub fn render(out: &mut String) {
    header(out, "chogate_ussd_dialogues_total", "counter", "USSD dialogues opened, and ended by outcome.");
    for d in Dialogue::ALL {
        let _ = writeln!(
            out,
            "chogate_ussd_dialogues_total{{outcome=\"{}\"}} {}",
            d.label(),
            DIALOGUES[d as usize].load(Relaxed)
        );
    }
    header(out, "chogate_ussd_steps_total", "counter", "USSD screens sent, by outcome.");
    for (i, name) in STEP_OUTCOMES.iter().enumerate() {
        let _ = writeln!(out, "chogate_ussd_steps_total{{outcome=\"{name}\"}} {}", STEPS[i].load(Relaxed));
    }
    STEP_SECONDS.render(
        out,
        "chogate_ussd_step_seconds",
        "Time from reading a subscriber's USSD PDU to sending its answer and the next screen.",
    );
    header(
        out,
        "chogate_smpp_refused_total",
        "counter",
        "What chogate refused SMPP peers: binds from locked-out or disallowed addresses, connections over the per-address limit, messages for numbers outside the peer's prefixes, receipts from peers that are not SMSCs.",
    );
    for r in Refusal::ALL {
        let _ = writeln!(
            out,
            "chogate_smpp_refused_total{{reason=\"{}\"}} {}",
            r.label(),
            REFUSED[r as usize].load(Relaxed)
        );
    }
    COMMITS.render(out, "chogate_db_commit_seconds", "Time of one group commit of the writer.");
    ACTIONS.render(
        out,
        "chogate_db_action_seconds",
        "Time of one action from its caller handing it to the writer to its committed answer.",
    );
    for (name, help, v) in [
        (
            "chogate_db_checkpoints_total",
            "Checkpoints of SQLite's WAL run by the checkpointer thread.",
            CHECKPOINTS.load(Relaxed),
        ),
        (
            "chogate_http_connections_refused_total",
            "HTTP connections closed at once because the listener was at max_connections.",
            HTTP_REFUSED.load(Relaxed),
        ),
        (
            "chogate_http_header_timeouts_total",
            "HTTP connections closed because a request head did not arrive in time.",
            HTTP_HEAD_TIMEOUTS.load(Relaxed),
        ),
    ] {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    header(out, "chogate_http_responses_total", "counter", "HTTP responses by status code.");
    for (i, code) in HTTP_CODES.iter().enumerate() {
        let n = HTTP[i].load(Relaxed);
        if *code == 0 {
            let _ = writeln!(out, "chogate_http_responses_total{{code=\"other\"}} {n}");
        } else {
            let _ = writeln!(out, "chogate_http_responses_total{{code=\"{code}\"}} {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_should_show_outcomes_by_name_and_a_cumulative_histogram() {
        commit_latency(Duration::from_micros(300));
        commit_latency(Duration::from_secs(10));
        dialogue(Dialogue::UserAbort);
        let mut text = String::new();
        render(&mut text);
        assert!(text.contains(r#"chogate_ussd_dialogues_total{outcome="user_abort"}"#));
        // Buckets are cumulative and end with the count.
        let buckets: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("chogate_db_commit_seconds_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
        let count: u64 = text
            .lines()
            .find(|l| l.starts_with("chogate_db_commit_seconds_count"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(buckets.last().copied(), Some(count));
    }

    #[test]
    fn label_values_should_be_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
