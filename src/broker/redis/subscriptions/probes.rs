//! Probes and topology: noticing a subscription that went deaf without an error.
//!
//! - A live stream quiet for [`PROBE_QUIET`] gets a probe message published into its
//!   channel; if nothing arrives within [`PROBE_TIMEOUT`] of the publish, the subscription
//!   is rebuilt.
//! - A change of the node that owns a stream's slot (the subscriber task polls the cluster
//!   topology every second) rebuilds the stream's subscription at once.
//! - Readiness says `broker` only for this instance's own trouble: none of its streams is
//!   heard from while some have waited longer than [`UNCONFIRMED_GRACE`] for their
//!   (re)subscription or [`HEARD_WITHIN`] for a message; or, with no stream heard from, its
//!   clients stay disconnected (see `RedisBroker::is_healthy`). One shard of a cluster failing over
//!   (its streams repairing while the others flow) is repaired and backfilled, and counted
//!   in `danmaku_broker_subscriptions_rebuilt_total`, but does not take every instance
//!   with a stream on that shard out of its Service at once.

use std::time::Duration;

use tokio::time::Instant;

use super::{Effect, Phase, Probe, Repair, Subscriptions};
use crate::domain::StreamId;

/// A subscribed stream with no message for this long gets a liveness probe.
pub(in crate::broker::redis) const PROBE_QUIET: Duration = Duration::from_secs(3);
/// A probe not answered (by any message on the channel) within this long of its publish
/// means the subscription is deaf.
pub(in crate::broker::redis) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A live stream not heard from for this long (no message, no probe answered) counts as
/// stuck: the whole of Redis may be out of reach, so nothing is published to probe with.
/// Longer than a shard's failover: fred's cluster client can publish nothing (no message,
/// no probe) until it has remade its connections after one, seen to take over 7 s.
const HEARD_WITHIN: Duration = Duration::from_secs(12);
/// A stream not confirmed live for this long counts as stuck (see the module's readiness
/// rule).
const UNCONFIRMED_GRACE: Duration = Duration::from_secs(2);

impl Subscriptions {
    /// Probes quiet streams, rebuilds those whose probe went unanswered, and works out
    /// whether the subscriptions are live by the readiness rule above (whether the clients
    /// are connected is the broker's to judge).
    pub(in crate::broker::redis) fn on_tick(&mut self) {
        let now = Instant::now();
        let mut deaf = Vec::new();
        let (mut stuck, mut any_live) = (false, false);
        for (stream, entry) in &mut self.streams {
            match &entry.phase {
                Phase::Subscribing { since, .. } | Phase::Repairing { since } => {
                    if now.duration_since(*since) > UNCONFIRMED_GRACE {
                        stuck = true;
                    }
                }
                Phase::Live => match entry.probe {
                    Probe::Sent(sent) if now.duration_since(sent) > PROBE_TIMEOUT => {
                        deaf.push(stream.clone())
                    }
                    Probe::Idle if now.duration_since(entry.last_message) > PROBE_QUIET => {
                        entry.probe = Probe::InFlight;
                        self.effects.push(Effect::Probe(stream.clone()));
                    }
                    _ => {}
                },
                Phase::Unsubscribing { .. } => {}
            }
            // Live and heard from lately (a probe is answered every few seconds at most).
            let heard = now.duration_since(entry.last_message) <= HEARD_WITHIN;
            match entry.phase {
                Phase::Live if heard => any_live = true,
                Phase::Live => stuck = true,
                _ => {}
            }
        }
        self.live = !stuck || any_live;
        self.hearing = any_live;
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
