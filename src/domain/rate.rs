use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, at most `burst` held. A full bucket at start.
///
/// The caller owns the clock (`now`), so tests are exact and nothing here sleeps.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = now;
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), Duration> {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            Err(Duration::from_secs_f64(missing / rate))
        }
    }

    /// True when the bucket would be full at `now`: it carries no state worth keeping.
    pub fn is_full(&self, now: Instant, rate: f64, burst: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * rate >= burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refuses_with_the_wait() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(5.0, t0);
        for _ in 0..5 {
            assert!(b.try_take(t0, 1.0, 5.0).is_ok());
        }
        let wait = b.try_take(t0, 1.0, 5.0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
    }

    #[test]
    fn refills_at_the_sustained_rate_and_caps_at_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(2.0, t0);
        b.try_take(t0, 0.5, 2.0).unwrap();
        b.try_take(t0, 0.5, 2.0).unwrap();
        // 0.5 tokens/s: after one second half a token, one more second for the rest.
        let wait = b
            .try_take(t0 + Duration::from_secs(1), 0.5, 2.0)
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(b.try_take(t0 + Duration::from_secs(2), 0.5, 2.0).is_ok());
        // A long pause refills to the burst, never beyond.
        let later = t0 + Duration::from_secs(3600);
        assert!(b.is_full(later, 0.5, 2.0));
        for _ in 0..2 {
            b.try_take(later, 0.5, 2.0).unwrap();
        }
        assert!(b.try_take(later, 0.5, 2.0).is_err());
    }
}
