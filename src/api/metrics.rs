//! Prometheus metrics: counters in fixed arrays of atomics (one relaxed `fetch_add` per
//! event, cheap enough for every PDU), rendered at `/metrics` in the text exposition format
//! together with what is read at scrape time (outbox depth, writer counters, binds).
//!
//! The counters are process-wide: several daemons in one process (tests) add to the same.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::smpp::pdu::cmd;
use crate::smpp::status;

// ---- USSD ----------------------------------------------------------------------------------

/// Dialogue outcomes, as `chogate_ussd_dialogues_total{outcome=...}`.
const DIALOGUE_OUTCOMES: [&str; 9] = [
    "opened",
    "completed",
    "user_abort",
    "redial",
    "undelivered",
    "timeout",
    "bind_lost",
    "refused",
    "other",
];
static DIALOGUES: [AtomicU64; 9] = [const { AtomicU64::new(0) }; 9];

/// A dialogue opened (`"opened"`) or ended, with the reason the USSD service records
/// (`"completed"`, `"user abort"`, `"redial"`, `"screen not delivered"`, `"timeout"`,
/// `"bind lost"`, or `"refused"` for a dial refused on a full dialogue table; anything else
/// counts as `other`).
pub fn dialogue(outcome: &str) {
    let i = match outcome {
        "opened" => 0,
        "completed" => 1,
        "user abort" => 2,
        "redial" => 3,
        "screen not delivered" => 4,
        "timeout" => 5,
        "bind lost" => 6,
        "refused" => 7,
        _ => 8,
    };
    DIALOGUES[i].fetch_add(1, Relaxed);
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

/// Command ids without the response bit, and their names.
const COMMANDS: [(u32, &str); 15] = [
    (cmd::GENERIC_NACK & !cmd::RESP, "generic_nack"),
    (cmd::BIND_RECEIVER, "bind_receiver"),
    (cmd::BIND_TRANSMITTER, "bind_transmitter"),
    (cmd::QUERY_SM, "query_sm"),
    (cmd::SUBMIT_SM, "submit_sm"),
    (cmd::DELIVER_SM, "deliver_sm"),
    (cmd::UNBIND, "unbind"),
    (cmd::REPLACE_SM, "replace_sm"),
    (cmd::CANCEL_SM, "cancel_sm"),
    (cmd::BIND_TRANSCEIVER, "bind_transceiver"),
    (cmd::OUTBIND, "outbind"),
    (cmd::ENQUIRE_LINK, "enquire_link"),
    (cmd::SUBMIT_MULTI, "submit_multi"),
    (cmd::ALERT_NOTIFICATION, "alert_notification"),
    (cmd::DATA_SM, "data_sm"),
];
/// Slots per direction: each command as request and response, plus "unknown".
const COMMAND_SLOTS: usize = COMMANDS.len() * 2 + 1;

const STATUSES: [u32; 17] = [
    status::ESME_ROK,
    status::ESME_RINVMSGLEN,
    status::ESME_RINVCMDLEN,
    status::ESME_RINVCMDID,
    status::ESME_RINVBNDSTS,
    status::ESME_RALYBND,
    status::ESME_RSYSERR,
    status::ESME_RINVSRCADR,
    status::ESME_RINVDSTADR,
    status::ESME_RBINDFAIL,
    status::ESME_RINVPASWD,
    status::ESME_RINVSYSID,
    status::ESME_RMSGQFUL,
    status::ESME_RTHROTTLED,
    status::ESME_RX_T_APPN,
    status::ESME_RX_P_APPN,
    status::ESME_RX_R_APPN,
];
/// Known statuses plus "other".
const STATUS_SLOTS: usize = STATUSES.len() + 1;

const PDU_SLOTS: usize = 2 * COMMAND_SLOTS * STATUS_SLOTS;
static PDUS: [AtomicU64; PDU_SLOTS] = [const { AtomicU64::new(0) }; PDU_SLOTS];

/// Which way a PDU went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from the peer.
    In,
    /// Sent to the peer.
    Out,
}

fn command_slot(command_id: u32) -> usize {
    let resp = usize::from(command_id & cmd::RESP != 0);
    let base = command_id & !cmd::RESP;
    match COMMANDS.iter().position(|(b, _)| *b == base) {
        // generic_nack is 0x80000000: base 0 with the response bit, one slot.
        Some(0) => 0,
        Some(i) => i * 2 + resp,
        None => COMMAND_SLOTS - 1,
    }
}

fn command_label(slot: usize) -> String {
    if slot == COMMAND_SLOTS - 1 {
        return "unknown".to_owned();
    }
    let (_, name) = COMMANDS[slot / 2];
    if slot % 2 == 1 { format!("{name}_resp") } else { name.to_owned() }
}

fn status_slot(st: u32) -> usize {
    STATUSES.iter().position(|s| *s == st).unwrap_or(STATUSES.len())
}

/// A PDU received or sent, by command and `command_status`.
pub fn pdu(direction: Direction, command_id: u32, command_status: u32) {
    let d = match direction {
        Direction::In => 0,
        Direction::Out => 1,
    };
    let i = (d * COMMAND_SLOTS + command_slot(command_id)) * STATUS_SLOTS + status_slot(command_status);
    PDUS[i].fetch_add(1, Relaxed);
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
    const fn new() -> Self {
        Seconds { counts: [const { AtomicU64::new(0) }; BUCKETS.len() + 1], sum_micros: AtomicU64::new(0) }
    }

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
    const ALL: [Refusal; 5] = [
        Refusal::BindLocked,
        Refusal::BindAddress,
        Refusal::ConnectionsPerIp,
        Refusal::MsisdnPrefix,
        Refusal::Receipt,
    ];

    fn label(self) -> &'static str {
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

/// What is read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// SMS in the outbox per status (None: the database did not answer).
    pub outbox: Option<Vec<(String, i64)>>,
    /// The writer's counters.
    pub writer: crate::market::WriterCounters,
    /// Bound SMPP sessions per label.
    pub binds: Vec<(String, usize)>,
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The whole exposition.
pub fn render(scrape: &Scrape) -> String {
    let mut out = String::with_capacity(8192);
    header(
        &mut out,
        "chogate_ussd_dialogues_total",
        "counter",
        "USSD dialogues opened, and ended by outcome.",
    );
    for (i, name) in DIALOGUE_OUTCOMES.iter().enumerate() {
        let _ = writeln!(
            out,
            "chogate_ussd_dialogues_total{{outcome=\"{name}\"}} {}",
            DIALOGUES[i].load(Relaxed)
        );
    }
    header(&mut out, "chogate_ussd_steps_total", "counter", "USSD screens sent, by outcome.");
    for (i, name) in STEP_OUTCOMES.iter().enumerate() {
        let _ = writeln!(out, "chogate_ussd_steps_total{{outcome=\"{name}\"}} {}", STEPS[i].load(Relaxed));
    }
    STEP_SECONDS.render(
        &mut out,
        "chogate_ussd_step_seconds",
        "Time from reading a subscriber's USSD PDU to sending its answer and the next screen.",
    );

    header(
        &mut out,
        "chogate_smpp_pdus_total",
        "counter",
        "SMPP PDUs received and sent, by command and status.",
    );
    for (d, dir) in ["in", "out"].iter().enumerate() {
        for c in 0..COMMAND_SLOTS {
            for s in 0..STATUS_SLOTS {
                let n = PDUS[(d * COMMAND_SLOTS + c) * STATUS_SLOTS + s].load(Relaxed);
                if n == 0 {
                    continue;
                }
                let st = STATUSES.get(s).map_or_else(|| "other".into(), |v| status::name(*v));
                let _ = writeln!(
                    out,
                    "chogate_smpp_pdus_total{{direction=\"{dir}\",command=\"{}\",status=\"{st}\"}} {n}",
                    command_label(c)
                );
            }
        }
    }
    header(
        &mut out,
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
    header(&mut out, "chogate_smpp_binds", "gauge", "Bound SMPP sessions per peer.");
    for (name, n) in &scrape.binds {
        let _ = writeln!(out, "chogate_smpp_binds{{peer=\"{}\"}} {n}", label(name));
    }

    header(&mut out, "chogate_outbox_messages", "gauge", "SMS in the outbox, by status.");
    if let Some(outbox) = &scrape.outbox {
        let mut rows: Vec<(String, i64)> = ["queued", "sent", "delivered", "failed", "expired"]
            .iter()
            .map(|s| ((*s).to_owned(), 0))
            .collect();
        for (status, n) in outbox {
            match rows.iter_mut().find(|(s, _)| s == status) {
                Some(row) => row.1 = *n,
                None => rows.push((status.clone(), *n)),
            }
        }
        for (status, n) in rows {
            let _ = writeln!(out, "chogate_outbox_messages{{status=\"{}\"}} {n}", label(&status));
        }
    }

    COMMITS.render(&mut out, "chogate_db_commit_seconds", "Time of one group commit of the writer.");
    ACTIONS.render(
        &mut out,
        "chogate_db_action_seconds",
        "Time of one action from its caller handing it to the writer to its committed answer.",
    );

    let w = &scrape.writer;
    for (name, help, v) in [
        ("chogate_db_commits_total", "Group transactions committed.", w.commits),
        ("chogate_db_actions_total", "Actions answered from committed groups.", w.actions),
        ("chogate_db_events_total", "Audit events written.", w.events),
        ("chogate_db_failed_groups_total", "Groups that failed as a whole.", w.failed_groups),
        (
            "chogate_db_checkpoints_total",
            "Checkpoints of SQLite's WAL run by the checkpointer thread.",
            CHECKPOINTS.load(Relaxed),
        ),
        (
            "chogate_db_dropped_events_total",
            "Dialogue events dropped on a full write queue.",
            w.dropped_events,
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
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }

    header(&mut out, "chogate_http_responses_total", "counter", "HTTP responses by status code.");
    for (i, code) in HTTP_CODES.iter().enumerate() {
        let n = HTTP[i].load(Relaxed);
        if *code == 0 {
            let _ = writeln!(out, "chogate_http_responses_total{{code=\"other\"}} {n}");
        } else {
            let _ = writeln!(out, "chogate_http_responses_total{{code=\"{code}\"}} {n}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_slots_should_name_requests_responses_and_unknowns() {
        assert_eq!(command_label(command_slot(cmd::SUBMIT_SM)), "submit_sm");
        assert_eq!(command_label(command_slot(cmd::SUBMIT_SM | cmd::RESP)), "submit_sm_resp");
        assert_eq!(command_label(command_slot(cmd::GENERIC_NACK)), "generic_nack");
        assert_eq!(command_label(command_slot(cmd::DATA_SM | cmd::RESP)), "data_sm_resp");
        assert_eq!(command_label(command_slot(0x1234)), "unknown");
        let slots: std::collections::HashSet<usize> =
            COMMANDS.iter().flat_map(|(c, _)| [command_slot(*c), command_slot(*c | cmd::RESP)]).collect();
        assert!(slots.iter().all(|s| *s < COMMAND_SLOTS));
    }

    #[test]
    fn rendering_should_show_counted_pdus_and_a_cumulative_histogram() {
        pdu(Direction::In, cmd::DELIVER_SM, status::ESME_ROK);
        pdu(Direction::Out, cmd::DELIVER_SM | cmd::RESP, status::ESME_RTHROTTLED);
        commit_latency(Duration::from_micros(300));
        commit_latency(Duration::from_secs(10));
        dialogue("user abort");
        let text = render(&Scrape { outbox: Some(vec![("queued".into(), 3)]), ..Scrape::default() });
        assert!(
            text.contains(
                r#"chogate_smpp_pdus_total{direction="in",command="deliver_sm",status="ESME_ROK"}"#
            )
        );
        assert!(text.contains(
            r#"chogate_smpp_pdus_total{direction="out",command="deliver_sm_resp",status="ESME_RTHROTTLED"}"#
        ));
        assert!(text.contains(r#"chogate_outbox_messages{status="queued"} 3"#));
        assert!(text.contains(r#"chogate_outbox_messages{status="failed"} 0"#));
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
}
