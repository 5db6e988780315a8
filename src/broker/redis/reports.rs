//! Each stream's viewer count across instances as this instance last knows it, and what it
//! last reported of its own. Shared by the broker, which reports its local counts (and reads
//! a stream's sum back), and the subscription owner, which hears the sums other instances'
//! reports announce on the stream's channel: a count that changes on one instance reaches
//! every instance with viewers of the stream within a report, without each of them asking
//! Redis every second.
//!
//! A sum carries its version: the Redis time (µs) it was summed at, so an older sum (an
//! answer that arrives after a newer announcement) never replaces a newer one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::domain::StreamId;

/// An unchanged local count is reported again after this long, so its report (which expires
/// after 10 minutes) stays. Reports of instances gone leave the sums through the leases
/// (see `leases`), not through this refresh, so it can be rare: it is Redis work for every
/// (instance, stream) pair.
pub(super) const REFRESH: Duration = Duration::from_secs(200);

#[derive(Clone, Default)]
pub(super) struct Reports(Arc<DashMap<StreamId, Report>>);

#[derive(Debug, Clone, Copy, PartialEq)]
struct Report {
    /// The stream's count across instances.
    sum: u64,
    /// This instance's count in that sum: the one it last reported.
    ours: i64,
    /// The Redis time (µs) the sum was made at.
    version: u64,
    /// When this instance last reported.
    at: Instant,
    /// To be reported at the next round whatever its count: an instance is gone whose
    /// report may be in the sum, or this instance's own lease ran out.
    recheck: bool,
}

impl Reports {
    /// The last known sum and this instance's count in it.
    pub(super) fn get(&self, stream: &StreamId) -> Option<(u64, i64)> {
        self.0.get(stream).map(|r| (r.sum, r.ours))
    }

    /// This instance's report of `ours` answered `sum` at `version`: its sum, unless a newer
    /// one was heard meanwhile (that one already counts `ours`).
    pub(super) fn reported(&self, stream: &StreamId, sum: u64, ours: i64, version: u64) {
        let at = Instant::now();
        self.0
            .entry(stream.clone())
            .and_modify(|r| {
                if version >= r.version {
                    (r.sum, r.version) = (sum, version);
                }
                (r.ours, r.at) = (ours, at);
            })
            .or_insert(Report {
                sum,
                ours,
                version,
                at,
                recheck: false,
            });
    }

    /// Another instance's report announced `sum` at `version`; a stream this instance has
    /// not reported yet is left to its own first report.
    pub(super) fn heard(&self, stream: &StreamId, sum: u64, version: u64) {
        if let Some(mut r) = self.0.get_mut(stream)
            && version > r.version
        {
            (r.sum, r.version) = (sum, version);
        }
    }

    /// Whether the local count `local` is to be reported now: never reported, changed since,
    /// reported [`REFRESH`] ago, or to be rechecked. The report about to start takes the
    /// recheck, so one asked for while that report is in flight (it may have been sent with
    /// the gone instances as they were before) asks for another.
    pub(super) fn take_due(&self, stream: &StreamId, local: i64) -> bool {
        let Some(mut r) = self.0.get_mut(stream) else {
            return true;
        };
        let due = r.recheck || r.ours != local.max(0) || r.at.elapsed() >= REFRESH;
        r.recheck = false;
        due
    }

    /// Every stream is to be reported at the next round.
    pub(super) fn recheck_all(&self) {
        self.0.iter_mut().for_each(|mut r| r.recheck = true);
    }

    /// `stream` is to be reported at the next round (its report failed).
    pub(super) fn recheck(&self, stream: &StreamId) {
        if let Some(mut r) = self.0.get_mut(stream) {
            r.recheck = true;
        }
    }

    pub(super) fn forget(&self, stream: &StreamId) {
        self.0.remove(stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> StreamId {
        StreamId::parse("s").unwrap()
    }

    #[test]
    fn a_newer_sum_wins_whichever_arrives_first() {
        let reports = Reports::default();
        let s = stream();
        reports.heard(&s, 9, 50);
        assert_eq!(reports.get(&s), None, "nothing before our own report");
        reports.reported(&s, 5, 2, 100);
        assert_eq!(reports.get(&s), Some((5, 2)));
        // Another instance's report, summed after ours.
        reports.heard(&s, 7, 120);
        assert_eq!(reports.get(&s), Some((7, 2)));
        // An announcement older than what we know is stale.
        reports.heard(&s, 6, 110);
        assert_eq!(reports.get(&s), Some((7, 2)));
        // Our next report's answer was summed before the newest announcement: we keep that
        // sum (it already counts our new count) and take our count.
        reports.heard(&s, 8, 200);
        reports.reported(&s, 6, 3, 150);
        assert_eq!(reports.get(&s), Some((8, 3)));
        reports.reported(&s, 4, 1, 300);
        assert_eq!(reports.get(&s), Some((4, 1)));
        reports.forget(&s);
        assert_eq!(reports.get(&s), None);
    }

    #[test]
    fn a_count_is_due_when_new_or_changed() {
        let reports = Reports::default();
        let s = stream();
        assert!(reports.take_due(&s, 3), "never reported");
        reports.reported(&s, 3, 3, 1);
        assert!(!reports.take_due(&s, 3), "unchanged, just reported");
        assert!(reports.take_due(&s, 4), "changed");
        reports.reported(&s, 0, 0, 2);
        assert!(
            !reports.take_due(&s, -1),
            "a count below 0 is reported as 0"
        );
        reports.recheck_all();
        assert!(reports.take_due(&s, 0), "rechecked");
        assert!(
            !reports.take_due(&s, 0),
            "the report in flight took the recheck"
        );
        reports.recheck_all(); // while that report is in flight
        reports.reported(&s, 0, 0, 3);
        assert!(
            reports.take_due(&s, 0),
            "a recheck asked for in flight asks for another"
        );
        reports.reported(&s, 0, 0, 4);
        assert!(!reports.take_due(&s, 0), "reported since");
        reports.recheck(&s); // the report failed
        assert!(reports.take_due(&s, 0), "a failed report is tried again");
    }
}
