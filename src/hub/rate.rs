//! Per-user comment rate limits: one token bucket per (stream, user) on this instance,
//! shared by all of that user's connections here. Full buckets carry no state and are
//! pruned every minute, so the map holds only users who posted recently.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::domain::{StreamId, TokenBucket};

const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub struct RateLimits {
    buckets: DashMap<(StreamId, String), TokenBucket>,
    rate: f64,
    burst: f64,
}

impl RateLimits {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            buckets: DashMap::new(),
            rate,
            burst,
        }
    }

    /// Takes a token for one comment, or says how long to wait.
    pub fn check(&self, stream: &StreamId, user_id: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut bucket = self
            .buckets
            .entry((stream.clone(), user_id.to_owned()))
            .or_insert_with(|| TokenBucket::full(self.burst, now));
        bucket.try_take(now, self.rate, self.burst)
    }

    fn prune(&self, now: Instant) {
        self.buckets
            .retain(|_, b| !b.is_full(now, self.rate, self.burst));
    }
}

pub(super) fn spawn_pruner(hub: Hub, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = every.tick() => hub.rate_limits().prune(Instant::now()),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_per_stream_and_user_and_pruned_when_full() {
        let r = RateLimits::new(1.0, 2.0);
        let (a, b) = (StreamId::parse("a").unwrap(), StreamId::parse("b").unwrap());
        assert!(r.check(&a, "u").is_ok());
        assert!(r.check(&a, "u").is_ok());
        assert!(r.check(&a, "u").is_err());
        assert!(
            r.check(&b, "u").is_ok(),
            "another stream has its own bucket"
        );
        assert!(
            r.check(&a, "v").is_ok(),
            "another user has their own bucket"
        );
        r.prune(Instant::now() + Duration::from_secs(10));
        assert!(r.buckets.is_empty());
    }
}
