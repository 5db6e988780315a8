//! After the run: the logs read back and verified stream by stream, the faults given what
//! happened in their windows, readiness summed up, and the verdict. Uses `journal`, `verify`,
//! `live` (log names) and `result::chaos`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::Context;

use crate::chaos::journal::{self, CommentId, Source};
use crate::chaos::live::viewer_log_name;
use crate::chaos::verify::{self, Verdict};
use crate::result::chaos::{ChaosResult, ChaosTick, FaultRecord, Readiness};

/// Verifies every stream's viewer log under `logs` against `published.log`.
pub(crate) fn verify_logs(
    logs: &Path,
    streams: usize,
    faults: &[FaultRecord],
) -> anyhow::Result<Verdict> {
    let mut published: HashMap<usize, Vec<CommentId>> = HashMap::new();
    let mut ends: HashMap<usize, CommentId> = HashMap::new();
    let file = std::fs::File::open(logs.join("published.log")).context("published.log")?;
    for line in BufReader::new(file).lines() {
        if let Some((stream, id, source)) = journal::parse_published_line(&line?) {
            published.entry(stream).or_default().push(id);
            if source == Source::End {
                ends.insert(stream, id);
            }
        }
    }
    let starts: Vec<u64> = faults.iter().map(|f| f.at_ms).collect();
    let mut verdict = Verdict::default();
    for stream in 0..streams {
        let path = logs.join(viewer_log_name(stream));
        let file = std::fs::File::open(&path).with_context(|| format!("{}", path.display()))?;
        let mut log = Vec::new();
        for line in BufReader::new(file).lines() {
            if let Some(entry) = journal::parse_viewer_line(&line?) {
                log.push(entry);
            }
        }
        let ids = published.remove(&stream).unwrap_or_default();
        verify::check_stream(
            stream,
            &ids,
            ends.get(&stream).copied(),
            &log,
            &starts,
            &mut verdict,
        );
    }
    Ok(verdict)
}

/// Gives each fault what the verifier counted in its window.
pub(crate) fn attribute(faults: &mut [FaultRecord], verdict: &Verdict) {
    for (fault, w) in faults.iter_mut().zip(&verdict.windows) {
        fault.reconnected = w.reconnected.len() as u64;
        fault.resumed_false = w.resumed_false;
        fault.resync_4002 = w.resync;
        fault.longest_gap_ms = w.longest_gap_ms;
        fault.declared_missing = w.declared_missing;
        fault.silent_missing = w.silent_missing;
    }
}

/// Readiness over the ticks; polls within a full Redis restart (from its start until its end
/// plus `grace_s`) are set apart.
pub(crate) fn readiness(ticks: &[ChaosTick], faults: &[FaultRecord], grace_s: f64) -> Readiness {
    let excused = |t: f64| {
        faults
            .iter()
            .filter(|f| f.kind == "redis-restart")
            .any(|f| t >= f.t_s && t <= f.t_s + f.took_s + grace_s)
    };
    let outside: Vec<u64> = ticks
        .iter()
        .filter(|t| !excused(t.t_s))
        .map(|t| t.ready)
        .collect();
    Readiness {
        polls: ticks.len() as u64,
        min_ready: ticks.iter().map(|t| t.ready).min().unwrap_or(0),
        min_ready_outside_redis_restarts: outside.iter().copied().min().unwrap_or(0),
        zero_ready_polls: outside.iter().filter(|r| **r == 0).count() as u64,
    }
}

/// Why the run failed; empty when it passed.
pub(crate) fn judge(r: &ChaosResult) -> Vec<String> {
    let d = &r.delivery;
    let mut failures = Vec::new();
    if d.silent_missing > 0 {
        failures.push(format!(
            "silent gaps: {} comments missing over {} connections, accounted by no skipped, resumed:false or 4002",
            d.silent_missing, d.silent_gaps
        ));
    }
    for (n, what) in [(d.duplicates, "duplicated"), (d.reorders, "out of order")] {
        if n > 0 {
            failures.push(format!("{n} comments {what}"));
        }
    }
    if d.unfinished > 0 {
        failures.push(format!(
            "{} viewers connected at the end never got their stream's end marker",
            d.unfinished
        ));
    }
    if d.received == 0 || d.published == 0 {
        failures.push("nothing was published or delivered".into());
    }
    if r.readiness.zero_ready_polls > 0 {
        failures.push(format!(
            "no instance was ready in {} polls (outside full Redis restarts)",
            r.readiness.zero_ready_polls
        ));
    }
    for f in r.faults.iter().filter(|f| f.note.starts_with("FAILED")) {
        failures.push(format!("fault {} at {:.0} s: {}", f.kind, f.t_s, f.note));
    }
    failures
}
