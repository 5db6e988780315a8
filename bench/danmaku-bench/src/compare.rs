//! The side-by-side table: for each case run against both danmaku and the Socket.IO peer, the
//! headline figures of each and their ratio; and where the case also ran against the floor
//! (`danmaku-bench floor`, a run labelled `floor`), danmaku's CPU per delivery as a multiple
//! of the floor's.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::result::RunResult;

/// One row of the table: a measure, how to read it from a result, and which way is better.
struct Measure {
    name: &'static str,
    read: fn(&RunResult) -> Option<f64>,
    higher_is_better: bool,
}

fn measures(scenario: &str) -> Vec<Measure> {
    match scenario {
        "idle" => vec![
            Measure {
                name: "RSS per idle connection (KiB)",
                read: |r| r.summary.rss_per_connection_bytes.map(|b| b / 1024.0),
                higher_is_better: false,
            },
            Measure {
                name: "CPU per idle connection (µs/s)",
                read: |r| r.summary.cpu_us_per_connection_s,
                higher_is_better: false,
            },
        ],
        "fanout" => vec![
            Measure {
                name: "deliveries/s",
                read: |r| r.summary.deliveries_per_s,
                higher_is_better: true,
            },
            Measure {
                name: "p50 latency (ms)",
                read: |r| r.summary.latency_ms.as_ref().map(|p| p.p50),
                higher_is_better: false,
            },
            Measure {
                name: "p99 latency (ms)",
                read: |r| r.summary.latency_ms.as_ref().map(|p| p.p99),
                higher_is_better: false,
            },
            Measure {
                name: "CPU per 1k deliveries (ms)",
                read: |r| r.summary.server_cpu_ms_per_1k_deliveries,
                higher_is_better: false,
            },
            Measure {
                name: "losses",
                read: |r| r.summary.losses.map(|l| l as f64),
                higher_is_better: false,
            },
        ],
        "storm" => vec![
            Measure {
                name: "upgrades/s",
                read: |r| r.summary.upgrades_per_s,
                higher_is_better: true,
            },
            Measure {
                name: "init p99 (ms)",
                read: |r| r.summary.init_latency_ms.as_ref().map(|p| p.p99),
                higher_is_better: false,
            },
        ],
        "churn" => vec![
            Measure {
                name: "cycles/s",
                read: |r| r.summary.cycles_per_s,
                higher_is_better: true,
            },
            Measure {
                name: "init p99 (ms)",
                read: |r| r.summary.init_latency_ms.as_ref().map(|p| p.p99),
                higher_is_better: false,
            },
        ],
        _ => Vec::new(),
    }
}

fn format_value(v: Option<f64>) -> String {
    match v {
        None => "–".to_owned(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The runs of one case.
#[derive(Default)]
struct Sides<'a> {
    danmaku: Option<&'a RunResult>,
    peer: Option<&'a RunResult>,
    floor: Option<&'a RunResult>,
}

/// A markdown table of danmaku/peer ratios, one block of rows per case. With several runs of
/// the same case and side, the last one given counts.
pub fn table(runs: &[RunResult]) -> String {
    let mut cases: BTreeMap<(String, String), Sides<'_>> = BTreeMap::new();
    for run in runs {
        let case = run.params["case"].as_str().unwrap_or("").to_owned();
        let entry = cases.entry((case, run.scenario.clone())).or_default();
        match (run.label.as_str(), run.target.as_str()) {
            ("floor", _) => entry.floor = Some(run),
            (_, "danmaku") => entry.danmaku = Some(run),
            _ => entry.peer = Some(run),
        }
    }
    let mut out = String::from(
        "| case | measure | danmaku | socket.io peer | danmaku / peer | better |\n|---|---|---:|---:|---:|---|\n",
    );
    for ((case, scenario), sides) in &cases {
        let (ours, peer) = (sides.danmaku, sides.peer);
        for m in measures(scenario) {
            let a = ours.and_then(|r| (m.read)(r));
            let b = peer.and_then(|r| (m.read)(r));
            let ratio = match (a, b) {
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}×", a / b),
                _ => "–".to_owned(),
            };
            let better = match (a, b) {
                (Some(a), Some(b)) if a == b => "equal",
                (Some(a), Some(b)) if (a > b) == m.higher_is_better => "danmaku",
                (Some(_), Some(_)) => "peer",
                _ => "",
            };
            let _ = writeln!(
                out,
                "| {case} | {} | {} | {} | {ratio} | {better} |",
                m.name,
                format_value(a),
                format_value(b)
            );
        }
        if let Some(floor) = sides.floor {
            let cpu = |r: &RunResult| r.summary.server_cpu_ms_per_1k_deliveries;
            let (a, f) = (ours.and_then(cpu), cpu(floor));
            let ratio = match (a, f) {
                (Some(a), Some(f)) if f != 0.0 => format!("{:.2}× the floor", a / f),
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {case} | CPU per 1k deliveries, floor (ms) | {} | {} (floor) | {ratio} | |",
                format_value(a),
                format_value(f)
            );
        }
        for (who, run) in [("danmaku", ours), ("peer", peer), ("floor", sides.floor)] {
            if let Some(run) = run {
                let _ = writeln!(
                    out,
                    "| {case} | limit ({who}) | {} | | | {} |",
                    run.limit.verdict,
                    run.limit.reason.replace('|', "/")
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{Limit, Percentiles, Summary, ToolCost};

    fn run(target: &str, deliveries: f64, p99: f64) -> RunResult {
        labelled(target, target, deliveries, p99)
    }

    fn labelled(target: &str, label: &str, deliveries: f64, p99: f64) -> RunResult {
        RunResult {
            scenario: "fanout".into(),
            target: target.into(),
            label: label.into(),
            commit: "abc".into(),
            started_at: "2026-11-22T00:00:00Z".into(),
            urls: vec![],
            params: serde_json::json!({"case": "hot"}),
            summary: Summary {
                deliveries_per_s: Some(deliveries),
                latency_ms: Some(Percentiles {
                    p99,
                    ..Percentiles::default()
                }),
                ..Summary::default()
            },
            timeline: vec![],
            latency_cdf: vec![],
            init_cdf: vec![],
            instances: vec![],
            tool: ToolCost::default(),
            soak: None,
            limit: Limit {
                verdict: "server".into(),
                reason: "why".into(),
            },
        }
    }

    #[test]
    fn pairs_runs_by_case_and_reads_ratios_the_right_way_round() {
        let t = table(&[
            run("danmaku", 200_000.0, 4.0),
            run("socketio", 20_000.0, 40.0),
        ]);
        assert!(
            t.contains("| hot | deliveries/s | 200000 | 20000 | 10.00× | danmaku |"),
            "{t}"
        );
        assert!(
            t.contains("| hot | p99 latency (ms) | 4.00 | 40.00 | 0.10× | danmaku |"),
            "{t}"
        );
        assert!(t.contains("limit (peer)"), "{t}");
        assert!(!t.contains("floor"), "{t}");
    }

    #[test]
    fn a_floor_run_gives_danmaku_s_cpu_per_delivery_as_a_multiple_of_it() {
        let mut ours = run("danmaku", 50_000.0, 4.0);
        ours.summary.server_cpu_ms_per_1k_deliveries = Some(12.0);
        let mut floor = labelled("danmaku", "floor", 50_000.0, 3.0);
        floor.summary.server_cpu_ms_per_1k_deliveries = Some(10.0);
        let t = table(&[ours, floor]);
        assert!(
            t.contains("| hot | CPU per 1k deliveries, floor (ms) | 12.00 | 10.00 (floor) | 1.20× the floor | |"),
            "{t}"
        );
        assert!(t.contains("limit (floor)"), "{t}");
        assert!(
            t.contains("| hot | deliveries/s | 50000 | – | – |  |"),
            "the floor is not the peer: {t}"
        );
    }
}
