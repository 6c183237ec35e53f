//! Routing by MSISDN prefix with failover, a TPS pacer per SMSC, and the retry policy per
//! error code.

use std::time::Duration;

use tokio::time::Instant;

use crate::smpp::status;

/// Picks the SMSC for a number: the longest matching `route_prefixes` first, then the
/// default route, then any other SMSC, always skipping those whose binds are down.
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// (prefix, SMSC name), longest prefix first.
    routes: Vec<(String, String)>,
    default: Option<String>,
    all: Vec<String>,
}

impl Router {
    /// Routes from `(name, prefixes)` in configuration order, and an optional default.
    pub fn new<'a>(smscs: impl IntoIterator<Item = (&'a str, &'a [String])>, default: Option<&str>) -> Self {
        let mut routes = Vec::new();
        let mut all = Vec::new();
        for (name, prefixes) in smscs {
            all.push(name.to_owned());
            for p in prefixes {
                routes.push((p.clone(), name.to_owned()));
            }
        }
        // Longest prefix first; equal lengths keep configuration order.
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        let default = default.map(str::to_owned).or_else(|| all.first().cloned());
        Router { routes, default, all }
    }

    /// The SMSC to send to, or `None` when every candidate is down.
    pub fn pick(&self, msisdn: &str, up: impl Fn(&str) -> bool) -> Option<&str> {
        let by_prefix =
            self.routes.iter().filter(|(p, _)| msisdn.starts_with(p.as_str())).map(|(_, n)| n.as_str());
        by_prefix.chain(self.default.as_deref()).chain(self.all.iter().map(String::as_str)).find(|n| up(n))
    }
}

/// Paces submissions to `tps` per second, allowing a burst of a tenth of a second's worth.
#[derive(Debug)]
pub struct Pacer {
    interval: Option<Duration>,
    burst: Duration,
    next: Instant,
}

impl Pacer {
    /// `tps` 0 means unthrottled.
    pub fn new(tps: u32) -> Self {
        let interval = (tps > 0).then(|| Duration::from_secs(1) / tps);
        Pacer { interval, burst: Duration::from_millis(100), next: Instant::now() }
    }

    /// When the next submission may go; reserves that slot.
    pub fn reserve(&mut self) -> Option<Instant> {
        let interval = self.interval?;
        let now = Instant::now();
        let earliest = now.checked_sub(self.burst).unwrap_or(now);
        if self.next < earliest {
            self.next = earliest;
        }
        let at = self.next;
        self.next += interval;
        (at > now).then_some(at)
    }
}

/// What to do with a message after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this long.
    Retry(Duration),
    /// Give up: the error is permanent or the tries are used up.
    Fail,
}

/// A retry rule for one `command_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryRule {
    /// The status it applies to.
    pub status: u32,
    /// Attempts in all (0: until the message expires).
    pub max_tries: u32,
    /// Delay after the first failure; doubles after each further one.
    pub backoff: Duration,
    /// Longest delay.
    pub max_backoff: Duration,
}

/// Retry rules by status; statuses without a rule are permanent failures. Transport
/// failures (no bind, timeout) are always retried until the message expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    rules: Vec<RetryRule>,
}

impl Default for RetryPolicy {
    /// 0x58 throttled: back off 1 s doubling to 60 s; 0x14 queue full: up to 5 tries;
    /// 0x08 system error: 3 tries; other errors: permanent.
    fn default() -> Self {
        let s = Duration::from_secs;
        RetryPolicy {
            rules: vec![
                RetryRule {
                    status: status::ESME_RTHROTTLED,
                    max_tries: 0,
                    backoff: s(1),
                    max_backoff: s(60),
                },
                RetryRule { status: status::ESME_RMSGQFUL, max_tries: 5, backoff: s(1), max_backoff: s(60) },
                RetryRule { status: status::ESME_RSYSERR, max_tries: 3, backoff: s(1), max_backoff: s(60) },
            ],
        }
    }
}

fn doubled(base: Duration, max: Duration, failures: u32) -> Duration {
    crate::time::doubling(base, max, failures.saturating_sub(1))
}

impl RetryPolicy {
    /// The rules of `[notify] retry` (validated: every status parses).
    pub fn from_config(c: &crate::config::NotifyConfig) -> Self {
        let rules = c
            .retry
            .iter()
            .filter_map(|r| {
                Some(RetryRule {
                    status: r.status_code()?,
                    max_tries: r.max_tries,
                    backoff: Duration::from_millis(r.backoff_ms),
                    max_backoff: Duration::from_millis(r.max_backoff_ms),
                })
            })
            .collect();
        RetryPolicy { rules }
    }

    /// A policy from explicit rules.
    pub fn new(rules: Vec<RetryRule>) -> Self {
        RetryPolicy { rules }
    }

    /// After attempt number `attempts` (1 for the first) failed with `status`.
    pub fn on_status(&self, st: u32, attempts: u32) -> Decision {
        match self.rules.iter().find(|r| r.status == st) {
            Some(r) if r.max_tries == 0 || attempts < r.max_tries => {
                Decision::Retry(doubled(r.backoff, r.max_backoff, attempts))
            }
            _ => Decision::Fail,
        }
    }

    /// After attempt number `attempts` failed for want of a bind or a response.
    pub fn on_transport(&self, attempts: u32) -> Duration {
        doubled(Duration::from_secs(1), Duration::from_secs(60), attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let vt = vec!["8486".to_owned(), "8496".to_owned(), "849".to_owned()];
        let mobi = vec!["8490".to_owned()];
        Router::new([("viettel", vt.as_slice()), ("mobi", mobi.as_slice())], None)
    }

    #[test]
    fn longest_prefix_should_win_and_down_binds_fail_over() {
        let r = router();
        assert_eq!(r.pick("84901234567", |_| true), Some("mobi"));
        assert_eq!(r.pick("84961234567", |_| true), Some("viettel"));
        assert_eq!(r.pick("84911234567", |_| true), Some("viettel"), "849 covers it");
        assert_eq!(r.pick("84331234567", |_| true), Some("viettel"), "default route: the first SMSC");
        assert_eq!(r.pick("84901234567", |n| n != "mobi"), Some("viettel"), "failover");
        assert_eq!(r.pick("84901234567", |_| false), None);
    }

    #[test]
    fn configured_defaults_should_equal_the_built_in_policy() {
        assert_eq!(RetryPolicy::from_config(&crate::config::NotifyConfig::default()), RetryPolicy::default());
    }

    #[test]
    fn default_policy_should_follow_the_error_codes() {
        let p = RetryPolicy::default();
        let secs = |d: Decision| match d {
            Decision::Retry(d) => Some(d.as_secs()),
            Decision::Fail => None,
        };
        let throttled: Vec<_> = (1..=8).map(|a| secs(p.on_status(0x58, a))).collect();
        assert_eq!(throttled, [1, 2, 4, 8, 16, 32, 60, 60].map(Some).to_vec());
        assert_eq!(
            (1..=5).map(|a| secs(p.on_status(0x14, a)).is_some()).collect::<Vec<_>>(),
            [true, true, true, true, false]
        );
        assert_eq!(
            (1..=3).map(|a| secs(p.on_status(0x08, a)).is_some()).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!(p.on_status(0x0B, 1), Decision::Fail, "invalid destination is permanent");
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_should_hold_the_rate_after_a_short_burst() {
        let mut p = Pacer::new(100);
        let start = Instant::now();
        let mut last = start;
        for _ in 0..200 {
            if let Some(at) = p.reserve() {
                tokio::time::sleep_until(at).await;
            }
            last = Instant::now();
        }
        // 200 at 100/s with a 0.1 s burst: about 1.9 s.
        let took = last - start;
        assert!(took >= Duration::from_millis(1850) && took <= Duration::from_millis(2000), "{took:?}");
        assert!(Pacer::new(0).reserve().is_none());
    }
}
