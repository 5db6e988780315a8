//! The tally: what a run collected ([`Collected`]: every worker's totals and ticks, the
//! processes' readings) turned into the figures of a result. One small tally per measure, each
//! added to from every worker's totals and finished into the [`Summary`]: the latencies, the
//! tool's cost, the connections, the fan-out measures (posting, deliveries, the per-viewer
//! books), the processes' CPU and RSS, and the verdict; [`summarise`] composes them. It reads
//! the run's data (`run`, `ipc`, `plan`, `sampling`, `stats`) and writes `result`'s types.

mod comments;
mod processes;
mod verdict;

use crate::ipc::{Scenario, TickCounts, Totals};
use crate::plan::Layout;
use crate::result::{InstanceSeries, Limit, Summary, Tick, ToolCost};
use crate::run::{Collected, Timing};
use crate::sampling::Sampled;
use crate::stats::Latency;

use comments::Fanout;
use processes::Cpu;

/// A run's figures, ready to be written as a [`crate::result::RunResult`].
pub(crate) struct Outcome {
    pub summary: Summary,
    pub timeline: Vec<Tick>,
    pub latency: Latency,
    pub init: Latency,
    pub instances: Vec<InstanceSeries>,
    pub tool: ToolCost,
    pub limit: Limit,
}

/// Turns what a run collected into its figures.
pub(crate) fn summarise(
    layout: &Layout,
    timing: &Timing,
    sampled: &Sampled,
    c: Collected,
) -> Outcome {
    let duration_s = c.measure_end.duration_since(c.measure_start).as_secs_f64();
    let active_s = c.active_end.duration_since(c.measure_start).as_secs_f64();
    let mut latencies = Latencies::default();
    let mut tool = Tool::new(c.totals.len(), active_s);
    let mut connections = Connections::default();
    let mut fanout = Fanout::default();
    for t in &c.totals {
        latencies.add(t);
        tool.add(t);
        connections.add(t);
        fanout.add(t);
    }
    let tool = tool.finish();
    let mut summary = Summary {
        connections: c.ready_connected,
        duration_s,
        ..Summary::default()
    };
    connections.finish(c.ready_errors, layout, timing, &mut summary);
    let cpu = Cpu::of(&c, sampled, active_s);
    summary.other_cpu_s = cpu.others_measured;
    summary.server_cpu_s = cpu.servers_measured;
    summary.server_rss_bytes = processes::peak_rss(&c.samples, &sampled.server_pids());
    summary.machine_busy = c.machine_busy;
    let instances = &sampled.servers[..];
    match layout.scenario {
        Scenario::Fanout | Scenario::Soak => {
            let spans = comments::Spans {
                posting_s: timing.duration.as_secs_f64(),
                lead_in_s: timing.lead_in.as_secs_f64(),
            };
            fanout.finish(layout, spans, &mut summary);
            summary.latency_ms = latencies.publish.percentiles();
            summary.send_latency_ms = latencies.send.percentiles();
            let deliveries = fanout.deliveries();
            if let Some(cpu) = cpu.servers_measured
                && deliveries > 0
            {
                summary.server_cpu_ms_per_1k_deliveries =
                    Some(cpu * 1000.0 / deliveries as f64 * 1000.0);
            }
        }
        Scenario::Idle => idle(
            &c,
            cpu.servers_measured,
            !instances.is_empty(),
            &mut summary,
        ),
        Scenario::Storm => {
            summary.init_latency_ms = latencies.init.percentiles();
            summary.upgrades_per_s = wave_rate(&c.waves);
        }
        Scenario::Churn => summary.init_latency_ms = latencies.init.percentiles(),
    }
    let limit = verdict::verdict(layout, &summary, &tool, &cpu, active_s, instances);
    Outcome {
        summary,
        timeline: merge_ticks(&c.ticks),
        latency: latencies.publish,
        init: latencies.init,
        instances: processes::instance_series(&sampled.all(), &c.samples, c.measure_start),
        tool,
        limit,
    }
}

/// The idle measures: `init` latency, and the servers' RSS and CPU per connection held.
fn idle(c: &Collected, server_cpu_s: Option<f64>, servers_sampled: bool, summary: &mut Summary) {
    summary.init_latency_ms = c.ready_init.percentiles();
    if let Some(loaded) = c.rss_loaded
        && c.ready_connected > 0
        && servers_sampled
    {
        summary.rss_per_connection_bytes =
            Some((loaded as f64 - c.rss_before as f64) / c.ready_connected as f64);
    }
    if let Some(cpu) = server_cpu_s
        && c.ready_connected > 0
    {
        summary.cpu_us_per_connection_s =
            Some(cpu * 1e6 / c.ready_connected as f64 / summary.duration_s);
    }
}

/// Upgrades per second of the storm's reconnect wave: every worker's upgrades over the
/// slowest worker's wave.
fn wave_rate(waves: &[(u64, f64)]) -> Option<f64> {
    let slowest = waves.iter().map(|w| w.1).fold(0.0, f64::max);
    let wave_upgrades: u64 = waves.iter().map(|w| w.0).sum();
    (slowest > 0.0).then(|| wave_upgrades as f64 / (slowest / 1000.0))
}

/// The latency histograms, every worker's merged.
#[derive(Default)]
struct Latencies {
    /// Publish → receive, from each comment's `ts`.
    publish: Latency,
    /// Poster send → viewer receive, from the stamp in the comment text.
    send: Latency,
    /// Handshake start → `init`.
    init: Latency,
}

impl Latencies {
    fn add(&mut self, t: &Totals) {
        self.publish.merge(&t.latency);
        self.send.merge(&t.send_latency);
        self.init.merge(&t.init);
    }
}

/// What the load generator itself cost.
struct Tool {
    cost: ToolCost,
    /// Seconds the load was on: a worker's busy share is over them.
    active_s: f64,
}

impl Tool {
    fn new(workers: usize, active_s: f64) -> Tool {
        Tool {
            cost: ToolCost {
                workers: workers as u32,
                ..ToolCost::default()
            },
            active_s,
        }
    }

    fn add(&mut self, t: &Totals) {
        let tool = &mut self.cost;
        tool.cpu_s += t.cpu_s;
        tool.active_cpu_s += t.active_cpu_s;
        tool.frames += t.frames;
        if self.active_s > 0.0 {
            tool.max_worker_cores = tool.max_worker_cores.max(t.active_cpu_s / self.active_s);
        }
    }

    fn finish(self) -> ToolCost {
        let mut tool = self.cost;
        if tool.frames > 0 {
            tool.ns_per_frame = Some(tool.cpu_s * 1e9 / tool.frames as f64);
        }
        tool
    }
}

/// Connections closed and failed, upgrades and connect/leave cycles.
#[derive(Default)]
struct Connections {
    disconnects: u64,
    connect_errors: u64,
    upgrades: u64,
    cycles: u64,
}

impl Connections {
    fn add(&mut self, t: &Totals) {
        self.disconnects += t.disconnects;
        self.connect_errors += t.connect_errors;
        self.upgrades += t.upgrades;
        self.cycles += t.cycles;
    }

    fn finish(&self, ready_errors: u64, layout: &Layout, timing: &Timing, summary: &mut Summary) {
        summary.disconnects = self.disconnects;
        // A worker's totals repeat the connect errors its ready report gave.
        summary.connect_errors = self.connect_errors.max(ready_errors);
        if layout.scenario.churns() {
            let duration_s = timing.duration.as_secs_f64();
            summary.cycles_per_s = Some(self.cycles as f64 / duration_s);
            summary.upgrades_per_s = Some(self.upgrades as f64 / duration_s);
        }
    }
}

/// The timeline: every worker's ticks of the same second added up.
fn merge_ticks(ticks: &[Vec<TickCounts>]) -> Vec<Tick> {
    let seconds = ticks.iter().map(Vec::len).max().unwrap_or(0);
    (0..seconds)
        .map(|i| {
            let mut latency = Latency::default();
            let mut tick = Tick {
                t_s: (i + 1) as f64,
                ..Tick::default()
            };
            for worker in ticks {
                if let Some(t) = worker.get(i) {
                    tick.deliveries += t.deliveries;
                    tick.frames += t.frames;
                    tick.skipped += t.skipped;
                    tick.connected += t.connected;
                    tick.upgrades += t.upgrades;
                    latency.merge(&t.latency);
                }
            }
            if let Some(p) = latency.percentiles() {
                tick.latency_p50_ms = p.p50;
                tick.latency_p99_ms = p.p99;
                tick.latency_max_ms = p.max;
            }
            tick
        })
        .collect()
}
