//! The processes' measures: the CPU the sampled processes used over the measured phase and
//! while the load was on, the servers' peak RSS, and each instance's CPU and RSS series for the
//! result, all from the readings of `sampling`.

use std::time::Instant;

use crate::result::{InstanceSample, InstanceSeries};
use crate::run::Collected;
use crate::sampling::{Instance, Sample, Sampled, Samples};

/// The CPU seconds the servers (all instances) and the other processes (Redis) used, over the
/// measured phase and over its part under load (the settle after it would dilute a share).
pub(super) struct Cpu {
    pub servers_measured: Option<f64>,
    pub servers_active: Option<f64>,
    pub others_measured: Option<f64>,
    pub others_active: Option<f64>,
    /// The busiest server instance's CPU while the load was on, in cores.
    pub busiest_instance: f64,
}

impl Cpu {
    pub(super) fn of(c: &Collected, sampled: &Sampled, active_s: f64) -> Cpu {
        let (servers, others) = (sampled.server_pids(), sampled.other_pids());
        let between =
            |pids: &[u32], to: Instant| cpu_between(&c.samples, pids, c.measure_start, to);
        let busiest_instance = servers
            .iter()
            .filter_map(|pid| c.samples.get(pid))
            .filter_map(|points| instance_cpu_between(points, c.measure_start, c.active_end))
            .fold(0.0, f64::max)
            / active_s.max(1e-9);
        Cpu {
            servers_measured: between(&servers, c.measure_end),
            servers_active: between(&servers, c.active_end),
            others_measured: between(&others, c.measure_end),
            others_active: between(&others, c.active_end),
            busiest_instance,
        }
    }
}

/// CPU seconds the processes `pids` used between two instants (`None` without any).
fn cpu_between(samples: &Samples, pids: &[u32], from: Instant, to: Instant) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .map(|pid| instance_cpu_between(samples.get(pid)?, from, to))
        .sum()
}

/// CPU seconds one instance used between two instants (from the samples nearest to them).
fn instance_cpu_between(points: &[Sample], from: Instant, to: Instant) -> Option<f64> {
    let at = |t: Instant| {
        points
            .iter()
            .filter(|p| p.1.is_some())
            .min_by_key(|p| if p.0 > t { p.0 - t } else { t - p.0 })
            .and_then(|p| p.1)
    };
    Some(at(to)?.saturating_sub(at(from)?).as_secs_f64())
}

/// The servers' peak RSS: the sum over instances of each instance's peak.
pub(super) fn peak_rss(samples: &Samples, pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    // Sum over instances of each instance's peak (samples are not aligned across instances).
    Some(
        pids.iter()
            .filter_map(|pid| samples.get(pid))
            .map(|points| points.iter().filter_map(|p| p.2).max().unwrap_or(0))
            .sum(),
    )
}

/// Each instance's CPU (in cores, over each interval of at least 0.2 s) and RSS, `t_s` from
/// `start`.
pub(super) fn instance_series(
    instances: &[Instance],
    samples: &Samples,
    start: Instant,
) -> Vec<InstanceSeries> {
    instances
        .iter()
        .map(|instance| {
            let points = samples.get(&instance.pid).map(Vec::as_slice).unwrap_or(&[]);
            let samples = points
                .windows(2)
                .filter_map(|w| {
                    let (a, b) = (&w[0], &w[1]);
                    let dt = b.0.duration_since(a.0).as_secs_f64();
                    if dt < 0.2 {
                        return None;
                    }
                    let cpu = b.1?.saturating_sub(a.1?).as_secs_f64() / dt;
                    let t = if b.0 >= start {
                        b.0.duration_since(start).as_secs_f64()
                    } else {
                        -start.duration_since(b.0).as_secs_f64()
                    };
                    Some(InstanceSample {
                        t_s: t,
                        cpu_cores: cpu,
                        rss_bytes: b.2.unwrap_or(0),
                    })
                })
                .collect();
            InstanceSeries {
                name: instance.name.clone(),
                pid: instance.pid,
                samples,
            }
        })
        .collect()
}
