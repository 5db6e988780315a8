//! The verdict of a run: which side limited it (the tool, the server, the machine, or none),
//! from the CPU each used while the load was on, and why, with the figures.

use crate::plan::Layout;
use crate::procfs;
use crate::proto::Target;
use crate::result::{Limit, Summary, ToolCost};
use crate::sampling::Instance;
use crate::tally::processes::Cpu;

/// Decides which side limited the run, from the CPU each used during the measured phase.
pub(super) fn verdict(
    layout: &Layout,
    summary: &Summary,
    tool: &ToolCost,
    cpu: &Cpu,
    active_s: f64,
    instances: &[Instance],
) -> Limit {
    // CPU use while the load was on (posting, churning, the storm's wave); the settle time
    // after it would dilute it.
    let (server_cpu_s, others_cpu_s) = (cpu.servers_active, cpu.others_active);
    let busiest_instance = cpu.busiest_instance;
    let cores = procfs::cpus() as f64;
    let tool_cores = tool.active_cpu_s / active_s.max(1e-9);
    let server_cores = server_cpu_s.map(|s| s / active_s.max(1e-9));
    let other_cores = others_cpu_s.map_or(0.0, |s| s / active_s.max(1e-9));
    // What no sampled process was charged for: the kernel's softirq work, other processes.
    let machine_cores = summary.machine_busy.map(|b| b * cores);
    let unaccounted = machine_cores.map_or(0.0, |m| {
        (m - server_cores.unwrap_or(0.0) - tool_cores - other_cores).max(0.0)
    });
    let figures = format!(
        "over the {active_s:.1} s under load: server {} cores (busiest instance {busiest_instance:.2}), tool {tool_cores:.2} cores (busiest worker {:.2}), others (Redis) {other_cores:.2} cores, unaccounted (kernel softirq, other processes) {unaccounted:.2} cores; machine {} of {cores} cores busy",
        server_cores.map_or("?".to_owned(), |c| format!("{c:.2}")),
        tool.max_worker_cores,
        machine_cores.map_or("?".to_owned(), |c| format!("{c:.2}")),
    );
    let offered = layout.offered_deliveries_per_s();
    // Comments left out by thinning were handled, not late: they count against the offer.
    let handled_per_s = summary
        .deliveries_per_s
        .map(|d| d + summary.skipped_per_s.unwrap_or(0.0));
    let short_of_offer =
        layout.scenario.fans_out() && handled_per_s.is_some_and(|d| d < 0.95 * offered);
    let late = summary.latency_ms.as_ref().is_some_and(|p| p.p99 > 50.0);
    // A peer instance runs on one core: Node.js's one thread, Sockudo's one runtime worker
    // (as `bench/compare` starts it).
    let one_core = match layout.target {
        Target::Danmaku => None,
        Target::Socketio => Some("a single-threaded peer instance (Node.js) was CPU-bound"),
        Target::Pusher => Some("a Sockudo instance (one runtime worker) was CPU-bound"),
    };
    let (verdict, why) = if tool.max_worker_cores >= 0.9 {
        ("tool", "a worker process was CPU-bound")
    } else if let Some(why) = one_core.filter(|_| busiest_instance >= 0.9) {
        ("server", why)
    } else if machine_cores.is_some_and(|m| m >= 0.9 * cores)
        || server_cores.is_some_and(|s| s + tool_cores + other_cores >= 0.9 * cores)
    {
        (
            "machine",
            "the box's CPUs were saturated (server, tool, Redis and the kernel's network work together)",
        )
    } else if instances.is_empty() {
        ("unknown", "no server process was sampled (--pid)")
    } else if short_of_offer || late {
        (
            "server",
            "the server fell behind without saturating the box (latency or backpressure)",
        )
    } else if layout.scenario.fans_out() {
        (
            "none",
            "the offered load was delivered; neither side saturated",
        )
    } else {
        ("none", "neither side saturated")
    };
    Limit {
        verdict: verdict.to_owned(),
        reason: format!("{why}: {figures}"),
    }
}
