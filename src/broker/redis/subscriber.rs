//! The task that runs the subscription owner ([`Subscriptions`]) against Redis: it feeds
//! the owner every input (acquires and releases from the broker, messages and reconnects
//! from the subscriber client, the results of its own Redis work, linger and tick timers)
//! and carries out the [`Effect`]s the owner asks for. Redis calls run in spawned tasks
//! that report back through the same mailbox, so this task never awaits Redis and one slow
//! stream never delays another.

use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::*;
use fred::types::Message;
use fred::types::cluster::ClusterRouting;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::client::unavailable;
use super::codec::parse_message;
use super::history::{read_history, read_moderation_since};
use super::keys;
use super::subscriptions::{Effect, Repair, RepairJob, Repaired, Subscriptions, Waiter};
use crate::background::Background;
use crate::broker::{ALL_RETAINED, BrokerError, HistoryQuery};
use crate::domain::StreamId;

/// Messages handled per wake before the mailbox gets a turn.
const MESSAGE_BATCH: usize = 512;
/// How often quiet streams are probed.
const TICK_EVERY: Duration = Duration::from_millis(500);
/// How often the cluster topology is refreshed and compared with the subscriptions.
const TOPOLOGY_EVERY: Duration = Duration::from_secs(1);

/// The owner's mailbox.
pub(super) enum Control {
    /// A local viewer takes a hold on the stream.
    Acquire(StreamId, Waiter),
    /// A local viewer dropped its hold.
    Release(StreamId),
    Repaired {
        stream: StreamId,
        generation: u64,
        result: Result<Repaired, BrokerError>,
    },
    Unsubscribed(StreamId),
    Topology(Option<ClusterRouting>),
    ProbeSent(StreamId),
    ProbeFailed(StreamId),
}

pub(super) struct Subscriber {
    pub(super) client: Client,
    pub(super) subscriber: Client,
    pub(super) subscriptions: Subscriptions,
    pub(super) control: mpsc::UnboundedSender<Control>,
    pub(super) control_rx: mpsc::UnboundedReceiver<Control>,
    /// Where this task and its Redis jobs run.
    pub(super) background: Background,
}

pub(super) fn spawn(task: Subscriber) {
    if task.subscriber.is_clustered() {
        spawn_topology_watch(
            task.subscriber.clone(),
            task.control.clone(),
            &task.background,
        );
    }
    let background = task.background.clone();
    background.spawn(task.run());
}

impl Subscriber {
    async fn run(self) {
        let Self {
            client,
            subscriber,
            mut subscriptions,
            control,
            mut control_rx,
            background,
        } = self;
        let mut work = Work {
            client,
            subscriber,
            control,
            repairs: HashMap::new(),
            routing: None,
            background: background.clone(),
        };
        let mut messages = work.subscriber.message_rx();
        let mut reconnects = work.subscriber.reconnect_rx();
        let mut errors = work.subscriber.error_rx();
        let mut tick = tokio::time::interval(TICK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = background.cancelled() => return,
                message = messages.recv() => match message {
                    Ok(message) => {
                        on_message(&mut subscriptions, message);
                        for _ in 1..MESSAGE_BATCH {
                            match messages.try_recv() {
                                Ok(message) => on_message(&mut subscriptions, message),
                                Err(TryRecvError::Lagged(missed)) => subscriptions.lagged(missed),
                                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                            }
                        }
                    }
                    Err(RecvError::Lagged(missed)) => subscriptions.lagged(missed),
                    Err(RecvError::Closed) => return,
                },
                server = reconnects.recv() => match server {
                    Ok(server) => {
                        tracing::info!(%server, "Redis subscriber reconnected; resubscribing");
                        subscriptions.on_reconnect();
                    }
                    Err(RecvError::Lagged(_)) => subscriptions.on_reconnect(),
                    Err(RecvError::Closed) => return,
                },
                error = errors.recv() => match error {
                    // A connection to `server` dropped (errors without a server are failed
                    // reconnection attempts).
                    Ok((error, Some(server))) => {
                        tracing::info!(%server, %error, "Redis subscriber connection lost; repairing its streams");
                        subscriptions.on_disconnect(&server.to_string());
                    }
                    Ok((_, None)) => {}
                    Err(RecvError::Lagged(_)) => subscriptions.on_reconnect(),
                    Err(RecvError::Closed) => return,
                },
                control = control_rx.recv() => match control {
                    Some(control) => work.on_control(&mut subscriptions, control),
                    None => return,
                },
                stream = subscriptions.next_linger() => subscriptions.linger_over(stream),
                _ = tick.tick() => subscriptions.on_tick(),
            }
            for effect in subscriptions.take_effects() {
                work.start(effect);
            }
        }
    }
}

fn on_message(subscriptions: &mut Subscriptions, message: Message) {
    let Some(stream) = keys::stream_of_channel(&message.channel) else {
        return;
    };
    let inbound = message.value.as_str().and_then(|p| parse_message(&p));
    subscriptions.on_message(&stream, inbound);
}

/// The Redis side: clients, running repair jobs, the last topology seen.
struct Work {
    client: Client,
    subscriber: Client,
    control: mpsc::UnboundedSender<Control>,
    /// Each stream's running repair job and its generation.
    repairs: HashMap<StreamId, (u64, AbortHandle)>,
    routing: Option<ClusterRouting>,
    /// Where its Redis jobs run (short ones: aborted when superseded, waited for at
    /// shutdown).
    background: Background,
}

impl Work {
    fn on_control(&mut self, subscriptions: &mut Subscriptions, control: Control) {
        match control {
            Control::Acquire(stream, waiter) => {
                let owner = self.routing.as_ref().map(|r| owner_in(r, &stream));
                subscriptions.acquire(stream, waiter, owner);
            }
            Control::Release(stream) => subscriptions.release(&stream),
            Control::Repaired {
                stream,
                generation,
                result,
            } => {
                if self
                    .repairs
                    .get(&stream)
                    .is_some_and(|(g, _)| *g == generation)
                {
                    self.repairs.remove(&stream);
                }
                subscriptions.repaired(stream, generation, result);
            }
            Control::Unsubscribed(stream) => subscriptions.unsubscribed(stream),
            Control::Topology(routing) => {
                self.routing = routing;
                if let Some(routing) = &self.routing {
                    subscriptions.on_topology(|stream| owner_in(routing, stream));
                }
            }
            Control::ProbeSent(stream) => subscriptions.probe_sent(&stream),
            Control::ProbeFailed(stream) => subscriptions.probe_failed(&stream),
        }
    }

    fn start(&mut self, effect: Effect) {
        match effect {
            Effect::Repair { stream, job } => self.start_repair(stream, job),
            Effect::Unsubscribe(stream) => {
                if let Some((_, task)) = self.repairs.remove(&stream) {
                    task.abort();
                }
                let (subscriber, control) = (self.subscriber.clone(), self.control.clone());
                self.background.spawn(async move {
                    if let Err(error) = subscriber.sunsubscribe(keys::channel(&stream)).await {
                        tracing::warn!(%stream, %error, "unsubscribe failed");
                    }
                    let _ = control.send(Control::Unsubscribed(stream));
                });
            }
            Effect::Probe(stream) => {
                let (client, control) = (self.client.clone(), self.control.clone());
                self.background.spawn(async move {
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
    }

    fn start_repair(&mut self, stream: StreamId, job: RepairJob) {
        if let Some((_, task)) = self.repairs.remove(&stream) {
            task.abort();
        }
        let (client, subscriber, control) = (
            self.client.clone(),
            self.subscriber.clone(),
            self.control.clone(),
        );
        let generation = job.generation;
        let key = stream.clone();
        let task = self.background.spawn(async move {
            tokio::time::sleep(job.after).await;
            let result = run_repair(&client, &subscriber, &stream, &job).await;
            let _ = control.send(Control::Repaired {
                stream,
                generation,
                result,
            });
        });
        self.repairs.insert(key, (generation, task.abort_handle()));
    }
}

async fn run_repair(
    client: &Client,
    subscriber: &Client,
    stream: &StreamId,
    job: &RepairJob,
) -> Result<Repaired, BrokerError> {
    let channel = keys::channel(stream);
    if job.repair == Repair::Resubscribe {
        // The server may still think we are subscribed (a dead subscription on a moved
        // replica): drop it first. Failure only means there was nothing to drop.
        let _ = subscriber.sunsubscribe(channel.clone()).await;
    }
    if job.repair != Repair::Backfill {
        subscriber.ssubscribe(channel).await.map_err(unavailable)?;
    }
    match (job.repair, job.last) {
        (Repair::Subscribe, _) | (_, None) => {
            let page = read_history(client, stream, HistoryQuery::Latest { limit: 1 }).await?;
            Ok(Repaired {
                tail: page.comments.last().map(|c| c.id),
                epoch: Some(super::epoch(client, stream).await?),
                ..Repaired::default()
            })
        }
        (_, Some(last)) => {
            let query = HistoryQuery::After {
                id: last,
                limit: ALL_RETAINED,
            };
            let page = read_history(client, stream, query).await?;
            let moderation = read_moderation_since(client, stream, job.since_ms).await?;
            let epoch = super::epoch_after(client, stream, last, job.epoch.as_ref()).await?;
            Ok(Repaired {
                tail: None,
                backfill: page.comments,
                complete: page.complete,
                moderation,
                epoch: Some(epoch),
            })
        }
    }
}

fn owner_in(routing: &ClusterRouting, stream: &StreamId) -> String {
    let slot = ClusterRouting::hash_key(keys::channel(stream).as_bytes());
    routing
        .get_server(slot)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// Polls the cluster topology and reports it to the owner.
fn spawn_topology_watch(
    subscriber: Client,
    control: mpsc::UnboundedSender<Control>,
    background: &Background,
) {
    background.every(TOPOLOGY_EVERY, move || {
        let (subscriber, control) = (subscriber.clone(), control.clone());
        async move {
            match subscriber.sync_cluster().await {
                Ok(()) => {
                    let _ = control.send(Control::Topology(subscriber.cached_cluster_state()));
                }
                Err(error) => tracing::debug!(%error, "cluster topology refresh failed"),
            }
        }
    });
}
