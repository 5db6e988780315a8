//! The HTML report: one self-contained page (inline CSS and SVG, no JavaScript, no external
//! assets) comparing runs, grouped by scenario. Each group gets a summary table (one row per run)
//! and line plots with one line per run.
//!
//! Plots are drawn with plotters' SVG backend. Data from results is never trusted: non-finite
//! values become gaps, empty series are skipped, degenerate ranges are widened, and a plot that
//! fails to draw is replaced by a short `plot failed: …` note instead of panicking.

use std::error::Error;
use std::fmt::Write as _;
use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::result::{CdfPoint, Percentiles, RunResult, Summary, Tick};

/// Size of each plot, pixels.
const PLOT_W: u32 = 760;
const PLOT_H: u32 = 300;
/// Width of the legend panel on the right of each plot.
const LEGEND_W: u32 = 190;
/// Legend labels longer than this are cut with an ellipsis so they stay inside the panel.
const LEGEND_MAX_CHARS: usize = 24;
/// Dash and gap length of dashed lines, pixels.
const DASH: u32 = 6;
const GAP: u32 = 4;
/// Use a log x axis for CDFs when max / min exceeds this (two decades).
const LOG_SPAN: f64 = 100.0;

/// Distinct line colours (Tableau 10, reordered so the first few contrast most), cycled.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
    RGBColor(127, 127, 127),
];
const KEY_GREY: RGBColor = RGBColor(90, 90, 90);

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
pub fn render(runs: &[RunResult], title: &str) -> String {
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

// ---------------------------------------------------------------------------------------------
// Summary table

/// Gets a run's cell text.
type CellFn = Box<dyn Fn(&RunResult) -> Option<String>>;

/// How a table cell is rendered.
#[derive(Clone, Copy, PartialEq)]
enum CellKind {
    Text,
    Num,
    Verdict,
}

/// A table column: header, hover hint, and how to get the (plain-text) cell of a run. Cells
/// returning `None` render empty; an `optional` column is dropped when no run has a value.
struct Column {
    header: &'static str,
    hint: &'static str,
    kind: CellKind,
    optional: bool,
    cell: CellFn,
}

impl Column {
    fn new(
        header: &'static str,
        hint: &'static str,
        kind: CellKind,
        cell: impl Fn(&RunResult) -> Option<String> + 'static,
    ) -> Self {
        Self {
            header,
            hint,
            kind,
            optional: false,
            cell: Box::new(cell),
        }
    }

    /// A numeric column from an optional summary field, dropped when `None` for every run.
    fn summary(
        header: &'static str,
        hint: &'static str,
        cell: impl Fn(&Summary) -> Option<String> + 'static,
    ) -> Self {
        Self {
            header,
            hint,
            kind: CellKind::Num,
            optional: true,
            cell: Box::new(move |r| cell(&r.summary)),
        }
    }
}

/// Columns for p50, p99, p99.9 and max of an optional percentile set.
fn percentile_columns(
    headers: [&'static str; 4],
    hint: &'static str,
    get: fn(&Summary) -> Option<&Percentiles>,
) -> Vec<Column> {
    let picks: [fn(&Percentiles) -> f64; 4] = [|p| p.p50, |p| p.p99, |p| p.p999, |p| p.max];
    headers
        .into_iter()
        .zip(picks)
        .map(|(header, pick)| {
            Column::summary(header, hint, move |s| get(s).map(|p| fmt_ms(pick(p))))
        })
        .collect()
}

fn table_columns() -> Vec<Column> {
    let mut cols = vec![
        Column::new("run", "label", CellKind::Text, |r| Some(r.label.clone())),
        Column::new("target", "wire protocol", CellKind::Text, |r| {
            Some(r.target.clone())
        }),
        Column::new(
            "conns",
            "connections open during the measured phase",
            CellKind::Num,
            |r| Some(fmt_int(r.summary.connections)),
        ),
        Column::new(
            "duration s",
            "length of the measured phase",
            CellKind::Num,
            |r| Some(fmt_fixed(r.summary.duration_s, 1)),
        ),
        Column::summary(
            "offered comments/s",
            "comments per second the posters tried to send",
            |s| s.offered_comments_per_s.map(fmt_rate),
        ),
        Column::summary("accepted", "comments the server acknowledged", |s| {
            s.accepted_comments.map(fmt_int)
        }),
        Column::summary("rejected", "comments the server refused", |s| {
            s.rejected_comments.map(fmt_int)
        }),
        Column::summary(
            "deliveries",
            "comment deliveries received by viewers",
            |s| s.deliveries.map(fmt_int),
        ),
        Column::summary("deliveries/s", "comment deliveries per second", |s| {
            s.deliveries_per_s.map(fmt_rate)
        }),
        Column::summary("frames", "frames received carrying deliveries", |s| {
            s.frames.map(fmt_int)
        }),
        Column::summary(
            "losses",
            "accepted comments a connected viewer never received",
            |s| s.losses.map(fmt_int),
        ),
        Column::summary(
            "thinned",
            "comments the server told viewers it left out (skipped)",
            |s| s.skipped.map(fmt_int),
        ),
        Column::summary(
            "user/viewer/s",
            "user comments one viewer received per second (mean over viewers)",
            |s| {
                s.user_per_viewer_per_s
                    .as_ref()
                    .map(|u| fmt_fixed(u.mean, 1))
            },
        ),
        Column::summary(
            "system recv %",
            "system comments received, percent of accepted × viewers",
            |s| s.system_received_pct.map(|p| fmt_fixed(p, 2)),
        ),
        Column::summary("dups", "duplicate deliveries", |s| {
            s.duplicates.map(fmt_int)
        }),
        Column::summary(
            "order violations",
            "comments received out of id order",
            |s| s.order_violations.map(fmt_int),
        ),
        Column::new(
            "disconnects",
            "connections closed or failed while measuring",
            CellKind::Num,
            |r| Some(fmt_int(r.summary.disconnects)),
        ),
        Column::new(
            "connect errors",
            "failed connection attempts",
            CellKind::Num,
            |r| Some(fmt_int(r.summary.connect_errors)),
        ),
    ];
    cols.extend(percentile_columns(
        [
            "latency p50 ms",
            "latency p99 ms",
            "latency p99.9 ms",
            "latency max ms",
        ],
        "publish → receive, from the comment's ts (ms resolution)",
        |s| s.latency_ms.as_ref(),
    ));
    cols.extend(percentile_columns(
        [
            "send lat. p50 ms",
            "send lat. p99 ms",
            "send lat. p99.9 ms",
            "send lat. max ms",
        ],
        "poster send → viewer receive (µs stamp)",
        |s| s.send_latency_ms.as_ref(),
    ));
    cols.extend(percentile_columns(
        ["init p50 ms", "init p99 ms", "init p99.9 ms", "init max ms"],
        "handshake start → init received",
        |s| s.init_latency_ms.as_ref(),
    ));
    cols.extend([
        Column::summary("upgrades/s", "completed upgrades per second (storm)", |s| {
            s.upgrades_per_s.map(fmt_rate)
        }),
        Column::summary("cycles/s", "connect/leave cycles per second (churn)", |s| {
            s.cycles_per_s.map(fmt_rate)
        }),
        Column::summary("RSS / conn", "server RSS growth per connection held", |s| {
            s.rss_per_connection_bytes.map(fmt_kib)
        }),
        Column::summary(
            "CPU µs / conn·s",
            "server core-µs per second per connection",
            |s| s.cpu_us_per_connection_s.map(|v| fmt_fixed(v, 2)),
        ),
        Column::summary("server CPU s", "server CPU seconds, all instances", |s| {
            s.server_cpu_s.map(|v| fmt_fixed(v, 2))
        }),
        Column::summary(
            "server CPU ms / 1k deliv.",
            "server CPU per 1,000 deliveries",
            |s| s.server_cpu_ms_per_1k_deliveries.map(|v| fmt_fixed(v, 2)),
        ),
        Column::summary("peak server RSS", "peak RSS summed over instances", |s| {
            s.server_rss_bytes.map(|b| fmt_kib(b as f64))
        }),
        Column::new(
            "tool ns/frame",
            "load generator CPU per received frame",
            CellKind::Num,
            |r| {
                Some(
                    r.tool
                        .ns_per_frame
                        .map_or_else(|| "–".to_string(), |v| fmt_fixed(v, 0)),
                )
            },
        ),
        Column::new(
            "tool max worker cores",
            "busiest worker's CPU (1.0 = saturated)",
            CellKind::Num,
            |r| Some(fmt_fixed(r.tool.max_worker_cores, 2)),
        ),
        Column::new(
            "limit",
            "which side limited the run",
            CellKind::Verdict,
            |r| Some(r.limit.verdict.clone()),
        ),
        Column::new("reason", "why", CellKind::Text, |r| {
            Some(r.limit.reason.clone())
        }),
    ]);
    cols
}

/// One row per run; optional columns with no value in any run are left out.
fn summary_table(runs: &[&RunResult]) -> String {
    let cols: Vec<Column> = table_columns()
        .into_iter()
        .filter(|c| !c.optional || runs.iter().any(|r| (c.cell)(r).is_some()))
        .collect();
    let mut html = String::from("<div class=\"scroll\"><table>\n<thead><tr>");
    for col in &cols {
        let _ = write!(
            html,
            "<th title=\"{}\">{}</th>",
            escape(col.hint),
            escape(col.header)
        );
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    for run in runs {
        html.push_str("<tr>");
        for col in &cols {
            let text = (col.cell)(run).unwrap_or_default();
            let class = match col.kind {
                CellKind::Num => "num".to_string(),
                CellKind::Verdict => format!("verdict-{}", verdict_class(&text)),
                CellKind::Text if col.header == "reason" => "reason".to_string(),
                CellKind::Text => String::new(),
            };
            if class.is_empty() {
                let _ = write!(html, "<td>{}</td>", escape(&text));
            } else {
                let _ = write!(html, "<td class=\"{class}\">{}</td>", escape(&text));
            }
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody>\n</table></div>\n");
    html
}

/// A CSS-safe class suffix for a limit verdict.
fn verdict_class(verdict: &str) -> &'static str {
    match verdict {
        "tool" => "tool",
        "server" => "server",
        "machine" => "machine",
        _ => "other",
    }
}

// ---------------------------------------------------------------------------------------------
// Plot data

/// One polyline. Non-finite points split it into separately drawn segments.
struct Line {
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

struct LegendEntry {
    label: String,
    color: RGBColor,
    dashed: bool,
}

/// Whether a CDF's x axis may be logarithmic.
#[derive(Clone, Copy, PartialEq)]
enum XScale {
    Linear,
    /// Log when the positive data spans more than two decades.
    LogIfWide,
}

/// Everything needed to draw one plot.
struct Plot {
    caption: String,
    x_desc: &'static str,
    y_desc: &'static str,
    x_scale: XScale,
    /// The y range always includes this one (e.g. 0..1 for a CDF); data may extend it.
    y_base: (f64, f64),
    lines: Vec<Line>,
    legend: Vec<LegendEntry>,
}

impl Plot {
    fn new(caption: impl Into<String>, x_desc: &'static str, y_desc: &'static str) -> Self {
        Self {
            caption: caption.into(),
            x_desc,
            y_desc,
            x_scale: XScale::Linear,
            y_base: (0.0, 0.0),
            lines: Vec::new(),
            legend: Vec::new(),
        }
    }

    /// Adds a line with its own legend entry.
    fn add(&mut self, label: String, color: RGBColor, points: Vec<(f64, f64)>) {
        self.legend.push(LegendEntry {
            label,
            color,
            dashed: false,
        });
        self.lines.push(Line {
            color,
            dashed: false,
            points,
        });
    }
}

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Whether the run carried comments (so per-second latency means something).
fn has_comments(run: &RunResult) -> bool {
    run.summary.latency_ms.is_some() || run.timeline.iter().any(|t| t.deliveries > 0)
}

/// Plot 1: Per-second p99 (solid) and p50 (dashed) latency, for runs that carried comments.
fn latency_timeline_plot(runs: &[&RunResult]) -> Option<Plot> {
    let mut plot = Plot::new("Comment latency per second", "time (s)", "latency (ms)");
    plot.legend.push(LegendEntry {
        label: "p99".into(),
        color: KEY_GREY,
        dashed: false,
    });
    plot.legend.push(LegendEntry {
        label: "p50".into(),
        color: KEY_GREY,
        dashed: true,
    });
    for (i, run) in runs.iter().enumerate().filter(|(_, r)| has_comments(r)) {
        // A second without deliveries has latency 0 by convention: a gap, not a 0 ms point.
        let point = |t: f64, v: f64, n: u64| if n == 0 { (t, f64::NAN) } else { (t, v) };
        let p99 = run
            .timeline
            .iter()
            .map(|t| point(t.t_s, t.latency_p99_ms, t.deliveries));
        let p50 = run
            .timeline
            .iter()
            .map(|t| point(t.t_s, t.latency_p50_ms, t.deliveries));
        plot.lines.push(Line {
            color: color(i),
            dashed: false,
            points: p99.collect(),
        });
        plot.lines.push(Line {
            color: color(i),
            dashed: true,
            points: p50.collect(),
        });
        plot.legend.push(LegendEntry {
            label: run.label.clone(),
            color: color(i),
            dashed: false,
        });
    }
    (!plot.lines.is_empty()).then_some(plot)
}

/// Plot 2: A CDF (latency or init), one line per run that has one.
fn cdf_plot(
    runs: &[&RunResult],
    caption: &str,
    x_desc: &'static str,
    get: fn(&RunResult) -> &[CdfPoint],
) -> Option<Plot> {
    let mut plot = Plot::new(caption, x_desc, "fraction ≤ x");
    plot.x_scale = XScale::LogIfWide;
    plot.y_base = (0.0, 1.0);
    for (i, run) in runs.iter().enumerate() {
        let cdf = get(run);
        if cdf.is_empty() {
            continue;
        }
        let mut points: Vec<(f64, f64)> = cdf
            .iter()
            .map(|p| (p.ms, p.fraction))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        plot.add(run.label.clone(), color(i), points);
    }
    (!plot.lines.is_empty()).then_some(plot)
}

/// Plot 3: Throughput per second: deliveries (fanout), upgrades (storm, churn) or open connections
/// (idle and anything else).
fn throughput_plot(runs: &[&RunResult], scenario: &str) -> Option<Plot> {
    let (caption, y_desc, pick): (&str, &'static str, fn(&Tick) -> u64) = match scenario {
        "fanout" => ("Deliveries per second", "deliveries/s", |t| t.deliveries),
        "storm" | "churn" => ("Upgrades per second", "upgrades/s", |t| t.upgrades),
        _ => ("Open connections", "connections", |t| t.connected),
    };
    let mut plot = Plot::new(caption, "time (s)", y_desc);
    for (i, run) in runs.iter().enumerate() {
        if run.timeline.is_empty() {
            continue;
        }
        let points = run
            .timeline
            .iter()
            .map(|t| (t.t_s, pick(t) as f64))
            .collect();
        plot.add(run.label.clone(), color(i), points);
    }
    (!plot.lines.is_empty()).then_some(plot)
}

#[derive(Clone, Copy)]
enum InstanceMetric {
    Cpu,
    Rss,
}

/// Plot 4: Per-instance CPU or RSS over time, one line per instance per run.
fn instance_plot(runs: &[&RunResult], metric: InstanceMetric) -> Option<Plot> {
    let mut plot = match metric {
        InstanceMetric::Cpu => Plot::new("Server CPU per instance", "time (s)", "CPU (cores)"),
        InstanceMetric::Rss => Plot::new("Server RSS per instance", "time (s)", "RSS (MiB)"),
    };
    let mut n = 0;
    for run in runs {
        for inst in run.instances.iter().filter(|i| !i.samples.is_empty()) {
            let points = inst
                .samples
                .iter()
                .map(|s| match metric {
                    InstanceMetric::Cpu => (s.t_s, s.cpu_cores),
                    InstanceMetric::Rss => (s.t_s, s.rss_bytes as f64 / (1024.0 * 1024.0)),
                })
                .collect();
            plot.add(format!("{} / {}", run.label, inst.name), color(n), points);
            n += 1;
        }
    }
    (!plot.lines.is_empty()).then_some(plot)
}

// ---------------------------------------------------------------------------------------------
// Plot drawing

type PlotResult<T> = Result<T, Box<dyn Error>>;

/// Axis ranges for a plot, from its finite data.
struct Bounds {
    x: Range<f64>,
    y: Range<f64>,
    log_x: bool,
}

/// The figure for `plot`: `None` when it has no finite data, else an inline SVG or a short
/// failure note.
fn render_plot(plot: &Plot) -> Option<String> {
    let bounds = bounds(plot)?;
    Some(match draw_plot(plot, &bounds) {
        Ok(svg) => format!("<figure>\n{svg}\n</figure>\n"),
        Err(e) => format!(
            "<p class=\"plot-failed\">plot failed: {}: {}</p>\n",
            escape(&plot.caption),
            escape(&e.to_string())
        ),
    })
}

/// Whether a point can be drawn on this plot's axes.
fn drawable((x, y): (f64, f64), log_x: bool) -> bool {
    x.is_finite() && y.is_finite() && (!log_x || x > 0.0)
}

/// Ranges covering every drawable point, or `None` when there is none.
fn bounds(plot: &Plot) -> Option<Bounds> {
    let all = || plot.lines.iter().flat_map(|l| l.points.iter().copied());
    let (pos_min, pos_max) = min_max(all().filter(|p| drawable(*p, true)).map(|p| p.0));
    let log_x = plot.x_scale == XScale::LogIfWide && pos_min > 0.0 && pos_max / pos_min > LOG_SPAN;
    let drawable_points = || all().filter(move |p| drawable(*p, log_x));
    let (x0, x1) = min_max(drawable_points().map(|p| p.0));
    if x0 > x1 {
        return None; // no drawable point at all
    }
    let (y0, y1) = min_max(drawable_points().map(|p| p.1));
    let (y0, y1) = (y0.min(plot.y_base.0).min(0.0), y1.max(plot.y_base.1));
    let x = if log_x || x1 > x0 {
        x0..x1
    } else {
        x0 - 1.0..x1 + 1.0
    };
    let y = if y1 > y0 {
        y0..y1 + (y1 - y0) * 0.05
    } else {
        y0..y0 + 1.0
    };
    Some(Bounds { x, y, log_x })
}

/// (min, max) of the values, (inf, -inf) when empty.
fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// Draws the whole figure (caption, chart, legend panel) into an SVG string.
fn draw_plot(plot: &Plot, bounds: &Bounds) -> PlotResult<String> {
    let finite =
        |r: &Range<f64>| r.start.is_finite() && r.end.is_finite() && (r.end - r.start).is_finite();
    if !finite(&bounds.x) || !finite(&bounds.y) {
        return Err("value range too large".into());
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (PLOT_W, PLOT_H)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(&plot.caption, ("sans-serif", 16))?;
        let (chart_area, legend_area) = root.split_horizontally(PLOT_W - LEGEND_W);
        if bounds.log_x {
            draw_chart(&chart_area, plot, bounds.x.clone().log_scale(), bounds)?;
        } else {
            draw_chart(&chart_area, plot, bounds.x.clone(), bounds)?;
        }
        draw_legend(&legend_area, &plot.legend)?;
        root.present()?;
    }
    Ok(svg)
}

/// The axes, grid and lines, on a linear or log x axis.
fn draw_chart<X>(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    plot: &Plot,
    x_spec: X,
    bounds: &Bounds,
) -> PlotResult<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin_top(4)
        .margin_left(8)
        .margin_right(16)
        .margin_bottom(4)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x_spec, bounds.y.clone())?;
    chart
        .configure_mesh()
        .x_desc(plot.x_desc)
        .y_desc(plot.y_desc)
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&|v| fmt_axis(*v))
        .y_label_formatter(&|v| fmt_axis(*v))
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .bold_line_style(RGBColor(220, 220, 220))
        .light_line_style(RGBColor(244, 244, 244))
        .draw()?;
    for line in &plot.lines {
        let style = ShapeStyle::from(line.color).stroke_width(if line.dashed { 1 } else { 2 });
        for segment in segments(&line.points, bounds.log_x) {
            if segment.len() == 1 {
                chart.draw_series(std::iter::once(Circle::new(segment[0], 3, style.filled())))?;
            } else if line.dashed {
                chart.draw_series(DashedLineSeries::new(segment, DASH, GAP, style))?;
            } else {
                chart.draw_series(LineSeries::new(segment, style))?;
            }
        }
    }
    Ok(())
}

/// Splits a polyline at points that cannot be drawn (non-finite, or x ≤ 0 on a log axis).
fn segments(points: &[(f64, f64)], log_x: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for &p in points {
        if drawable(p, log_x) {
            if let Some(segment) = out.last_mut() {
                segment.push(p);
            }
        } else if out.last().is_some_and(|s| !s.is_empty()) {
            out.push(Vec::new());
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The legend panel: a short line sample and the (shortened) label per entry, top down, as many
/// as fit.
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    entries: &[LegendEntry],
) -> PlotResult<()> {
    const ROW: i32 = 18;
    const TOP: i32 = 14;
    let (_, height) = area.dim_in_pixel();
    let fit = ((height as i32 - TOP) / ROW).max(1) as usize;
    let shown = if entries.len() > fit {
        fit - 1
    } else {
        entries.len()
    };
    let text = ("sans-serif", 12).into_font().color(&BLACK);
    for (i, entry) in entries.iter().take(shown).enumerate() {
        let y = TOP + ROW * i as i32;
        let style = ShapeStyle::from(entry.color).stroke_width(2);
        if entry.dashed {
            let dash =
                DashedPathElement::new(vec![(4, y), (30, y)], DASH, GAP, style.stroke_width(1));
            area.draw(&dash)?;
        } else {
            area.draw(&PathElement::new(vec![(4, y), (30, y)], style))?;
        }
        area.draw(&Text::new(shorten(&entry.label), (36, y - 7), text.clone()))?;
    }
    if shown < entries.len() {
        let more = format!("… {} more", entries.len() - shown);
        area.draw(&Text::new(more, (36, TOP + ROW * shown as i32 - 7), text))?;
    }
    Ok(())
}

/// Cuts a legend label to [`LEGEND_MAX_CHARS`] characters.
fn shorten(label: &str) -> String {
    if label.chars().count() <= LEGEND_MAX_CHARS {
        label.to_string()
    } else {
        let mut s: String = label.chars().take(LEGEND_MAX_CHARS - 1).collect();
        s.push('…');
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting

/// Escapes text for HTML element content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Distinct values in order of first appearance.
fn unique<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Inserts thousands separators into the integer part of a formatted number.
fn group_digits(formatted: &str) -> String {
    let (sign, rest) = match formatted.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", formatted),
    };
    let (int, frac) = match rest.find('.') {
        Some(dot) => rest.split_at(dot),
        None => (rest, ""),
    };
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}{frac}")
}

fn fmt_int(v: u64) -> String {
    group_digits(&v.to_string())
}

/// A float with `decimals` decimals and thousands separators; `–` when not finite.
fn fmt_fixed(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        group_digits(&format!("{v:.decimals$}"))
    } else {
        "–".to_string()
    }
}

fn fmt_ms(v: f64) -> String {
    fmt_fixed(v, 2)
}

/// A per-second rate: whole numbers from 100 up, one decimal below.
fn fmt_rate(v: f64) -> String {
    fmt_fixed(v, if v.abs() >= 100.0 { 0 } else { 1 })
}

/// Bytes as KiB.
fn fmt_kib(bytes: f64) -> String {
    let kib = bytes / 1024.0;
    format!(
        "{} KiB",
        fmt_fixed(kib, if kib.abs() >= 1000.0 { 0 } else { 1 })
    )
}

/// Compact axis tick labels: 12k, 1.5M, 2G, 0.25, 3.
fn fmt_axis(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 1e9 {
        format!("{}G", trim_zeros(&format!("{:.2}", v / 1e9)))
    } else if a >= 1e6 {
        format!("{}M", trim_zeros(&format!("{:.2}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim_zeros(&format!("{:.1}", v / 1e3)))
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim_zeros(&format!("{v:.2}"))
    } else {
        trim_zeros(&format!("{v:.3}"))
    };
    if s == "-0" { "0".to_string() } else { s }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{InstanceSample, InstanceSeries, Limit, ToolCost};

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
