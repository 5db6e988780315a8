//! The summary table of a scenario's runs: one row per run, one column per figure; columns
//! of figures no run has are left out.

use std::fmt::Write as _;

use crate::report::format::{escape, fmt_fixed, fmt_int, fmt_kib, fmt_ms, fmt_rate};
use crate::result::{Percentiles, RunResult, Summary};

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

/// Every column, in table order.
fn table_columns() -> Vec<Column> {
    let mut cols = run_columns();
    cols.extend(comment_columns());
    cols.extend(failure_columns());
    cols.extend(latency_columns());
    cols.extend(cost_columns());
    cols.extend(tool_and_limit_columns());
    cols
}

/// The run: its label, target, connections and length.
fn run_columns() -> Vec<Column> {
    vec![
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
    ]
}

/// The comments: offered, answered, delivered, lost, thinned, duplicated, reordered.
fn comment_columns() -> Vec<Column> {
    vec![
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
            "wire bytes / deliv.",
            "bytes viewers read off the wire (compressed or not) per delivery",
            |s| s.wire_bytes_per_delivery.map(|b| fmt_fixed(b, 1)),
        ),
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
    ]
}

/// Connections that closed or failed.
fn failure_columns() -> Vec<Column> {
    vec![
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
    ]
}

/// Publish → receive, send → receive and `init` latency: p50, p99, p99.9 and max of each.
fn latency_columns() -> Vec<Column> {
    let mut cols = Vec::new();
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
    cols
}

/// Connection rates and what the server cost: CPU and RSS.
fn cost_columns() -> Vec<Column> {
    vec![
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
    ]
}

/// The load generator's own cost, and which side limited the run.
fn tool_and_limit_columns() -> Vec<Column> {
    vec![
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
    ]
}

/// One row per run; optional columns with no value in any run are left out.
pub(super) fn summary_table(runs: &[&RunResult]) -> String {
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
