//! The HTML report: one self-contained page (inline CSS and SVG, no JavaScript, no external
//! assets) comparing runs, grouped by scenario. Each group gets a summary table (one row per run)
//! and line plots with one line per run.
//!
//! Plots are drawn with plotters' SVG backend. Data from results is never trusted: non-finite
//! values become gaps, empty series are skipped, degenerate ranges are widened, and a plot that
//! fails to draw is replaced by a short `plot failed: …` note instead of panicking.
//!
//! Its parts: [`table`] (the summary table), [`plots`] (what each plot shows, from the
//! results), [`draw`] (plots drawn as SVG), [`format`] (numbers and HTML text). It reads
//! `result` only.

mod chaos;
mod draw;
mod format;
mod plots;
mod table;

use std::fmt::Write as _;

use crate::result::RunResult;

use draw::render_plot;
use format::{escape, unique};
use plots::{InstanceMetric, cdf_plot, instance_plot, latency_timeline_plot, throughput_plot};
use table::summary_table;

pub(crate) use chaos::render as render_chaos;

const CSS: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px auto;
  max-width: 1200px; padding: 0 16px; color: #222; }
h1 { margin-bottom: 4px; }
h2 { margin-top: 40px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
.meta { color: #555; margin: 2px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 12px 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.reason { min-width: 220px; }
tbody td:first-child { white-space: nowrap; }
.verdict-tool { color: #b00020; font-weight: 600; }
.verdict-machine { color: #a15c00; font-weight: 600; }
.verdict-server { color: #1b5e20; font-weight: 600; }
figure { margin: 16px 0; }
svg { max-width: 100%; height: auto; }
.plot-failed { color: #b00020; }
details { margin: 8px 0; font-size: 13px; }
pre { background: #f6f6f6; padding: 6px; overflow-x: auto; }
";

/// Renders the report page for `runs`, titled `title`.
pub(crate) fn render(runs: &[RunResult], title: &str) -> String {
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(html, "<title>{}</title>", escape(title));
    let _ = writeln!(html, "<style>{CSS}</style>\n</head>\n<body>");
    html.push_str(&header(runs, title));
    for ((scenario, case), group) in group_by_case(runs) {
        html.push_str(&scenario_section(&scenario, &case, &group));
    }
    html.push_str("</body>\n</html>\n");
    html
}

// ---------------------------------------------------------------------------------------------
// Page structure

/// Title, commits and the span of start dates.
fn header(runs: &[RunResult], title: &str) -> String {
    let mut html = format!("<h1>{}</h1>\n", escape(title));
    if runs.is_empty() {
        html.push_str("<p class=\"meta\">No runs.</p>\n");
        return html;
    }
    let commits = unique(runs.iter().map(|r| r.commit.as_str()));
    let _ = writeln!(
        html,
        "<p class=\"meta\">Commit{}: {}</p>",
        if commits.len() == 1 { "" } else { "s" },
        escape(&commits.join(", "))
    );
    let mut dates: Vec<&str> = runs.iter().map(|r| r.started_at.as_str()).collect();
    dates.sort_unstable();
    let (first, last) = (dates[0], dates[dates.len() - 1]);
    let span = if first == last {
        escape(first)
    } else {
        format!("{} – {}", escape(first), escape(last))
    };
    let _ = writeln!(
        html,
        "<p class=\"meta\">Started: {span} · {} run{}</p>",
        runs.len(),
        if runs.len() == 1 { "" } else { "s" }
    );
    html
}

/// A group's key: the scenario, and the case name runs were given (`--case`, may be empty).
type GroupKey = (String, String);

/// Runs grouped by scenario and case (the runs of one case against different servers are
/// compared), groups in order of first appearance, runs in input order.
fn group_by_case(runs: &[RunResult]) -> Vec<(GroupKey, Vec<&RunResult>)> {
    let mut groups: Vec<(GroupKey, Vec<&RunResult>)> = Vec::new();
    for run in runs {
        let key = (
            run.scenario.clone(),
            run.params["case"].as_str().unwrap_or("").to_owned(),
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(run),
            None => groups.push((key, vec![run])),
        }
    }
    groups
}

/// One scenario (and case): heading, table, parameters, plots.
fn scenario_section(scenario: &str, case: &str, runs: &[&RunResult]) -> String {
    let heading = if case.is_empty() {
        format!("Scenario: {}", escape(scenario))
    } else {
        format!("{} <small>({})</small>", escape(case), escape(scenario))
    };
    let mut html = format!("<section>\n<h2>{heading}</h2>\n");
    html.push_str(&summary_table(runs));
    html.push_str(&params_details(runs));
    let plots = [
        latency_timeline_plot(runs),
        cdf_plot(
            runs,
            "Comment latency CDF (publish → receive)",
            "latency (ms)",
            |r| &r.latency_cdf,
        ),
        cdf_plot(
            runs,
            "init latency CDF (handshake → init)",
            "init latency (ms)",
            |r| &r.init_cdf,
        ),
        throughput_plot(runs, scenario),
        instance_plot(runs, InstanceMetric::Cpu),
        instance_plot(runs, InstanceMetric::Rss),
    ];
    for plot in plots.iter().flatten() {
        if let Some(figure) = render_plot(plot) {
            html.push_str(&figure);
        }
    }
    html.push_str("</section>\n");
    html
}

/// The scenario parameters and URLs of each run, folded away.
fn params_details(runs: &[&RunResult]) -> String {
    let mut html = String::from("<details><summary>Parameters and targets</summary>\n");
    for run in runs {
        let params = serde_json::to_string_pretty(&run.params).unwrap_or_default();
        let _ = writeln!(
            html,
            "<p><b>{}</b> ({}) → {}</p><pre>{}</pre>",
            escape(&run.label),
            escape(&run.target),
            escape(&run.urls.join(", ")),
            escape(&params)
        );
    }
    html.push_str("</details>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{
        CdfPoint, InstanceSample, InstanceSeries, Limit, Percentiles, Summary, Tick, ToolCost,
    };

    fn cdf(scale: f64) -> Vec<CdfPoint> {
        (1..=50)
            .map(|i| {
                let fraction = f64::from(i) / 50.0;
                CdfPoint {
                    ms: scale * (1.0 + 40.0 * fraction.powi(6)),
                    fraction,
                }
            })
            .collect()
    }

    fn instance(name: &str, pid: u32, cpu: f64, rss_mib: u64) -> InstanceSeries {
        let samples = (-2..=10)
            .map(|t| InstanceSample {
                t_s: f64::from(t),
                cpu_cores: if t < 0 {
                    0.05
                } else {
                    cpu + 0.05 * f64::from(t % 3)
                },
                rss_bytes: (rss_mib + (t + 2) as u64) * 1024 * 1024,
            })
            .collect();
        InstanceSeries {
            name: name.into(),
            pid,
            samples,
        }
    }

    /// A fanout run with a 10-second timeline, both CDFs and two instances.
    fn fanout(target: &str, label: &str, rate: u64, lat: f64) -> RunResult {
        let timeline = (1..=10u32)
            .map(|t| Tick {
                t_s: f64::from(t),
                deliveries: rate + 1_000 * u64::from(t % 4),
                frames: rate / 10,
                skipped: 0,
                connected: 10_000,
                upgrades: 0,
                latency_p50_ms: lat + 0.1 * f64::from(t),
                latency_p99_ms: 4.0 * lat + 0.5 * f64::from(t % 3),
                latency_max_ms: 10.0 * lat,
            })
            .collect();
        let pct = |m: f64| Percentiles {
            count: 1_000_000,
            p50: m,
            p90: 2.0 * m,
            p99: 4.0 * m,
            p999: 8.0 * m,
            max: 20.0 * m,
            mean: 1.3 * m,
        };
        RunResult {
            scenario: "fanout".into(),
            target: target.into(),
            label: label.into(),
            commit: "abc1234".into(),
            started_at: "2026-05-01T10:00:00Z".into(),
            urls: vec!["ws://127.0.0.1:8080".into(), "ws://127.0.0.1:8081".into()],
            params: serde_json::json!({ "viewers": 10_000, "rate": 50 }),
            summary: Summary {
                connections: 10_050,
                duration_s: 10.0,
                offered_comments_per_s: Some(50.0),
                accepted_comments: Some(500),
                rejected_comments: Some(0),
                deliveries: Some(rate * 10),
                deliveries_per_s: Some(rate as f64),
                frames: Some(rate),
                losses: Some(0),
                duplicates: Some(0),
                order_violations: Some(0),
                latency_ms: Some(pct(lat)),
                send_latency_ms: Some(pct(lat * 0.8)),
                init_latency_ms: Some(pct(3.0)),
                server_cpu_s: Some(12.5),
                server_cpu_ms_per_1k_deliveries: Some(0.42),
                server_rss_bytes: Some(512 * 1024 * 1024),
                ..Summary::default()
            },
            timeline,
            latency_cdf: cdf(lat),
            init_cdf: cdf(3.0),
            instances: vec![
                instance("a", 100, 0.4 * lat.sqrt(), 100 + 10 * lat as u64),
                instance("b", 101, 0.3 * lat.sqrt(), 80 + 10 * lat as u64),
            ],
            tool: ToolCost {
                workers: 4,
                cpu_s: 8.0,
                active_cpu_s: 7.0,
                frames: rate,
                ns_per_frame: Some(850.0),
                max_worker_cores: 0.61,
            },
            soak: None,
            limit: Limit {
                verdict: "server".into(),
                reason: "server CPU at 2.0 cores & p99 > 50 ms".into(),
            },
        }
    }

    fn empty_run() -> RunResult {
        RunResult {
            scenario: "idle".into(),
            target: "danmaku".into(),
            label: "empty".into(),
            commit: "unknown".into(),
            started_at: "2026-05-01T10:00:00Z".into(),
            urls: Vec::new(),
            params: serde_json::Value::Null,
            summary: Summary::default(),
            timeline: Vec::new(),
            latency_cdf: Vec::new(),
            init_cdf: Vec::new(),
            instances: Vec::new(),
            tool: ToolCost::default(),
            limit: Limit::default(),
            soak: None,
        }
    }

    #[test]
    fn renders_two_fanout_runs() {
        let runs = [
            fanout("danmaku", "danmaku", 400_000, 2.0),
            fanout("socketio", "a<b", 120_000, 9.0),
        ];
        let html = render(&runs, "fanout <test>");
        // latency/s, latency CDF, init CDF, deliveries/s, CPU, RSS.
        assert_eq!(html.matches("<svg").count(), 6, "{html}");
        assert!(html.contains("danmaku"));
        assert!(html.contains("a&lt;b"));
        assert!(!html.contains("a<b"));
        assert!(html.contains("fanout &lt;test&gt;"));
        assert!(html.contains("400,000"));
        assert!(html.contains("a&lt;b / b"), "instance legend label");
        assert!(html.contains("&amp; p99"), "escaped reason");
        assert!(!html.contains("plot failed"));
        assert!(!html.contains("<script"));
        // Columns that are None for every run are left out.
        assert!(!html.contains("upgrades/s"));
        assert!(!html.contains("cycles/s"));
    }

    #[test]
    fn empty_run_has_no_plots() {
        let html = render(&[empty_run()], "empty");
        assert!(!html.contains("<svg"));
        assert!(html.contains("<table>"));
        assert!(!html.contains("deliveries/s"));
        assert!(render(&[], "nothing").contains("No runs."));
    }

    #[test]
    fn odd_data_does_not_panic() {
        let mut odd = fanout("danmaku", "odd", 0, 0.0);
        odd.scenario = "storm".into();
        for (i, t) in odd.timeline.iter_mut().enumerate() {
            t.deliveries = 0;
            t.upgrades = 0;
            t.latency_p99_ms = [f64::NAN, f64::INFINITY, 0.0][i % 3];
        }
        odd.latency_cdf = vec![CdfPoint {
            ms: 5.0,
            fraction: 1.0,
        }];
        odd.init_cdf = vec![
            CdfPoint {
                ms: f64::NAN,
                fraction: 0.5,
            },
            CdfPoint {
                ms: 0.0,
                fraction: 0.6,
            },
            CdfPoint {
                ms: 0.01,
                fraction: 0.7,
            },
            CdfPoint {
                ms: 1e6,
                fraction: f64::INFINITY,
            },
            CdfPoint {
                ms: 1e9,
                fraction: 1.0,
            },
        ];
        odd.instances[0].samples.truncate(1);
        odd.instances[1]
            .samples
            .iter_mut()
            .for_each(|s| s.cpu_cores = f64::NAN);
        odd.summary.latency_ms.as_mut().unwrap().p99 = f64::NAN;
        odd.summary.deliveries_per_s = Some(f64::INFINITY);
        let mut single = empty_run();
        single.scenario = "storm".into();
        single.timeline = vec![Tick {
            t_s: 1.0,
            upgrades: 5,
            ..Tick::default()
        }];
        let mut huge = empty_run();
        huge.latency_cdf = vec![
            CdfPoint {
                ms: -1e308,
                fraction: 0.0,
            },
            CdfPoint {
                ms: 1e308,
                fraction: 1.0,
            },
        ];
        let html = render(&[odd, single, huge], "odd");
        assert!(html.contains("<svg"));
        assert!(
            html.contains("plot failed"),
            "the ±1e308 CDF range cannot be drawn"
        );
    }

    /// Writes a sample page to the path in `DANMAKU_REPORT_SAMPLE`, when set.
    #[test]
    fn write_sample() {
        let Ok(path) = std::env::var("DANMAKU_REPORT_SAMPLE") else {
            return;
        };
        let mut storm = fanout("danmaku", "danmaku", 0, 1.0);
        storm.scenario = "storm".into();
        storm.latency_cdf.clear();
        storm.summary = Summary {
            connections: 50_000,
            duration_s: 10.0,
            init_latency_ms: Some(Percentiles {
                p50: 3.0,
                p99: 40.0,
                max: 90.0,
                ..Percentiles::default()
            }),
            upgrades_per_s: Some(25_000.0),
            ..Summary::default()
        };
        storm.init_cdf = (1..=60)
            .map(|i| {
                let fraction = f64::from(i) / 60.0;
                CdfPoint {
                    ms: 0.2 * 10f64.powf(3.0 * fraction.powi(3)),
                    fraction,
                }
            })
            .collect();
        for t in &mut storm.timeline {
            t.deliveries = 0;
            t.upgrades = 20_000 + (t.t_s as u64 % 3) * 3_000;
        }
        let runs = [
            fanout("danmaku", "danmaku", 400_000, 2.0),
            fanout("socketio", "socket.io <node 22>", 120_000, 9.0),
            storm,
            empty_run(),
        ];
        std::fs::write(&path, render(&runs, "danmaku-bench sample")).unwrap();
    }
}
