//! The Redis Cluster of the chaos soak: six Debian `redis-server` nodes on 127.0.0.1 (three
//! masters with a replica each, no persistence), each announcing its port on the relay
//! ([`super::proxy`]) and its own bus port, and what the faults do to them: stop, kill and start
//! a node, read the topology, a planned failover, a slot migration. The soak talks to each node
//! directly on its own port. It uses nothing else of the crate.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a node may be silent before its peers fail it over (ms). Short, so a killed
/// master's replica takes over within seconds; long enough for a loaded 2-core box.
const NODE_TIMEOUT_MS: u32 = 3000;

/// One node: its own port (the bus is port + 10000) and the relay port it announces.
struct Node {
    port: u16,
    proxy_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// What `CLUSTER NODES` says of one node.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    pub id: String,
    /// Index of the node in the cluster (by the port it announces).
    pub index: usize,
    pub master: bool,
    /// Its master's id, for a replica.
    pub master_id: Option<String>,
    pub failed: bool,
    pub slots: Vec<(u16, u16)>,
}

pub(crate) struct Cluster {
    nodes: Vec<Node>,
}

impl Cluster {
    /// Starts a node on each of `ports` (announcing the relay port at the same index of
    /// `proxy_ports`), with its files under `work`.
    pub(crate) fn start(work: &Path, ports: &[u16], proxy_ports: &[u16]) -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        for (&port, &proxy_port) in ports.iter().zip(proxy_ports) {
            let dir = work.join(format!("redis-{port}"));
            std::fs::create_dir_all(&dir)?;
            nodes.push(Node {
                port,
                proxy_port,
                dir,
                child: None,
            });
        }
        let mut cluster = Cluster { nodes };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The node's own port.
    pub(crate) fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// `name=pid` of every running node.
    pub(crate) fn pids(&self) -> Vec<(String, u32)> {
        self.nodes
            .iter()
            .filter_map(|n| Some((format!("redis-{}", n.port), n.child.as_ref()?.id())))
            .collect()
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.dir.join("redis.log"))?;
        let child = Command::new("redis-server")
            .args(["--port", &n.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(n.dir.join("nodes.conf"))
            .arg("--dir")
            .arg(&n.dir)
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--maxclients", "10000"])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--cluster-announce-ip", "127.0.0.1"])
            .args(["--cluster-announce-port", &n.proxy_port.to_string()])
            .args(["--cluster-announce-bus-port", &(n.port + 10000).to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start redis-server (apt-get install redis-server)")?;
        n.child = Some(child);
        Ok(())
    }

    /// Waits until every running node answers `PING`.
    pub(crate) async fn wait_up(&self) -> anyhow::Result<()> {
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while query(n.port, &["PING"]).await.is_err() {
                if Instant::now() > deadline {
                    bail!("redis {} does not answer", n.port);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Makes the cluster: the first half masters, the rest a replica each
    /// (`redis-cli --cluster create … --cluster-replicas 1`). The relay must be up: redis-cli
    /// checks the cluster through the addresses the nodes announce.
    pub(crate) fn create(&self) -> anyhow::Result<()> {
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("redis-cli (apt-get install redis-tools)")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Waits until every running node says `cluster_state:ok`, sees every other running node,
    /// and every replica's link to its master is up.
    pub(crate) async fn wait_ok(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            match self.healthy().await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn healthy(&self) -> anyhow::Result<()> {
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let info = query(n.port, &["CLUSTER", "INFO"]).await?;
            if !info.contains("cluster_state:ok") {
                bail!("redis {}: cluster state not ok", n.port);
            }
            let repl = query(n.port, &["INFO", "replication"]).await?;
            if repl.contains("role:slave") && !repl.contains("master_link_status:up") {
                bail!("redis {}: replica link down", n.port);
            }
        }
        let topology = self.topology().await?;
        let running = self.nodes.iter().filter(|n| n.child.is_some()).count();
        if topology.iter().filter(|n| !n.failed).count() < running {
            bail!("a running node is still seen as failed");
        }
        Ok(())
    }

    /// The cluster as the first running node sees it.
    pub(crate) async fn topology(&self) -> anyhow::Result<Vec<NodeInfo>> {
        let mut last = None;
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            match query(n.port, &["CLUSTER", "NODES"]).await {
                Ok(text) => return Ok(self.parse_nodes(&text)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no Redis node runs")))
    }

    fn parse_nodes(&self, text: &str) -> Vec<NodeInfo> {
        let mut out = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                continue;
            }
            let port = f[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok());
            let Some(index) = self.nodes.iter().position(|n| Some(n.proxy_port) == port) else {
                continue;
            };
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| {
                    let (a, b) = s.split_once('-').unwrap_or((s, s));
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect();
            out.push(NodeInfo {
                id: f[0].to_owned(),
                index,
                master: f[2].contains("master"),
                master_id: (f[3] != "-").then(|| f[3].to_owned()),
                failed: f[2].contains("fail") && !f[2].contains("fail?"),
                slots,
            });
        }
        out.sort_by_key(|n| n.index);
        out
    }

    /// SIGKILL to node `i`, and waits for it to exit.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again, with the `nodes.conf` it had (its data is gone: no persistence,
    /// and any RDB file a replica received is removed first).
    pub(crate) async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let dir = self.nodes[i].dir.clone();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            if entry.path().extension().is_some_and(|e| e == "rdb") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        self.spawn(i)?;
        self.wait_up().await
    }

    /// Stops every node (SIGKILL), for good.
    pub(crate) fn stop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends one command to the node on `port` and reads the answer as text (`OK`, a bulk
/// string, …).
pub(crate) async fn query(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let value = command(port, args).await?;
    Ok(match value {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::SimpleString(s) => s,
        redis::Value::VerbatimString { text, .. } => text,
        redis::Value::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    })
}

/// Sends one command to the node on `port`.
pub(crate) async fn command(port: u16, args: &[&str]) -> anyhow::Result<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
    .context("timed out")??;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let value = tokio::time::timeout(Duration::from_secs(10), cmd.query_async(&mut conn))
        .await
        .context("timed out")??;
    Ok(value)
}
