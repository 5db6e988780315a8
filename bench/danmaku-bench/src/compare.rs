//! The side-by-side table: for each case run against both danmaku and the Socket.IO peer, the
//! headline figures of each and their ratio.

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

/// A markdown table of danmaku/peer ratios, one block of rows per case. With several runs of
/// the same case and target, the last one given counts.
pub fn table(runs: &[RunResult]) -> String {
    // (case, scenario) → (danmaku run, peer run)
    type Pair<'a> = (Option<&'a RunResult>, Option<&'a RunResult>);
    let mut cases: BTreeMap<(String, String), Pair<'_>> = BTreeMap::new();
    for run in runs {
        let case = run.params["case"].as_str().unwrap_or("").to_owned();
        let entry = cases.entry((case, run.scenario.clone())).or_default();
        match run.target.as_str() {
            "danmaku" => entry.0 = Some(run),
            _ => entry.1 = Some(run),
        }
    }
    let mut out = String::from(
        "| case | measure | danmaku | socket.io peer | danmaku / peer | better |\n|---|---|---:|---:|---:|---|\n",
    );
    for ((case, scenario), (ours, peer)) in &cases {
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
        for (who, run) in [("danmaku", ours), ("peer", peer)] {
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
        RunResult {
            scenario: "fanout".into(),
            target: target.into(),
            label: target.into(),
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
    }
}
