//! The chaos soak's clock: every second it polls each instance's `/readyz` (the balancer's view
//! of the fleet) and records a [`ChaosTick`]: viewers connected, instances ready, comments
//! delivered and their p99, each instance's RSS. Uses `fleet`, `live`, `procfs` and
//! `result::chaos`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::chaos::fleet::Status;
use crate::chaos::live::{Live, stopped};
use crate::procfs;
use crate::result::chaos::ChaosTick;

/// Samples every second until `stop`; `t0` is the start of the load.
pub(crate) async fn run(
    fleet: Arc<Status>,
    live: Arc<Live>,
    t0: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<ChaosTick> {
    let mut ticks = Vec::new();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stopped(&mut stop) => return ticks,
        }
        fleet.poll().await;
        let (delivered, p99_ms) = live.take_second();
        ticks.push(ChaosTick {
            t_s: t0.elapsed().as_secs_f64(),
            connected: live.connected.load(std::sync::atomic::Ordering::Relaxed),
            ready: fleet.ready_count(),
            ready_each: (0..fleet.bases.len()).map(|i| fleet.ready(i)).collect(),
            delivered,
            p99_ms,
            rss_bytes: (0..fleet.bases.len())
                .map(|i| procfs::rss_bytes(&fleet.pid(i)?.to_string()))
                .collect(),
        });
    }
}
