//! Real Redis 7.0 for the broker tests: a standalone server or a 3-master, 3-replica cluster,
//! each node a container of the local image `danmaku-redis:local` (`scripts/redis-image`).
//!
//! Containers run with host networking and `--bind 127.0.0.1`, so clients and cluster nodes
//! all talk over loopback and every node announces `127.0.0.1:<port>`: nothing ever connects
//! to a container's bridge address. Each container carries the label `danmaku.test=1`
//! (`scripts/test` removes leftovers by it) and is removed when its handle drops.
//! See `docs/redis-testing.md`.

// A harness: not every helper is used by the tests of the moment.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ClientTlsConfig, ProtocolVersion, PushInfo, TlsCertificates, Value,
};
use testcontainers::core::{AccessMode, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::tls_pki::TestPki;

pub const IMAGE_NAME: &str = "danmaku-redis";
pub const IMAGE_TAG: &str = "local";
/// Every container the harness starts carries this label (`key=value`).
pub const TEST_LABEL: (&str, &str) = ("danmaku.test", "1");
/// Redis prints this on stdout once it serves clients.
const READY: &str = "Ready to accept connections";
pub const SLOTS: u16 = 16384;
/// How long a node may take to start, or the cluster to form, converge or fail over.
pub const REDIS_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// Ports

/// Ports handed out in this process and not yet released, so two nodes never get the same one.
fn reserved() -> &'static Mutex<BTreeSet<u16>> {
    static RESERVED: OnceLock<Mutex<BTreeSet<u16>>> = OnceLock::new();
    RESERVED.get_or_init(Default::default)
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A free loopback port below the kernel's ephemeral range (32768–60999 here), so no outgoing
/// connection can take it between this check and Redis binding it; with `bus`, port + 10000 (a
/// cluster node's bus port, which must stay ≤ 65535) is free too and also below that range.
fn free_port(bus: bool) -> u16 {
    const LOW: u32 = 10_000;
    const HIGH: u32 = 22_000; // bus ports 20000..32000
    let span = HIGH - LOW;
    // A different start per process and call spreads parallel test binaries apart.
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
    let mut reserved = reserved().lock().unwrap();
    for i in 0..span {
        let port = u16::try_from(LOW + (seed.wrapping_add(i.wrapping_mul(7919))) % span).unwrap();
        if reserved.contains(&port) || (bus && reserved.contains(&(port + 10_000))) {
            continue;
        }
        if bindable(port) && (!bus || bindable(port + 10_000)) {
            reserved.insert(port);
            if bus {
                reserved.insert(port + 10_000);
            }
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{HIGH}");
}

fn release_port(port: u16) {
    let mut reserved = reserved().lock().unwrap();
    reserved.remove(&port);
    reserved.remove(&(port + 10_000));
}

// ---------------------------------------------------------------------------------------------
// Containers

/// One redis-server container on the host network, listening on 127.0.0.1:`port`.
async fn start_container(
    port: u16,
    extra: &[String],
    tls_dir: Option<PathBuf>,
) -> Result<ContainerAsync<GenericImage>, String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        "/data",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().cloned());
    let mut image = GenericImage::new(IMAGE_NAME, IMAGE_TAG)
        .with_wait_for(WaitFor::message_on_stdout(READY))
        .with_network("host");
    if let Some(dir) = tls_dir {
        let dir = dir.to_str().expect("a UTF-8 temp path").to_owned();
        image = image
            .with_mount(Mount::bind_mount(dir, TLS_DIR).with_access_mode(AccessMode::ReadOnly));
    }
    image
        .with_label(TEST_LABEL.0, TEST_LABEL.1)
        .with_startup_timeout(REDIS_WAIT)
        .with_cmd(args)
        .start()
        .await
        .map_err(|e| e.to_string())
}

/// Starts a node on a fresh free port, trying again on another port if the first one was
/// taken in the meantime. Panics with a hint when Docker or the image is missing.
async fn start_node(
    bus: bool,
    security: Option<&Secured>,
    extra: impl Fn(u16) -> Vec<String>,
) -> (u16, ContainerAsync<GenericImage>) {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port(bus);
        let mut args = extra(port);
        if let Some(security) = security {
            args.extend(security.server_args(port, bus));
        }
        let tls_dir = security.map(|s| s.pki.dir().to_owned());
        match start_container(port, &args, tls_dir).await {
            Ok(container) => return (port, container),
            Err(e) => {
                release_port(port);
                last = e;
                if last.contains("No such image") {
                    break;
                }
            }
        }
    }
    panic!(
        "could not start a redis container: {last}\n\
         (the Redis tests need a running Docker engine and the image {IMAGE_NAME}:{IMAGE_TAG}: \
         run ./scripts/test once, or start dockerd and run ./scripts/redis-image)"
    )
}

/// Where the test CA and the certificates are mounted in a container.
const TLS_DIR: &str = "/tls";

/// The ACL user the harness itself (and replication) uses on a [`Secured`] Redis, so a test
/// may change the app's user freely.
const HARNESS_USER: &str = "harness";
const HARNESS_PASSWORD: &str = "harness-pw";

/// A Redis that speaks TLS only (`--port 0 --tls-port`), with the `default` user off and
/// two ACL users allowed everything: the app's (`user`) and the harness's. The harness
/// reaches it over TLS with the client certificate.
#[derive(Clone)]
pub struct Secured {
    pub pki: Arc<TestPki>,
    /// `--tls-auth-clients`: `yes` (mutual TLS required) or `optional`.
    pub auth_clients: &'static str,
    pub user: String,
    pub password: String,
}

impl Secured {
    fn server_args(&self, port: u16, cluster: bool) -> Vec<String> {
        let file = |name: &str| format!("{TLS_DIR}/{name}");
        let mut args = vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            file("server.pem"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.pem"),
            "--tls-auth-clients".into(),
            self.auth_clients.into(),
            "--user".into(),
            "default".into(),
            "off".into(),
        ];
        for (user, password) in [
            (&*self.user, &*self.password),
            (HARNESS_USER, HARNESS_PASSWORD),
        ] {
            args.extend(
                [
                    "--user",
                    user,
                    "on",
                    &format!(">{password}"),
                    "~*",
                    "&*",
                    "+@all",
                ]
                .map(String::from),
            );
        }
        if cluster {
            args.extend(
                [
                    "--tls-cluster",
                    "yes",
                    "--tls-replication",
                    "yes",
                    // With `tls-cluster` the announced client port is the TLS one;
                    // `cluster-announce-port` would name a plaintext port, and there is none.
                    "--cluster-announce-tls-port",
                    &port.to_string(),
                    "--cluster-announce-port",
                    "0",
                    "--masteruser",
                    HARNESS_USER,
                    "--masterauth",
                    HARNESS_PASSWORD,
                ]
                .map(String::from),
            );
        }
        args
    }
}

/// How the harness reaches a node: plain RESP, or [`Secured`].
#[derive(Clone, Default)]
struct Access(Option<Secured>);

impl Access {
    fn url(&self, port: u16) -> String {
        match &self.0 {
            None => format!("redis://127.0.0.1:{port}"),
            Some(_) => format!("rediss://{HARNESS_USER}:{HARNESS_PASSWORD}@127.0.0.1:{port}"),
        }
    }

    fn client(&self, url: String) -> redis::Client {
        match &self.0 {
            None => redis::Client::open(url).unwrap(),
            Some(s) => redis::Client::build_with_tls(url, s.certificates()).unwrap(),
        }
    }
}

impl Secured {
    fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: Some(ClientTlsConfig {
                client_cert: self.pki.read("client.pem"),
                client_key: self.pki.read("client.key"),
            }),
            root_cert: Some(self.pki.read("ca.pem")),
        }
    }
}

fn url_for(port: u16) -> String {
    Access::default().url(port)
}

/// A RESP2 multiplexed connection to one server. A TLS handshake plus `AUTH` on a busy
/// machine can outlast redis-rs's 500 ms default, so the timeouts are longer and a failed
/// attempt is retried until [`REDIS_WAIT`].
async fn connect(access: &Access, port: u16) -> MultiplexedConnection {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let deadline = Instant::now() + REDIS_WAIT;
    loop {
        match access
            .client(access.url(port))
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => return conn,
            Err(e) if Instant::now() >= deadline => panic!("connect to 127.0.0.1:{port}: {e}"),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// A RESP3 connection whose pushes (`smessage`, `sunsubscribe`, …) arrive on the receiver.
/// Subscribe with a plain command: `redis::cmd("SSUBSCRIBE").arg(ch).exec_async(&mut conn)`.
async fn connect_resp3(
    access: &Access,
    port: u16,
) -> (MultiplexedConnection, UnboundedReceiver<PushInfo>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = access.client(format!("{}/?protocol=resp3", access.url(port)));
    let config = AsyncConnectionConfig::new().set_push_sender(tx);
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    (conn, rx)
}

async fn ping(access: &Access, port: u16) -> bool {
    let client = access.client(access.url(port));
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)));
    match client
        .get_multiplexed_async_connection_with_config(&config)
        .await
    {
        Ok(mut conn) => redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok_and(|p| p == "PONG"),
        Err(_) => false,
    }
}

/// Polls `check` every 50 ms until it returns `Some` or [`REDIS_WAIT`] passes.
async fn poll_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + REDIS_WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

async fn shard_numsub_at(conn: &mut MultiplexedConnection, channel: &str) -> u64 {
    let (_, n): (String, u64) = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(channel)
        .query_async(conn)
        .await
        .expect("PUBSUB SHARDNUMSUB");
    n
}

// ---------------------------------------------------------------------------------------------
// Standalone

/// One standalone Redis on 127.0.0.1:`port()`.
pub struct RedisStandalone {
    port: u16,
    access: Access,
    container: ContainerAsync<GenericImage>,
}

impl RedisStandalone {
    pub async fn start() -> Self {
        let (port, container) = start_node(false, None, |_| Vec::new()).await;
        RedisStandalone {
            port,
            access: Access::default(),
            container,
        }
    }

    /// A TLS-only server with an ACL user; see [`Secured`].
    pub async fn start_secured(security: Secured) -> Self {
        let (port, container) = start_node(false, Some(&security), |_| Vec::new()).await;
        RedisStandalone {
            port,
            access: Access(Some(security)),
            container,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` with no credentials when secured).
    pub fn url(&self) -> String {
        match self.access.0 {
            None => url_for(self.port),
            Some(_) => format!("rediss://127.0.0.1:{}", self.port),
        }
    }

    pub async fn client(&self) -> MultiplexedConnection {
        connect(&self.access, self.port).await
    }

    /// See [`connect_resp3`].
    pub async fn client_resp3(&self) -> (MultiplexedConnection, UnboundedReceiver<PushInfo>) {
        connect_resp3(&self.access, self.port).await
    }

    /// Stops the server without restarting it (connections drop; the port refuses).
    pub async fn stop(&mut self) {
        self.container
            .stop()
            .await
            .expect("stop the redis container");
    }

    /// Starts the stopped server again on the same port and waits until it answers PING.
    /// Nothing is persisted: it comes back empty.
    pub async fn start_again(&mut self) {
        self.container
            .start()
            .await
            .expect("start the redis container again");
        let (port, access) = (self.port, &self.access);
        poll_until("redis to answer PING after a restart", || async move {
            ping(access, port).await.then_some(())
        })
        .await;
    }

    /// Stops the same container and starts it again on the same port (clients see their
    /// connections drop, then the server comes back empty).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// `PUBSUB SHARDNUMSUB channel`.
    pub async fn shard_numsub(&self, channel: &str) -> u64 {
        let mut conn = self.client().await;
        shard_numsub_at(&mut conn, channel).await
    }
}

impl Drop for RedisStandalone {
    fn drop(&mut self) {
        release_port(self.port);
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster

/// A node of a [`RedisCluster`], by its port (its cluster node id never changes:
/// [`RedisCluster::node_id`]). `Copy`, so tests can compare it after handing it over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeHandle {
    pub port: u16,
}

impl From<u16> for NodeHandle {
    fn from(port: u16) -> Self {
        NodeHandle { port }
    }
}

impl From<NodeHandle> for u16 {
    fn from(node: NodeHandle) -> Self {
        node.port
    }
}

struct Node {
    port: u16,
    id: String,
    alive: AtomicBool,
    container: ContainerAsync<GenericImage>,
}

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
pub struct NodeView {
    pub id: String,
    pub port: u16,
    pub flags: Vec<String>,
    /// The id of the master this replica follows.
    pub master_id: Option<String>,
    pub config_epoch: u64,
    pub connected: bool,
    /// Slot ranges this node serves (inclusive); importing/migrating markers are left out.
    pub slots: Vec<(u16, u16)>,
}

impl NodeView {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
    pub fn is_master(&self) -> bool {
        self.has_flag("master")
    }
    pub fn is_failed(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

/// Parses `CLUSTER NODES` output.
pub fn parse_cluster_nodes(text: &str) -> Vec<NodeView> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(f.len() >= 8, "bad CLUSTER NODES line: {line}");
            // ip:port@cport[,hostname]
            let addr = f[1].split('@').next().unwrap();
            let port = addr.rsplit(':').next().unwrap().parse().unwrap_or(0);
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .map(|s| match s.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => {
                        let n = s.parse().unwrap();
                        (n, n)
                    }
                })
                .collect();
            NodeView {
                id: f[0].to_string(),
                port,
                flags: f[2].split(',').map(str::to_string).collect(),
                master_id: (f[3] != "-").then(|| f[3].to_string()),
                config_epoch: f[6].parse().unwrap_or(0),
                connected: f[7] == "connected",
                slots,
            }
        })
        .collect()
}

/// `CLUSTER INFO` as `field → value`.
fn parse_info(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Three masters (slots 0–5460, 5461–10922, 10923–16383) and one replica each, all on
/// 127.0.0.1, node timeout 2 s.
pub struct RedisCluster {
    nodes: Vec<Node>,
    /// Ports of the masters as created, in slot order; replicas\[i\] follows masters\[i\].
    masters: Vec<u16>,
    replicas: Vec<u16>,
    access: Access,
}

impl RedisCluster {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Every node TLS-only with an ACL user, the cluster bus and replication over TLS too;
    /// see [`Secured`].
    pub async fn start_secured(security: Secured) -> Self {
        Self::start_with(Some(security)).await
    }

    async fn start_with(security: Option<Secured>) -> Self {
        let access = Access(security);
        let node_args = |port: u16| -> Vec<String> {
            let bus = (port + 10_000).to_string();
            [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--cluster-announce-ip",
                "127.0.0.1",
                "--cluster-announce-port",
                &port.to_string(),
                "--cluster-announce-bus-port",
                &bus,
                // Any replica may take over, however long its link was down.
                "--cluster-replica-validity-factor",
                "0",
                // Replicas sync at once instead of after the default 5 s diskless delay.
                "--repl-diskless-sync-delay",
                "0",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        // Start all six at once.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..6usize {
            let security = access.0.clone();
            set.spawn(async move { (i, start_node(true, security.as_ref(), node_args).await) });
        }
        let mut started: Vec<(usize, u16, ContainerAsync<GenericImage>)> = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, (port, container))) => started.push((i, port, container)),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        started.sort_by_key(|(i, _, _)| *i);

        let mut nodes = Vec::new();
        for (_, port, container) in started {
            let mut conn = connect(&access, port).await;
            let id: String = redis::cmd("CLUSTER")
                .arg("MYID")
                .query_async(&mut conn)
                .await
                .unwrap();
            nodes.push(Node {
                port,
                id,
                alive: AtomicBool::new(true),
                container,
            });
        }
        let masters: Vec<u16> = nodes[..3].iter().map(|n| n.port).collect();
        let replicas: Vec<u16> = nodes[3..].iter().map(|n| n.port).collect();
        let cluster = RedisCluster {
            nodes,
            masters,
            replicas,
            access,
        };
        cluster.create().await;
        cluster
    }

    /// Assigns slots, joins the nodes, attaches the replicas and waits until the cluster is
    /// whole: what `redis-cli --cluster create --cluster-replicas 1` does, without its sleeps.
    async fn create(&self) {
        let ranges = [(0u16, 5460u16), (5461, 10922), (10923, 16383)];
        for (i, &port) in self.masters.iter().enumerate() {
            let mut conn = connect(&self.access, port).await;
            // Distinct epochs up front, as redis-cli does, so no epoch collision has to be
            // resolved later.
            redis::cmd("CLUSTER")
                .arg("SET-CONFIG-EPOCH")
                .arg(i + 1)
                .exec_async(&mut conn)
                .await
                .unwrap();
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(ranges[i].0)
                .arg(ranges[i].1)
                .exec_async(&mut conn)
                .await
                .unwrap();
        }
        let first = self.nodes[0].port;
        let mut conn = connect(&self.access, first).await;
        for node in &self.nodes[1..] {
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(node.port)
                .arg(node.port + 10_000)
                .exec_async(&mut conn)
                .await
                .unwrap();
        }
        // Every node knows all six, past the handshake.
        for node in &self.nodes {
            let port = node.port;
            poll_until("every node to know the other five", || async move {
                let views = self.views_from(port).await?;
                (views.len() == 6
                    && views
                        .iter()
                        .all(|v| v.connected && !v.has_flag("handshake") && !v.has_flag("noaddr")))
                .then_some(())
            })
            .await;
        }
        for (i, &replica) in self.replicas.iter().enumerate() {
            let master_id = &self.node(self.masters[i]).id;
            let mut conn = connect(&self.access, replica).await;
            redis::cmd("CLUSTER")
                .arg("REPLICATE")
                .arg(master_id)
                .exec_async(&mut conn)
                .await
                .unwrap();
        }
        self.wait_healthy("the cluster to form").await;
    }

    /// Waits until every live node says `cluster_state:ok` with all slots served, every
    /// live node agrees on who serves each slot, each master that serves slots has a replica
    /// in sync (when `replicas_required`), and no live node is flagged failed.
    async fn wait_until_converged(&self, what: &str, replicas_required: bool) {
        poll_until(what, || async move {
            self.converged(replicas_required).await.then_some(())
        })
        .await;
    }

    async fn wait_healthy(&self, what: &str) {
        self.wait_until_converged(what, true).await;
    }

    async fn converged(&self, replicas_required: bool) -> bool {
        let live = self.live_ports();
        let mut reference: Option<Vec<(u16, u16, String)>> = None;
        for &port in &live {
            let Some(info) = self.info_from(port).await else {
                return false;
            };
            if info.get("cluster_state").map(String::as_str) != Some("ok")
                || info.get("cluster_slots_ok").map(String::as_str) != Some("16384")
            {
                return false;
            }
            let Some(views) = self.views_from(port).await else {
                return false;
            };
            // Live nodes are seen as healthy; their slot map matches every other node's.
            for v in &views {
                if live.contains(&v.port) && v.is_failed() {
                    return false;
                }
            }
            let mut map: Vec<(u16, u16, String)> = views
                .iter()
                .filter(|v| v.is_master() && live.contains(&v.port))
                .flat_map(|v| v.slots.iter().map(move |&(a, b)| (a, b, v.id.clone())))
                .collect();
            map.sort();
            if map
                .iter()
                .map(|(a, b, _)| u32::from(b - a) + 1)
                .sum::<u32>()
                != u32::from(SLOTS)
            {
                return false;
            }
            match &reference {
                None => reference = Some(map),
                Some(r) if *r != map => return false,
                Some(_) => {}
            }
            if replicas_required {
                for m in views
                    .iter()
                    .filter(|v| v.is_master() && !v.slots.is_empty())
                {
                    let has_replica = views.iter().any(|v| {
                        v.master_id.as_deref() == Some(&m.id)
                            && live.contains(&v.port)
                            && !v.is_failed()
                    });
                    if !has_replica {
                        return false;
                    }
                }
            }
        }
        if replicas_required {
            // Every live replica has finished its sync.
            for &port in &live {
                let Some(text) = self.text(port, redis::cmd("INFO").arg("replication")).await
                else {
                    return false;
                };
                let info = parse_info(&text);
                if info.get("role").map(String::as_str) == Some("slave")
                    && info.get("master_link_status").map(String::as_str) != Some("up")
                {
                    return false;
                }
            }
        }
        true
    }

    fn node(&self, port: u16) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.alive.load(Ordering::SeqCst))
            .map(|n| n.port)
            .collect()
    }

    async fn raw(&self, port: u16, cmd: &redis::Cmd) -> Option<Value> {
        tokio::time::timeout(Duration::from_secs(2), async {
            let client = self.access.client(self.access.url(port));
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            cmd.query_async::<Value>(&mut conn).await.ok()
        })
        .await
        .ok()
        .flatten()
    }

    async fn text(&self, port: u16, cmd: &redis::Cmd) -> Option<String> {
        match self.raw(port, cmd).await? {
            Value::BulkString(b) => String::from_utf8(b).ok(),
            Value::VerbatimString { text, .. } => Some(text),
            Value::SimpleString(s) => Some(s),
            _ => None,
        }
    }

    /// `CLUSTER NODES` as node `port` sees it.
    pub async fn views_from(&self, port: u16) -> Option<Vec<NodeView>> {
        let text = self.text(port, redis::cmd("CLUSTER").arg("NODES")).await?;
        Some(parse_cluster_nodes(&text))
    }

    async fn info_from(&self, port: u16) -> Option<std::collections::HashMap<String, String>> {
        let text = self.text(port, redis::cmd("CLUSTER").arg("INFO")).await?;
        Some(parse_info(&text))
    }

    /// `redis-cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3` (`rediss-cluster://` with no
    /// credentials when secured): the masters as created, a
    /// killed one replaced by its replica (which has taken its slots over after a failover).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .seed_ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let scheme = match self.access.0 {
            None => "redis-cluster",
            Some(_) => "rediss-cluster",
        };
        format!("{scheme}://{}", hosts.join(","))
    }

    /// `redis://127.0.0.1:<port>` for each seed node of [`url`](Self::url), for
    /// `redis::cluster::ClusterClient::new`.
    pub fn node_urls(&self) -> Vec<String> {
        self.seed_ports()
            .into_iter()
            .map(|p| self.access.url(p))
            .collect()
    }

    fn cluster_builder(&self) -> redis::cluster::ClusterClientBuilder {
        let builder = redis::cluster::ClusterClientBuilder::new(self.node_urls());
        match &self.access.0 {
            None => builder,
            Some(s) => builder.certs(s.certificates()),
        }
    }

    fn seed_ports(&self) -> Vec<u16> {
        self.masters
            .iter()
            .zip(&self.replicas)
            .map(|(&m, &r)| {
                if self.node(m).alive.load(Ordering::SeqCst) {
                    m
                } else {
                    r
                }
            })
            .collect()
    }

    /// Every node's port, live or killed: masters as created, then their replicas.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// A raw RESP2 connection to one node (no redirects followed).
    pub async fn client(&self, port: u16) -> MultiplexedConnection {
        connect(&self.access, port).await
    }

    /// A redis-rs cluster connection over the seed nodes.
    pub async fn cluster_client(&self) -> redis::cluster_async::ClusterConnection {
        self.cluster_builder()
            .build()
            .unwrap()
            .get_async_connection()
            .await
            .unwrap()
    }

    /// A RESP3 cluster connection whose pushes (`smessage`, `sunsubscribe`, …) arrive on the
    /// receiver; subscribe with `conn.ssubscribe(channel)`.
    pub async fn cluster_client_resp3(
        &self,
    ) -> (
        redis::cluster_async::ClusterConnection,
        UnboundedReceiver<PushInfo>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let conn = self
            .cluster_builder()
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(tx)
            .build()
            .unwrap()
            .get_async_connection()
            .await
            .unwrap();
        (conn, rx)
    }

    /// The live master that serves `slot`, by its own account (the highest config epoch wins
    /// if two claim it, as the cluster itself decides).
    pub async fn master_of(&self, slot: u16) -> NodeHandle {
        let mut best: Option<(u64, NodeHandle)> = None;
        for port in self.live_ports() {
            let Some(views) = self.views_from(port).await else {
                continue;
            };
            let Some(me) = views.iter().find(|v| v.has_flag("myself")) else {
                continue;
            };
            if me.is_master()
                && me.serves(slot)
                && best
                    .as_ref()
                    .is_none_or(|(epoch, _)| me.config_epoch > *epoch)
            {
                best = Some((me.config_epoch, NodeHandle { port }));
            }
        }
        best.unwrap_or_else(|| panic!("no live master serves slot {slot}"))
            .1
    }

    /// The live masters now, by their own account.
    pub async fn masters(&self) -> Vec<NodeHandle> {
        let mut out = Vec::new();
        for port in self.live_ports() {
            if let Some(views) = self.views_from(port).await
                && let Some(me) = views.iter().find(|v| v.has_flag("myself"))
                && me.is_master()
            {
                out.push(NodeHandle { port });
            }
        }
        out
    }

    /// `CLUSTER KEYSLOT key`, asked of a live node.
    pub async fn key_slot(&self, key: &str) -> u16 {
        for port in self.live_ports() {
            if let Some(Value::Int(slot)) = self
                .raw(port, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
                .await
            {
                return u16::try_from(slot).unwrap();
            }
        }
        panic!("no live node answered CLUSTER KEYSLOT")
    }

    /// The cluster node id of `node`.
    pub fn node_id(&self, node: impl Into<NodeHandle>) -> &str {
        &self.node(node.into().port).id
    }

    /// Moves `slot`, with its keys, from its master to the master on `to_port`, live, the way
    /// `redis-cli --cluster reshard` does: IMPORTING on the target, MIGRATING on the source,
    /// MIGRATE the keys 100 at a time, then SETSLOT NODE on the target, the source and the
    /// other masters. Waits until every live node agrees. Returns the previous master.
    pub async fn migrate_slot(&self, slot: u16, to: impl Into<NodeHandle>) -> NodeHandle {
        let to_port = to.into().port;
        let source = self.master_of(slot).await;
        let source_id = self.node(source.port).id.clone();
        let target = self.node(to_port);
        if source.port == to_port {
            return source;
        }
        let mut src = connect(&self.access, source.port).await;
        let mut dst = connect(&self.access, to_port).await;
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&source_id)
            .exec_async(&mut dst)
            .await
            .expect("SETSLOT IMPORTING on the target (is it a master?)");
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&target.id)
            .exec_async(&mut src)
            .await
            .expect("SETSLOT MIGRATING on the source");
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query_async(&mut src)
                .await
                .unwrap();
            if keys.is_empty() {
                break;
            }
            redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to_port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("REPLACE")
                .arg("KEYS")
                .arg(&keys)
                .exec_async(&mut src)
                .await
                .expect("MIGRATE");
        }
        // The target first, so it owns the slot before the source lets go of it.
        let mut order = vec![to_port, source.port];
        for m in self.masters().await {
            if !order.contains(&m.port) {
                order.push(m.port);
            }
        }
        for port in order {
            let mut conn = connect(&self.access, port).await;
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&target.id)
                .exec_async(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("SETSLOT NODE on {port}: {e}"));
        }
        let target_id = target.id.clone();
        poll_until("every node to see the migrated slot's new owner", || {
            let target_id = target_id.clone();
            async move {
                for port in self.live_ports() {
                    let views = self.views_from(port).await?;
                    let owner = views.iter().find(|v| v.is_master() && v.serves(slot))?;
                    if owner.id != target_id {
                        return None;
                    }
                }
                Some(())
            }
        })
        .await;
        self.wait_until_converged("the cluster to settle after a migration", false)
            .await;
        source
    }

    /// Kills the master serving `slot` at once (`docker stop -t 0`: SIGKILL right after
    /// SIGTERM, no time to hand anything over). Returns it.
    pub async fn kill_master_of(&self, slot: u16) -> NodeHandle {
        let master = self.master_of(slot).await;
        self.kill(master.port).await;
        master
    }

    /// Kills the node on `port` at once; see [`kill_master_of`](Self::kill_master_of).
    pub async fn kill(&self, node: impl Into<NodeHandle>) {
        let node = self.node(node.into().port);
        node.alive.store(false, Ordering::SeqCst);
        node.container
            .stop_with_timeout(Some(0))
            .await
            .expect("kill the redis container");
    }

    /// Waits until a live node (the killed master's replica) serves `slot` and every
    /// surviving node says `cluster_state:ok` and agrees on the slot map. Returns the new
    /// master.
    pub async fn wait_for_failover(&self, slot: u16) -> NodeHandle {
        let live = self.live_ports();
        poll_until("a replica to take the killed master's slots over", || {
            let live = live.clone();
            async move {
                for &port in &live {
                    let views = self.views_from(port).await?;
                    let owner = views
                        .iter()
                        .find(|v| v.is_master() && !v.is_failed() && v.serves(slot))?;
                    if !live.contains(&owner.port) {
                        return None;
                    }
                }
                Some(())
            }
        })
        .await;
        self.wait_until_converged("the cluster to be ok after a failover", false)
            .await;
        self.master_of(slot).await
    }

    /// `PUBSUB SHARDNUMSUB channel` summed over every live node, masters and replicas.
    pub async fn shard_numsub(&self, channel: &str) -> u64 {
        let mut total = 0;
        for port in self.live_ports() {
            total += shard_numsub_at(&mut connect(&self.access, port).await, channel).await;
        }
        total
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            release_port(node.port);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Slots

/// The cluster slot of `key`: CRC16 (XMODEM) of the key, or of its first non-empty `{tag}`,
/// modulo 16384, exactly as Redis computes it.
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|&b| b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16(hashed) % SLOTS
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A hash tag whose keys all land in `slot` (`{t123}` style), for building keys and channels
/// in a chosen slot.
pub fn tag_for_slot(slot: u16) -> String {
    (0u32..)
        .map(|i| format!("t{i}"))
        .find(|tag| key_slot(tag) == slot)
        .unwrap()
}
