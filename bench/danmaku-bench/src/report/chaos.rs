//! The chaos soak's page: the verdict, what the verifier counted, the faults one by one with
//! what each did to the viewers, the evidence of anything silent, and the timeline (viewers
//! connected, instances ready, delivery p99, RSS) with each fault as a dashed marker. Reads
//! `result::chaos`; draws with [`super::draw`].

use std::fmt::Write as _;

use plotters::prelude::RGBColor;

use crate::report::draw::render_plot;
use crate::report::format::{escape, fmt_int};
use crate::report::plots::{LegendEntry, Line, Plot, XScale};
use crate::result::chaos::{ChaosResult, ChaosTick};

const LINE: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];
const MARKER: RGBColor = RGBColor(214, 39, 40);

/// The whole page.
pub(crate) fn render(r: &ChaosResult, title: &str) -> String {
    let mut html =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(
        html,
        "<title>{}</title>\n<style>{}</style>\n</head>\n<body>",
        escape(title),
        super::CSS
    );
    let _ = writeln!(html, "<h1>{}</h1>", escape(title));
    let _ = writeln!(
        html,
        "<p class=\"meta\">Commit {} · started {} · seed {} · {:.0} s</p>",
        escape(&r.commit),
        escape(&r.started_at),
        r.seed,
        r.duration_s
    );
    if r.failures.is_empty() {
        html.push_str("<p class=\"verdict-server\">PASSED: silent gaps 0, no duplicate, no reorder, never zero instances ready</p>\n");
    } else {
        for f in &r.failures {
            let _ = writeln!(html, "<p class=\"verdict-tool\">FAILED: {}</p>", escape(f));
        }
    }
    html.push_str(&figures(r));
    html.push_str(&faults(r));
    for plot in timeline_plots(r) {
        html.push_str(&render_plot(&plot).unwrap_or_default());
    }
    html.push_str(&evidence(r));
    html.push_str("</body>\n</html>\n");
    html
}

fn figures(r: &ChaosResult) -> String {
    let d = &r.delivery;
    let rows = [
        ("viewers", d.viewers),
        ("connection attempts", d.attempts),
        ("connections (init)", d.connections),
        ("published (acked)", d.published),
        ("published, answer lost", d.unacknowledged),
        ("received", d.received),
        ("skipped told", d.skipped),
        ("resumed: true", d.resumed),
        ("accounted gaps (resumed:false, 4002)", d.accounted_gaps),
        ("comments declared missing", d.declared_missing),
        ("silent gaps", d.silent_gaps),
        ("comments missing silently", d.silent_missing),
        ("duplicates", d.duplicates),
        ("reorders", d.reorders),
        ("reconnect hints", d.hints),
        ("unfinished viewers", d.unfinished),
        ("longest gap a viewer saw (ms)", d.longest_gap_ms),
        ("min ready instances", r.readiness.min_ready),
        (
            "min ready outside Redis restarts",
            r.readiness.min_ready_outside_redis_restarts,
        ),
        (
            "relay: connections refused / cut",
            r.proxy.refused + r.proxy.cut,
        ),
    ];
    let mut html = String::from("<h2>Figures</h2>\n<table><tbody>\n");
    for (name, v) in rows {
        let _ = writeln!(
            html,
            "<tr><th>{name}</th><td class=\"num\">{}</td></tr>",
            fmt_int(v)
        );
    }
    if let Some(p) = &r.latency_ms {
        let _ = writeln!(
            html,
            "<tr><th>delivery latency (ms)</th><td class=\"num\">p50 {:.1} · p99 {:.1} · max {:.0}</td></tr>",
            p.p50, p.p99, p.max
        );
    }
    let closes: Vec<String> = d.closes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    let _ = writeln!(
        html,
        "<tr><th>closes by code</th><td>{}</td></tr>",
        escape(&closes.join(", "))
    );
    html.push_str("</tbody></table>\n");
    html
}

fn faults(r: &ChaosResult) -> String {
    let mut html = String::from(
        "<h2>Faults</h2>\n<div class=\"scroll\"><table><thead><tr><th>t (s)</th><th>fault</th><th>target</th>\
         <th>took (s)</th><th>viewers reconnected</th><th>resumed:false</th><th>4002</th>\
         <th>longest gap (s)</th><th>declared missing</th><th>silent</th><th>what happened</th></tr></thead><tbody>\n",
    );
    for f in &r.faults {
        let _ = writeln!(
            html,
            "<tr><td class=\"num\">{:.0}</td><td>{}</td><td>{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"reason\">{}</td></tr>",
            f.t_s,
            escape(&f.kind),
            escape(&f.target),
            f.took_s,
            f.reconnected,
            f.resumed_false,
            f.resync_4002,
            f.longest_gap_ms as f64 / 1000.0,
            f.declared_missing,
            f.silent_missing,
            escape(&f.note)
        );
    }
    html.push_str("</tbody></table></div>\n");
    html
}

fn evidence(r: &ChaosResult) -> String {
    if r.evidence.is_empty() {
        return String::new();
    }
    let mut html = String::from("<h2>Evidence</h2>\n<pre>");
    for e in &r.evidence {
        let _ = writeln!(
            html,
            "{} · stream chaos-{} · viewer {} · t {} · instance {:?} · {} · ids {}",
            escape(&e.what),
            e.stream,
            e.viewer,
            e.t_ms,
            e.instance,
            escape(&e.detail),
            escape(&e.ids.join(" "))
        );
    }
    html.push_str("</pre>\n");
    html
}

/// A plot of one series of the timeline, with every fault as a dashed vertical marker.
fn series(
    r: &ChaosResult,
    caption: &str,
    y_desc: &'static str,
    lines: Vec<(String, Vec<(f64, f64)>)>,
) -> Plot {
    let top = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let mut plot = Plot {
        caption: caption.into(),
        x_desc: "time (s)",
        y_desc,
        x_scale: XScale::Linear,
        y_base: (0.0, top),
        lines: Vec::new(),
        legend: Vec::new(),
    };
    for (i, (label, points)) in lines.into_iter().enumerate() {
        let color = LINE[i % LINE.len()];
        plot.legend.push(LegendEntry {
            label,
            color,
            dashed: false,
        });
        plot.lines.push(Line {
            color,
            dashed: false,
            points,
        });
    }
    for f in &r.faults {
        plot.lines.push(Line {
            color: MARKER,
            dashed: true,
            points: vec![(f.t_s, 0.0), (f.t_s, top)],
        });
    }
    if !r.faults.is_empty() {
        plot.legend.push(LegendEntry {
            label: "fault".into(),
            color: MARKER,
            dashed: true,
        });
    }
    plot
}

fn timeline_plots(r: &ChaosResult) -> Vec<Plot> {
    let line =
        |f: fn(&ChaosTick) -> f64| r.timeline.iter().map(|t| (t.t_s, f(t))).collect::<Vec<_>>();
    let p99 = r
        .timeline
        .iter()
        .map(|t| (t.t_s, if t.delivered == 0 { f64::NAN } else { t.p99_ms }))
        .collect();
    let rss = (0..r.instances.len())
        .map(|i| {
            let points = r.timeline.iter().map(|t| {
                (
                    t.t_s,
                    t.rss_bytes
                        .get(i)
                        .copied()
                        .flatten()
                        .map_or(f64::NAN, |b| b as f64 / 1048576.0),
                )
            });
            (r.instances[i].clone(), points.collect())
        })
        .collect();
    vec![
        series(
            r,
            "Viewers connected",
            "connections",
            vec![("connected".into(), line(|t| t.connected as f64))],
        ),
        series(
            r,
            "Instances ready (/readyz 200)",
            "instances",
            vec![("ready".into(), line(|t| t.ready as f64))],
        ),
        series(
            r,
            "Delivery latency p99 per second (ts → receive)",
            "ms",
            vec![("p99".into(), p99)],
        ),
        series(r, "Instance RSS", "MiB", rss),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::chaos::{Evidence, FaultRecord};

    fn run() -> ChaosResult {
        ChaosResult {
            commit: "abc1234".into(),
            seed: 42,
            duration_s: 10.0,
            instances: vec!["danmaku-0".into(), "danmaku-1".into()],
            timeline: (1..=10u32)
                .map(|t| ChaosTick {
                    t_s: f64::from(t),
                    connected: 600 - 10 * u64::from(t % 3),
                    ready: 2 + u64::from(t % 2),
                    ready_each: vec![true, t % 2 == 1],
                    delivered: u64::from(t % 4),
                    p99_ms: 12.0,
                    rss_bytes: vec![Some(70 << 20), (t > 3).then_some(60 << 20)],
                })
                .collect(),
            faults: vec![FaultRecord {
                t_s: 4.0,
                kind: "cut".into(),
                target: "danmaku-1".into(),
                note: "cut <10 s>".into(),
                ..FaultRecord::default()
            }],
            ..ChaosResult::default()
        }
    }

    #[test]
    fn a_passed_run_has_its_verdict_table_and_four_plots() {
        let html = render(&run(), "chaos <2 min>");
        assert!(html.contains("PASSED"));
        assert!(html.contains("chaos &lt;2 min&gt;"));
        assert!(html.contains("cut &lt;10 s&gt;"));
        assert_eq!(html.matches("<svg").count(), 4, "{html}");
        assert!(!html.contains("plot failed"));
        assert!(!html.contains("Evidence"));
    }

    #[test]
    fn a_failed_run_shows_why_and_the_evidence() {
        let mut r = run();
        r.failures.push("silent gaps: 1 comments missing".into());
        r.evidence.push(Evidence {
            what: "silent gap".into(),
            ids: vec!["5-0".into()],
            ..Evidence::default()
        });
        r.timeline.clear();
        let html = render(&r, "chaos");
        assert!(html.contains("FAILED: silent gaps: 1 comments missing"));
        assert!(html.contains("Evidence") && html.contains("5-0"));
        assert!(!html.contains("plot failed"));
    }
}
