//! Inbound delivery: the one task that owns this instance's set of sharded subscriptions
//! and the last comment id delivered per stream, and that keeps delivery honest.
//!
//! Redis Cluster drops a sharded subscriber with a bare `sunsubscribe` push on slot moves
//! and failovers, and fred discards that push (FIELD-NOTES traps 3–5), so a subscription
//! can go deaf without an error. Every way of noticing loss ends in the same repair,
//! [`Repair`]: resubscribe if needed, then read the history after the last delivered id and
//! deliver what is missing, in id order, skipping what was delivered:
//! - a reconnect of the subscriber client (resubscribe + backfill);
//! - a change of the node that owns a stream's slot, seen by polling the cluster topology
//!   every [`TOPOLOGY_EVERY`] (resubscribe + backfill);
//! - a liveness probe: a stream quiet for [`PROBE_QUIET`] gets a probe message published
//!   into its channel; if nothing arrives within [`PROBE_TIMEOUT`] the subscription is
//!   rebuilt (resubscribe + backfill);
//! - fred's message buffer overflowing (backfill; counted as `broker_lag`).
//!
//! Live messages that arrive while a stream is being repaired wait (bounded by
//! [`MAX_PENDING`]) and are delivered after the backfill. If the gap is older than the
//! retained history, the stream's local sockets are told to resynchronise (close 4002).
//! Redis calls run in spawned tasks that report back; this task never awaits Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::Message;
use fred::types::cluster::ClusterRouting;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::keys;
use super::{parse_entry_message, read_history, unavailable};
use crate::broker::{BrokerError, BrokerEvent, EventSink, HistoryQuery};
use crate::domain::{Comment, CommentId, StreamId};
use crate::metrics::{DropReason, Metrics};

/// A subscribed stream with no message for this long gets a liveness probe.
pub(super) const PROBE_QUIET: Duration = Duration::from_secs(3);
/// A probe not answered (by any message on the channel) within this long means deaf.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the cluster topology is refreshed and compared with the subscriptions.
pub(super) const TOPOLOGY_EVERY: Duration = Duration::from_secs(1);
/// Live messages held per stream while it is repaired.
pub(super) const MAX_PENDING: usize = 10_000;
/// A stream not confirmed live for this long makes `/readyz` say `broker`.
const UNCONFIRMED_GRACE: Duration = Duration::from_secs(2);
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Messages handled per wake before the control channel gets a turn.
const MESSAGE_BATCH: usize = 512;

pub(in crate::broker) enum Control {
    Track(StreamId, oneshot::Sender<Result<(), BrokerError>>),
    Untrack(StreamId, oneshot::Sender<Result<(), BrokerError>>),
    Repaired {
        stream: StreamId,
        generation: u64,
        result: Result<Repaired, BrokerError>,
    },
    Topology(Option<ClusterRouting>),
}

/// What a repair found.
pub(in crate::broker) struct Repaired {
    /// First subscription: the newest id in history when the subscription went live.
    tail: Option<CommentId>,
    /// Repairs: the comments after the last delivered id, oldest first.
    backfill: Vec<Comment>,
    /// False when comments after the last delivered id were already trimmed away.
    complete: bool,
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
    /// Being (re)subscribed or backfilled; live messages wait in `pending`.
    Repairing {
        since: Instant,
        waiters: Vec<oneshot::Sender<Result<(), BrokerError>>>,
    },
    Live,
}

struct Tracked {
    state: State,
    last: Option<CommentId>,
    pending: Vec<Comment>,
    /// Pending messages were dropped: another backfill must follow.
    overflowed: bool,
    generation: u64,
    attempts: u32,
    last_message: Instant,
    probe_sent: Option<Instant>,
    owner: Option<String>,
    /// Whether the first subscription has gone live (until then a failure goes back to
    /// the caller instead of being retried here).
    confirmed: bool,
}

pub(in crate::broker) struct Inbound {
    client: Client,
    subscriber: Client,
    sink: EventSink,
    metrics: Arc<Metrics>,
    history_len: usize,
    control: mpsc::UnboundedSender<Control>,
    control_rx: mpsc::UnboundedReceiver<Control>,
    live: Arc<AtomicBool>,
    cancel: CancellationToken,
    streams: HashMap<StreamId, Tracked>,
    routing: Option<ClusterRouting>,
}

impl Inbound {
    #[allow(clippy::too_many_arguments)]
    pub(in crate::broker) fn new(
        client: Client,
        subscriber: Client,
        sink: EventSink,
        metrics: Arc<Metrics>,
        history_len: usize,
        control: mpsc::UnboundedSender<Control>,
        control_rx: mpsc::UnboundedReceiver<Control>,
        live: Arc<AtomicBool>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            client,
            subscriber,
            sink,
            metrics,
            history_len,
            control,
            control_rx,
            live,
            cancel,
            streams: HashMap::new(),
            routing: None,
        }
    }
}

pub(in crate::broker) fn spawn(mut inbound: Inbound) {
    spawn_topology_watch(
        inbound.subscriber.clone(),
        inbound.control.clone(),
        inbound.cancel.clone(),
    );
    tokio::spawn(async move { inbound.run().await });
}

impl Inbound {
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
                                Err(_) => break,
                            }
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "Redis messages overflowed the inbound buffer; backfilling");
                        self.metrics.dropped(DropReason::BrokerLag, missed);
                        self.repair_all(Repair::Backfill);
                    }
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

    fn on_message(&mut self, message: Message) {
        let Some(stream) = keys::stream_of_channel(&message.channel) else {
            return;
        };
        let Some(tracked) = self.streams.get_mut(&stream) else {
            return;
        };
        tracked.last_message = Instant::now();
        tracked.probe_sent = None;
        let Some(payload) = message.value.as_str() else {
            return;
        };
        let payload: &str = &payload;
        let (kind, rest) = payload.split_once(' ').unwrap_or((payload, ""));
        match kind {
            "c" => match parse_entry_message(rest) {
                Some(comment) => self.on_comment(stream, comment),
                None => tracing::warn!(%stream, "unparsable comment message"),
            },
            "d" => {
                if let Ok(id) = rest.parse::<CommentId>() {
                    (self.sink)(BrokerEvent::Deleted {
                        stream,
                        ids: vec![id],
                    });
                }
            }
            "b" => (self.sink)(BrokerEvent::Banned {
                stream,
                user_id: rest.to_owned(),
            }),
            // Probes only prove the subscription alive.
            _ => {}
        }
    }

    fn on_comment(&mut self, stream: StreamId, comment: Comment) {
        let Some(tracked) = self.streams.get_mut(&stream) else {
            return;
        };
        match tracked.state {
            State::Live => {
                if tracked.last.is_none_or(|last| comment.id > last) {
                    tracked.last = Some(comment.id);
                    (self.sink)(BrokerEvent::Comments {
                        stream,
                        comments: vec![comment],
                    });
                }
            }
            State::Repairing { .. } => {
                if tracked.pending.len() < MAX_PENDING {
                    tracked.pending.push(comment);
                } else {
                    tracked.overflowed = true;
                }
            }
        }
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
        }
    }

    fn track(&mut self, stream: StreamId, reply: oneshot::Sender<Result<(), BrokerError>>) {
        let owner = self.owner_of(&stream);
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
            probe_sent: None,
            owner,
            confirmed: false,
        };
        self.streams.insert(stream.clone(), tracked);
        self.start_repair(stream, Repair::Subscribe, Duration::ZERO);
    }

    fn untrack(&mut self, stream: StreamId, reply: oneshot::Sender<Result<(), BrokerError>>) {
        if let Some(Tracked {
            state: State::Repairing { waiters, .. },
            ..
        }) = self.streams.remove(&stream)
        {
            for waiter in waiters {
                let _ = waiter.send(Err(BrokerError::Unavailable("unsubscribed".into())));
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

    /// Starts a repair of `stream`, superseding any repair in flight.
    fn start_repair(&mut self, stream: StreamId, repair: Repair, after: Duration) {
        let Some(tracked) = self.streams.get_mut(&stream) else {
            return;
        };
        tracked.generation += 1;
        tracked.probe_sent = None;
        if let State::Live = tracked.state {
            tracked.state = State::Repairing {
                since: Instant::now(),
                waiters: Vec::new(),
            };
        }
        let generation = tracked.generation;
        let last = tracked.last;
        let (client, subscriber, control) = (
            self.client.clone(),
            self.subscriber.clone(),
            self.control.clone(),
        );
        let limit = self.history_len;
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let result = run_repair(&client, &subscriber, &stream, repair, last, limit).await;
            let _ = control.send(Control::Repaired {
                stream,
                generation,
                result,
            });
        });
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
        let mut deliver: Vec<Comment> = Vec::new();
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
        for comment in repaired.backfill.into_iter().chain(pending) {
            if tracked.last.is_none_or(|last| comment.id > last) {
                tracked.last = Some(comment.id);
                deliver.push(comment);
            }
        }
        let overflowed = std::mem::take(&mut tracked.overflowed);
        tracked.last_message = Instant::now();
        if let State::Repairing { waiters, .. } = std::mem::replace(&mut tracked.state, State::Live)
        {
            for waiter in waiters {
                let _ = waiter.send(Ok(()));
            }
        }
        if !deliver.is_empty() {
            tracing::debug!(%stream, backfilled = deliver.len(), "delivered after repair");
            (self.sink)(BrokerEvent::Comments {
                stream: stream.clone(),
                comments: deliver,
            });
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
                State::Live => match tracked.probe_sent {
                    Some(sent) if now.duration_since(sent) > PROBE_TIMEOUT => {
                        deaf.push(stream.clone())
                    }
                    Some(_) => {}
                    None if now.duration_since(tracked.last_message) > PROBE_QUIET => {
                        tracked.probe_sent = Some(now);
                        probe.push(stream.clone());
                    }
                    None => {}
                },
            }
        }
        self.live.store(all_live, Ordering::Release);
        for stream in deaf {
            tracing::warn!(%stream, "subscription stopped answering probes; rebuilding it");
            self.metrics.subscription_rebuilt();
            self.start_repair(stream, Repair::Resubscribe, Duration::ZERO);
        }
        if !probe.is_empty() {
            let client = self.client.clone();
            tokio::spawn(async move {
                for stream in probe {
                    // A failed probe publish shows up as an unanswered probe.
                    let _ = client
                        .spublish::<i64, _, _>(keys::channel(&stream), "p")
                        .await;
                }
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
    limit: usize,
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
            })
        }
        (_, Some(last)) => {
            let page =
                read_history(client, stream, HistoryQuery::After { id: last, limit }).await?;
            Ok(Repaired {
                tail: None,
                backfill: page.comments,
                complete: page.complete,
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
