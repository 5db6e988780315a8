//! Probes, topology and connections: noticing a subscription that went deaf or is gone.
//!
//! - A live stream quiet for [`PROBE_QUIET`] gets a probe message published into its
//!   channel; if nothing arrives within [`PROBE_TIMEOUT`] of the publish, the subscription
//!   is rebuilt. Every instance subscribed to the stream hears the probe, so one probe
//!   answers for all of them. While a stream hears nothing but probes, its quiet time
//!   doubles after each, up to [`PROBE_QUIET_MAX`]; any other message (or a repair) brings it
//!   back to [`PROBE_QUIET`]. The probes are the backstop for a subscription lost without a
//!   sign: the causes known (a node's slot moving, a failover, a dropped connection) are
//!   noticed within a second by the checks below. So a stream that has been quiet for long
//!   costs Redis one probe every [`PROBE_QUIET_MAX`], not every few seconds, and a comment
//!   into a subscription lost without a sign arrives late (backfilled) by at most that much
//!   plus [`PROBE_TIMEOUT`].
//! - A change of the node that owns a stream's slot (the subscriber task polls the cluster
//!   topology every second) rebuilds the stream's subscription at once.
//! - The subscriber client's connection to a node dropping rebuilds the subscriptions it
//!   carried at once; its reconnecting rebuilds every one.
//!
//! Each rebuild is counted in `danmaku_broker_subscriptions_rebuilt_total` (probes and
//! topology) and backfilled. Whether the instance is ready is not decided here: one shard
//! failing over is not this instance's trouble (see `reach`).

use std::time::Duration;

use tokio::time::Instant;

use super::{Effect, Phase, Probe, Repair, Subscriptions};
use crate::domain::StreamId;

/// A subscribed stream with no message for this long gets a liveness probe.
pub(in crate::broker::redis) const PROBE_QUIET: Duration = Duration::from_secs(3);
/// The longest a stream that hears only probes waits for its next one.
pub(in crate::broker::redis) const PROBE_QUIET_MAX: Duration = Duration::from_secs(30);
/// A probe not answered (by any message on the channel) within this long of its publish
/// means the subscription is deaf.
pub(in crate::broker::redis) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Subscriptions {
    /// Probes quiet live streams and rebuilds those whose probe went unanswered.
    pub(in crate::broker::redis) fn on_tick(&mut self) {
        let now = Instant::now();
        let mut deaf = Vec::new();
        for (stream, entry) in &mut self.streams {
            if !matches!(entry.phase, Phase::Live) {
                continue;
            }
            match entry.probe {
                Probe::Sent(sent) if now.duration_since(sent) > PROBE_TIMEOUT => {
                    deaf.push(stream.clone())
                }
                Probe::Idle if now.duration_since(entry.last_message) > entry.quiet => {
                    entry.probe = Probe::InFlight;
                    self.effects.push(Effect::Probe(stream.clone()));
                }
                _ => {}
            }
        }
        for stream in deaf {
            tracing::warn!(%stream, "subscription stopped answering probes; rebuilding it");
            self.metrics.subscription_rebuilt();
            self.start_repair(stream, Repair::Resubscribe, Duration::ZERO);
        }
    }

    /// The probe of [`Effect::Probe`] was published: its answer is due within the timeout.
    pub(in crate::broker::redis) fn probe_sent(&mut self, stream: &StreamId) {
        if let Some(entry) = self.streams.get_mut(stream)
            && entry.probe == Probe::InFlight
        {
            entry.probe = Probe::Sent(Instant::now());
        }
    }

    /// The probe could not be published: unknown, not deaf; the next tick probes again.
    pub(in crate::broker::redis) fn probe_failed(&mut self, stream: &StreamId) {
        if let Some(entry) = self.streams.get_mut(stream)
            && entry.probe == Probe::InFlight
        {
            entry.probe = Probe::Idle;
        }
    }

    /// The subscriber client reconnected: every subscription may be gone.
    pub(in crate::broker::redis) fn on_reconnect(&mut self) {
        self.repair_all(Repair::Resubscribe);
    }

    /// The subscriber client's connection to `server` dropped: the subscriptions it carried
    /// are gone. Their streams are repaired at once, not only once the client reconnects
    /// (each client reconnects on its own backoff, up to seconds apart): the repair's
    /// `SSUBSCRIBE` waits in the client for the new connection, and meanwhile nothing kept
    /// about those streams is served. Streams whose node is not known (a standalone Redis:
    /// every stream) are all on it.
    pub(in crate::broker::redis) fn on_disconnect(&mut self, server: &str) {
        let streams: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, entry)| entry.owner.as_deref().is_none_or(|owner| owner == server))
            .map(|(stream, _)| stream.clone())
            .collect();
        for stream in streams {
            self.start_repair(stream, Repair::Resubscribe, Duration::ZERO);
        }
    }

    /// A fresh view of the cluster: `owner_of` names the node serving a stream's slot.
    /// Streams whose node changed are resubscribed.
    pub(in crate::broker::redis) fn on_topology(&mut self, owner_of: impl Fn(&StreamId) -> String) {
        let mut moved = Vec::new();
        for (stream, entry) in &mut self.streams {
            let owner = Some(owner_of(stream));
            if entry.owner.is_none() {
                entry.owner = owner; // first sight of the topology
            } else if entry.owner != owner {
                tracing::info!(%stream, from = ?entry.owner, to = ?owner, "stream's slot moved; resubscribing");
                entry.owner = owner;
                moved.push(stream.clone());
            }
        }
        for stream in moved {
            self.metrics.subscription_rebuilt();
            self.start_repair(stream, Repair::Resubscribe, Duration::ZERO);
        }
    }
}
