//! The fan-out measures (fanout and soak): what the posters sent and the server answered, what
//! the viewers received (deliveries, frames, duplicates, order), and the per-viewer books that
//! weigh one against the other (losses, excess, thinned comments, per-viewer rates, system
//! comments). Each is a tally of its own, added to from every worker's totals and finished
//! into the summary; [`Fanout`] holds them together for the summariser.

use std::collections::HashMap;

use crate::ipc::{StreamTotals, Totals};
use crate::plan::Layout;
use crate::result::{PerViewerRate, Summary};

/// The fan-out measures together, as the summariser adds to and finishes them.
#[derive(Default)]
pub(super) struct Fanout {
    posting: Posting,
    deliveries: Deliveries,
    viewers: Viewers,
}

impl Fanout {
    pub(super) fn add(&mut self, t: &Totals) {
        self.posting.add(t);
        self.deliveries.add(t);
        self.viewers.add(t);
    }

    /// Deliveries received by viewers, duplicates excluded.
    pub(super) fn deliveries(&self) -> u64 {
        self.deliveries.deliveries
    }

    pub(super) fn finish(&self, layout: &Layout, spans: Spans, summary: &mut Summary) {
        let delivering_s = self.deliveries.delivering_s(spans.posting_s);
        // The per-viewer books count from each viewer's `init`: the lead-in's comments too.
        let lead_in_s = spans.lead_in_s;
        self.viewers.finish(
            &self.posting,
            layout,
            spans.posting_s + lead_in_s,
            delivering_s + lead_in_s,
            summary,
        );
        self.posting.finish(layout, summary);
        self.deliveries.finish(delivering_s, summary);
    }
}

/// How long the posters posted: over the measured phase, and in the lead-in before it
/// (`--lead-in`), which the per-viewer books hold but the measures do not.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spans {
    pub posting_s: f64,
    pub lead_in_s: f64,
}

/// What the posters sent and the server answered, over all workers and per stream.
#[derive(Default)]
struct Posting {
    sent: u64,
    accepted: u64,
    rejected: u64,
    system_sent: u64,
    system_accepted: u64,
    system_rejected: u64,
    shadowed: u64,
    /// User comments accepted and meant for every viewer (not shadowed), per stream.
    accepted_by_stream: HashMap<u32, u64>,
    system_by_stream: HashMap<u32, u64>,
    /// The streams' end markers the server acknowledged, per stream.
    ends_by_stream: HashMap<u32, u64>,
}

impl Posting {
    fn add(&mut self, t: &Totals) {
        for p in &t.posters {
            self.accepted += p.accepted;
            self.sent += p.sent;
            self.rejected += p.rejected;
            self.system_sent += p.system_sent;
            self.system_accepted += p.system_accepted;
            self.system_rejected += p.system_rejected;
            self.shadowed += p.shadow_accepted;
            *self.accepted_by_stream.entry(p.stream_index).or_default() +=
                p.accepted - p.shadow_accepted;
            *self.system_by_stream.entry(p.stream_index).or_default() += p.system_accepted;
        }
        for &stream in &t.ends_accepted {
            *self.ends_by_stream.entry(stream).or_default() += 1;
        }
    }

    /// Published on each of `streams` after every viewer's `init` (no viewer connects before
    /// the history is in): the acknowledged user and system comments and end marker.
    fn published<'a>(&self, streams: impl Iterator<Item = &'a u32>) -> HashMap<u32, Published> {
        streams
            .map(|&stream| {
                let get = |m: &HashMap<u32, u64>| m.get(&stream).copied().unwrap_or(0);
                let system = get(&self.system_by_stream);
                let all = get(&self.accepted_by_stream) + system + get(&self.ends_by_stream);
                (stream, Published { all, system })
            })
            .collect()
    }

    fn finish(&self, layout: &Layout, summary: &mut Summary) {
        summary.system_sent_comments = Some(self.system_sent);
        summary.system_accepted_comments = Some(self.system_accepted);
        summary.system_rejected_comments = Some(self.system_rejected);
        summary.shadowed_comments = Some(self.shadowed);
        let viewers: u64 = layout.viewers.iter().sum();
        if viewers > 0 {
            let offered: f64 = layout
                .viewers
                .iter()
                .zip(layout.stream_rates())
                .map(|(&v, (user, _))| v as f64 * user)
                .sum();
            summary.offered_user_per_viewer_per_s = Some(offered / viewers as f64);
        }
        summary.offered_comments_per_s =
            Some(layout.posters.iter().map(|&p| p as f64).sum::<f64>() * layout.poster_rate);
        summary.sent_comments = Some(self.sent);
        summary.accepted_comments = Some(self.accepted);
        summary.rejected_comments = Some(self.rejected);
    }
}

/// What the viewers received, over all workers.
#[derive(Default)]
struct Deliveries {
    deliveries: u64,
    /// `comments` frames that carried at least one delivery.
    frames: u64,
    duplicates: u64,
    order_violations: u64,
    /// When the last delivery arrived, seconds after the measured phase started.
    last_delivery_s: f64,
    /// Bytes the viewers read off the wire over the same span (danmaku only).
    wire_bytes: u64,
}

impl Deliveries {
    fn add(&mut self, t: &Totals) {
        self.deliveries += t.deliveries;
        self.frames += t.comment_frames;
        self.duplicates += t.duplicates;
        self.order_violations += t.order_violations;
        self.last_delivery_s = self.last_delivery_s.max(t.last_delivery_s);
        self.wire_bytes += t.wire_bytes;
    }

    /// Seconds deliveries took: the posting time, or longer when a backlog drained after
    /// posting stopped.
    fn delivering_s(&self, posting_s: f64) -> f64 {
        posting_s.max(self.last_delivery_s)
    }

    fn finish(&self, delivering_s: f64, summary: &mut Summary) {
        summary.deliveries = Some(self.deliveries);
        summary.deliveries_per_s = Some(self.deliveries as f64 / delivering_s);
        summary.frames = Some(self.frames);
        if self.frames > 0 {
            summary.comments_per_frame = Some(self.deliveries as f64 / self.frames as f64);
        }
        summary.duplicates = Some(self.duplicates);
        summary.order_violations = Some(self.order_violations);
        // Workers against the Socket.IO peer count none.
        if self.wire_bytes > 0 {
            summary.wire_bytes = Some(self.wire_bytes);
            if self.deliveries > 0 {
                summary.wire_bytes_per_delivery =
                    Some(self.wire_bytes as f64 / self.deliveries as f64);
            }
        }
    }
}

/// The viewers that stayed connected through the run, per stream, every worker's merged.
#[derive(Default)]
struct Viewers {
    by_stream: HashMap<u32, StreamTotals>,
}

impl Viewers {
    fn add(&mut self, t: &Totals) {
        for s in &t.streams {
            self.by_stream.entry(s.stream_index).or_default().merge(s);
        }
    }

    /// Weighs what each viewer received and was told it was not sent against what its stream
    /// published, and writes the books into `summary`; `posting_s` and `delivering_s` are
    /// the spans the books cover (the lead-in included).
    fn finish(
        &self,
        posting: &Posting,
        layout: &Layout,
        posting_s: f64,
        delivering_s: f64,
        summary: &mut Summary,
    ) {
        let published = posting.published(self.by_stream.keys());
        let books = account(&self.by_stream, &published);
        // Only streams with posters get an end marker (their closer's).
        let expecting_end: u64 = self
            .by_stream
            .iter()
            .filter(|(stream, _)| posting.ends_by_stream.get(stream).is_some_and(|&n| n > 0))
            .map(|(_, totals)| totals.viewers)
            .sum();
        let missing_end = expecting_end.saturating_sub(books.ended);
        if layout.end_markers && missing_end > 0 {
            eprintln!(
                "warning: {missing_end} viewers never got their stream's end marker: what was left out after their last frame is not in `skipped`"
            );
        }
        summary.skipped = Some(books.skipped);
        summary.excess = Some(books.excess);
        summary.system_deliveries = Some(books.system_received);
        summary.system_losses = Some(books.system_losses);
        summary.system_received_pct = (books.system_expected > 0)
            .then(|| books.system_received as f64 * 100.0 / books.system_expected as f64);
        if books.viewers > 0 {
            summary.user_per_viewer_per_s = Some(PerViewerRate {
                mean: books.user as f64 / books.viewers as f64 / posting_s,
                min: books.user_min as f64 / posting_s,
                max: books.user_max as f64 / posting_s,
            });
        }
        summary.skipped_per_s = Some(books.skipped as f64 / delivering_s);
        summary.losses = Some(books.losses);
    }
}

/// Comments published on a stream after its viewers' `init`: all of them, and the system
/// comments among them.
#[derive(Debug, Clone, Copy, Default)]
struct Published {
    all: u64,
    system: u64,
}

/// The books of a fanout run, per viewer: received + skipped against published.
#[derive(Debug, Default, PartialEq)]
struct Books {
    viewers: u64,
    /// Viewers that got their stream's end marker.
    ended: u64,
    /// Sum over viewers of what published exceeded received + skipped by.
    losses: u64,
    /// Sum over viewers of what received + skipped exceeded published by (an accounting
    /// error: a comment counted twice, or a `skipped` too large).
    excess: u64,
    skipped: u64,
    user: u64,
    user_min: u64,
    user_max: u64,
    system_received: u64,
    /// System comments the viewers should have received (each viewer every one).
    system_expected: u64,
    /// System comments a viewer did not receive (never thinned, so each one missing is lost).
    system_losses: u64,
}

fn account(streams: &HashMap<u32, StreamTotals>, published: &HashMap<u32, Published>) -> Books {
    let mut books = Books::default();
    let mut first = true;
    for (stream, totals) in streams {
        if totals.viewers == 0 {
            continue;
        }
        let p = published.get(stream).copied().unwrap_or_default();
        for &(accounted, viewers) in &totals.accounted {
            books.losses += p.all.saturating_sub(accounted) * viewers;
            books.excess += accounted.saturating_sub(p.all) * viewers;
        }
        books.viewers += totals.viewers;
        books.ended += totals.ended;
        books.skipped += totals.skipped;
        books.user += totals.user;
        books.user_min = if first {
            totals.user_min
        } else {
            books.user_min.min(totals.user_min)
        };
        books.user_max = books.user_max.max(totals.user_max);
        first = false;
        books.system_received += totals.system;
        books.system_expected += p.system * totals.viewers;
        books.system_losses += (p.system * totals.viewers).saturating_sub(totals.system);
    }
    books
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(
        index: u32,
        accounted: &[(u64, u64)],
        user: (u64, u64, u64),
        system: u64,
    ) -> StreamTotals {
        let viewers = accounted.iter().map(|a| a.1).sum();
        StreamTotals {
            stream_index: index,
            viewers,
            distinct: 0,
            skipped: 10,
            user: user.0,
            user_min: user.1,
            user_max: user.2,
            system,
            ended: viewers,
            accounted: accounted.to_vec(),
        }
    }

    #[test]
    fn books_hold_per_viewer() {
        // Stream 0: 100 published (10 system); three viewers account for 100, one for 97 (3
        // lost), one for 101 (1 too many). Stream 1: 20 published, 4 system; both viewers
        // account for all, and got 7 of the 8 system comments between them.
        let streams = HashMap::from([
            (
                0,
                stream(0, &[(97, 1), (100, 3), (101, 1)], (200, 30, 50), 50),
            ),
            (1, stream(1, &[(20, 2)], (30, 15, 15), 7)),
        ]);
        let published = HashMap::from([
            (
                0,
                Published {
                    all: 100,
                    system: 10,
                },
            ),
            (1, Published { all: 20, system: 4 }),
        ]);
        let books = account(&streams, &published);
        assert_eq!(
            books,
            Books {
                viewers: 7,
                ended: 7,
                losses: 3,
                excess: 1,
                skipped: 20,
                user: 230,
                user_min: 15,
                user_max: 50,
                system_received: 57,
                system_expected: 58,
                system_losses: 1,
            }
        );
        // Two workers' viewers of one stream merge.
        let mut merged = StreamTotals::default();
        merged.merge(&stream(0, &[(100, 2)], (60, 20, 40), 20));
        merged.merge(&stream(0, &[(100, 1), (99, 1)], (70, 10, 60), 20));
        assert_eq!(merged.viewers, 4);
        assert_eq!(
            (merged.user, merged.user_min, merged.user_max),
            (130, 10, 60)
        );
        assert_eq!(merged.accounted, vec![(99, 1), (100, 3)]);
    }
}
