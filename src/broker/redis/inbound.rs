//! Inbound delivery: the one task that owns this instance's set of sharded subscriptions
//! and the last comment id delivered per stream, and that keeps delivery honest.
//!
//! Redis Cluster drops a sharded subscriber with a bare `sunsubscribe` push on slot moves
//! and failovers, and fred discards that push (FIELD-NOTES traps 3–5), so a subscription
//! can go deaf without an error. Every way of noticing loss ends in the same repair,
//! [`Repair`]: resubscribe if needed, then read the history after the last delivered id and
//! deliver what is missing, in id order, skipping what was delivered, then replay the
//! moderation log (deletes, bans) since the stream was last heard from:
//! - a reconnect of the subscriber client (resubscribe + backfill);
//! - a change of the node that owns a stream's slot, seen by polling the cluster topology
//!   every [`TOPOLOGY_EVERY`] (resubscribe + backfill);
//! - a liveness probe: a stream quiet for [`PROBE_QUIET`] gets a probe message published
//!   into its channel; if nothing arrives within [`PROBE_TIMEOUT`] of the publish, the
//!   subscription is rebuilt (resubscribe + backfill);
//! - fred's message buffer overflowing (backfill; counted as `broker_lag`).
//!
//! Messages that arrive while a stream is being repaired wait in arrival order (bounded by
//! [`MAX_PENDING`]) and follow the backfill. If the gap is older than the retained history,
//! the stream's local sockets are told to resynchronise (close 4002).
//! Redis calls run in spawned tasks that report back; this task never awaits Redis. A
//! stream's repair task is aborted when a newer repair or an unsubscribe supersedes it, so
//! no stale `SSUBSCRIBE` or `SUNSUBSCRIBE` lands after it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::Message;
use fred::types::cluster::ClusterRouting;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::keys;
use super::{parse_entry_message, read_history, read_moderation_since, unavailable};
use crate::broker::{ALL_RETAINED, BrokerError, BrokerEvent, EventSink, HistoryQuery};
use crate::domain::{Comment, CommentId, StreamId, now_ms};
use crate::metrics::{DropReason, Metrics};

/// A subscribed stream with no message for this long gets a liveness probe.
pub(super) const PROBE_QUIET: Duration = Duration::from_secs(3);
/// A probe not answered (by any message on the channel) within this long of its publish
/// means the subscription is deaf.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the cluster topology is refreshed and compared with the subscriptions.
pub(super) const TOPOLOGY_EVERY: Duration = Duration::from_secs(1);
/// Messages held per stream while it is repaired.
pub(super) const MAX_PENDING: usize = 10_000;
/// Moderation events are replayed from this long before a stream was last heard from.
const MODERATION_MARGIN_MS: u64 = 2_000;
/// A stream not confirmed live for this long makes `/readyz` say `broker`.
const UNCONFIRMED_GRACE: Duration = Duration::from_secs(2);
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Messages handled per wake before the control channel gets a turn.
const MESSAGE_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<(), BrokerError>>;

pub(in crate::broker) enum Control {
    Track(StreamId, Reply),
    Untrack(StreamId, Reply),
    Repaired {
        stream: StreamId,
        generation: u64,
        result: Result<Repaired, BrokerError>,
    },
    Topology(Option<ClusterRouting>),
    ProbeSent(StreamId),
    ProbeFailed(StreamId),
}

/// What a repair found.
pub(in crate::broker) struct Repaired {
    /// First subscription: the newest id in history when the subscription went live.
    tail: Option<CommentId>,
    /// Repairs: the comments after the last delivered id, oldest first.
    backfill: Vec<Comment>,
    /// False when comments after the last delivered id were already trimmed away.
    complete: bool,
    /// Repairs: moderation since the stream was last heard from, oldest first.
    moderation: Vec<Inbound>,
}

/// One message of a stream's channel.
pub(in crate::broker) enum Inbound {
    Comment(Comment),
    Deleted(CommentId),
    Banned(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repair {
    /// The first subscription: subscribe, then note the history's tail.
    Subscribe,
    /// The subscription may be gone: subscribe again, then backfill.
    Resubscribe,
    /// Messages may have been skipped: backfill only.
    Backfill,
}

enum State {
    /// Being (re)subscribed or backfilled; messages wait in `pending`.
    Repairing {
        since: Instant,
        waiters: Vec<Reply>,
    },
    Live,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Idle,
    InFlight,
    Sent(Instant),
}

struct Tracked {
    state: State,
    /// The newest comment id delivered; `None` only before the first subscription is live.
    last: Option<CommentId>,
    pending: Vec<Inbound>,
    /// Pending messages were dropped: another backfill must follow.
    overflowed: bool,
    generation: u64,
    attempts: u32,
    last_message: Instant,
    /// Wall-clock time of the last message, for the moderation replay.
    last_message_ms: u64,
    probe: Probe,
    owner: Option<String>,
    /// Whether the first subscription has gone live (until then a failure goes back to
    /// the caller instead of being retried here).
    confirmed: bool,
    repair_task: Option<AbortHandle>,
}

pub(in crate::broker) struct InboundTask {
    client: Client,
    subscriber: Client,
    sink: EventSink,
    metrics: Arc<Metrics>,
    control: mpsc::UnboundedSender<Control>,
    control_rx: mpsc::UnboundedReceiver<Control>,
    live: Arc<AtomicBool>,
    cancel: CancellationToken,
    streams: HashMap<StreamId, Tracked>,
    routing: Option<ClusterRouting>,
}

impl InboundTask {
    pub(in crate::broker) fn new(
        client: Client,
        subscriber: Client,
        sink: EventSink,
        metrics: Arc<Metrics>,
        control: (
            mpsc::UnboundedSender<Control>,
            mpsc::UnboundedReceiver<Control>,
        ),
        live: Arc<AtomicBool>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            client,
            subscriber,
            sink,
            metrics,
            control: control.0,
            control_rx: control.1,
            live,
            cancel,
            streams: HashMap::new(),
            routing: None,
        }
    }
}

pub(in crate::broker) fn spawn(mut inbound: InboundTask) {
    spawn_topology_watch(
        inbound.subscriber.clone(),
        inbound.control.clone(),
        inbound.cancel.clone(),
    );
    tokio::spawn(async move { inbound.run().await });
}

impl InboundTask {
    async fn run(&mut self) {
        let mut messages = self.subscriber.message_rx();
        let mut reconnects = self.subscriber.reconnect_rx();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                message = messages.recv() => match message {
                    Ok(message) => {
                        self.on_message(message);
                        for _ in 1..MESSAGE_BATCH {
                            match messages.try_recv() {
                                Ok(message) => self.on_message(message),
                                Err(TryRecvError::Lagged(missed)) => self.lagged(missed),
                                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                            }
                        }
                    }
                    Err(RecvError::Lagged(missed)) => self.lagged(missed),
                    Err(RecvError::Closed) => return,
                },
                server = reconnects.recv() => match server {
                    Ok(server) => {
                        tracing::info!(%server, "Redis subscriber reconnected; resubscribing");
                        self.repair_all(Repair::Resubscribe);
                    }
                    Err(RecvError::Lagged(_)) => self.repair_all(Repair::Resubscribe),
                    Err(RecvError::Closed) => return,
                },
                control = self.control_rx.recv() => match control {
                    Some(control) => self.on_control(control),
                    None => return,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    /// fred's buffer overflowed: some messages of some streams were skipped.
    fn lagged(&mut self, missed: u64) {
        tracing::warn!(
            missed,
            "Redis messages overflowed the inbound buffer; backfilling"
        );
        self.metrics.dropped(DropReason::BrokerLag, missed);
        self.repair_all(Repair::Backfill);
    }

    fn on_message(&mut self, message: Message) {
        let Some(stream) = keys::stream_of_channel(&message.channel) else {
            return;
        };
        let Some(tracked) = self.streams.get_mut(&stream) else {
            return;
        };
        tracked.last_message = Instant::now();
        tracked.last_message_ms = now_ms();
        tracked.probe = Probe::Idle;
        let Some(payload) = message.value.as_str() else {
            return;
        };
        let inbound = match parse_message(&payload) {
            Some(inbound) => inbound,
            None => return, // a probe, or something newer than this version
        };
        match tracked.state {
            State::Live => self.deliver(stream, inbound),
            State::Repairing { .. } if tracked.pending.len() < MAX_PENDING => {
                tracked.pending.push(inbound)
            }
            State::Repairing { .. } => tracked.overflowed = true,
        }
    }

    /// Hands one message of a live stream to the hub; comments only if newer than the last.
    fn deliver(&mut self, stream: StreamId, inbound: Inbound) {
        let Some(tracked) = self.streams.get_mut(&stream) else {
            return;
        };
        let event = match inbound {
            Inbound::Comment(comment) => {
                if tracked.last.is_some_and(|last| comment.id <= last) {
                    return;
                }
                tracked.last = Some(comment.id);
                BrokerEvent::Comments {
                    stream,
                    comments: vec![comment],
                }
            }
            Inbound::Deleted(id) => BrokerEvent::Deleted {
                stream,
                ids: vec![id],
            },
            Inbound::Banned(user_id) => BrokerEvent::Banned { stream, user_id },
        };
        (self.sink)(event);
    }

    fn on_control(&mut self, control: Control) {
        match control {
            Control::Track(stream, reply) => self.track(stream, reply),
            Control::Untrack(stream, reply) => self.untrack(stream, reply),
            Control::Repaired {
                stream,
                generation,
                result,
            } => self.repaired(stream, generation, result),
            Control::Topology(routing) => self.on_topology(routing),
            Control::ProbeSent(stream) => {
                if let Some(tracked) = self.streams.get_mut(&stream)
                    && tracked.probe == Probe::InFlight
                {
                    tracked.probe = Probe::Sent(Instant::now());
                }
            }
            Control::ProbeFailed(stream) => {
                // Unknown, not deaf: the next tick probes again.
                if let Some(tracked) = self.streams.get_mut(&stream)
                    && tracked.probe == Probe::InFlight
                {
                    tracked.probe = Probe::Idle;
                }
            }
        }
    }

    fn track(&mut self, stream: StreamId, reply: Reply) {
        let tracked = Tracked {
            state: State::Repairing {
                since: Instant::now(),
                waiters: vec![reply],
            },
            last: None,
            pending: Vec::new(),
            overflowed: false,
            generation: 0,
            attempts: 0,
            last_message: Instant::now(),
            last_message_ms: now_ms(),
            probe: Probe::Idle,
            owner: self.owner_of(&stream),
            confirmed: false,
            repair_task: None,
        };
        self.streams.insert(stream.clone(), tracked);
        self.start_repair(stream, Repair::Subscribe, Duration::ZERO);
    }

    fn untrack(&mut self, stream: StreamId, reply: Reply) {
        if let Some(tracked) = self.streams.remove(&stream) {
            if let Some(task) = tracked.repair_task {
                task.abort();
            }
            if let State::Repairing { waiters, .. } = tracked.state {
                for waiter in waiters {
                    let _ = waiter.send(Err(BrokerError::Unavailable("unsubscribed".into())));
                }
            }
        }
        let subscriber = self.subscriber.clone();
        tokio::spawn(async move {
            let result = subscriber
                .sunsubscribe(keys::channel(&stream))
                .await
                .map_err(unavailable);
            let _ = reply.send(result);
        });
    }

    /// Starts a repair of `stream`, superseding (and aborting) any repair in flight.
    fn start_repair(&mut self, stream: StreamId, repair: Repair, after: Duration) {
        let Some(tracked) = self.streams.get_mut(&stream) else {
            return;
        };
        tracked.generation += 1;
        tracked.probe = Probe::Idle;
        if let Some(task) = tracked.repair_task.take() {
            task.abort();
        }
        if let State::Live = tracked.state {
            tracked.state = State::Repairing {
                since: Instant::now(),
                waiters: Vec::new(),
            };
        }
        let generation = tracked.generation;
        let last = tracked.last;
        let since_ms = tracked.last_message_ms.saturating_sub(MODERATION_MARGIN_MS);
        let (client, subscriber, control) = (
            self.client.clone(),
            self.subscriber.clone(),
            self.control.clone(),
        );
        let task = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let result = run_repair(&client, &subscriber, &stream, repair, last, since_ms).await;
            let _ = control.send(Control::Repaired {
                stream,
                generation,
                result,
            });
        });
        tracked.repair_task = Some(task.abort_handle());
    }

    fn repair_all(&mut self, repair: Repair) {
        let streams: Vec<(StreamId, bool)> = self
            .streams
            .iter()
            .map(|(s, t)| (s.clone(), t.confirmed))
            .collect();
        for (stream, confirmed) in streams {
            self.start_repair(
                stream,
                if confirmed { repair } else { Repair::Subscribe },
                Duration::ZERO,
            );
        }
    }

    fn repaired(
        &mut self,
        stream: StreamId,
        generation: u64,
        result: Result<Repaired, BrokerError>,
    ) {
        let Some(tracked) = self.streams.get_mut(&stream) else {
            return;
        };
        if tracked.generation != generation {
            return; // superseded by a newer repair
        }
        tracked.repair_task = None;
        let repaired = match result {
            Ok(repaired) => repaired,
            Err(error) if !tracked.confirmed => {
                // The first subscription fails back to the caller, which retries.
                tracing::warn!(%stream, %error, "subscribing failed");
                if let Some(Tracked {
                    state: State::Repairing { waiters, .. },
                    ..
                }) = self.streams.remove(&stream)
                {
                    for waiter in waiters {
                        let _ = waiter.send(Err(error.clone()));
                    }
                }
                let subscriber = self.subscriber.clone();
                tokio::spawn(async move {
                    let _ = subscriber.sunsubscribe(keys::channel(&stream)).await;
                });
                return;
            }
            Err(error) => {
                tracked.attempts += 1;
                let backoff = RETRY_MIN
                    .saturating_mul(1 << tracked.attempts.min(5))
                    .min(RETRY_MAX);
                tracing::warn!(%stream, %error, attempts = tracked.attempts, "subscription repair failed; retrying");
                self.start_repair(stream, Repair::Resubscribe, backoff);
                return;
            }
        };
        tracked.attempts = 0;
        tracked.confirmed = true;
        if tracked.last.is_none() {
            // The baseline: everything after the history's tail at subscription time (an
            // empty history: everything), so a later backfill starts from here.
            tracked.last = Some(repaired.tail.unwrap_or(CommentId::new(0, 0)));
        }
        if !repaired.complete {
            tracing::warn!(%stream, "the gap is older than the retained history; telling local viewers");
            self.metrics.dropped(DropReason::HistoryGap, 1);
            (self.sink)(BrokerEvent::Resync {
                stream: stream.clone(),
            });
        }
        let pending = std::mem::take(&mut tracked.pending);
        let overflowed = std::mem::take(&mut tracked.overflowed);
        tracked.last_message = Instant::now();
        if let State::Repairing { waiters, .. } = std::mem::replace(&mut tracked.state, State::Live)
        {
            for waiter in waiters {
                let _ = waiter.send(Ok(()));
            }
        }
        // Backfilled comments first (one event, in id order), then moderation that may have
        // been missed, then what arrived meanwhile, in arrival order.
        let last = tracked.last;
        let backfill: Vec<Comment> = repaired
            .backfill
            .into_iter()
            .filter(|c| last.is_none_or(|last| c.id > last))
            .collect();
        if let Some(newest) = backfill.last() {
            tracked.last = Some(newest.id);
            tracing::debug!(%stream, backfilled = backfill.len(), "delivered after repair");
            (self.sink)(BrokerEvent::Comments {
                stream: stream.clone(),
                comments: backfill,
            });
        }
        for inbound in repaired.moderation.into_iter().chain(pending) {
            self.deliver(stream.clone(), inbound);
        }
        if overflowed {
            self.start_repair(stream, Repair::Backfill, Duration::ZERO);
        }
    }

    /// Probes quiet streams and rebuilds those whose probe went unanswered; updates the
    /// `live` flag for `/readyz`.
    fn on_tick(&mut self) {
        let now = Instant::now();
        let mut deaf = Vec::new();
        let mut probe = Vec::new();
        let mut all_live = self.subscriber.is_connected();
        for (stream, tracked) in &mut self.streams {
            match &tracked.state {
                State::Repairing { since, .. } => {
                    if now.duration_since(*since) > UNCONFIRMED_GRACE {
                        all_live = false;
                    }
                }
                State::Live => match tracked.probe {
                    Probe::Sent(sent) if now.duration_since(sent) > PROBE_TIMEOUT => {
                        deaf.push(stream.clone())
                    }
                    Probe::Idle if now.duration_since(tracked.last_message) > PROBE_QUIET => {
                        tracked.probe = Probe::InFlight;
                        probe.push(stream.clone());
                    }
                    _ => {}
                },
            }
        }
        self.live.store(all_live, Ordering::Release);
        for stream in deaf {
            tracing::warn!(%stream, "subscription stopped answering probes; rebuilding it");
            self.metrics.subscription_rebuilt();
            self.start_repair(stream, Repair::Resubscribe, Duration::ZERO);
        }
        for stream in probe {
            let (client, control) = (self.client.clone(), self.control.clone());
            tokio::spawn(async move {
                let sent = client
                    .spublish::<i64, _, _>(keys::channel(&stream), "p")
                    .await;
                let _ = control.send(match sent {
                    Ok(_) => Control::ProbeSent(stream),
                    Err(_) => Control::ProbeFailed(stream),
                });
            });
        }
    }

    fn on_topology(&mut self, routing: Option<ClusterRouting>) {
        self.routing = routing;
        let Some(routing) = &self.routing else { return };
        let mut moved = Vec::new();
        for (stream, tracked) in &mut self.streams {
            let owner = Some(owner_in(routing, stream));
            if tracked.owner.is_none() {
                tracked.owner = owner; // first sight of the topology
            } else if tracked.owner != owner {
                tracing::info!(%stream, from = ?tracked.owner, to = ?owner, "stream's slot moved; resubscribing");
                tracked.owner = owner;
                moved.push(stream.clone());
            }
        }
        for stream in moved {
            self.metrics.subscription_rebuilt();
            self.start_repair(stream, Repair::Resubscribe, Duration::ZERO);
        }
    }

    fn owner_of(&self, stream: &StreamId) -> Option<String> {
        self.routing.as_ref().map(|r| owner_in(r, stream))
    }
}

/// `c <id> <body>`, `d <id>`, `b <user id>`; `None` for probes and anything unknown.
pub(super) fn parse_message(payload: &str) -> Option<Inbound> {
    let (kind, rest) = payload.split_once(' ').unwrap_or((payload, ""));
    match kind {
        "c" => parse_entry_message(rest).map(Inbound::Comment),
        "d" => rest.parse().ok().map(Inbound::Deleted),
        "b" if !rest.is_empty() => Some(Inbound::Banned(rest.to_owned())),
        _ => None,
    }
}

fn owner_in(routing: &ClusterRouting, stream: &StreamId) -> String {
    let slot = ClusterRouting::hash_key(keys::channel(stream).as_bytes());
    routing
        .get_server(slot)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

async fn run_repair(
    client: &Client,
    subscriber: &Client,
    stream: &StreamId,
    repair: Repair,
    last: Option<CommentId>,
    since_ms: u64,
) -> Result<Repaired, BrokerError> {
    let channel = keys::channel(stream);
    if repair == Repair::Resubscribe {
        // The server may still think we are subscribed (a dead subscription on a moved
        // replica): drop it first. Failure only means there was nothing to drop.
        let _ = subscriber.sunsubscribe(channel.clone()).await;
    }
    if repair != Repair::Backfill {
        subscriber.ssubscribe(channel).await.map_err(unavailable)?;
    }
    match (repair, last) {
        (Repair::Subscribe, _) | (_, None) => {
            let page = read_history(client, stream, HistoryQuery::Latest { limit: 1 }).await?;
            Ok(Repaired {
                tail: page.comments.last().map(|c| c.id),
                backfill: Vec::new(),
                complete: true,
                moderation: Vec::new(),
            })
        }
        (_, Some(last)) => {
            let page = read_history(
                client,
                stream,
                HistoryQuery::After {
                    id: last,
                    limit: ALL_RETAINED,
                },
            )
            .await?;
            let moderation = read_moderation_since(client, stream, since_ms).await?;
            Ok(Repaired {
                tail: None,
                backfill: page.comments,
                complete: page.complete,
                moderation,
            })
        }
    }
}

/// Polls the cluster topology (a no-op for standalone Redis) and reports it.
fn spawn_topology_watch(
    subscriber: Client,
    control: mpsc::UnboundedSender<Control>,
    cancel: CancellationToken,
) {
    if !subscriber.is_clustered() {
        return;
    }
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TOPOLOGY_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(error) = subscriber.sync_cluster().await {
                tracing::debug!(%error, "cluster topology refresh failed");
                continue;
            }
            if control
                .send(Control::Topology(subscriber.cached_cluster_state()))
                .is_err()
            {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_channel_messages() {
        assert!(
            matches!(parse_message("d 5-1"), Some(Inbound::Deleted(id)) if id == CommentId::new(5, 1))
        );
        assert!(matches!(parse_message("b troll"), Some(Inbound::Banned(u)) if u == "troll"));
        assert!(parse_message("p").is_none());
        assert!(parse_message("d nope").is_none());
        assert!(parse_message("x y").is_none());
    }
}
