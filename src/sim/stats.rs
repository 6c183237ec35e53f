//! Counting for the load generator: live counters read by the progress line, a cheap
//! latency histogram kept per task and merged at the end, and the final report.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

/// Values below this many microseconds get a bucket each.
const LINEAR: u64 = 16;
/// Sub-buckets per power of two above that (3 bits: at most 12.5% relative error).
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Buckets for every `u64` value.
const BUCKETS: usize = LINEAR as usize + (64 - 4) * SUB;

/// A latency histogram with fixed log-linear buckets over microseconds: 8 buckets per
/// power of two, so a percentile is off by at most one eighth. Recording is an index
/// computation and an increment; merging adds arrays.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: Box::new([0; BUCKETS]), total: 0, max: 0 }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram").field("total", &self.total).field("max_us", &self.max).finish()
    }
}

fn bucket(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // 4..=63
    let sub = (v >> (e - SUB_BITS)) as usize & (SUB - 1);
    LINEAR as usize + (e as usize - 4) * SUB + sub
}

/// The largest value that falls in bucket `i`.
fn upper_bound(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let e = 4 + (i - LINEAR as usize) / SUB;
    let sub = ((i - LINEAR as usize) % SUB) as u64;
    let width = 1u64 << (e as u32 - SUB_BITS);
    ((SUB as u64 + sub) << (e as u32 - SUB_BITS)).saturating_add(width - 1)
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(us)] += 1;
        self.total += 1;
        self.max = self.max.max(us);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1) in microseconds: the upper bound of its bucket,
    /// never above the largest value recorded; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return upper_bound(i).min(self.max);
            }
        }
        self.max
    }

    /// The largest value recorded, in microseconds.
    pub fn max_us(&self) -> u64 {
        self.max
    }

    /// p50, p90, p99 and max in milliseconds.
    pub fn latency_ms(&self) -> LatencyMs {
        let ms = |us: u64| round3(us as f64 / 1000.0);
        LatencyMs {
            p50: ms(self.quantile_us(0.50)),
            p90: ms(self.quantile_us(0.90)),
            p99: ms(self.quantile_us(0.99)),
            max: ms(self.max),
        }
    }
}

/// Rounds to three decimals (JSON figures stay readable).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// Kinds of errors in the report.
pub mod kind {
    /// The bind was refused or never completed.
    pub const BIND_FAILED: &str = "bind_failed";
    /// No screen within the screen timeout.
    pub const TIMEOUT: &str = "timeout";
    /// A final screen before the script ended, op 2 after it, or an op that is neither.
    pub const WRONG_OP: &str = "wrong_op";
    /// `its_session_info` missing or with another session number.
    pub const SESSION_INFO_NOT_ECHOED: &str = "its_session_info_not_echoed";
    /// A final screen without the end-of-dialogue bit.
    pub const END_BIT_MISSING: &str = "end_bit_missing";
    /// A PDU nobody was waiting for (unknown subscriber, a screen between dialogues).
    pub const UNEXPECTED_PDU: &str = "unexpected_pdu";
    /// A request of ours got no response in time.
    pub const RESPONSE_TIMEOUT: &str = "response_timeout";
    /// The bind went away.
    pub const CONNECTION_LOST: &str = "connection_lost";
    /// No bind able to carry the PDU (smsc role before chogate's receiver bind is up).
    pub const NO_BIND: &str = "no_bind";
    /// A response that is a generic_nack.
    pub const GENERIC_NACK: &str = "generic_nack";
}

/// Counters shared by every task of a run; the progress line reads them every second.
#[derive(Debug, Default)]
pub struct Counters {
    /// Screens received in answer to a dial or an input.
    pub steps: AtomicU64,
    /// Dialogues that ran their script to the final screen.
    pub dialogues: AtomicU64,
    /// Dialogues dialled and not ended yet.
    pub open: AtomicI64,
    /// Messages submitted to the sink (mt-sink).
    pub submits: AtomicU64,
    /// Receipts the sink delivered and saw acknowledged (mt-sink).
    pub receipts: AtomicU64,
    /// Errors of every kind.
    pub errors_total: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    /// Counts one error of `kind` (a name from [`kind`] or a status name).
    pub fn error(&self, kind: &str) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        let mut map = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                map.insert(kind.to_owned(), 1);
            }
        }
    }

    /// Errors by kind so far.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A snapshot of the live counters.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            steps: self.steps.load(Ordering::Relaxed),
            dialogues: self.dialogues.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            submits: self.submits.load(Ordering::Relaxed),
            receipts: self.receipts.load(Ordering::Relaxed),
            errors: self.errors_total.load(Ordering::Relaxed),
        }
    }
}

/// The live counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// See [`Counters::steps`].
    pub steps: u64,
    /// See [`Counters::dialogues`].
    pub dialogues: u64,
    /// See [`Counters::open`].
    pub open: i64,
    /// See [`Counters::submits`].
    pub submits: u64,
    /// See [`Counters::receipts`].
    pub receipts: u64,
    /// See [`Counters::errors_total`].
    pub errors: u64,
}

/// Keeps one dialogue counted as open until it is dropped.
pub struct OpenDialogue<'a>(&'a Counters);

impl<'a> OpenDialogue<'a> {
    /// Counts a dialogue as open.
    pub fn new(c: &'a Counters) -> Self {
        c.open.fetch_add(1, Ordering::Relaxed);
        OpenDialogue(c)
    }
}

impl Drop for OpenDialogue<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The final line of a USSD run (roles `ussdc` and `smsc`).
#[derive(Debug, Clone, Serialize)]
pub struct UssdReport {
    /// `ussdc` or `smsc`.
    pub role: &'static str,
    /// Virtual subscribers.
    pub subscribers: usize,
    /// Measured time in seconds.
    pub duration_s: f64,
    /// Screens received in answer to a dial or an input.
    pub steps: u64,
    /// Steps per second.
    pub steps_per_s: f64,
    /// Dialogues completed as scripted.
    pub dialogues: u64,
    /// Dialogues per second.
    pub dialogues_per_s: f64,
    /// Step latency: from sending a dial or an input to receiving the next screen.
    pub latency_ms: LatencyMs,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
}

/// The final line of an mt-sink run.
#[derive(Debug, Clone, Serialize)]
pub struct SinkReport {
    /// `mt-sink`.
    pub role: &'static str,
    /// Measured time in seconds.
    pub duration_s: f64,
    /// submit_sm / data_sm accepted.
    pub submits: u64,
    /// Accepted per second.
    pub submits_per_s: f64,
    /// Delivery receipts acknowledged by the ESME.
    pub receipts: u64,
    /// Receipts per second.
    pub receipts_per_s: f64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
}

/// The final line of a null-gateway run.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayReport {
    /// `null-gateway`.
    pub role: &'static str,
    /// Measured time in seconds (from the bind).
    pub duration_s: f64,
    /// Screens sent and acknowledged.
    pub steps: u64,
    /// Steps per second.
    pub steps_per_s: f64,
    /// Final screens sent and acknowledged.
    pub dialogues: u64,
    /// Dialogues per second.
    pub dialogues_per_s: f64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
}

/// Writes `line(second, now, last)` to `progress` every second until `duration` has passed,
/// `stop` is cancelled or `end` completes; returns the time that took and the counters at
/// its end.
pub async fn every_second(
    counters: &Counters,
    duration: Duration,
    stop: &CancellationToken,
    end: impl Future<Output = ()>,
    progress: &mut (dyn Write + Send),
    line: impl Fn(u64, &Snapshot, &Snapshot) -> String,
) -> std::io::Result<(Duration, Snapshot)> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tick = start + Duration::from_secs(1);
    let mut last = Snapshot::default();
    tokio::pin!(end);
    loop {
        tokio::select! {
            () = sleep_until(deadline) => break,
            () = stop.cancelled() => break,
            () = &mut end => break,
            () = sleep_until(tick) => {
                let now = counters.snapshot();
                writeln!(progress, "{}", line((tick - start).as_secs(), &now, &last))?;
                last = now;
                tick += Duration::from_secs(1);
            }
        }
    }
    Ok((start.elapsed(), counters.snapshot()))
}

/// `n` per second over `d`, rounded.
pub fn per_second(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s <= 0.0 { 0.0 } else { round3(n as f64 / s) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_should_be_exact_below_16_and_contiguous_above() {
        for v in 0..16 {
            assert_eq!(bucket(v), v as usize);
            assert_eq!(upper_bound(v as usize), v);
        }
        assert_eq!(bucket(16), 16);
        assert_eq!(bucket(17), 16);
        assert_eq!(bucket(18), 17);
        assert_eq!(upper_bound(16), 17);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(upper_bound(BUCKETS - 1), u64::MAX);
        for i in 16..BUCKETS - 1 {
            assert_eq!(bucket(upper_bound(i)), i);
            assert_eq!(bucket(upper_bound(i) + 1), i + 1);
        }
    }

    #[test]
    fn quantiles_should_be_within_an_eighth() {
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let l = h.latency_ms();
        assert!((50.0..=50.0 * 1.125).contains(&l.p50), "{l:?}");
        assert!((90.0..=90.0 * 1.125).contains(&l.p90), "{l:?}");
        assert!((99.0..=100.0).contains(&l.p99), "{l:?}");
        assert_eq!(l.max, 100.0);
        assert_eq!(Histogram::default().latency_ms(), LatencyMs::default());
    }

    #[test]
    fn merged_histograms_should_count_both() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(Duration::from_micros(10));
        b.record(Duration::from_secs(3));
        a.merge(&b);
        assert_eq!((a.count(), a.max_us()), (2, 3_000_000));
        assert_eq!(a.quantile_us(0.5), 10);
    }

    #[test]
    fn counters_should_group_errors_by_kind() {
        let c = Counters::default();
        c.error(kind::TIMEOUT);
        c.error(kind::TIMEOUT);
        c.error("ESME_RX_T_APPN");
        {
            let _open = OpenDialogue::new(&c);
            assert_eq!(c.snapshot().open, 1);
        }
        let s = c.snapshot();
        assert_eq!((s.errors, s.open), (3, 0));
        let e = c.errors();
        assert_eq!(e.get("timeout"), Some(&2));
        assert_eq!(e.get("ESME_RX_T_APPN"), Some(&1));
    }

    proptest! {
        #[test]
        fn a_value_should_lie_in_its_bucket_within_an_eighth(v in 16u64..u64::MAX / 2) {
            let i = bucket(v);
            let hi = upper_bound(i);
            prop_assert!(v <= hi);
            prop_assert!(i == 0 || upper_bound(i - 1) < v);
            prop_assert!((hi - v) as f64 <= v as f64 / 8.0);
        }
    }
}
