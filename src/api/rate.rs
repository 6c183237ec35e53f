//! Token buckets: `burst` requests at once, refilled at `rate_per_sec`; one bucket per key
//! (an API token's row id, or a client address for requests without a valid token).
//!
//! The table is bounded: at `capacity` keys, the buckets that have refilled (the same as no
//! bucket) are dropped, and if that is not enough the oldest half by last use goes too, so a
//! flood of new addresses costs one sort per `capacity / 2` of them, never unbounded memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use super::error::ApiError;

/// Client addresses tracked at once by the limiter of requests without a valid token.
pub const MAX_ADDRESSES: usize = 10_000;
/// API tokens tracked at once (tokens are few; the bound is a safety net).
const MAX_TOKENS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A limiter keyed by `K` (one short lock per request).
pub struct Limiter<K> {
    rate: f64,
    burst: f64,
    capacity: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

/// The per-token limiter.
pub type RateLimiter = Limiter<i64>;
/// The limiter of requests without a valid token, per client address.
pub type AddressLimiter = Limiter<IpAddr>;

impl<K: Hash + Eq + Copy> Limiter<K> {
    /// A limiter letting `burst` requests through at once, then `rate_per_sec`, for at most
    /// `capacity` keys.
    pub fn with_capacity(rate_per_sec: u32, burst: u32, capacity: usize) -> Limiter<K> {
        Limiter {
            rate: f64::from(rate_per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            capacity: capacity.max(2),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the key's bucket, or says when to retry.
    pub fn check(&self, key: K) -> Result<(), ApiError> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: K, now: Instant) -> Result<(), ApiError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= self.capacity && !buckets.contains_key(&key) {
            self.evict(&mut buckets, now);
        }
        let b = buckets.entry(key).or_insert(Bucket { tokens: self.burst, at: now });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.rate;
            Err(ApiError::RateLimited { retry_after_secs: wait.ceil().max(1.0) as u64 })
        }
    }

    /// Drops the full buckets, then, if still at capacity, the oldest half.
    fn evict(&self, buckets: &mut HashMap<K, Bucket>, now: Instant) {
        buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.rate < self.burst
        });
        if buckets.len() < self.capacity {
            return;
        }
        let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
        let middle = ages.len() / 2;
        let (_, cut, _) = ages.select_nth_unstable(middle);
        let cut = *cut;
        buckets.retain(|_, b| b.at > cut);
    }

    /// Keys tracked now (for tests).
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The key a client address is limited by: an IPv4 address (also written IPv4-mapped), or
/// an IPv6 address's /64, which one subscriber usually holds whole (so that walking through
/// it earns no fresh budget).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

impl RateLimiter {
    /// The per-token limiter.
    pub fn new(rate_per_sec: u32, burst: u32) -> RateLimiter {
        Limiter::with_capacity(rate_per_sec, burst, MAX_TOKENS)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_rate_should_be_let_through_per_token() {
        let l = RateLimiter::new(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at(1, t0).is_ok());
        }
        assert!(matches!(l.check_at(1, t0), Err(ApiError::RateLimited { retry_after_secs: 1 })));
        // Another token has its own bucket.
        assert!(l.check_at(2, t0).is_ok());
        // Half a second later at 2/s: one more.
        let t1 = t0 + Duration::from_millis(500);
        assert!(l.check_at(1, t1).is_ok());
        assert!(l.check_at(1, t1).is_err());
        // Never more than the burst after a long pause.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(l.check_at(1, t2).is_ok());
        }
        assert!(l.check_at(1, t2).is_err());
    }

    #[test]
    fn an_ipv6_slash_64_should_be_one_client() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("2001:db8:1:2:bbbb::9")), client_key(ip("2001:db8:1:2::5")));
        assert_ne!(client_key(ip("2001:db8:1:3::1")), client_key(ip("2001:db8:1:2::1")));
        assert_eq!(client_key(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(client_key(ip("203.0.113.7")), ip("203.0.113.7"));
    }

    #[test]
    fn a_full_table_should_evict_its_oldest_entries_and_keep_limiting_the_newest() {
        let l: Limiter<u32> = Limiter::with_capacity(1, 2, 10);
        let t0 = Instant::now();
        for k in 0..10u32 {
            let at = t0 + Duration::from_millis(u64::from(k));
            assert!(l.check_at(k, at).is_ok());
            assert!(l.check_at(k, at).is_ok());
        }
        assert_eq!(l.len(), 10);
        // Key 9 is spent; a new key evicts the oldest half, not key 9.
        let at = t0 + Duration::from_millis(20);
        assert!(l.check_at(100, at).is_ok());
        assert!(l.len() <= 6, "{}", l.len());
        assert!(l.check_at(9, at).is_err(), "the newest kept its spent bucket");
        // The evicted oldest key starts again with a full bucket.
        assert!(l.check_at(0, at).is_ok());
        // Refilled buckets go first: after a long pause all are full, and all are dropped.
        let later = t0 + Duration::from_secs(60);
        for k in 200..215u32 {
            assert!(l.check_at(k, later).is_ok());
        }
        assert!(l.len() <= 10);
    }
}
