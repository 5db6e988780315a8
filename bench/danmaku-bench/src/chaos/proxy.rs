//! The TCP relay between the danmaku instances and Redis, and how one instance is cut from Redis
//! while the others keep it.
//!
//! Every Redis node announces a port of this relay (`--cluster-announce-port`; its cluster bus
//! port stays its own), so an instance reaches every node through it, seeds and redirections
//! alike, while the nodes' bus and the soak's own admin connections go direct. The relay tells
//! whose connection it accepted by the owner of the peer's socket (`procfs::tcp_owner`: the peer
//! address → its inode in `/proc/net/tcp` → the `/proc/<pid>/fd` of the pids it was told). To
//! cut an instance it closes that instance's relayed connections and, until the cut ends, closes
//! each new one from it as soon as it is accepted (refused, not black-holed: the instance sees
//! resets, as when a node's host is down, not a hang).
//!
//! It runs on a thread and runtime of its own, so the viewers' load does not delay it, but its
//! hop shows in every Redis round trip an instance makes (see `docs/benchmarks.md`). Uses
//! `procfs` and `result::chaos`.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::procfs;
use crate::result::chaos::ProxyStats;

/// The relay: ports it listens on, each forwarded to a Redis node's own port.
pub(crate) struct Proxy {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    /// Who may own a connection: a name and its current pid.
    owners: Mutex<Vec<(String, u32)>>,
    /// Owners cut from Redis, until when.
    cuts: Mutex<HashMap<String, Instant>>,
    /// Relayed connections: their owner and the task that relays them.
    live: Mutex<HashMap<u64, (String, AbortHandle)>>,
    stats: Mutex<ProxyStats>,
    /// The next relayed connection's key in `live`, over every listener.
    next_id: AtomicU64,
}

impl Proxy {
    /// Listens on 127.0.0.1 at each route's first port and relays to its second.
    pub(crate) fn start(routes: &[(u16, u16)]) -> anyhow::Result<Proxy> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut listeners = Vec::new();
        for &(listen, target) in routes {
            let std = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, listen))
                .with_context(|| format!("proxy: bind 127.0.0.1:{listen}"))?;
            std.set_nonblocking(true)?;
            listeners.push((std, target));
        }
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = watch::channel(false);
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("chaos-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    for (std, target) in listeners {
                        let listener = TcpListener::from_std(std).expect("a bound listener");
                        tokio::spawn(accept_loop(listener, target, s.clone()));
                    }
                    let mut stopped = stopped;
                    let _ = stopped.wait_for(|s| *s).await;
                });
            })?;
        Ok(Proxy {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// Names the process `pid` (a restarted instance names its new pid).
    pub(crate) fn set_owner(&self, name: &str, pid: u32) {
        let mut owners = self.shared.owners.lock().expect("owners");
        owners.retain(|(n, _)| n != name);
        owners.push((name.to_owned(), pid));
    }

    /// Cuts `name` from Redis for `how_long`: closes its relayed connections now and refuses
    /// new ones until then. Returns how many it closed.
    pub(crate) fn cut(&self, name: &str, how_long: Duration) -> u64 {
        let until = Instant::now() + how_long;
        self.shared
            .cuts
            .lock()
            .expect("cuts")
            .insert(name.to_owned(), until);
        let mut live = self.shared.live.lock().expect("live");
        let mut closed = 0;
        live.retain(|_, (owner, task)| {
            if owner == name {
                task.abort();
                closed += 1;
                false
            } else {
                true
            }
        });
        self.shared.stats.lock().expect("stats").cut += closed;
        closed
    }

    pub(crate) fn stats(&self) -> ProxyStats {
        self.shared.stats.lock().expect("stats").clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn is_cut(&self, owner: &str) -> bool {
        self.cuts
            .lock()
            .expect("cuts")
            .get(owner)
            .is_some_and(|until| Instant::now() < *until)
    }
}

async fn accept_loop(listener: TcpListener, target: u16, shared: Arc<Shared>) {
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let Ok(SocketAddr::V4(at)) = listener.local_addr() else {
            continue;
        };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(relay(client, peer, at, target, id, shared.clone()));
    }
}

/// Relays one accepted connection to 127.0.0.1:`target`, unless its owner is cut.
async fn relay(
    client: TcpStream,
    peer: SocketAddr,
    at: SocketAddrV4,
    target: u16,
    id: u64,
    shared: Arc<Shared>,
) {
    let owner = owner_of(peer, at, &shared).await;
    if shared.is_cut(&owner) {
        shared.stats.lock().expect("stats").refused += 1;
        return; // dropping `client` closes it
    }
    let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, target)).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    *shared
        .stats
        .lock()
        .expect("stats")
        .relayed
        .entry(owner.clone())
        .or_default() += 1;
    let task = tokio::spawn(async move {
        let (mut client, mut server) = (client, server);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    });
    let abort = task.abort_handle();
    shared
        .live
        .lock()
        .expect("live")
        .insert(id, (owner.clone(), abort.clone()));
    // A cut that came between the check above and the entry just made would have missed it.
    if shared.is_cut(&owner) {
        abort.abort();
    }
    let _ = task.await;
    shared.live.lock().expect("live").remove(&id);
}

/// The name of the process that opened the connection from `peer`, or `other`.
async fn owner_of(peer: SocketAddr, at: SocketAddrV4, shared: &Shared) -> String {
    let SocketAddr::V4(peer) = peer else {
        return "other".into();
    };
    let owners = shared.owners.lock().expect("owners").clone();
    let pids: Vec<u32> = owners.iter().map(|(_, pid)| *pid).collect();
    let found = tokio::task::spawn_blocking(move || procfs::tcp_owner(peer, at, &pids))
        .await
        .ok()
        .flatten();
    let by_pid: BTreeMap<u32, String> = owners.into_iter().map(|(n, p)| (p, n)).collect();
    found
        .and_then(|pid| by_pid.get(&pid).cloned())
        .unwrap_or_else(|| "other".into())
}
