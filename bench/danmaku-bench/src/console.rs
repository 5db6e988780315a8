//! A result as lines for the terminal: the summary a scenario prints when it ends, and the
//! soak's samples and verdict. Reads `result` only.

use crate::result::RunResult;
use crate::result::chaos::ChaosResult;
use crate::result::soak::SoakReport;

/// Prints the run's headline figures, one line each.
pub(crate) fn print_summary(r: &RunResult) {
    let s = &r.summary;
    println!(
        "{} / {} ({}): {} connections, {:.1} s",
        r.scenario, r.label, r.commit, s.connections, s.duration_s
    );
    let opt = |v: Option<f64>, unit: &str| v.map(|v| format!("{v:.2}{unit}"));
    let mut lines: Vec<String> = Vec::new();
    if let Some(d) = s.deliveries_per_s {
        lines.extend(fanout_lines(r, d));
    }
    for (name, p) in [
        ("latency (ts)", &s.latency_ms),
        ("latency (send)", &s.send_latency_ms),
        ("init", &s.init_latency_ms),
    ] {
        if let Some(p) = p {
            lines.push(format!(
                "{name} ms: p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} (n={})",
                p.p50, p.p90, p.p99, p.p999, p.max, p.count
            ));
        }
    }
    for (name, v) in [
        ("upgrades/s", opt(s.upgrades_per_s, "")),
        ("cycles/s", opt(s.cycles_per_s, "")),
        (
            "RSS per connection",
            s.rss_per_connection_bytes
                .map(|b| format!("{:.2} KiB", b / 1024.0)),
        ),
        (
            "server CPU per connection",
            opt(s.cpu_us_per_connection_s, " µs/s"),
        ),
        (
            "server CPU per 1k deliveries",
            opt(s.server_cpu_ms_per_1k_deliveries, " ms"),
        ),
        ("server CPU", opt(s.server_cpu_s, " s")),
        ("other (Redis) CPU", opt(s.other_cpu_s, " s")),
        (
            "server peak RSS",
            s.server_rss_bytes
                .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0)),
        ),
    ] {
        if let Some(v) = v {
            lines.push(format!("{name}: {v}"));
        }
    }
    lines.push(format!(
        "disconnects {}, connect errors {}",
        s.disconnects, s.connect_errors
    ));
    lines.push(format!(
        "tool: {} workers, {:.2} CPU s, {} frames, {} ns/frame, busiest worker {:.2} cores",
        r.tool.workers,
        r.tool.cpu_s,
        r.tool.frames,
        r.tool
            .ns_per_frame
            .map_or("-".to_owned(), |n| format!("{n:.0}")),
        r.tool.max_worker_cores
    ));
    lines.push(format!("limit: {} — {}", r.limit.verdict, r.limit.reason));
    if let Some(soak) = &r.soak {
        lines.extend(describe_soak(soak));
    }
    for line in lines {
        println!("  {line}");
    }
}

/// The fan-out lines: deliveries against the offer, the books, per-viewer rates, system
/// comments, and the headline latency and CPU.
fn fanout_lines(r: &RunResult, deliveries_per_s: f64) -> Vec<String> {
    let s = &r.summary;
    let d = deliveries_per_s;
    let mut lines = Vec::new();
    lines.push(format!(
        "deliveries/s {d:.0} (offered {:.0}), comments sent {} acknowledged {}, frames {}, losses {}, duplicates {}, order violations {}",
        r.params["offered_deliveries_per_s"].as_f64().unwrap_or(0.0),
        s.sent_comments.unwrap_or(0),
        s.accepted_comments.unwrap_or(0),
        s.frames.unwrap_or(0),
        s.losses.unwrap_or(0),
        s.duplicates.unwrap_or(0),
        s.order_violations.unwrap_or(0)
    ));
    lines.push(format!(
        "delivered {} comments in {} frames ({} per frame), thinned (skipped) {} ({:.0}/s), lost {}, excess {}",
        s.deliveries.unwrap_or(0),
        s.frames.unwrap_or(0),
        s.comments_per_frame
            .map_or("-".to_owned(), |c| format!("{c:.2}")),
        s.skipped.unwrap_or(0),
        s.skipped_per_s.unwrap_or(0.0),
        s.losses.unwrap_or(0),
        s.excess.unwrap_or(0),
    ));
    if let Some(bytes) = s.wire_bytes {
        lines.push(format!(
            "wire bytes read by viewers {bytes} ({:.1} MiB), {} per delivery (viewers offered deflate: {})",
            bytes as f64 / 1048576.0,
            s.wire_bytes_per_delivery
                .map_or("-".to_owned(), |b| format!("{b:.1}")),
            if r.params["deflate"].as_bool().unwrap_or(false) {
                "yes"
            } else {
                "no"
            }
        ));
    }
    if let Some(u) = &s.user_per_viewer_per_s {
        let asked = r.params["max_rate"].as_u64().filter(|&n| n > 0);
        lines.push(format!(
            "user comments per viewer per second: mean {:.2}, min {:.2}, max {:.2} (offered {:.2}, max_rate {})",
            u.mean,
            u.min,
            u.max,
            s.offered_user_per_viewer_per_s.unwrap_or(0.0),
            asked.map_or("not asked".to_owned(), |n| n.to_string())
        ));
    }
    if let Some(n) = s.shadowed_comments.filter(|&n| n > 0) {
        lines.push(format!(
            "shadowed comments accepted {n} (delivered to their posters only; {} blocked terms per stream)",
            r.params["blocked_terms"].as_u64().unwrap_or(0)
        ));
    }
    if s.system_sent_comments.is_some_and(|n| n > 0) {
        lines.push(format!(
            "system comments sent {} accepted {} refused {}, received {} ({}), lost {}",
            s.system_sent_comments.unwrap_or(0),
            s.system_accepted_comments.unwrap_or(0),
            s.system_rejected_comments.unwrap_or(0),
            s.system_deliveries.unwrap_or(0),
            s.system_received_pct
                .map_or("-".to_owned(), |p| format!("{p:.2} %")),
            s.system_losses.unwrap_or(0),
        ));
    }
    if let (Some(p), Some(cpu)) = (&s.latency_ms, s.server_cpu_ms_per_1k_deliveries) {
        lines.push(format!(
            "p99 publish→receive {:.2} ms, server CPU per 1k delivered {cpu:.2} ms",
            p.p99
        ));
    }
    lines
}

/// The report as lines for the terminal: one per sample, then the verdict.
pub(crate) fn describe_soak(report: &SoakReport) -> Vec<String> {
    let mib = |b: Option<u64>| b.map_or("-".to_owned(), |b| format!("{:.1}", b as f64 / 1048576.0));
    let count = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let mut lines = vec![
        "soak samples: t (s) | per instance: RSS MiB / subscribed / connections | Redis: channels / keys / MiB"
            .to_owned(),
    ];
    for s in report.samples.iter().chain(std::iter::once(&report.after)) {
        let instances: Vec<String> = s
            .instances
            .iter()
            .map(|i| {
                format!(
                    "{} {} / {} / {}",
                    i.name,
                    mib(i.rss_bytes),
                    count(i.subscribed),
                    count(i.connections)
                )
            })
            .collect();
        let channels: u64 = s.redis.iter().map(|n| n.shard_channels).sum();
        let keys: u64 = s.redis.iter().map(|n| n.keys).sum();
        let memory: u64 = s.redis.iter().map(|n| n.used_memory_bytes).sum();
        lines.push(format!(
            "  {:>7.0} | {} | {channels} / {keys} / {}",
            s.t_s,
            instances.join(" | "),
            mib(Some(memory))
        ));
    }
    for g in &report.growth {
        lines.push(format!(
            "RSS {}: {} MiB at {:.0} s → {} MiB at {:.0} s ({:+.2} %), peak {} MiB",
            g.name,
            mib(Some(g.baseline_bytes)),
            g.baseline_t_s,
            mib(Some(g.last_bytes)),
            g.last_t_s,
            g.growth_pct,
            mib(Some(g.max_bytes))
        ));
    }
    let m = &report.moderation;
    lines.push(format!(
        "moderation: {} rounds, {} deleted ({} with nothing old enough), {} banned, {} unbanned, {} failures",
        m.rounds, m.deleted, m.nothing_to_delete, m.banned, m.unbanned, m.failures
    ));
    lines.extend(m.first_failures.iter().map(|f| format!("  failure: {f}")));
    lines.push(format!(
        "after everyone left: {} subscriptions held by instances, {} channels in Redis",
        report.leaked_subscriptions, report.redis_channels_left
    ));
    if report.failures.is_empty() {
        lines.push("soak: passed".to_owned());
    } else {
        lines.extend(report.failures.iter().map(|f| format!("soak FAILED: {f}")));
    }
    lines
}

/// Prints the chaos soak's figures and verdict.
pub(crate) fn print_chaos(r: &ChaosResult) {
    let d = &r.delivery;
    println!(
        "chaos ({}), seed {}: {:.0} s, {} faults",
        r.commit,
        r.seed,
        r.duration_s,
        r.faults.len()
    );
    for f in &r.faults {
        println!(
            "  {:>6.1} s {:<13} {}: reconnected {}, resumed:false {}, 4002 {}, longest gap {:.1} s, declared missing {}, silent {}",
            f.t_s,
            f.kind,
            f.target,
            f.reconnected,
            f.resumed_false,
            f.resync_4002,
            f.longest_gap_ms as f64 / 1000.0,
            f.declared_missing,
            f.silent_missing
        );
    }
    println!(
        "viewers {}, connections {}, published {} (+{} whose answer was lost), received {}, skipped {}",
        d.viewers, d.connections, d.published, d.unacknowledged, d.received, d.skipped
    );
    println!(
        "accounted gaps {} ({} comments declared missing), silent gaps {} ({} comments), duplicates {}, reorders {}, unfinished {}",
        d.accounted_gaps,
        d.declared_missing,
        d.silent_gaps,
        d.silent_missing,
        d.duplicates,
        d.reorders,
        d.unfinished
    );
    if let Some(p) = &r.latency_ms {
        println!(
            "delivery latency ms: p50 {:.1} p99 {:.1} max {:.0}",
            p.p50, p.p99, p.max
        );
    }
    println!(
        "min ready instances {} ({} outside full Redis restarts), zero-ready polls {}",
        r.readiness.min_ready,
        r.readiness.min_ready_outside_redis_restarts,
        r.readiness.zero_ready_polls
    );
    if r.failures.is_empty() {
        println!("verdict: PASSED (silent gaps: 0)");
    } else {
        for f in &r.failures {
            println!("verdict: FAILED: {f}");
        }
    }
}
