//! The faults: which one comes next (drawn with the run's seed) and what each does, step by
//! step, until everything is back. One at a time: the next is drawn only once the instances are
//! all ready and the cluster is whole again.
//!
//! An instance fault (kill, drain, cut) hits the instance with the most viewers, so it always
//! matters; which node, pair or slot the others hit is drawn. Uses `cluster`, `fleet`, `proxy`
//! and `live`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::chaos::cluster::{Cluster, NodeInfo, command, query};
use crate::chaos::fleet::Fleet;
use crate::chaos::live::Live;
use crate::chaos::proxy::Proxy;

/// The kinds of fault, in their canonical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Kill,
    Drain,
    Failover,
    MasterKill,
    Migrate,
    RedisRestart,
    Cut,
}

pub(crate) const ALL: [Kind; 7] = [
    Kind::Kill,
    Kind::Drain,
    Kind::Failover,
    Kind::MasterKill,
    Kind::Migrate,
    Kind::RedisRestart,
    Kind::Cut,
];

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Drain => "drain",
            Kind::Failover => "failover",
            Kind::MasterKill => "master-kill",
            Kind::Migrate => "migrate",
            Kind::RedisRestart => "redis-restart",
            Kind::Cut => "cut",
        }
    }
}

/// Draws the faults: at random, or every kind in turn (a seeded shuffle, again and again).
pub(crate) struct Draw {
    in_turn: bool,
    kinds: Vec<Kind>,
    queue: Vec<Kind>,
}

impl Draw {
    /// Without a relay (`direct`) there is no cut.
    pub(crate) fn new(in_turn: bool, direct: bool) -> Draw {
        Draw {
            in_turn,
            kinds: ALL
                .into_iter()
                .filter(|k| !direct || *k != Kind::Cut)
                .collect(),
            queue: Vec::new(),
        }
    }

    pub(crate) fn next(&mut self, rng: &mut StdRng) -> Kind {
        if !self.in_turn {
            return self.kinds[rng.random_range(0..self.kinds.len())];
        }
        if self.queue.is_empty() {
            self.queue = self.kinds.clone();
            self.queue.shuffle(rng);
        }
        self.queue.remove(0)
    }
}

/// What a fault acts on, and what it needs to know.
pub(crate) struct Stage<'a> {
    pub cluster: &'a mut Cluster,
    pub fleet: &'a mut Fleet,
    pub proxy: &'a Proxy,
    /// The streams, busiest first (for a migration).
    pub busy_streams: Vec<String>,
    pub drain: Duration,
    /// Where the viewers are: an instance fault hits the busiest instance.
    pub live: &'a Live,
}

/// What a fault did: its target and a note of each step.
pub(crate) struct Done {
    pub target: String,
    pub note: String,
}

/// How long an instance stays down after it exited.
const DOWN: Duration = Duration::from_secs(5);
/// How long a cut lasts.
const CUT: Duration = Duration::from_secs(10);

impl Stage<'_> {
    /// Runs one fault of `kind` to its end.
    pub(crate) async fn run(&mut self, kind: Kind, rng: &mut StdRng) -> anyhow::Result<Done> {
        match kind {
            Kind::Kill | Kind::Drain | Kind::Cut => {
                self.instance_fault(kind, self.live.busiest()).await
            }
            Kind::Failover => self.failover(rng).await,
            Kind::MasterKill => self.master_kill(rng).await,
            Kind::Migrate => self.migrate(rng).await,
            Kind::RedisRestart => self.redis_restart().await,
        }
    }

    async fn instance_fault(&mut self, kind: Kind, i: usize) -> anyhow::Result<Done> {
        let name = Fleet::name(i);
        let started = Instant::now();
        let note = match kind {
            Kind::Kill => {
                self.fleet.kill(i);
                tokio::time::sleep(DOWN).await;
                "SIGKILL, restarted 5 s later".to_owned()
            }
            Kind::Drain => {
                let (took, clean) = self
                    .fleet
                    .drain(i, self.drain + Duration::from_secs(15))
                    .await;
                tokio::time::sleep(DOWN).await;
                format!(
                    "SIGTERM, exited {} after {:.1} s, restarted 5 s later",
                    if clean { "cleanly" } else { "NOT cleanly" },
                    took.as_secs_f64()
                )
            }
            _ => {
                let closed = self.proxy.cut(&name, CUT);
                tokio::time::sleep(CUT).await;
                format!("cut from Redis for 10 s ({closed} connections closed)")
            }
        };
        if kind != Kind::Cut {
            let proxy = self.proxy;
            self.fleet
                .start(i, |pid| proxy.set_owner(&name, pid))
                .await?;
        }
        Ok(Done {
            target: name,
            note: format!(
                "{note}; back after {:.1} s",
                started.elapsed().as_secs_f64()
            ),
        })
    }

    /// A master with a replica that is up, and that replica.
    async fn pair(&self, rng: &mut StdRng) -> anyhow::Result<(NodeInfo, NodeInfo)> {
        let nodes = self.cluster.topology().await?;
        let mut pairs: Vec<(NodeInfo, NodeInfo)> = nodes
            .iter()
            .filter(|m| m.master && !m.failed && !m.slots.is_empty())
            .filter_map(|m| {
                let r = nodes
                    .iter()
                    .find(|r| !r.master && !r.failed && r.master_id.as_deref() == Some(&m.id))?;
                Some((m.clone(), r.clone()))
            })
            .collect();
        if pairs.is_empty() {
            bail!("no master has a replica that is up");
        }
        Ok(pairs.swap_remove(rng.random_range(0..pairs.len())))
    }

    async fn failover(&mut self, rng: &mut StdRng) -> anyhow::Result<Done> {
        let (m, r) = self.pair(rng).await?;
        let port = self.cluster.port(r.index);
        query(port, &["CLUSTER", "FAILOVER"]).await?;
        self.wait_master(r.index, Duration::from_secs(20)).await?;
        Ok(Done {
            target: format!("redis-{} → redis-{port}", self.cluster.port(m.index)),
            note: "CLUSTER FAILOVER on the replica".into(),
        })
    }

    async fn master_kill(&mut self, rng: &mut StdRng) -> anyhow::Result<Done> {
        let (m, r) = self.pair(rng).await?;
        let started = Instant::now();
        self.cluster.kill(m.index);
        self.wait_master(r.index, Duration::from_secs(30)).await?;
        let promoted = started.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.cluster.restart(m.index).await?;
        for (name, pid) in self.cluster.pids() {
            self.proxy.set_owner(&name, pid);
        }
        let port = self.cluster.port(m.index);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut replicated = false;
        while Instant::now() < deadline {
            if query(port, &["ROLE"])
                .await
                .is_ok_and(|r| r.contains("slave"))
            {
                replicated = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !replicated {
            query(port, &["CLUSTER", "REPLICATE", &r.id]).await?;
        }
        Ok(Done {
            target: format!(
                "redis-{port} (replica redis-{})",
                self.cluster.port(r.index)
            ),
            note: format!(
                "SIGKILL; replica promoted after {:.1} s; restarted, {}",
                promoted.as_secs_f64(),
                if replicated {
                    "a replica again by itself"
                } else {
                    "made a replica with CLUSTER REPLICATE"
                }
            ),
        })
    }

    /// Waits until node `i` is a master holding slots, as the others see it.
    async fn wait_master(&self, i: usize, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let nodes = self.cluster.topology().await.unwrap_or_default();
            if nodes
                .iter()
                .any(|n| n.index == i && n.master && !n.slots.is_empty())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("redis-{} did not become a master", self.cluster.port(i));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn migrate(&mut self, rng: &mut StdRng) -> anyhow::Result<Done> {
        let stream = self.busy_streams[rng.random_range(0..self.busy_streams.len().min(3))].clone();
        let key = format!("danmaku:{{{stream}}}:ch");
        let any = self.cluster.port(0);
        let slot: u16 = query(any, &["CLUSTER", "KEYSLOT", &key]).await?.parse()?;
        let nodes = self.cluster.topology().await?;
        let masters: Vec<&NodeInfo> = nodes
            .iter()
            .filter(|n| n.master && !n.failed && !n.slots.is_empty())
            .collect();
        let from = *masters
            .iter()
            .find(|n| n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .context("no master holds the slot")?;
        let others: Vec<&&NodeInfo> = masters.iter().filter(|n| n.id != from.id).collect();
        let to = *others[rng.random_range(0..others.len())];
        let (src, dst) = (self.cluster.port(from.index), self.cluster.port(to.index));
        let s = slot.to_string();
        query(dst, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from.id]).await?;
        query(src, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to.id]).await?;
        let mut moved = 0;
        loop {
            let keys = keys_in_slot(src, &s).await?;
            if keys.is_empty() {
                break;
            }
            moved += keys.len();
            let dst_port = dst.to_string();
            let mut args = vec![
                "MIGRATE",
                "127.0.0.1",
                &dst_port,
                "",
                "0",
                "5000",
                "REPLACE",
                "KEYS",
            ];
            args.extend(keys.iter().map(String::as_str));
            query(src, &args).await?;
        }
        for port in [dst, src]
            .into_iter()
            .chain(masters.iter().map(|m| self.cluster.port(m.index)))
        {
            query(port, &["CLUSTER", "SETSLOT", &s, "NODE", &to.id]).await?;
        }
        Ok(Done {
            target: format!("slot {slot} ({stream}) redis-{src} → redis-{dst}"),
            note: format!(
                "IMPORTING/MIGRATING, {moved} keys MIGRATEd, SETSLOT NODE on every master"
            ),
        })
    }

    async fn redis_restart(&mut self) -> anyhow::Result<Done> {
        let started = Instant::now();
        self.cluster.stop();
        for i in 0..self.cluster.len() {
            self.cluster.restart(i).await?;
        }
        for (name, pid) in self.cluster.pids() {
            self.proxy.set_owner(&name, pid);
        }
        self.cluster.wait_ok(Duration::from_secs(60)).await?;
        Ok(Done {
            target: "every node".into(),
            note: format!(
                "all six stopped and started again without data; cluster ok after {:.1} s",
                started.elapsed().as_secs_f64()
            ),
        })
    }
}

/// `CLUSTER GETKEYSINSLOT slot 100` on the node at `port`.
async fn keys_in_slot(port: u16, slot: &str) -> anyhow::Result<Vec<String>> {
    match command(port, &["CLUSTER", "GETKEYSINSLOT", slot, "100"]).await? {
        redis::Value::Array(keys) => Ok(keys
            .into_iter()
            .filter_map(|k| match k {
                redis::Value::BulkString(b) => String::from_utf8(b).ok(),
                _ => None,
            })
            .collect()),
        other => bail!("GETKEYSINSLOT answered {other:?}"),
    }
}
