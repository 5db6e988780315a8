//! The verifier: every viewer's log against the stream's published history. Its verdict is
//! "silent gaps: 0" (and no duplicate, no reorder).
//!
//! The stream's history is every id the posters and services were told was published, and every
//! id any viewer received (a post whose answer was lost with its connection may have been
//! published all the same). Ids order comments in time, across epochs too (Redis makes them from
//! its clock). Per logical viewer, across its reconnects, the rules of the contract:
//!
//! - Comments come at most once and in id order within a *segment*: from one fresh `init` to the
//!   next. A fresh `init` (`resumed: false`) restarts the list, so its history may repeat ids seen
//!   before it; a resumed one (`resumed: true`) may not.
//! - Over one connection, comments received + `skipped` = comments published after `init`. It is
//!   checked at every frame, cumulatively: everything published after the connection's start and
//!   up to the newest id received must be received or told in `skipped` by then (`skipped`
//!   may tell of comments on either side of the ones sent, so more is an over-count, `excess`,
//!   never a gap). A connection starts at its `after=` when resumed, at the newest comment of a
//!   fresh `init`, or, for an empty fresh `init`, at the newest comment published before the
//!   attempt began (anything later would have been in that `init` or must come live).
//! - A `resumed: false` (after a resume) or a close 4002 declares a gap: the comments between the
//!   last one received before it and the first one received after it are accounted, not silent.
//!   The tail of a connection after its last frame is checked by what follows: the resumed
//!   `init`, or the declared gap.
//!
//! Imports `journal` (the logs) and `result::chaos` (what it reports).

use std::collections::{BTreeMap, HashSet};

use crate::chaos::journal::{CommentId, Event};
use crate::result::chaos::{Delivery, Evidence};

/// How many pieces of evidence are kept.
const MAX_EVIDENCE: usize = 40;

/// What happened from one fault's start to the next fault's.
#[derive(Debug, Clone, Default)]
pub(crate) struct WindowTally {
    pub reconnected: HashSet<u32>,
    pub resumed_false: u64,
    pub resync: u64,
    pub longest_gap_ms: u64,
    pub declared_missing: u64,
    pub silent_missing: u64,
}

/// Everything the verifier found, over the streams checked so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct Verdict {
    pub delivery: Delivery,
    pub evidence: Vec<Evidence>,
    /// One per fault (the window from its start to the next fault's start).
    pub windows: Vec<WindowTally>,
}

/// A stream's history: every id published or received, sorted.
struct Universe(Vec<CommentId>);

impl Universe {
    /// Ids ≤ `id`; `None` is before everything.
    fn rank(&self, id: Option<CommentId>) -> usize {
        id.map_or(0, |id| self.0.partition_point(|x| *x <= id))
    }

    /// Ids strictly between `lo` and `hi`.
    fn between(&self, lo: Option<CommentId>, hi: CommentId) -> u64 {
        let below = self.0.partition_point(|x| *x < hi);
        below.saturating_sub(self.rank(lo)) as u64
    }

    /// The newest id made before Unix ms `ms`.
    fn last_before(&self, ms: u64) -> Option<CommentId> {
        let n = self.0.partition_point(|x| x.ms < ms);
        n.checked_sub(1).map(|i| self.0[i])
    }
}

/// Why a segment began.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cause {
    ResumedFalse,
    Resync,
}

/// A declared gap, measured at the first comment received after it.
struct Gap {
    from: Option<CommentId>,
    window: Option<usize>,
}

/// One connection, from `init` to its end.
struct Conn {
    start: Option<CommentId>,
    got: u64,
    skipped: u64,
    /// The deficit already reported as silent.
    reported: u64,
    /// The largest over-count seen.
    excess: u64,
    /// When a deficit was first seen.
    silent_since: Option<u64>,
}

/// One logical viewer, across its reconnects.
#[derive(Default)]
struct Viewer {
    /// Comments received in the current segment, in order.
    seg: Vec<CommentId>,
    conn: Option<Conn>,
    instance: Option<usize>,
    attempt_t: u64,
    attempt_after: Option<CommentId>,
    last_close: Option<u16>,
    opened: bool,
    inited: bool,
    gap: Option<Gap>,
    last_recv_t: Option<u64>,
    got_end: bool,
}

/// The checks of one stream, adding to a [`Verdict`].
struct Check<'a> {
    stream: usize,
    universe: Universe,
    end: Option<CommentId>,
    fault_starts: &'a [u64],
    out: &'a mut Verdict,
}

/// Checks stream `stream`'s viewer log (`log`, every viewer's events in their order) against its
/// published ids (`end`: its end marker's, if one was published), counting into `out`; events
/// are put in the window of the last fault started at or before them.
pub(crate) fn check_stream(
    stream: usize,
    published: &[CommentId],
    end: Option<CommentId>,
    log: &[(u32, Event)],
    fault_starts: &[u64],
    out: &mut Verdict,
) {
    if out.windows.len() < fault_starts.len() {
        out.windows
            .resize_with(fault_starts.len(), WindowTally::default);
    }
    let mut ids: Vec<CommentId> = published.to_vec();
    for (_, event) in log {
        if let Event::Init { ids: got, .. } | Event::Comments { ids: got, .. } = event {
            ids.extend_from_slice(got);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    let acked: HashSet<CommentId> = published.iter().copied().collect();
    out.delivery.published += acked.len() as u64;
    out.delivery.unacknowledged += ids.iter().filter(|id| !acked.contains(id)).count() as u64;
    let mut viewers: BTreeMap<u32, Vec<&Event>> = BTreeMap::new();
    for (viewer, event) in log {
        viewers.entry(*viewer).or_default().push(event);
    }
    let mut check = Check {
        stream,
        universe: Universe(ids),
        end,
        fault_starts,
        out,
    };
    for (id, events) in viewers {
        check.viewer(id, &events);
    }
}

impl Check<'_> {
    fn window(&self, t: u64) -> Option<usize> {
        self.fault_starts
            .partition_point(|s| *s <= t)
            .checked_sub(1)
    }

    fn viewer(&mut self, id: u32, events: &[&Event]) {
        self.out.delivery.viewers += 1;
        let mut v = Viewer::default();
        for event in events {
            self.event(id, &mut v, event);
        }
        if v.conn.is_some() && self.end.is_some() && !v.got_end {
            self.out.delivery.unfinished += 1;
        }
        self.end_conn(&mut v);
    }

    /// Ends the current connection (if any), keeping its over-count.
    fn end_conn(&mut self, v: &mut Viewer) {
        let Some(conn) = v.conn.take() else {
            return;
        };
        self.out.delivery.excess += conn.excess;
        if conn.reported > 0 {
            self.out.delivery.silent_gaps += 1;
            self.out.delivery.silent_missing += conn.reported;
            if let Some(w) = conn.silent_since.and_then(|t| self.window(t)) {
                self.out.windows[w].silent_missing += conn.reported;
            }
        }
    }

    fn event(&mut self, id: u32, v: &mut Viewer, event: &Event) {
        match event {
            Event::Open { t, instance, after } => {
                self.out.delivery.attempts += 1;
                if v.opened
                    && let Some(w) = self.window(*t)
                {
                    self.out.windows[w].reconnected.insert(id);
                }
                (v.opened, v.instance) = (true, Some(*instance));
                (v.attempt_t, v.attempt_after) = (*t, *after);
            }
            Event::Failed { .. } => {}
            Event::Hint { .. } => self.out.delivery.hints += 1,
            Event::Close { t, code } => {
                *self
                    .out
                    .delivery
                    .closes
                    .entry(code.to_string())
                    .or_default() += 1;
                if *code == 4002
                    && let Some(w) = self.window(*t)
                {
                    self.out.windows[w].resync += 1;
                }
                v.last_close = Some(*code);
                self.end_conn(v);
            }
            Event::Init {
                t, resumed, ids, ..
            } => {
                self.out.delivery.connections += 1;
                self.end_conn(v);
                if *resumed && v.attempt_after.is_some() {
                    self.out.delivery.resumed += 1;
                    v.conn = Some(Conn::from(v.attempt_after));
                    self.frame(id, v, *t, ids, 0);
                } else {
                    self.fresh_init(id, v, *t, ids);
                }
                v.inited = true;
                v.last_close = None;
            }
            Event::Comments { t, skipped, ids } => {
                if v.conn.is_some() {
                    self.frame(id, v, *t, ids, *skipped);
                }
            }
        }
    }

    /// A fresh `init`: a new segment, and a declared gap unless it is the viewer's first.
    fn fresh_init(&mut self, id: u32, v: &mut Viewer, t: u64, ids: &[CommentId]) {
        if v.inited {
            let cause = if v.last_close == Some(4002) {
                Cause::Resync
            } else {
                Cause::ResumedFalse
            };
            let window = self.window(t);
            if let Some(w) = window
                && cause == Cause::ResumedFalse
            {
                self.out.windows[w].resumed_false += 1;
            }
            self.out.delivery.accounted_gaps += 1;
            v.gap = Some(Gap {
                from: v.seg.last().copied(),
                window,
            });
        }
        v.seg.clear();
        let start = match ids.last() {
            Some(last) => Some(*last),
            None => self.universe.last_before(v.attempt_t),
        };
        if let Some(first) = ids.first() {
            self.close_gap(v, *first);
        }
        for (i, &c) in ids.iter().enumerate() {
            if i > 0 && c <= ids[i - 1] {
                self.evidence("reorder", id, v, t, vec![c], "inside a fresh init".into());
                self.out.delivery.reorders += 1;
                continue;
            }
            v.seg.push(c);
        }
        self.note_end(v, ids);
        v.conn = Some(Conn::from(start));
    }

    /// Measures a pending declared gap at `first`, the first comment received after it.
    fn close_gap(&mut self, v: &mut Viewer, first: CommentId) {
        if let Some(gap) = v.gap.take() {
            let missing = match gap.from {
                Some(from) if from >= first => 0,
                from => self.universe.between(from, first),
            };
            self.out.delivery.declared_missing += missing;
            if let Some(w) = gap.window {
                self.out.windows[w].declared_missing += missing;
            }
        }
    }

    fn note_end(&self, v: &mut Viewer, ids: &[CommentId]) {
        if self.end.is_some_and(|end| ids.contains(&end)) {
            v.got_end = true;
        }
    }

    /// Comments received over the current connection (a `comments` frame, or a resumed `init`).
    fn frame(&mut self, id: u32, v: &mut Viewer, t: u64, ids: &[CommentId], skipped: u64) {
        if let Some(first) = ids.first() {
            self.close_gap(v, *first);
        }
        let start = v.conn.as_ref().and_then(|c| c.start);
        let mut fresh = 0;
        for &c in ids {
            let after_start = start.is_none_or(|s| c > s);
            match v.seg.last() {
                Some(&last) if c <= last => {
                    if v.seg.binary_search(&c).is_ok() {
                        self.out.delivery.duplicates += 1;
                        self.evidence("duplicate", id, v, t, vec![c], format!("after {last}"));
                        continue;
                    }
                    self.out.delivery.reorders += 1;
                    self.evidence("reorder", id, v, t, vec![c], format!("after {last}"));
                    // It fills the hole its absence left, if that was counted.
                    if let Some(conn) = v.conn.as_mut() {
                        conn.reported = conn.reported.saturating_sub(1);
                    }
                }
                _ => v.seg.push(c),
            }
            fresh += 1;
            if after_start && let Some(conn) = v.conn.as_mut() {
                conn.got += 1;
            }
        }
        self.out.delivery.received += fresh;
        self.out.delivery.skipped += skipped;
        self.note_end(v, ids);
        if fresh > 0 {
            if let Some(prev) = v.last_recv_t {
                let gap = t.saturating_sub(prev);
                self.out.delivery.longest_gap_ms = self.out.delivery.longest_gap_ms.max(gap);
                if let Some(w) = self.window(t) {
                    let longest = &mut self.out.windows[w].longest_gap_ms;
                    *longest = (*longest).max(gap);
                }
            }
            v.last_recv_t = Some(t);
        }
        self.account(id, v, t, skipped);
    }

    /// The cumulative count of the connection at its newest comment: anything missing and not
    /// told in `skipped` is a silent gap.
    fn account(&mut self, id: u32, v: &mut Viewer, t: u64, skipped: u64) {
        let Some(newest) = v.seg.last().copied() else {
            return;
        };
        let Some(conn) = v.conn.as_mut() else {
            return;
        };
        conn.skipped += skipped;
        let expected = self
            .universe
            .rank(Some(newest))
            .saturating_sub(self.universe.rank(conn.start)) as u64;
        let have = conn.got + conn.skipped;
        if have > expected {
            conn.excess = conn.excess.max(have - expected);
            return;
        }
        let deficit = expected - have;
        if deficit <= conn.reported {
            return;
        }
        let new = deficit - conn.reported;
        conn.reported = deficit;
        conn.silent_since.get_or_insert(t);
        let start = conn.start;
        let lo = self.universe.rank(start);
        let hi = self.universe.rank(Some(newest));
        let missing: Vec<CommentId> = self.universe.0[lo..hi]
            .iter()
            .filter(|c| v.seg.binary_search(c).is_err())
            .take(5)
            .copied()
            .collect();
        let detail = format!(
            "{new} missing after {} up to {newest}, skipped told {}",
            start.map_or_else(|| "the start".to_owned(), |s| s.to_string()),
            v.conn.as_ref().map_or(0, |c| c.skipped)
        );
        self.evidence("silent gap", id, v, t, missing, detail);
    }

    fn evidence(
        &mut self,
        what: &str,
        viewer: u32,
        v: &Viewer,
        t: u64,
        ids: Vec<CommentId>,
        detail: String,
    ) {
        if self.out.evidence.len() < MAX_EVIDENCE {
            self.out.evidence.push(Evidence {
                what: what.to_owned(),
                stream: self.stream,
                viewer,
                t_ms: t,
                instance: v.instance,
                ids: ids.iter().map(ToString::to_string).collect(),
                detail,
            });
        }
    }
}

impl From<Option<CommentId>> for Conn {
    fn from(start: Option<CommentId>) -> Self {
        Conn {
            start,
            got: 0,
            skipped: 0,
            reported: 0,
            excess: 0,
            silent_since: None,
        }
    }
}

#[cfg(test)]
mod tests;
