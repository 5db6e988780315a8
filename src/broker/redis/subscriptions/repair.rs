//! Repair and backfill: (re)subscribing a stream and delivering what it missed.
//!
//! A repair is a job the subscriber task runs ([`RepairJob`], carried by
//! [`Effect::Repair`]); its result comes back through [`Subscriptions::repaired`]. A newer
//! repair or an unsubscribe supersedes a running one: its result is ignored (by
//! generation), and the subscriber task aborts its job.

use std::time::Duration;

use tokio::time::Instant;

use super::{Effect, Phase, Stream, Subscriptions};
use crate::broker::redis::codec::Inbound;
use crate::broker::{BrokerError, BrokerEvent};
use crate::domain::{Comment, CommentId, Continuity, Epoch, Gap, Position, StreamId};
use crate::metrics::DropReason;

/// Moderation events are replayed from this long before a stream was last heard from.
const MODERATION_MARGIN_MS: u64 = 2_000;
/// Backoff between failed repairs (and failed first subscriptions) of one stream.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::broker::redis) enum Repair {
    /// The first subscription: subscribe, then note the history's tail.
    Subscribe,
    /// The subscription may be gone: subscribe again, then backfill.
    Resubscribe,
    /// Messages may have been skipped: backfill only.
    Backfill,
}

/// What the subscriber task is to do for a repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::broker::redis) struct RepairJob {
    pub(in crate::broker::redis) repair: Repair,
    pub(in crate::broker::redis) generation: u64,
    /// Wait this long first (the retry backoff).
    pub(in crate::broker::redis) after: Duration,
    /// Backfill everything newer than this id (`None`: read the history's tail instead).
    pub(in crate::broker::redis) last: Option<CommentId>,
    /// Replay moderation logged since this wall-clock time (epoch ms).
    pub(in crate::broker::redis) since_ms: u64,
    /// The stream's epoch as this instance knows it, if `last` was delivered under it
    /// (`None`: no check that the history still holds `last`).
    pub(in crate::broker::redis) epoch: Option<Epoch>,
}

/// What a repair found. The default: nothing missed, nothing to deliver.
#[derive(Debug)]
pub(in crate::broker::redis) struct Repaired {
    /// First subscription: the newest id in history when the subscription went live.
    pub(in crate::broker::redis) tail: Option<CommentId>,
    /// Repairs: the comments after the last delivered id, oldest first.
    pub(in crate::broker::redis) backfill: Vec<Comment>,
    /// False when comments after the last delivered id were already trimmed away.
    pub(in crate::broker::redis) complete: bool,
    /// Repairs: moderation since the stream was last heard from, oldest first.
    pub(in crate::broker::redis) moderation: Vec<Inbound>,
    /// The stream's epoch as the subscription went live (`None`: not read).
    pub(in crate::broker::redis) epoch: Option<Epoch>,
}

impl Default for Repaired {
    fn default() -> Self {
        Self {
            tail: None,
            backfill: Vec::new(),
            complete: true,
            moderation: Vec::new(),
            epoch: None,
        }
    }
}

impl Subscriptions {
    /// Starts a repair of `stream`, superseding any repair in flight. A stream whose first
    /// subscription is not live yet always gets [`Repair::Subscribe`]; one being
    /// unsubscribed gets none. A live stream's repair tells the hub its delivery was
    /// interrupted ([`BrokerEvent::Interrupted`]): until the repair is done, nothing this
    /// instance kept about the stream's history can be trusted.
    pub(super) fn start_repair(&mut self, stream: StreamId, repair: Repair, after: Duration) {
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let repair = match entry.phase {
            Phase::Unsubscribing { .. } => return,
            Phase::Subscribing { .. } => Repair::Subscribe,
            Phase::Live => {
                entry.phase = Phase::Repairing;
                (self.sink)(BrokerEvent::Interrupted {
                    stream: stream.clone(),
                });
                repair
            }
            Phase::Repairing => repair,
        };
        entry.generation += 1;
        entry.probe = super::Probe::Idle;
        entry.quiet = super::probes::PROBE_QUIET;
        let job = RepairJob {
            repair,
            generation: entry.generation,
            after,
            last: entry.last,
            since_ms: entry.last_message_ms.saturating_sub(MODERATION_MARGIN_MS),
            epoch: entry.position.last.and(entry.position.epoch.clone()),
        };
        self.effects.push(Effect::Repair { stream, job });
    }

    /// Repairs every stream (the subscriber client reconnected, or messages were lost
    /// without knowing whose).
    pub(super) fn repair_all(&mut self, repair: Repair) {
        let streams: Vec<StreamId> = self.streams.keys().cloned().collect();
        for stream in streams {
            self.start_repair(stream, repair, Duration::ZERO);
        }
    }

    /// The result of the repair job of `generation`.
    pub(in crate::broker::redis) fn repaired(
        &mut self,
        stream: StreamId,
        generation: u64,
        result: Result<Repaired, BrokerError>,
    ) {
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        if entry.generation != generation {
            return; // superseded by a newer repair or an unsubscribe
        }
        let repaired = match result {
            Ok(repaired) => repaired,
            Err(error) => return self.repair_failed(stream, error),
        };
        entry.attempts = 0;
        let subscribed_now = entry.last.is_none();
        if subscribed_now {
            // The baseline: everything after the history's tail at subscription time (an
            // empty history: everything), so a later backfill starts from here.
            entry.last = Some(repaired.tail.unwrap_or(CommentId::new(0, 0)));
        }
        let pending = std::mem::take(&mut entry.pending);
        let overflowed = std::mem::take(&mut entry.overflowed);
        entry.last_message = Instant::now();
        let first = match std::mem::replace(&mut entry.phase, Phase::Live) {
            Phase::Subscribing { waiters, .. } => Some(waiters),
            _ => None,
        };
        if let Some(waiters) = first {
            self.metrics.stream_subscribed();
            for waiter in waiters {
                let _ = waiter.send(Ok(()));
            }
        }
        if let Continuity::Gap(gap) = entry.follow(&repaired, subscribed_now) {
            match gap {
                Gap::Trimmed => {
                    tracing::warn!(%stream, "the gap is older than the retained history; telling local viewers");
                }
                gap => {
                    tracing::warn!(%stream, ?gap, "the stream's history was lost (new epoch); telling local viewers");
                }
            }
            self.metrics.dropped(DropReason::HistoryGap, 1);
            (self.sink)(BrokerEvent::Resync {
                stream: stream.clone(),
            });
        }
        self.deliver_backfill(&stream, repaired.backfill);
        // Then moderation that may have been missed, then what arrived meanwhile, in
        // arrival order.
        for inbound in repaired.moderation.into_iter().chain(pending) {
            self.deliver(&stream, inbound);
        }
        if overflowed {
            self.start_repair(stream.clone(), Repair::Backfill, Duration::ZERO);
        }
        // A first subscription whose viewers all left while it was made lingers now.
        if let Some(entry) = self.streams.get_mut(&stream)
            && entry.refs == 0
            && entry.linger.is_none()
        {
            entry.linger = Some(self.lingers.insert(stream, self.linger));
        }
    }

    /// Comments the stream missed, as one event in id order, skipping what was delivered.
    fn deliver_backfill(&mut self, stream: &StreamId, backfill: Vec<Comment>) {
        let Some(entry) = self.streams.get_mut(stream) else {
            return;
        };
        let last = entry.last;
        let backfill: Vec<Comment> = backfill
            .into_iter()
            .filter(|c| last.is_none_or(|last| c.id > last))
            .collect();
        if let Some(newest) = backfill.last() {
            entry.last = Some(newest.id);
            entry.position.read(newest.id);
            tracing::debug!(%stream, backfilled = backfill.len(), "delivered after repair");
            (self.sink)(BrokerEvent::Comments {
                stream: stream.clone(),
                comments: backfill,
            });
        }
    }

    fn repair_failed(&mut self, stream: StreamId, error: BrokerError) {
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        if let Phase::Subscribing { waiters, .. } = &mut entry.phase {
            if entry.refs == 0 {
                // Nobody waits any more: clean up a half-made subscription and forget it.
                tracing::debug!(%stream, %error, "subscribing failed; nobody waits for it");
                let waiters = std::mem::take(waiters);
                self.unsubscribe(stream, waiters);
                return;
            }
            tracing::warn!(%stream, %error, "subscribing failed; retrying");
        } else {
            tracing::warn!(%stream, %error, attempts = entry.attempts + 1, "subscription repair failed; retrying");
        }
        entry.attempts += 1;
        let backoff = retry_backoff(entry);
        self.start_repair(stream, Repair::Resubscribe, backoff);
    }
}

impl Stream {
    /// Whether the history a repair found continues what this instance delivered (if not,
    /// its viewers resynchronise), and the position it continues from: a new epoch's, at
    /// none of its comments yet (a first subscription: at the history's tail).
    fn follow(&mut self, repaired: &Repaired, subscribed_now: bool) -> Continuity {
        let continuity = match &repaired.epoch {
            Some(now) => self.position.continuity(now, repaired.complete),
            None if !repaired.complete => Continuity::Gap(Gap::Trimmed),
            None => Continuity::Continues,
        };
        if let Some(now) = &repaired.epoch
            && self.position.epoch.as_ref() != Some(now)
        {
            self.position = Position {
                epoch: Some(now.clone()),
                last: None,
            };
            if let Some(tail) = repaired.tail.filter(|_| subscribed_now) {
                self.position.read(tail);
            }
        }
        continuity
    }
}

fn retry_backoff(entry: &Stream) -> Duration {
    RETRY_MIN
        .saturating_mul(1 << entry.attempts.min(5))
        .min(RETRY_MAX)
}
