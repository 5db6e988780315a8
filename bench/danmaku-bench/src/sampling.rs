//! The processes a run samples: the servers under test, and others beside them (Redis), read
//! from `/proc` about once a second by the coordinator. This module owns the readings; what
//! they add up to (CPU between two instants, peak RSS, the per-instance series of a result) is
//! the tally's. Uses `procfs` only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::procfs;

/// A server process to sample.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub name: String,
    pub pid: u32,
}

/// The processes sampled during a run: the servers under test, and others (Redis) whose CPU
/// and memory are plotted and reported apart, never added to the servers'.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sampled {
    pub servers: Vec<Instance>,
    pub others: Vec<Instance>,
}

impl Sampled {
    pub(crate) fn all(&self) -> Vec<Instance> {
        self.servers.iter().chain(&self.others).cloned().collect()
    }

    pub(crate) fn server_pids(&self) -> Vec<u32> {
        self.servers.iter().map(|i| i.pid).collect()
    }

    pub(crate) fn other_pids(&self) -> Vec<u32> {
        self.others.iter().map(|i| i.pid).collect()
    }
}

/// One reading of a server process: when, its CPU time so far, its RSS.
pub(crate) type Sample = (Instant, Option<Duration>, Option<u64>);
/// Every reading, by pid.
pub(crate) type Samples = HashMap<u32, Vec<Sample>>;

/// Reads every process in `instances` once, now.
pub(crate) fn sample(instances: &[Instance], into: &mut Samples) {
    let now = Instant::now();
    for instance in instances {
        let pid = instance.pid.to_string();
        into.entry(instance.pid).or_default().push((
            now,
            procfs::cpu_time(&pid),
            procfs::rss_bytes(&pid),
        ));
    }
}

/// The RSS of `instances` together, now.
pub(crate) fn total_rss(instances: &[Instance]) -> u64 {
    instances
        .iter()
        .filter_map(|i| procfs::rss_bytes(&i.pid.to_string()))
        .sum()
}
