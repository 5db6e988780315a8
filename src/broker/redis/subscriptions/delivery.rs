//! Delivery and ordering: messages from Redis to the hub's sink, each comment only if it is
//! newer than the last one delivered on its stream, so a backfill and the live channel
//! never deliver a comment twice or out of order.

use tokio::time::Instant;

use super::probes::{PROBE_QUIET, PROBE_QUIET_MAX};
use super::{MAX_PENDING, Phase, Probe, Repair, Subscriptions};
use crate::broker::BrokerEvent;
use crate::broker::redis::codec::Inbound;
use crate::domain::{Continuity, Position, StreamId, now_ms};
use crate::metrics::DropReason;

impl Subscriptions {
    /// A message on `stream`'s channel: `None` for a probe (or anything this version does
    /// not know), which still proves the subscription hears.
    pub(in crate::broker::redis) fn on_message(
        &mut self,
        stream: &StreamId,
        inbound: Option<Inbound>,
    ) {
        let Some(entry) = self.streams.get_mut(stream) else {
            return;
        };
        entry.last_message = Instant::now();
        entry.last_message_ms = now_ms();
        entry.probe = Probe::Idle;
        let Some(inbound) = inbound else {
            entry.quiet = (entry.quiet * 2).min(PROBE_QUIET_MAX);
            return;
        };
        entry.quiet = PROBE_QUIET;
        match entry.phase {
            Phase::Live => self.deliver(stream, inbound),
            Phase::Subscribing { .. } | Phase::Repairing => {
                if entry.pending.len() < MAX_PENDING {
                    entry.pending.push(inbound);
                } else {
                    entry.overflowed = true;
                }
            }
            // Nobody holds it any more.
            Phase::Unsubscribing { .. } => {}
        }
    }

    /// fred's message buffer overflowed: some messages of some streams were skipped.
    pub(in crate::broker::redis) fn lagged(&mut self, missed: u64) {
        tracing::warn!(
            missed,
            "Redis messages overflowed the inbound buffer; backfilling"
        );
        self.metrics.dropped(DropReason::BrokerLag, missed);
        self.repair_all(Repair::Backfill);
    }

    /// Hands one message of a live stream to the hub; a comment only if newer than the last.
    pub(super) fn deliver(&mut self, stream: &StreamId, inbound: Inbound) {
        let Some(entry) = self.streams.get_mut(stream) else {
            return;
        };
        let event = match inbound {
            Inbound::Comment(comment) => {
                if entry.last.is_some_and(|last| comment.id <= last) {
                    return;
                }
                entry.last = Some(comment.id);
                entry.position.read(comment.id);
                BrokerEvent::Comments {
                    stream: stream.clone(),
                    comments: vec![comment],
                }
            }
            Inbound::Deleted(ids) => BrokerEvent::Deleted {
                stream: stream.clone(),
                ids,
            },
            Inbound::Banned(user_id) => BrokerEvent::Banned {
                stream: stream.clone(),
                user_id,
            },
            Inbound::Settings(settings) => BrokerEvent::Settings {
                stream: stream.clone(),
                settings,
            },
            Inbound::Held(comment) => BrokerEvent::Held {
                stream: stream.clone(),
                comment,
            },
            Inbound::Released { user, held_id, id } => BrokerEvent::Released {
                stream: stream.clone(),
                user,
                held_id,
                id,
            },
            Inbound::Dropped { user, held_id } => BrokerEvent::Dropped {
                stream: stream.clone(),
                user,
                held_id,
            },
            Inbound::Terms => {
                self.kept_terms.forget(stream);
                return;
            }
            Inbound::Viewers { sum, version } => {
                self.reports.heard(stream, sum, version);
                return;
            }
            Inbound::Epoch(epoch) => {
                // Published by the instance that found the history short of what it had
                // delivered: what this one delivered says nothing about the history now.
                if entry.position.continuity(&epoch, true) == Continuity::Continues {
                    return; // this instance's own repair replaced it, and resynchronised
                }
                entry.position = Position {
                    epoch: Some(epoch),
                    last: None,
                };
                tracing::warn!(%stream, "the stream's history lost comments (new epoch); telling local viewers");
                self.metrics.dropped(DropReason::HistoryGap, 1);
                BrokerEvent::Resync {
                    stream: stream.clone(),
                }
            }
        };
        (self.sink)(event);
    }
}
