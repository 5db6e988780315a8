//! Which instances are alive, for the viewer counts. Every instance holds a lease in one
//! sorted set ([`INSTANCES`]: instance → lease end, in ms of Redis time) and renews it every
//! sixth of the lease (`DANMAKU_INSTANCE_LEASE_MS`, 30 s by default); each renewal answers
//! whose leases have run out. The viewer-count script is handed those instances and drops
//! their reports from the stream's sum, and an instance that learns of a newly gone one
//! reports every stream it has viewers of once, which announces the new sums. So the viewers
//! of an instance that died leave every count within its lease and a few seconds, and the
//! reports of live instances need refreshing only rarely (each still expires on its own,
//! after 10 minutes, for instances of an older version and a lease set that was lost).
//!
//! An instance whose own lease ran out (it could not reach the lease's node for that long)
//! may have been dropped from the sums meanwhile, and one whose lease is gone altogether
//! (Redis lost its data: the reports went with it) counts for nothing until it reports: both
//! report all their streams again at once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::RedisBroker;
use super::client::run;
use super::keys::INSTANCES;
use super::scripts;
use super::viewers::VIEWER_REPORT_TTL;
use crate::background::Background;

/// This instance's lease, and the instances whose leases ran out as last heard.
pub(super) struct Leases {
    lease: Duration,
    gone: RwLock<Arc<[String]>>,
    /// Whether a renewal went through: a lease absent after that was lost.
    held: AtomicBool,
}

impl Leases {
    pub(super) fn new(lease: Duration) -> Self {
        Self {
            lease,
            gone: RwLock::new(Arc::from([])),
            held: AtomicBool::new(false),
        }
    }

    /// Takes how this instance's lease stood before a renewal (the script's first answer):
    /// true when its reports may be missing from the sums.
    fn renewed(&self, before: Option<&str>) -> bool {
        let held_before = self.held.swap(true, Ordering::AcqRel);
        match before {
            Some("1") => true,
            Some("2") => held_before,
            _ => false,
        }
    }

    /// The instances whose leases ran out (within the last 10 minutes).
    pub(super) fn gone(&self) -> Arc<[String]> {
        self.gone.read().expect("not poisoned").clone()
    }

    /// Takes a renewal's list of gone instances; true when one of them is newly gone.
    fn learned(&self, gone: Vec<String>) -> bool {
        let mut known = self.gone.write().expect("not poisoned");
        let before: HashSet<&String> = known.iter().collect();
        let news = gone.iter().any(|instance| !before.contains(instance));
        *known = Arc::from(gone);
        news
    }
}

impl RedisBroker {
    /// Renews this instance's lease and learns whose ran out; every stream is reported
    /// anew when an instance is newly gone or this instance's own lease had run out.
    async fn renew_lease(&self) {
        let args = vec![
            self.pod.clone(),
            self.leases.lease.as_millis().to_string(),
            VIEWER_REPORT_TTL.as_millis().to_string(),
        ];
        let answer: Result<Vec<String>, _> = run(
            &self.client,
            &scripts::LEASE,
            vec![INSTANCES.to_owned()],
            args,
        )
        .await;
        let mut answer = match answer {
            Ok(answer) => answer.into_iter(),
            Err(error) => {
                tracing::debug!(%error, "lease renewal failed");
                return;
            }
        };
        let lapsed = self.leases.renewed(answer.next().as_deref());
        let newly_gone = self.leases.learned(answer.collect());
        if lapsed {
            tracing::warn!(
                "this instance's lease had run out or was lost; reporting its viewers again"
            );
        }
        if lapsed || newly_gone {
            self.reports.recheck_all();
        }
    }
}

pub(super) fn spawn_renewal(broker: Arc<RedisBroker>, background: &Background) {
    background.every(broker.leases.lease / 6, move || {
        let broker = broker.clone();
        async move { broker.renew_lease().await }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_newly_gone_instance_is_news() {
        let leases = Leases::new(Duration::from_secs(30));
        assert!(!leases.learned(vec![]));
        assert!(leases.learned(vec!["a".into()]));
        assert!(!leases.learned(vec!["a".into()]), "known already");
        assert!(!leases.learned(vec![]), "a forgotten one is no news");
        assert!(leases.learned(vec!["b".into(), "a".into()]));
        assert_eq!(&*leases.gone(), ["b".to_owned(), "a".to_owned()]);
    }

    #[test]
    fn a_lease_run_out_or_lost_after_the_first_renewal_calls_for_reports() {
        let leases = Leases::new(Duration::from_secs(30));
        assert!(
            !leases.renewed(Some("2")),
            "the first renewal takes the lease"
        );
        assert!(!leases.renewed(Some("0")));
        assert!(leases.renewed(Some("1")), "run out");
        assert!(leases.renewed(Some("2")), "lost (Redis lost its data)");
        assert!(!leases.renewed(None), "no answer says nothing");
    }
}
