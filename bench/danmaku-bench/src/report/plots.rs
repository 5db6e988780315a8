//! What each plot of a scenario shows, from the results: per-second latency, the latency and
//! `init` CDFs, throughput, and each instance's CPU and RSS. Data only; [`super::draw`] draws.

use plotters::prelude::*;

use crate::result::{CdfPoint, RunResult, Tick};

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

/// One polyline. Non-finite points split it into separately drawn segments.
pub(super) struct Line {
    pub(super) color: RGBColor,
    pub(super) dashed: bool,
    pub(super) points: Vec<(f64, f64)>,
}

pub(super) struct LegendEntry {
    pub(super) label: String,
    pub(super) color: RGBColor,
    pub(super) dashed: bool,
}

/// Whether a CDF's x axis may be logarithmic.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum XScale {
    Linear,
    /// Log when the positive data spans more than two decades.
    LogIfWide,
}

/// Everything needed to draw one plot.
pub(super) struct Plot {
    pub(super) caption: String,
    pub(super) x_desc: &'static str,
    pub(super) y_desc: &'static str,
    pub(super) x_scale: XScale,
    /// The y range always includes this one (e.g. 0..1 for a CDF); data may extend it.
    pub(super) y_base: (f64, f64),
    pub(super) lines: Vec<Line>,
    pub(super) legend: Vec<LegendEntry>,
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
pub(super) fn latency_timeline_plot(runs: &[&RunResult]) -> Option<Plot> {
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
pub(super) fn cdf_plot(
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
pub(super) fn throughput_plot(runs: &[&RunResult], scenario: &str) -> Option<Plot> {
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
pub(super) enum InstanceMetric {
    Cpu,
    Rss,
}

/// Plot 4: Per-instance CPU or RSS over time, one line per instance per run.
pub(super) fn instance_plot(runs: &[&RunResult], metric: InstanceMetric) -> Option<Plot> {
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
