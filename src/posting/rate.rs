//! Per-user comment rate limits with the embedded broker: one token bucket per (stream,
//! user) on this instance, shared by all of that user's connections here. (With Redis the
//! bucket lives in Redis and holds across instances; see the publish script.) Full buckets carry no state and are
//! pruned every minute, so the map holds only users who posted recently.

use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::broker::RateLimit;
use crate::domain::{StreamId, TokenBucket, UserId};

/// How often full buckets are forgotten.
pub(super) const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub(super) struct RateLimits {
    buckets: DashMap<(StreamId, UserId), TokenBucket>,
    rate: f64,
    burst: f64,
}

impl RateLimits {
    pub(super) fn new(rate: f64, burst: f64) -> Self {
        Self {
            buckets: DashMap::new(),
            rate,
            burst,
        }
    }

    /// Takes a token for one comment, or says how long to wait.
    pub(super) fn check(&self, stream: &StreamId, user: &UserId) -> Result<(), Duration> {
        let now = Instant::now();
        let mut bucket = self
            .buckets
            .entry((stream.clone(), user.clone()))
            .or_insert_with(|| TokenBucket::full(self.burst, now));
        bucket.try_take(now, self.rate, self.burst)
    }

    pub(super) fn limit(&self) -> RateLimit {
        RateLimit {
            per_sec: self.rate,
            burst: self.burst,
        }
    }

    pub(super) fn prune(&self, now: Instant) {
        self.buckets
            .retain(|_, b| !b.is_full(now, self.rate, self.burst));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_per_stream_and_user_and_pruned_when_full() {
        let r = RateLimits::new(1.0, 2.0);
        let (a, b) = (StreamId::parse("a").unwrap(), StreamId::parse("b").unwrap());
        let (u, v) = (UserId::parse("u").unwrap(), UserId::parse("v").unwrap());
        assert!(r.check(&a, &u).is_ok());
        assert!(r.check(&a, &u).is_ok());
        assert!(r.check(&a, &u).is_err());
        assert!(r.check(&b, &u).is_ok(), "another stream has its own bucket");
        assert!(r.check(&a, &v).is_ok(), "another user has their own bucket");
        r.prune(Instant::now() + Duration::from_secs(10));
        assert!(r.buckets.is_empty());
    }
}
