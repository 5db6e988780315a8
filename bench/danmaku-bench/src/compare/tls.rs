//! The comparison's second table: danmaku on Redis over TLS against danmaku on plain Redis,
//! the same load, runs interleaved (labelled `redis-tls` and `redis-plain`).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::compare::{Read, format_value};
use crate::result::RunResult;

/// The runs of one TLS case, each side in the order given until sorted by start time.
#[derive(Default)]
pub(super) struct TlsRuns<'a> {
    pub(super) plain: Vec<&'a RunResult>,
    pub(super) tls: Vec<&'a RunResult>,
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// `a / b` as `1.02×`, or `–`.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_owned(),
    }
}

/// The second table: for each TLS case, danmaku's CPU per 1k deliveries over TLS against plain
/// Redis, pair by pair (the i-th plain run against the i-th TLS run, by start time) and over
/// all runs (the ratio of the means), with how far runs of the same kind lie apart (the noise
/// the ratio must beat), and what else moved: deliveries, latency, Redis's own CPU, and every
/// comment lost, duplicated or reordered.
pub(super) fn tls_table(cases: &BTreeMap<String, TlsRuns<'_>>) -> String {
    let mut out = String::from(
        "### Redis over TLS against plain Redis (danmaku on both, the same load, runs interleaved)\n\n\
         | case | measure | plain Redis | Redis over TLS | TLS / plain |\n|---|---|---:|---:|---:|\n",
    );
    for (case, runs) in cases {
        let (mut plain, mut tls) = (runs.plain.clone(), runs.tls.clone());
        plain.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        tls.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        cpu_rows(&mut out, case, &plain, &tls);
        mean_rows(&mut out, case, &plain, &tls);
        // Every run must deliver everything once and in order; the sums show it.
        let _ = writeln!(
            out,
            "| {case} | lost / duplicated / reordered (all runs) | {} | {} | |",
            faults(&plain),
            faults(&tls)
        );
        limit_rows(&mut out, case, &plain, &tls);
    }
    out
}

/// The values of `read` in the runs that have one.
fn values(side: &[&RunResult], read: Read) -> Vec<f64> {
    side.iter().filter_map(|r| read(r)).collect()
}

/// CPU per 1k deliveries: pair by pair, the means, and the spread between runs of one kind.
fn cpu_rows(out: &mut String, case: &str, plain: &[&RunResult], tls: &[&RunResult]) {
    let cpu = |r: &&RunResult| r.summary.server_cpu_ms_per_1k_deliveries;
    for (i, (p, t)) in plain.iter().zip(tls).enumerate() {
        let (a, b) = (cpu(p), cpu(t));
        let _ = writeln!(
            out,
            "| {case} | CPU per 1k deliveries (ms), pair {} | {} | {} | {} |",
            i + 1,
            format_value(a),
            format_value(b),
            ratio(b, a)
        );
    }
    let cpu_of = |side: &[&RunResult]| values(side, |r| r.summary.server_cpu_ms_per_1k_deliveries);
    let (pc, tc) = (cpu_of(plain), cpu_of(tls));
    let (pm, tm) = (mean(&pc), mean(&tc));
    let _ = writeln!(
        out,
        "| {case} | CPU per 1k deliveries, TLS / plain (ms, means; runs: {} plain, {} TLS) | {} | {} | {} |",
        pc.len(),
        tc.len(),
        format_value(pm),
        format_value(tm),
        ratio(tm, pm)
    );
    let _ = writeln!(
        out,
        "| {case} | CPU per 1k deliveries, spread between runs of one kind ((max − min) / mean) | {} | {} | |",
        spread(&pc),
        spread(&tc)
    );
}

/// The spread of one kind's runs, (max − min) / mean: a TLS / plain ratio nearer 1 than this
/// is within the noise.
fn spread(v: &[f64]) -> String {
    match (v.len(), mean(v)) {
        (2.., Some(m)) if m != 0.0 => {
            let (lo, hi) = v
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            format!("{:.1}%", (hi - lo) / m * 100.0)
        }
        _ => "–".to_owned(),
    }
}

/// What else moved, as means: comments per frame, CPU per frame, deliveries, latency, Redis's
/// own CPU.
fn mean_rows(out: &mut String, case: &str, plain: &[&RunResult], tls: &[&RunResult]) {
    // Comments per frame move from run to run (how arrivals fall in the coalescing
    // window), and a delivery's CPU with them: CPU per frame shows what is left.
    let means: [(&str, Read); 6] = [
        ("comments per frame (mean)", |r| {
            r.summary.comments_per_frame
        }),
        ("CPU per 1k frames (ms, mean)", |r| {
            match (r.summary.server_cpu_s, r.summary.frames) {
                (Some(cpu), Some(frames)) if frames > 0 => Some(cpu * 1e6 / frames as f64),
                _ => None,
            }
        }),
        ("deliveries/s (mean)", |r| r.summary.deliveries_per_s),
        ("p50 latency (ms, mean)", |r| {
            r.summary.latency_ms.as_ref().map(|p| p.p50)
        }),
        ("p99 latency (ms, mean)", |r| {
            r.summary.latency_ms.as_ref().map(|p| p.p99)
        }),
        ("Redis CPU (cores, mean)", |r| {
            r.summary
                .other_cpu_s
                .filter(|_| r.summary.duration_s > 0.0)
                .map(|s| s / r.summary.duration_s)
        }),
    ];
    for (name, read) in means {
        let (a, b) = (mean(&values(plain, read)), mean(&values(tls, read)));
        let _ = writeln!(
            out,
            "| {case} | {name} | {} | {} | {} |",
            format_value(a),
            format_value(b),
            ratio(b, a)
        );
    }
}

/// Comments lost / duplicated / reordered, summed over one kind's runs (`–` when a run lacks
/// the count).
fn faults(side: &[&RunResult]) -> String {
    let sum = |read: fn(&RunResult) -> Option<u64>| -> String {
        let v: Vec<u64> = side.iter().filter_map(|r| read(r)).collect();
        if v.len() == side.len() && !v.is_empty() {
            v.iter().sum::<u64>().to_string()
        } else {
            "–".to_owned()
        }
    };
    format!(
        "{} / {} / {}",
        sum(|r| r.summary.losses),
        sum(|r| r.summary.duplicates),
        sum(|r| r.summary.order_violations)
    )
}

/// Each run's limit, in its kind's column.
fn limit_rows(out: &mut String, case: &str, plain: &[&RunResult], tls: &[&RunResult]) {
    for (kind, side) in [("plain", plain), ("TLS", tls)] {
        for (i, run) in side.iter().enumerate() {
            let said = format!(
                "{}: {}",
                run.limit.verdict,
                run.limit.reason.replace('|', "/")
            );
            let (a, b) = if kind == "plain" {
                (said.as_str(), "")
            } else {
                ("", said.as_str())
            };
            let _ = writeln!(
                out,
                "| {case} | limit ({kind}, run {}) | {a} | {b} | |",
                i + 1
            );
        }
    }
}
