//! The danmaku instances of the chaos soak: started, killed, drained and restarted by their
//! pids, and what the load and the sampler read of them while they come and go: each one's
//! readiness (its `/readyz`, polled every second) and current pid. The viewers and posters pick
//! an instance as a load balancer would: the one they were given if it is ready, else one that
//! is. Uses `http`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng;

use crate::http;

/// What everyone may read of the instances while the soak runs.
pub(crate) struct Status {
    /// `ws://127.0.0.1:<port>` of each instance.
    pub bases: Vec<String>,
    ready: Vec<AtomicBool>,
    /// The current pid (0 while down).
    pids: Vec<AtomicU32>,
}

impl Status {
    pub(crate) fn ready(&self, i: usize) -> bool {
        self.ready[i].load(Ordering::Relaxed)
    }

    pub(crate) fn ready_count(&self) -> u64 {
        (0..self.bases.len()).filter(|&i| self.ready(i)).count() as u64
    }

    pub(crate) fn pid(&self, i: usize) -> Option<u32> {
        Some(self.pids[i].load(Ordering::Relaxed)).filter(|p| *p != 0)
    }

    /// The instance a client connects to: `home` if ready, else a ready one at random, else
    /// `home` anyway (a balancer with no ready backend still tries one).
    pub(crate) fn pick(&self, home: usize, rng: &mut impl Rng) -> usize {
        if self.ready(home) {
            return home;
        }
        let ready: Vec<usize> = (0..self.bases.len()).filter(|&i| self.ready(i)).collect();
        if ready.is_empty() {
            home
        } else {
            ready[rng.random_range(0..ready.len())]
        }
    }

    /// Polls every instance's `/readyz` once (1 s timeout each); a refused or late answer is
    /// not ready.
    pub(crate) async fn poll(&self) {
        let polls = self.bases.iter().map(|base| async move {
            async {
                let mut client = http::Client::new(base, Ipv4Addr::LOCALHOST).ok()?;
                let r = tokio::time::timeout(
                    Duration::from_secs(1),
                    client.request("GET", "/readyz", None, None),
                )
                .await
                .ok()?
                .ok()?;
                Some(r.status == 200)
            }
            .await
            .unwrap_or(false)
        });
        let answers = futures_util::future::join_all(polls).await;
        for (i, ok) in answers.into_iter().enumerate() {
            self.ready[i].store(ok, Ordering::Relaxed);
        }
    }
}

/// The instances.
pub(crate) struct Fleet {
    bin: PathBuf,
    logs: PathBuf,
    env: Vec<(String, String)>,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    pub status: Arc<Status>,
}

impl Fleet {
    /// An instance per port of `ports`, each started with `env` (the settings they share).
    pub(crate) fn new(
        bin: PathBuf,
        logs: PathBuf,
        ports: &[u16],
        env: Vec<(String, String)>,
    ) -> Fleet {
        let status = Status {
            bases: ports
                .iter()
                .map(|p| format!("ws://127.0.0.1:{p}"))
                .collect(),
            ready: ports.iter().map(|_| AtomicBool::new(false)).collect(),
            pids: ports.iter().map(|_| AtomicU32::new(0)).collect(),
        };
        Fleet {
            bin,
            logs,
            env,
            ports: ports.to_vec(),
            children: ports.iter().map(|_| None).collect(),
            status: Arc::new(status),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ports.len()
    }

    pub(crate) fn name(i: usize) -> String {
        format!("danmaku-{i}")
    }

    /// Starts instance `i`, tells `spawned` its pid at once (before it connects to anything),
    /// and waits until it serves (`/livez`).
    pub(crate) async fn start(
        &mut self,
        i: usize,
        spawned: impl FnOnce(u32),
    ) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{}.log", Self::name(i))))?;
        let child = Command::new(&self.bin)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("DANMAKU_LISTEN", format!("127.0.0.1:{}", self.ports[i]))
            .env("DANMAKU_POD_NAME", Self::name(i))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        let pid = child.id();
        spawned(pid);
        self.children[i] = Some(child);
        self.status.pids[i].store(pid, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut client = http::Client::new(&self.status.bases[i], Ipv4Addr::LOCALHOST)?;
            if let Ok(r) = client.request("GET", "/livez", None, None).await
                && r.status == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} did not serve within 15 s", Self::name(i));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL to instance `i`; waits for it to exit.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.status.pids[i].store(0, Ordering::Relaxed);
        self.status.ready[i].store(false, Ordering::Relaxed);
    }

    /// SIGTERM to instance `i` (it drains), then waits up to `within` for it to exit; SIGKILL
    /// if it has not. Returns how long it took and whether it exited by itself with 0.
    pub(crate) async fn drain(&mut self, i: usize, within: Duration) -> (Duration, bool) {
        let started = Instant::now();
        let Some(mut child) = self.children[i].take() else {
            return (Duration::ZERO, false);
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let clean = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status.success(),
                Ok(None) if started.elapsed() < within => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break false;
                }
            }
        };
        self.status.pids[i].store(0, Ordering::Relaxed);
        self.status.ready[i].store(false, Ordering::Relaxed);
        (started.elapsed(), clean)
    }

    /// Stops every instance (SIGKILL).
    pub(crate) fn stop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}
