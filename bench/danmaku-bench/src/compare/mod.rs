//! The side-by-side table: for each case run against both danmaku and the Socket.IO peer (and
//! Sockudo, target `pusher`), the headline figures of each and their ratios; and where the case
//! also ran against the floor (`danmaku-bench floor`, a run labelled `floor`), danmaku's CPU
//! per delivery as a multiple of the floor's. Runs labelled `redis-plain` and `redis-tls` (danmaku on plain Redis and on
//! Redis over TLS, the same load, interleaved) get a section of their own, [`tls`]: TLS /
//! plain; so do runs labelled `ws-plain` and `ws-deflate` (viewers offering WebSocket
//! compression or not, `bench/compression`), [`deflate`]: compressed / plain. It reads
//! `result` only.

mod deflate;
mod tls;

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::result::RunResult;

use deflate::{DeflateRuns, WS_DEFLATE, WS_PLAIN, deflate_table};
use tls::{TlsRuns, tls_table};

/// How a figure is read from a result.
pub(super) type Read = fn(&RunResult) -> Option<f64>;

/// One row of the table: a measure, how to read it from a result, and which way is better.
struct Measure {
    name: &'static str,
    read: Read,
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
            Measure {
                name: "wire bytes per delivery",
                read: |r| r.summary.wire_bytes_per_delivery,
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

pub(super) fn format_value(v: Option<f64>) -> String {
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
    sockudo: Option<&'a RunResult>,
    floor: Option<&'a RunResult>,
}

/// The label of a run of danmaku on plain Redis in a TLS case.
pub(crate) const REDIS_PLAIN: &str = "redis-plain";
/// The label of a run of danmaku on Redis over TLS in a TLS case.
pub(crate) const REDIS_TLS: &str = "redis-tls";

/// A markdown table of danmaku/peer ratios, one block of rows per case, and danmaku/Sockudo
/// ratios beside them when any run is Sockudo's (target `pusher`). With several runs of the
/// same case and side, the last one given counts. Runs labelled [`REDIS_PLAIN`] and
/// [`REDIS_TLS`] go to a second table, [`tls_table`], where every run counts; runs labelled
/// [`WS_PLAIN`] and [`WS_DEFLATE`] to a third, [`deflate_table`] (means over runs).
pub(crate) fn table(runs: &[RunResult]) -> String {
    let mut cases: BTreeMap<(String, String), Sides<'_>> = BTreeMap::new();
    let mut tls_cases: BTreeMap<String, TlsRuns<'_>> = BTreeMap::new();
    let mut deflate_cases: BTreeMap<String, DeflateRuns<'_>> = BTreeMap::new();
    for run in runs {
        let case = run.params["case"].as_str().unwrap_or("").to_owned();
        match run.label.as_str() {
            REDIS_PLAIN => tls_cases.entry(case).or_default().plain.push(run),
            REDIS_TLS => tls_cases.entry(case).or_default().tls.push(run),
            WS_PLAIN => deflate_cases.entry(case).or_default().plain.push(run),
            WS_DEFLATE => deflate_cases.entry(case).or_default().deflate.push(run),
            _ => {
                let entry = cases.entry((case, run.scenario.clone())).or_default();
                match (run.label.as_str(), run.target.as_str()) {
                    ("floor", _) => entry.floor = Some(run),
                    (_, "danmaku") => entry.danmaku = Some(run),
                    (_, "pusher") => entry.sockudo = Some(run),
                    _ => entry.peer = Some(run),
                }
            }
        }
    }
    let three = cases.values().any(|s| s.sockudo.is_some());
    // A run of TLS or compression cases only has no danmaku/peer table.
    let mut out = if cases.is_empty() && !(tls_cases.is_empty() && deflate_cases.is_empty()) {
        String::new()
    } else if three {
        String::from(
            "| case | measure | danmaku | socket.io peer | danmaku / peer | sockudo | danmaku / sockudo | best |\n|---|---|---:|---:|---:|---:|---:|---|\n",
        )
    } else {
        String::from(
            "| case | measure | danmaku | socket.io peer | danmaku / peer | better |\n|---|---|---:|---:|---:|---|\n",
        )
    };
    for ((case, scenario), sides) in &cases {
        case_rows(&mut out, case, scenario, sides, three);
    }
    if !tls_cases.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&tls_table(&tls_cases));
    }
    if !deflate_cases.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&deflate_table(&deflate_cases));
    }
    out
}

/// One row: case, measure, danmaku, peer, danmaku / peer, Sockudo, danmaku / Sockudo, and the
/// last cell (which side is better, or why); the Sockudo cells only in a `three`-side table.
fn row(out: &mut String, cells: [&str; 8], three: bool) {
    let kept = cells
        .iter()
        .enumerate()
        .filter(|&(i, _)| three || !(5..=6).contains(&i))
        .map(|(_, c)| *c);
    let _ = writeln!(out, "| {} |", kept.collect::<Vec<_>>().join(" | "));
}

/// `a / b`, or a dash.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_owned(),
    }
}

/// Which of the sides that have a value is better ("equal" when they all tie); nothing with
/// fewer than two values.
fn best(values: &[(&str, Option<f64>)], higher_is_better: bool) -> String {
    let have: Vec<(&str, f64)> = values.iter().filter_map(|&(n, v)| Some((n, v?))).collect();
    if have.len() < 2 {
        return String::new();
    }
    let top = have
        .iter()
        .map(|&(_, v)| v)
        .reduce(|a, b| if (b > a) == higher_is_better { b } else { a })
        .expect("two values");
    let winners: Vec<&str> = have
        .iter()
        .filter(|&&(_, v)| v == top)
        .map(|&(n, _)| n)
        .collect();
    if winners.len() == have.len() {
        "equal".to_owned()
    } else {
        winners.join(" = ")
    }
}

/// The rows of one case: each measure of its scenario for danmaku, the peer and (in a
/// `three`-side table) Sockudo, danmaku's CPU per delivery against the floor's, what Sockudo's
/// run lacked, and each run's limit.
fn case_rows(out: &mut String, case: &str, scenario: &str, sides: &Sides<'_>, three: bool) {
    let (ours, peer, sockudo) = (sides.danmaku, sides.peer, sides.sockudo);
    for m in measures(scenario) {
        let read = |r: Option<&RunResult>| r.and_then(|r| (m.read)(r));
        let (a, b, c) = (read(ours), read(peer), read(sockudo));
        let mut named = vec![("danmaku", a), ("peer", b)];
        if three {
            named.push(("sockudo", c));
        }
        let cells = [&format_value(a), &format_value(b), &ratio(a, b)];
        let more = [
            &format_value(c),
            &ratio(a, c),
            &best(&named, m.higher_is_better),
        ];
        row(
            out,
            [
                case, m.name, cells[0], cells[1], cells[2], more[0], more[1], more[2],
            ],
            three,
        );
    }
    if let Some(floor) = sides.floor {
        let cpu = |r: &RunResult| r.summary.server_cpu_ms_per_1k_deliveries;
        let (a, f) = (ours.and_then(cpu), cpu(floor));
        let times = match (a, f) {
            (Some(a), Some(f)) if f != 0.0 => format!("{:.2}× the floor", a / f),
            _ => "–".to_owned(),
        };
        let floor = format!("{} (floor)", format_value(f));
        let measure = "CPU per 1k deliveries, floor (ms)";
        row(
            out,
            [case, measure, &format_value(a), &floor, &times, "", "", ""],
            three,
        );
    }
    if three {
        sockudo_notes(out, case, ours, sockudo);
    }
    let named = [
        ("danmaku", ours),
        ("peer", peer),
        ("sockudo", sockudo),
        ("floor", sides.floor),
    ];
    for (who, run) in named {
        if let Some(run) = run {
            let reason = run.limit.reason.replace('|', "/");
            let measure = format!("limit ({who})");
            row(
                out,
                [case, &measure, &run.limit.verdict, "", "", "", "", &reason],
                three,
            );
        }
    }
}

/// What a case's Sockudo side lacked: its run (not run, or failed), or the history danmaku's
/// viewers got in their `init` (a Pusher subscription carries none).
fn sockudo_notes(
    out: &mut String,
    case: &str,
    ours: Option<&RunResult>,
    sockudo: Option<&RunResult>,
) {
    let history = |r: &RunResult| r.params["history"].as_u64().unwrap_or(0);
    match (ours, sockudo) {
        (_, None) => {
            let why = "no run of this case against Sockudo (not run, or it failed: see the log)";
            row(out, [case, "sockudo", "", "", "", "–", "", why], true);
        }
        (Some(ours), Some(s)) if history(ours) > history(s) => {
            let why = format!(
                "Sockudo's init carried no history (a Pusher subscription sends none), danmaku's {} comments",
                history(ours)
            );
            row(
                out,
                [case, "note (sockudo)", "", "", "", "", "", &why],
                true,
            );
        }
        _ => {}
    }
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

    fn tls_run(label: &str, started_at: &str, cpu: f64, losses: u64) -> RunResult {
        let mut r = labelled("danmaku", label, 200_000.0, 60.0);
        r.params = serde_json::json!({"case": "tls-2k"});
        r.started_at = started_at.into();
        r.summary.server_cpu_ms_per_1k_deliveries = Some(cpu);
        r.summary.losses = Some(losses);
        r.summary.duplicates = Some(0);
        r.summary.order_violations = Some(0);
        r.summary.duration_s = 15.0;
        r.summary.other_cpu_s = Some(0.45);
        r.summary.server_cpu_s = Some(cpu * 3.0);
        r.summary.frames = Some(2_000_000);
        r.summary.comments_per_frame = Some(1.5);
        r
    }

    #[test]
    fn tls_runs_are_paired_with_plain_runs_in_their_own_section_by_start_time() {
        // Given out of order (as a glob may list them): pairs follow the start times.
        let t = table(&[
            tls_run(REDIS_TLS, "2026-12-01T10:03:00Z", 2.3, 0),
            tls_run(REDIS_PLAIN, "2026-12-01T10:02:00Z", 2.2, 0),
            tls_run(REDIS_TLS, "2026-12-01T10:01:00Z", 2.1, 0),
            tls_run(REDIS_PLAIN, "2026-12-01T10:00:00Z", 2.0, 0),
        ]);
        assert!(
            !t.contains("| case | measure | danmaku |"),
            "no danmaku/peer table without such runs: {t}"
        );
        assert!(t.contains("### Redis over TLS against plain Redis"), "{t}");
        assert!(
            t.contains("| tls-2k | CPU per 1k deliveries (ms), pair 1 | 2.00 | 2.10 | 1.05× |"),
            "{t}"
        );
        assert!(
            t.contains("| tls-2k | CPU per 1k deliveries (ms), pair 2 | 2.20 | 2.30 | 1.05× |"),
            "{t}"
        );
        assert!(
            t.contains("| tls-2k | CPU per 1k deliveries, TLS / plain (ms, means; runs: 2 plain, 2 TLS) | 2.10 | 2.20 | 1.05× |"),
            "{t}"
        );
        assert!(
            t.contains("| tls-2k | CPU per 1k deliveries, spread between runs of one kind ((max − min) / mean) | 9.5% | 9.1% | |"),
            "{t}"
        );
        assert!(
            t.contains("| tls-2k | CPU per 1k frames (ms, mean) | 3.15 | 3.30 | 1.05× |"),
            "{t}"
        );
        assert!(
            t.contains("| tls-2k | comments per frame (mean) | 1.50 | 1.50 | 1.00× |"),
            "{t}"
        );
        assert!(
            t.contains("| tls-2k | Redis CPU (cores, mean) | 0.03 | 0.03 | 1.00× |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| tls-2k | lost / duplicated / reordered (all runs) | 0 / 0 / 0 | 0 / 0 / 0 | |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| tls-2k | limit (TLS, run 2) |  | server: why | |"),
            "{t}"
        );
    }

    #[test]
    fn tls_runs_beside_a_danmaku_peer_pair_are_not_taken_for_its_danmaku_side() {
        let mut plain = tls_run(REDIS_PLAIN, "2026-12-01T10:00:00Z", 2.0, 0);
        plain.params = serde_json::json!({"case": "hot"});
        let mut tls = tls_run(REDIS_TLS, "2026-12-01T10:01:00Z", 2.4, 3);
        tls.params = serde_json::json!({"case": "hot"});
        // The TLS runs come last: were they danmaku runs, the last would count.
        let t = table(&[
            run("danmaku", 200_000.0, 4.0),
            run("socketio", 20_000.0, 40.0),
            plain,
            tls,
        ]);
        assert!(
            t.contains("| hot | p99 latency (ms) | 4.00 | 40.00 | 0.10× | danmaku |"),
            "{t}"
        );
        assert!(
            t.contains("| hot | CPU per 1k deliveries, TLS / plain (ms, means; runs: 1 plain, 1 TLS) | 2.00 | 2.40 | 1.20× |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| hot | lost / duplicated / reordered (all runs) | 0 / 0 / 0 | 3 / 0 / 0 | |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| hot | CPU per 1k deliveries, spread between runs of one kind ((max − min) / mean) | – | – | |"),
            "one run of a kind has no spread: {t}"
        );
    }

    fn ws_run(label: &str, case: &str, viewers: u64, bytes: f64, cpu: f64) -> RunResult {
        let mut r = labelled("danmaku", label, 200_000.0, 20.0);
        r.params = serde_json::json!({"case": case, "viewers": viewers});
        r.summary.offered_comments_per_s = Some(200.0);
        r.summary.comments_per_frame = Some(5.0);
        r.summary.wire_bytes_per_delivery = Some(bytes);
        r.summary.server_cpu_ms_per_1k_deliveries = Some(cpu);
        r.summary.losses = Some(0);
        r.summary.duplicates = Some(0);
        r.summary.order_violations = Some(0);
        r.summary.skipped = Some(0);
        r
    }

    #[test]
    fn compressed_runs_get_a_row_per_case_with_their_ratios_to_plain_runs() {
        let t = table(&[
            ws_run(WS_DEFLATE, "10k-w100", 10_000, 60.0, 1.0),
            ws_run(WS_PLAIN, "10k-w100", 10_000, 240.0, 2.0),
            ws_run(WS_PLAIN, "1k-w025", 1_000, 250.0, 4.0),
            ws_run(WS_DEFLATE, "1k-w025", 1_000, 100.0, 3.0),
            ws_run(WS_DEFLATE, "1k-w025", 1_000, 50.0, 3.0),
        ]);
        assert!(!t.contains("| case | measure | danmaku |"), "{t}");
        assert!(t.contains("### WebSocket compression"), "{t}");
        assert!(
            t.contains("| 1k-w025 | 1000 | 200.00 | 5.00 · 5.00 | 250.00 | 75.00 | 0.30× | 4.00 | 3.00 | 0.75× | 20.00 | 20.00 | 1.00× | 0/0/0 · 0/0/0 | 0 · 0 | server · server, server |"),
            "means over a kind's runs: {t}"
        );
        let (small, big) = (t.find("| 1k-w025").unwrap(), t.find("| 10k-w100").unwrap());
        assert!(small < big, "rows in order of viewers: {t}");
        assert!(
            t.contains("| 10k-w100 | 10000 | 200.00 | 5.00 · 5.00 | 240.00 | 60.00 | 0.25× |"),
            "{t}"
        );
    }

    #[test]
    fn a_floor_run_gives_danmaku_s_cpu_per_delivery_as_a_multiple_of_it() {
        let mut ours = run("danmaku", 50_000.0, 4.0);
        ours.summary.server_cpu_ms_per_1k_deliveries = Some(12.0);
        let mut floor = labelled("danmaku", "floor", 50_000.0, 3.0);
        floor.summary.server_cpu_ms_per_1k_deliveries = Some(10.0);
        let t = table(&[ours, floor]);
        assert!(
            t.contains("| hot | CPU per 1k deliveries, floor (ms) | 12.00 | 10.00 (floor) | 1.20× the floor |  |"),
            "{t}"
        );
        assert!(t.contains("limit (floor)"), "{t}");
        assert!(
            t.contains("| hot | deliveries/s | 50000 | – | – |  |"),
            "the floor is not the peer: {t}"
        );
    }

    #[test]
    fn sockudo_runs_get_columns_of_their_own_with_danmaku_s_ratio_to_them() {
        let mut sockudo = labelled("pusher", "sockudo", 100_000.0, 8.0);
        sockudo.limit.reason = "a Sockudo instance (one runtime worker) was CPU-bound".into();
        let storm = |target: &str, history: u64| {
            let mut r = labelled(target, target, 0.0, 0.0);
            r.scenario = "storm".into();
            r.params = serde_json::json!({"case": "storm-2k", "history": history});
            r.summary.upgrades_per_s = Some(if target == "danmaku" { 4000.0 } else { 2000.0 });
            r
        };
        let mut lone = run("danmaku", 1_000.0, 1.0);
        lone.params = serde_json::json!({"case": "idle-only"});
        let t = table(&[
            run("danmaku", 200_000.0, 4.0),
            run("socketio", 20_000.0, 40.0),
            sockudo,
            storm("danmaku", 20),
            storm("socketio", 20),
            storm("pusher", 0),
            lone,
        ]);
        assert!(
            t.starts_with("| case | measure | danmaku | socket.io peer | danmaku / peer | sockudo | danmaku / sockudo | best |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| hot | deliveries/s | 200000 | 20000 | 10.00× | 100000 | 2.00× | danmaku |"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "| hot | p99 latency (ms) | 4.00 | 40.00 | 0.10× | 8.00 | 0.50× | danmaku |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| hot | limit (sockudo) | server |  |  |  |  | a Sockudo instance (one runtime worker) was CPU-bound |"),
            "{t}"
        );
        assert!(
            t.contains("| storm-2k | upgrades/s | 4000 | 2000 | 2.00× | 2000 | 2.00× | danmaku |"),
            "{t}"
        );
        assert!(
            t.contains("| storm-2k | note (sockudo) |  |  |  |  |  | Sockudo's init carried no history (a Pusher subscription sends none), danmaku's 20 comments |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| idle-only | sockudo |  |  |  | – |  | no run of this case against Sockudo"
            ),
            "a case Sockudo did not run says so: {t}"
        );
    }

    #[test]
    fn the_best_side_is_named_and_ties_are_told() {
        assert_eq!(best(&[("a", Some(1.0)), ("b", Some(2.0))], true), "b");
        assert_eq!(best(&[("a", Some(1.0)), ("b", Some(2.0))], false), "a");
        assert_eq!(best(&[("a", Some(1.0)), ("b", Some(1.0))], true), "equal");
        let three = [("a", Some(3.0)), ("b", Some(1.0)), ("c", Some(3.0))];
        assert_eq!(best(&three, true), "a = c");
        assert_eq!(best(&[("a", Some(1.0)), ("b", None)], true), "");
    }
}
