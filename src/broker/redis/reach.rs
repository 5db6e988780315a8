//! Whether this instance reaches Redis at all, for `/readyz`'s `broker`: every
//! [`PROBE_EVERY`] each known node is asked `ROLE` on a connection of its own, and Redis is
//! reachable while some primary answered within [`GRACE`].
//!
//! Why connections of its own: the broker's clients cannot say it. fred's cluster client
//! reports itself disconnected while any node is down, and while it remakes the connection to
//! a failed master it sends no command to any node (its router waits out the reconnection),
//! so during one shard's failover every instance would look cut off, the Service would lose
//! every endpoint at once, and an instance with no viewers (or whose every stream sits on the
//! failing shard) would hear nothing to prove otherwise. One primary answering is what "this
//! instance can serve" means: its other shards publish, read and deliver.
//!
//! The known nodes: the configured seeds and the primaries of the newest topology the
//! subscriber client holds (refreshed every second by the subscriber task), so a replica
//! promoted by a failover is asked from the next round on. A replica answers `ROLE` as a
//! replica and does not count.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::{Options, TlsConfig};
use fred::types::{ClusterHash, CustomCommand};
use tokio::task::JoinHandle;

use super::client::{build_node_client, node_addresses};
use crate::background::Background;
use crate::config::RedisSettings;
use crate::domain::now_ms;

/// How often every known node is asked.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A node that has not answered within this long is taken as not answering.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// Redis is unreachable once no primary answered for this long: a probe round lost to a
/// busy moment is not an outage.
const GRACE: Duration = Duration::from_secs(3);

/// When a primary last answered: the one fact `/readyz` reads.
#[derive(Default)]
pub(super) struct Reach {
    /// Epoch ms; 0: never.
    last_answer_ms: AtomicU64,
}

impl Reach {
    /// Some primary answered within [`GRACE`].
    pub(super) fn is_reachable(&self) -> bool {
        let last = self.last_answer_ms.load(Ordering::Acquire);
        last != 0 && now_ms().saturating_sub(last) < GRACE.as_millis() as u64
    }

    fn answered(&self) {
        self.last_answer_ms.store(now_ms(), Ordering::Release);
    }
}

/// The probe connections, one per known node.
pub(super) struct Prober {
    settings: RedisSettings,
    tls: Option<TlsConfig>,
    /// The configured nodes, always asked.
    seeds: Vec<Server>,
    /// Where the newest topology is read (without I/O).
    topology: Client,
    nodes: HashMap<Server, (Client, JoinHandle<FredResult<()>>)>,
    reach: Arc<Reach>,
    /// Where connections to nodes no longer known are closed (set once spawned).
    background: Option<Background>,
}

impl Prober {
    pub(super) fn new(
        settings: &RedisSettings,
        tls: Option<TlsConfig>,
        topology: Client,
        reach: Arc<Reach>,
    ) -> anyhow::Result<Self> {
        let seeds = node_addresses(settings)?
            .into_iter()
            .map(|(host, port)| Server::new(host, port))
            .collect();
        Ok(Self {
            settings: settings.clone(),
            tls,
            seeds,
            topology,
            nodes: HashMap::new(),
            reach,
            background: None,
        })
    }

    /// Asks every known node once; records an answer from a primary.
    pub(super) async fn probe(&mut self) {
        self.follow_topology();
        let asks = self.nodes.values().map(|(client, _)| is_primary(client));
        let answers = futures_util::future::join_all(asks).await;
        if answers.into_iter().any(|primary| primary) {
            self.reach.answered();
        }
    }

    /// Probes until the background work stops, then closes the probe connections.
    pub(super) fn spawn(mut self, background: &Background) {
        let watching = background.clone();
        self.background = Some(background.clone());
        background.spawn(async move {
            let mut every = tokio::time::interval(PROBE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = watching.cancelled() => break,
                    _ = every.tick() => self.probe().await,
                }
            }
            for (_, (client, task)) in self.nodes.drain() {
                let _ = client.quit().await;
                task.abort();
            }
        });
    }

    /// Opens a connection to each node newly known, closes those to nodes no longer known.
    fn follow_topology(&mut self) {
        let mut known = self.seeds.clone();
        if let Some(routing) = self.topology.cached_cluster_state() {
            known.extend(routing.unique_primary_nodes());
        }
        self.nodes.retain(|server, (client, task)| {
            let keep = known.contains(server);
            if !keep {
                let client = client.clone();
                if let Some(background) = &self.background {
                    background.spawn(async move { client.quit().await });
                }
                task.abort();
            }
            keep
        });
        for server in known {
            if self.nodes.contains_key(&server) {
                continue;
            }
            match build_node_client(&self.settings, self.tls.clone(), &server) {
                Ok(client) => {
                    let task = client.connect();
                    self.nodes.insert(server, (client, task));
                }
                Err(error) => tracing::warn!(%server, %error, "cannot probe a Redis node"),
            }
        }
    }
}

/// Whether the node answers `ROLE` as a primary within [`ANSWER_WITHIN`]. A connection
/// being made is waited for that long; a command is never queued for a node that is down
/// (a seed gone for good would pile them up).
async fn is_primary(client: &Client) -> bool {
    if !client.is_connected() {
        let connected = tokio::time::timeout(ANSWER_WITHIN, client.wait_for_connect()).await;
        if !matches!(connected, Ok(Ok(()))) {
            return false;
        }
    }
    let options = Options {
        timeout: Some(ANSWER_WITHIN),
        fail_fast: true,
        max_attempts: Some(1),
        ..Options::default()
    };
    let role = CustomCommand::new_static("ROLE", ClusterHash::FirstKey, false);
    let reply: FredResult<Vec<Value>> = client
        .with_options(&options)
        .custom(role, Vec::<Value>::new())
        .await;
    reply.is_ok_and(|r| r.first().and_then(Value::as_str).as_deref() == Some("master"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachable_only_within_the_grace_of_a_primary_answer() {
        let reach = Reach::default();
        assert!(!reach.is_reachable(), "never answered");
        reach.answered();
        assert!(reach.is_reachable());
        let long_ago = now_ms() - GRACE.as_millis() as u64 - 1;
        reach.last_answer_ms.store(long_ago, Ordering::Release);
        assert!(!reach.is_reachable());
    }
}
