//! Readiness: whether this instance should get new connections now, and if not, why. One
//! answer, [`Readiness::reasons`], for `/readyz` and for the `danmaku.readiness.state`
//! gauge alike:
//!
//! - `draining`: SIGTERM arrived; the instance is handing its viewers to others.
//! - `broker`: this instance reaches no Redis primary at all (never: one shard failing
//!   over).
//! - `cpu`: the CPU gate of [`cpu`] is closed (this process's CPU over its limit).
//! - `full`: the instance is at its connection cap (see [`Lifecycle::is_full`]), so new
//!   connections go to others; it comes back 5 % below the cap.
//!
//! Besides, the gate paces new WebSocket handshakes while it ramps up after reopening
//! ([`Readiness::admit_handshake`]).

mod cpu;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::background::Background;
use crate::broker::Broker;
use crate::config::Config;
use crate::lifecycle::Lifecycle;

pub use cpu::{
    CpuGate, CpuSample, DWELL_JITTER, GateTuning, HYSTERESIS, MIN_DWELL, RAMP, WINDOW,
    available_cpus, process_cpu_seconds,
};

/// How often this process's CPU time is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// A reason not to be ready, in the order `/readyz` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotReady {
    Draining,
    Broker,
    Cpu,
    Full,
}

impl NotReady {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draining => "draining",
            Self::Broker => "broker",
            Self::Cpu => "cpu",
            Self::Full => "full",
        }
    }
}

pub struct Readiness {
    gate: Mutex<CpuGate>,
    lifecycle: Arc<Lifecycle>,
    broker: Broker,
}

impl Readiness {
    pub fn new(config: &Config, lifecycle: Arc<Lifecycle>, broker: Broker) -> Self {
        let ms = Duration::from_millis;
        let tuning = GateTuning {
            window: ms(config.cpu_window_ms),
            min_dwell: ms(config.cpu_dwell_ms),
            dwell_jitter: ms(config.cpu_dwell_jitter_ms),
            ramp: ms(config.ready_ramp_ms),
            ..GateTuning::default()
        };
        let gate = CpuGate::new(
            config.cpu_ready_threshold,
            available_cpus(),
            tuning,
            Instant::now(),
        );
        Self {
            gate: Mutex::new(gate),
            lifecycle,
            broker,
        }
    }

    /// Every reason this instance should not get new connections now; empty when ready.
    pub fn reasons(&self) -> Vec<NotReady> {
        let mut reasons = Vec::new();
        if self.lifecycle.is_draining() {
            reasons.push(NotReady::Draining);
        }
        if !self.broker.is_healthy() {
            reasons.push(NotReady::Broker);
        }
        if !self.gate().is_ready() {
            reasons.push(NotReady::Cpu);
        }
        if self.lifecycle.is_full() {
            reasons.push(NotReady::Full);
        }
        reasons
    }

    /// The CPU fraction the gate compares (`danmaku.process.cpu.utilization`).
    pub fn cpu_fraction(&self) -> f64 {
        self.gate().fraction()
    }

    /// Whether one more WebSocket handshake fits the gate's slow-start ramp now.
    pub fn admit_handshake(&self) -> bool {
        self.gate().admit_handshake(Instant::now())
    }

    /// Feeds the gate a CPU sample; `jitter` in [0, 1) picks its dwell if it closes.
    pub fn observe(&self, sample: CpuSample, jitter: f64) {
        self.gate().observe(sample, jitter);
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, CpuGate> {
        self.gate.lock().expect("not poisoned")
    }
}

/// Samples this process's CPU every [`SAMPLE_EVERY`] into `readiness`, until stopped.
pub fn spawn_sampler(readiness: Arc<Readiness>, background: &Background) {
    background.every(SAMPLE_EVERY, move || {
        if let Some(cpu_seconds) = process_cpu_seconds() {
            let sample = CpuSample {
                at: Instant::now(),
                cpu_seconds,
            };
            readiness.observe(sample, rand::random::<f64>());
        }
        std::future::ready(())
    });
}
