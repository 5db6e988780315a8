//! The comparison's compression table (`bench/compression`): viewers that offer
//! `permessage-deflate` against viewers that do not, the same server (compression on) and the
//! same load, one row per case (labelled `ws-deflate` and `ws-plain`), with the ratio
//! compressed / plain of each measure.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::compare::{Read, format_value};
use crate::result::RunResult;

/// The label of a run whose viewers did not offer compression.
pub(crate) const WS_PLAIN: &str = "ws-plain";
/// The label of a run whose viewers offered compression (`--deflate`).
pub(crate) const WS_DEFLATE: &str = "ws-deflate";

/// The runs of one case, each kind's in the order given.
#[derive(Default)]
pub(super) struct DeflateRuns<'a> {
    pub(super) plain: Vec<&'a RunResult>,
    pub(super) deflate: Vec<&'a RunResult>,
}

/// The measures compared, each a mean over a kind's runs with its ratio.
const MEASURES: [(&str, Read); 3] = [
    ("wire bytes / delivery", |r| {
        r.summary.wire_bytes_per_delivery
    }),
    ("server CPU ms / 1k deliveries", |r| {
        r.summary.server_cpu_ms_per_1k_deliveries
    }),
    ("p99 latency ms", |r| {
        r.summary.latency_ms.as_ref().map(|p| p.p99)
    }),
];

/// The table: for each case (in order of viewers, then name), comments per frame as the
/// viewers counted them, each measure for plain and compressed viewers and their ratio,
/// every comment lost, duplicated or reordered, what the server left out, and each side's
/// limit.
pub(super) fn deflate_table(cases: &BTreeMap<String, DeflateRuns<'_>>) -> String {
    let mut out = String::from(
        "### WebSocket compression: viewers offering permessage-deflate against plain viewers (compression on in the server)\n\n\
         | case | viewers | comments/s | comments/frame (plain · compr.) |",
    );
    let mut rule = String::from("|---|---:|---:|---:|");
    for (name, _) in MEASURES {
        let _ = write!(out, " {name}: plain | compr. | compr. / plain |");
        rule.push_str("---:|---:|---:|");
    }
    out.push_str(" lost / dup. / reordered (plain · compr.) | skipped (plain · compr.) | limit (plain · compr.) |\n");
    rule.push_str("---|---|---|\n");
    out.push_str(&rule);
    let mut ordered: Vec<(&String, &DeflateRuns<'_>)> = cases.iter().collect();
    ordered.sort_by_key(|(case, runs)| (viewers(runs), (*case).clone()));
    for (case, runs) in ordered {
        out.push_str(&row(case, runs));
    }
    out
}

/// The viewers of a case's runs (0 if none says).
fn viewers(runs: &DeflateRuns<'_>) -> u64 {
    runs.plain
        .iter()
        .chain(&runs.deflate)
        .find_map(|r| r.params["viewers"].as_u64())
        .unwrap_or(0)
}

fn row(case: &str, runs: &DeflateRuns<'_>) -> String {
    let (plain, deflate) = (&runs.plain[..], &runs.deflate[..]);
    let rate = plain
        .iter()
        .chain(deflate)
        .find_map(|r| r.summary.offered_comments_per_s);
    let cpf = |side: &[&RunResult]| format_value(mean(side, |r| r.summary.comments_per_frame));
    let mut line = format!(
        "| {case} | {} | {} | {} · {} |",
        viewers(runs),
        format_value(rate),
        cpf(plain),
        cpf(deflate)
    );
    for (_, read) in MEASURES {
        let (a, b) = (mean(plain, read), mean(deflate, read));
        let ratio = match (a, b) {
            (Some(a), Some(b)) if a != 0.0 => format!("{:.2}×", b / a),
            _ => "–".to_owned(),
        };
        let _ = write!(
            line,
            " {} | {} | {ratio} |",
            format_value(a),
            format_value(b)
        );
    }
    let limits = |side: &[&RunResult]| {
        let v: Vec<&str> = side.iter().map(|r| r.limit.verdict.as_str()).collect();
        if v.is_empty() {
            "–".to_owned()
        } else {
            v.join(", ")
        }
    };
    let _ = writeln!(
        line,
        " {} · {} | {} · {} | {} · {} |",
        faults(plain),
        faults(deflate),
        sum(plain, |r| r.summary.skipped),
        sum(deflate, |r| r.summary.skipped),
        limits(plain),
        limits(deflate)
    );
    line
}

/// The mean of `read` over the runs that have it.
fn mean(side: &[&RunResult], read: Read) -> Option<f64> {
    let v: Vec<f64> = side.iter().filter_map(|r| read(r)).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The sum of a count over a kind's runs, `–` when a run lacks it.
fn sum(side: &[&RunResult], read: fn(&RunResult) -> Option<u64>) -> String {
    let v: Vec<u64> = side.iter().filter_map(|r| read(r)).collect();
    if v.len() == side.len() && !v.is_empty() {
        v.iter().sum::<u64>().to_string()
    } else {
        "–".to_owned()
    }
}

/// Comments lost / duplicated / reordered, summed over a kind's runs.
fn faults(side: &[&RunResult]) -> String {
    format!(
        "{}/{}/{}",
        sum(side, |r| r.summary.losses),
        sum(side, |r| r.summary.duplicates),
        sum(side, |r| r.summary.order_violations)
    )
}
