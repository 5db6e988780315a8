//! The one owner of this instance's Redis subscriptions: which streams are subscribed and
//! for how many local viewers, and whether delivery on each is whole.
//!
//! **Holding.** A stream is subscribed when its first local viewer acquires it and
//! unsubscribed after the last one released it plus `DANMAKU_UNSUBSCRIBE_LINGER_MS`; an
//! acquire during the linger keeps the subscription, one during the unsubscribe waits for
//! it and subscribes afresh. An acquirer is answered once the first subscription is live.
//!
//! **Keeping delivery whole.** Redis Cluster drops a sharded subscriber with a bare
//! `sunsubscribe` push on slot moves and failovers, and fred 10 discards that push, so a
//! subscription can go deaf without an error. Every way of noticing loss ends in the same
//! repair ([`repair`]): resubscribe if needed, read the history after the last delivered id
//! and deliver what is missing, in id order, then replay the moderation log (deletes, bans)
//! since the stream was last heard from. The ways of noticing: the subscriber client
//! reconnected; the node owning a stream's slot changed; a liveness probe published into a
//! quiet stream did not come back ([`probes`]); fred's message buffer overflowed
//! ([`delivery`]). Messages that arrive during a repair wait in arrival order (bounded by
//! [`MAX_PENDING`]) and follow the backfill; a gap older than the retained history tells the
//! stream's local sockets to resynchronise (close 4002).
//!
//! **No I/O here.** This is the state machine alone: it answers acquirers and calls the
//! hub's sink (both synchronous), and records the Redis work to do as [`Effect`]s, which the
//! task in `subscriber.rs` carries out and whose results it feeds back in. Its linger timers
//! are its own ([`Subscriptions::next_linger`]), so its unit tests run it under paused time.

mod delivery;
mod probes;
mod repair;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::time::{DelayQueue, delay_queue};

use super::codec::Inbound;
use super::kept_terms::KeptTerms;
use super::reports::Reports;
use crate::broker::{BrokerError, EventSink};
use crate::domain::{CommentId, Position, StreamId, now_ms};
use crate::metrics::Metrics;

pub(super) use repair::{Repair, RepairJob, Repaired};

/// Messages held per stream while it is repaired.
pub(super) const MAX_PENDING: usize = 10_000;

/// An acquirer waiting for the stream's delivery to go live.
pub(super) type Waiter = oneshot::Sender<Result<(), BrokerError>>;

/// Redis work for the subscriber task to do.
#[derive(Debug)]
pub(super) enum Effect {
    /// Run a repair job, first aborting any job of the stream still running (so no stale
    /// `SSUBSCRIBE` lands after it); report with [`Subscriptions::repaired`].
    Repair { stream: StreamId, job: RepairJob },
    /// Abort the stream's repair job, `SUNSUBSCRIBE`, and report with
    /// [`Subscriptions::unsubscribed`].
    Unsubscribe(StreamId),
    /// Publish a probe into the stream's channel; report with [`Subscriptions::probe_sent`]
    /// or [`Subscriptions::probe_failed`].
    Probe(StreamId),
}

pub(super) struct Subscriptions {
    streams: HashMap<StreamId, Stream>,
    sink: EventSink,
    metrics: Arc<Metrics>,
    linger: Duration,
    lingers: DelayQueue<StreamId>,
    effects: Vec<Effect>,
    /// The broker's blocked terms per stream: a stream's are forgotten when its channel
    /// announces a new list.
    kept_terms: KeptTerms,
    /// Viewer sums other instances announce on a stream's channel land here.
    reports: Reports,
}

enum Phase {
    /// The first `SSUBSCRIBE` (and the history's tail) is in flight; acquirers wait and
    /// messages wait in `pending`.
    Subscribing {
        waiters: Vec<Waiter>,
    },
    Live,
    /// Being resubscribed or backfilled; messages wait in `pending`.
    Repairing,
    /// `SUNSUBSCRIBE` in flight; acquirers wait for it, then for a fresh subscription.
    Unsubscribing {
        waiters: Vec<Waiter>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Idle,
    InFlight,
    Sent(Instant),
}

/// One stream's subscription.
struct Stream {
    /// Local viewers holding it.
    refs: usize,
    phase: Phase,
    /// The running linger, while `refs` is 0.
    linger: Option<delay_queue::Key>,
    /// The newest comment id delivered; `None` until the first subscription is live.
    last: Option<CommentId>,
    pending: Vec<Inbound>,
    /// Pending messages were dropped: another backfill must follow.
    overflowed: bool,
    /// Bumped by every repair and unsubscribe: a result of an older one is ignored.
    generation: u64,
    /// Failed repairs in a row, for the retry backoff.
    attempts: u32,
    last_message: Instant,
    /// Wall-clock time of the last message, for the moderation replay.
    last_message_ms: u64,
    probe: Probe,
    /// How long the stream may be quiet before it is probed: longer while it hears only
    /// probes (see [`probes`]).
    quiet: Duration,
    /// The Redis node serving the stream's slot, once the topology is known.
    owner: Option<String>,
    /// The stream's epoch as this instance knows it (from the last repair or a published
    /// change), and the newest comment delivered under it: `None` from an epoch change to
    /// the next comment (`last` is then the old history's, and says nothing about the new
    /// one). Whether a repair found a gap is this position's [`Position::continuity`].
    position: Position,
}

impl Stream {
    fn subscribing(refs: usize, waiters: Vec<Waiter>, owner: Option<String>) -> Self {
        let now = Instant::now();
        Self {
            refs,
            phase: Phase::Subscribing { waiters },
            linger: None,
            last: None,
            pending: Vec::new(),
            overflowed: false,
            generation: 0,
            attempts: 0,
            last_message: now,
            position: Position::default(),
            last_message_ms: now_ms(),
            probe: Probe::Idle,
            quiet: probes::PROBE_QUIET,
            owner,
        }
    }

    /// Live or being repaired: subscribed and counted in `danmaku.streams.subscribed`.
    fn is_subscribed(&self) -> bool {
        matches!(self.phase, Phase::Live | Phase::Repairing)
    }
}

impl Subscriptions {
    pub(super) fn new(
        sink: EventSink,
        metrics: Arc<Metrics>,
        linger: Duration,
        kept_terms: KeptTerms,
        reports: Reports,
    ) -> Self {
        Self {
            streams: HashMap::new(),
            sink,
            metrics,
            linger,
            lingers: DelayQueue::new(),
            effects: Vec::new(),
            kept_terms,
            reports,
        }
    }

    /// The Redis work recorded since the last call, in order.
    pub(super) fn take_effects(&mut self) -> std::vec::Drain<'_, Effect> {
        self.effects.drain(..)
    }

    /// A local viewer takes a hold; `waiter` hears once the stream's delivery is live.
    /// `owner` is the node serving the stream's slot, if the topology is known.
    pub(super) fn acquire(&mut self, stream: StreamId, waiter: Waiter, owner: Option<String>) {
        let Some(entry) = self.streams.get_mut(&stream) else {
            self.streams
                .insert(stream.clone(), Stream::subscribing(1, vec![waiter], owner));
            self.start_repair(stream, Repair::Subscribe, Duration::ZERO);
            return;
        };
        entry.refs += 1;
        if let Some(key) = entry.linger.take() {
            self.lingers.remove(&key);
        }
        match &mut entry.phase {
            Phase::Live | Phase::Repairing => {
                let _ = waiter.send(Ok(()));
            }
            Phase::Subscribing { waiters, .. } | Phase::Unsubscribing { waiters } => {
                waiters.push(waiter)
            }
        }
    }

    /// A local viewer dropped its hold; the last one starts the linger.
    pub(super) fn release(&mut self, stream: &StreamId) {
        let Some(entry) = self.streams.get_mut(stream) else {
            return;
        };
        entry.refs = entry.refs.saturating_sub(1);
        if entry.refs == 0 && entry.is_subscribed() && entry.linger.is_none() {
            entry.linger = Some(self.lingers.insert(stream.clone(), self.linger));
        }
        // A first subscription still in flight lingers once it is live; an unsubscribe in
        // flight removes the stream when it is done.
    }

    /// The next stream whose linger ended (pending while none did): feed it to
    /// [`Subscriptions::linger_over`].
    pub(super) fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<StreamId> {
        match self.lingers.poll_expired(cx) {
            Poll::Ready(Some(expired)) => Poll::Ready(expired.into_inner()),
            // An empty queue answers `None` at once, but it has kept the waker and wakes
            // it when a linger is inserted.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    /// [`Subscriptions::poll_linger`] as a future.
    pub(super) async fn next_linger(&mut self) -> StreamId {
        std::future::poll_fn(|cx| self.poll_linger(cx)).await
    }

    /// The linger of a stream nobody holds ended: unsubscribe it.
    pub(super) fn linger_over(&mut self, stream: StreamId) {
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        entry.linger = None;
        if entry.refs > 0 || !entry.is_subscribed() {
            return;
        }
        self.metrics.stream_unsubscribed();
        self.unsubscribe(stream, Vec::new());
    }

    /// Starts an unsubscribe; whatever the stream was doing is superseded.
    fn unsubscribe(&mut self, stream: StreamId, waiters: Vec<Waiter>) {
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        entry.generation += 1;
        entry.pending.clear();
        entry.phase = Phase::Unsubscribing { waiters };
        self.effects.push(Effect::Unsubscribe(stream));
    }

    /// The `SUNSUBSCRIBE` of [`Effect::Unsubscribe`] is done (or failed: the subscriber
    /// client's next reconnect drops it anyway).
    pub(super) fn unsubscribed(&mut self, stream: StreamId) {
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let Phase::Unsubscribing { waiters } = &mut entry.phase else {
            return;
        };
        if entry.refs == 0 {
            self.streams.remove(&stream);
            return;
        }
        // Someone acquired while it ran: subscribe afresh for them.
        let waiters = std::mem::take(waiters);
        *entry = Stream::subscribing(entry.refs, waiters, entry.owner.take());
        self.start_repair(stream, Repair::Subscribe, Duration::ZERO);
    }

    /// Streams known to the owner, in any phase (tests and debugging).
    #[cfg(test)]
    fn stream_count(&self) -> usize {
        self.streams.len()
    }
}
