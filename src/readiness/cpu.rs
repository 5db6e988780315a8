//! The CPU gate of `/readyz`: an instance stops taking new connections while its CPU is
//! high, so long-lived connections spread across instances.
//!
//! - **What is measured:** this process's CPU time (`/proc/self/stat`, user + system) over a
//!   sliding window of [`WINDOW`], as a fraction of the CPU available to it: the cgroup v2
//!   `cpu.max` quota, else the v1 CFS quota, else the online CPUs. (No crate measures
//!   cgroup-aware process CPU well, hence the files read here.)
//! - **Hysteresis:** not ready above `DANMAKU_CPU_READY_THRESHOLD`; ready again only below
//!   the threshold minus [`HYSTERESIS`].
//! - **Dwell:** once not ready, an instance stays so for at least [`MIN_DWELL`] plus a
//!   random [`DWELL_JITTER`] drawn each time, so instances that overloaded together do not
//!   come back together.
//! - **Slow start:** an instance that has just become ready again admits new WebSocket
//!   handshakes at a rate that ramps up over [`RAMP`]; beyond it handshakes get
//!   `503 unavailable` and clients retry elsewhere. Kubernetes sends new connections to
//!   any ready pod, so without this the first pod to recover would take the whole
//!   reconnect storm of its overloaded peers and overload again.

use std::time::{Duration, Instant};

/// The CPU fraction is averaged over this long.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Ready again only below `threshold - HYSTERESIS` (or 75 % of a threshold under 0.4).
pub const HYSTERESIS: f64 = 0.10;
/// Least time spent not ready once the gate closes.
pub const MIN_DWELL: Duration = Duration::from_secs(15);
/// Up to this much more, drawn at random each time the gate closes.
pub const DWELL_JITTER: Duration = Duration::from_secs(10);
/// How long the handshake rate ramps up after the gate opens.
pub const RAMP: Duration = Duration::from_secs(20);

/// Tunables, so tests can use short times; production uses [`GateTuning::default`].
#[derive(Debug, Clone, Copy)]
pub struct GateTuning {
    pub window: Duration,
    pub min_dwell: Duration,
    pub dwell_jitter: Duration,
    pub ramp: Duration,
    /// Handshakes per second admitted at the start of the ramp; the rate doubles every
    /// tenth of the ramp, so it is unlimited by its end.
    pub ramp_start_per_sec: f64,
}

impl Default for GateTuning {
    fn default() -> Self {
        Self {
            window: WINDOW,
            min_dwell: MIN_DWELL,
            dwell_jitter: DWELL_JITTER,
            ramp: RAMP,
            ramp_start_per_sec: 20.0,
        }
    }
}

/// One reading of the process's cumulative CPU time.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub at: Instant,
    /// CPU seconds used by the process since it started.
    pub cpu_seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready { since: Instant },
    NotReady { until_earliest: Instant },
}

/// The gate's state machine, fed with samples; no I/O, no clock of its own.
#[derive(Debug)]
pub struct CpuGate {
    threshold: f64,
    cpus: f64,
    tuning: GateTuning,
    samples: std::collections::VecDeque<CpuSample>,
    state: State,
    fraction: f64,
    /// Handshakes admitted in the current second of the ramp, and which second it is.
    ramp_window: (u64, f64),
}

impl CpuGate {
    pub fn new(threshold: f64, cpus: f64, tuning: GateTuning, now: Instant) -> Self {
        Self {
            threshold,
            cpus: cpus.max(0.01),
            tuning,
            samples: std::collections::VecDeque::new(),
            // Start as if the ramp were over: a fresh instance takes connections at once.
            state: State::Ready {
                since: now.checked_sub(tuning.ramp).unwrap_or(now),
            },
            fraction: 0.0,
            ramp_window: (0, 0.0),
        }
    }

    /// Adds a sample; `jitter` in [0, 1) picks the extra dwell if the gate closes now.
    pub fn observe(&mut self, sample: CpuSample, jitter: f64) {
        self.samples.push_back(sample);
        while self.samples.len() > 2
            && sample.at.duration_since(self.samples[1].at) >= self.tuning.window
        {
            self.samples.pop_front();
        }
        let first = self.samples.front().copied().unwrap_or(sample);
        let wall = sample.at.duration_since(first.at).as_secs_f64();
        if wall > 0.0 {
            self.fraction =
                ((sample.cpu_seconds - first.cpu_seconds) / (wall * self.cpus)).max(0.0);
        }
        let now = sample.at;
        self.state = match self.state {
            State::Ready { .. } if self.fraction > self.threshold => {
                let dwell = self.tuning.min_dwell
                    + self.tuning.dwell_jitter.mul_f64(jitter.clamp(0.0, 1.0));
                State::NotReady {
                    until_earliest: now + dwell,
                }
            }
            State::NotReady { until_earliest }
                if now >= until_earliest && self.fraction < self.low_water() =>
            {
                State::Ready { since: now }
            }
            state => state,
        };
    }

    fn low_water(&self) -> f64 {
        (self.threshold - HYSTERESIS).max(self.threshold * 0.75)
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready { .. })
    }

    /// The CPU fraction over the window (what `danmaku.process.cpu.utilization` reports).
    pub fn fraction(&self) -> f64 {
        self.fraction
    }

    /// Whether one more handshake fits the slow-start ramp at `now`.
    pub fn admit_handshake(&mut self, now: Instant) -> bool {
        let State::Ready { since } = self.state else {
            return true;
        };
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= self.tuning.ramp || self.tuning.ramp.is_zero() {
            return true;
        }
        let progress = elapsed.as_secs_f64() / self.tuning.ramp.as_secs_f64();
        let rate = self.tuning.ramp_start_per_sec * 2f64.powf(progress * 10.0);
        let second = elapsed.as_secs();
        if self.ramp_window.0 != second {
            self.ramp_window = (second, 0.0);
        }
        if self.ramp_window.1 < rate {
            self.ramp_window.1 += 1.0;
            true
        } else {
            false
        }
    }
}

/// This process's CPU seconds so far, from `/proc/self/stat` (utime + stime, in the
/// kernel's fixed USER_HZ of 100 ticks per second).
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may contain spaces; the fields after it are fixed.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The CPUs available to this process: cgroup v2 `cpu.max`, cgroup v1 CFS quota, or the
/// online CPUs.
pub fn available_cpus() -> f64 {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    if let Some(max) = read("/sys/fs/cgroup/cpu.max")
        && let Some(cpus) = parse_cpu_max(&max)
    {
        return cpus;
    }
    let quota =
        read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").and_then(|q| q.trim().parse::<f64>().ok());
    let period =
        read("/sys/fs/cgroup/cpu/cpu.cfs_period_us").and_then(|p| p.trim().parse::<f64>().ok());
    if let (Some(quota), Some(period)) = (quota, period)
        && quota > 0.0
        && period > 0.0
    {
        return quota / period;
    }
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// `cpu.max` is `<quota> <period>` or `max <period>` (no limit).
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?;
    let period: f64 = parts.next()?.parse().ok()?;
    if quota == "max" || period <= 0.0 {
        return None;
    }
    Some(quota.parse::<f64>().ok()? / period)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning() -> GateTuning {
        GateTuning {
            window: Duration::from_secs(10),
            min_dwell: Duration::from_secs(15),
            dwell_jitter: Duration::from_secs(10),
            ramp: Duration::from_secs(20),
            ramp_start_per_sec: 5.0,
        }
    }

    /// Feeds one sample a second at the given CPU fraction for `secs` seconds.
    fn run(
        gate: &mut CpuGate,
        t: &mut Instant,
        cpu: &mut f64,
        fraction: f64,
        secs: u64,
        jitter: f64,
    ) {
        for _ in 0..secs {
            *t += Duration::from_secs(1);
            *cpu += fraction * 2.0; // 2 CPUs
            gate.observe(
                CpuSample {
                    at: *t,
                    cpu_seconds: *cpu,
                },
                jitter,
            );
        }
    }

    #[test]
    fn closes_above_the_threshold_and_reopens_only_below_the_low_water_mark() {
        let mut t = Instant::now();
        let mut gate = CpuGate::new(0.8, 2.0, tuning(), t);
        let mut cpu = 0.0;
        gate.observe(
            CpuSample {
                at: t,
                cpu_seconds: 0.0,
            },
            0.0,
        );
        run(&mut gate, &mut t, &mut cpu, 0.5, 10, 0.0);
        assert!(gate.is_ready());
        run(&mut gate, &mut t, &mut cpu, 1.0, 10, 0.0);
        assert!(!gate.is_ready(), "fraction {}", gate.fraction());
        // Just under the threshold is not enough: hysteresis.
        run(&mut gate, &mut t, &mut cpu, 0.75, 40, 0.0);
        assert!(!gate.is_ready(), "fraction {}", gate.fraction());
        run(&mut gate, &mut t, &mut cpu, 0.6, 12, 0.0);
        assert!(gate.is_ready(), "fraction {}", gate.fraction());
    }

    #[test]
    fn stays_closed_for_the_dwell_even_if_cpu_drops_at_once() {
        let mut t = Instant::now();
        let mut gate = CpuGate::new(0.8, 2.0, tuning(), t);
        let mut cpu = 0.0;
        gate.observe(
            CpuSample {
                at: t,
                cpu_seconds: 0.0,
            },
            0.0,
        );
        while gate.is_ready() {
            run(&mut gate, &mut t, &mut cpu, 1.0, 1, 0.0);
        }
        let closed_at = t;
        // Idle from now on: the window empties of load within 10 s, but the dwell is 15 s.
        while !gate.is_ready() {
            run(&mut gate, &mut t, &mut cpu, 0.0, 1, 0.0);
        }
        assert!(
            t.duration_since(closed_at) >= Duration::from_secs(15),
            "{:?}",
            t.duration_since(closed_at)
        );
        assert!(t.duration_since(closed_at) <= Duration::from_secs(16));
    }

    #[test]
    fn jitter_spreads_reopening_across_instances() {
        let reopen_after = |jitter: f64| {
            let mut t = Instant::now();
            let mut gate = CpuGate::new(0.8, 2.0, tuning(), t);
            let mut cpu = 0.0;
            gate.observe(
                CpuSample {
                    at: t,
                    cpu_seconds: 0.0,
                },
                jitter,
            );
            while gate.is_ready() {
                run(&mut gate, &mut t, &mut cpu, 1.0, 1, jitter);
            }
            let closed_at = t;
            while !gate.is_ready() {
                run(&mut gate, &mut t, &mut cpu, 0.0, 1, jitter);
            }
            t.duration_since(closed_at).as_secs()
        };
        let early = reopen_after(0.0);
        let late = reopen_after(0.99);
        assert!(late >= early + 9, "{early} vs {late}");
    }

    #[test]
    fn a_gate_that_just_opened_admits_handshakes_at_a_ramping_rate() {
        let mut t = Instant::now();
        let mut gate = CpuGate::new(0.8, 2.0, tuning(), t);
        assert!(
            (0..1000).all(|_| gate.admit_handshake(t)),
            "a fresh instance is not throttled"
        );
        let mut cpu = 0.0;
        gate.observe(
            CpuSample {
                at: t,
                cpu_seconds: 0.0,
            },
            0.0,
        );
        run(&mut gate, &mut t, &mut cpu, 1.0, 3, 0.0);
        assert!(
            gate.admit_handshake(t),
            "no ramp while not ready: readiness already keeps traffic away"
        );
        while !gate.is_ready() {
            run(&mut gate, &mut t, &mut cpu, 0.0, 1, 0.0);
        }
        let admitted_first_second = (0..1000).filter(|_| gate.admit_handshake(t)).count();
        assert!(
            (5..=6).contains(&admitted_first_second),
            "{admitted_first_second}"
        );
        let later = t + Duration::from_secs(10);
        let admitted_midway = (0..1000).filter(|_| gate.admit_handshake(later)).count();
        assert!(admitted_midway > 100, "{admitted_midway}");
        let after = t + Duration::from_secs(21);
        assert!((0..1000).all(|_| gate.admit_handshake(after)));
    }

    #[test]
    fn reads_cgroup_quotas_and_this_process() {
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert!(available_cpus() > 0.0);
        let before = process_cpu_seconds().unwrap();
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_cpu_seconds().unwrap() > before);
    }
}
