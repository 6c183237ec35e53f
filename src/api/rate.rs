//! A token bucket per API token: `burst` requests at once, refilled at `rate_per_sec`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::error::ApiError;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The per-token limiter (one short lock per request; the map holds one entry per token
/// that made a request, and tokens are few).
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<i64, Bucket>>,
}

impl RateLimiter {
    /// A limiter letting `burst` requests through at once, then `rate_per_sec`.
    pub fn new(rate_per_sec: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate_per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the token's bucket, or says when to retry.
    pub fn check(&self, token_id: i64) -> Result<(), ApiError> {
        self.check_at(token_id, Instant::now())
    }

    fn check_at(&self, token_id: i64, now: Instant) -> Result<(), ApiError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let b = buckets.entry(token_id).or_insert(Bucket { tokens: self.burst, at: now });
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
}
