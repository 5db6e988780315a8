//! The chaos soak's clients, started and stopped: the viewers (one per stream first, the rest
//! by popularity, stream s weighing 1/(s+1); spread over the instances), a poster per stream and
//! two services; at the end, each stream's end marker. Uses `viewer`, `poster`, `fleet`, `live`
//! and `scenario` (token signing).

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::chaos::fleet::Status;
use crate::chaos::journal::Source;
use crate::chaos::live::Live;
use crate::chaos::{Args, SECRET, SERVICE, poster, viewer};

/// The clients of a run.
pub(super) struct Load {
    viewers: Vec<JoinHandle<()>>,
    writers: Vec<JoinHandle<()>>,
    pub stop_viewers: watch::Sender<bool>,
    stop_writers: watch::Sender<bool>,
    /// Streams, busiest first.
    pub busy: Vec<String>,
}

pub(super) fn start(args: &Args, seed: u64, status: &Arc<Status>, live: &Arc<Live>) -> Load {
    let (stop_viewers, viewers_stopped) = watch::channel(false);
    let (stop_writers, writers_stopped) = watch::channel(false);
    let mut rng = StdRng::seed_from_u64(seed ^ 0xF00D);
    let instances = status.bases.len();
    let mut per_stream = vec![0u32; args.streams];
    let mut viewers = Vec::new();
    for id in 0..args.viewers {
        // One viewer per stream first, then by popularity (stream s weighs 1/(s+1)).
        let stream = if (id as usize) < args.streams {
            id as usize
        } else {
            zipf(args.streams, &mut rng)
        };
        per_stream[stream] += 1;
        let spec = viewer::Spec {
            id,
            stream,
            home: id as usize % instances,
            seed,
        };
        let (status, live, stop) = (status.clone(), live.clone(), viewers_stopped.clone());
        viewers.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(u64::from(id) * 3)).await;
            viewer::run(spec, status, live, stop).await;
        }));
    }
    let ws_rate = args.rate * (1.0 - args.http_share);
    let mut writers = Vec::new();
    for stream in 0..args.streams {
        let p = poster::Poster {
            stream,
            home: stream % instances,
            rate: ws_rate,
            token: crate::scenario::sign(SECRET, &format!("poster-{stream}"), None),
            seed,
        };
        writers.push(tokio::spawn(poster::post(
            p,
            status.clone(),
            live.clone(),
            writers_stopped.clone(),
        )));
    }
    let http_rate = args.rate * args.http_share * args.streams as f64;
    for index in 0..2 {
        let svc = poster::Service {
            index,
            streams: args.streams,
            rate: http_rate / 2.0,
            token: SERVICE.into(),
            seed,
        };
        writers.push(tokio::spawn(poster::serve(
            svc,
            status.clone(),
            live.clone(),
            writers_stopped.clone(),
        )));
    }
    let mut order: Vec<usize> = (0..args.streams).collect();
    order.sort_by_key(|s| std::cmp::Reverse(per_stream[*s]));
    let busy = order.into_iter().map(|s| format!("chaos-{s}")).collect();
    Load {
        viewers,
        writers,
        stop_viewers,
        stop_writers,
        busy,
    }
}

/// A stream index drawn with weight 1/(s+1).
fn zipf(streams: usize, rng: &mut StdRng) -> usize {
    let total: f64 = (1..=streams).map(|s| 1.0 / s as f64).sum();
    let mut x = rng.random::<f64>() * total;
    for s in 0..streams {
        x -= 1.0 / (s + 1) as f64;
        if x <= 0.0 {
            return s;
        }
    }
    streams - 1
}

/// Stops the writers (they settle their last posts), posts each stream's end marker, lets it
/// reach the viewers, and stops them.
pub(super) async fn finish(
    args: &Args,
    load: Load,
    status: &Arc<Status>,
    live: &Arc<Live>,
    rng: &mut StdRng,
) {
    let _ = load.stop_writers.send(true);
    for w in load.writers {
        let _ = w.await;
    }
    let never = watch::channel(true).1;
    for stream in 0..args.streams {
        let body = r#"{"kind":"system","text":"chaos end","idempotency_key":"end"}"#;
        poster::post_until_accepted(
            stream,
            body,
            SERVICE,
            status,
            live,
            rng,
            Source::End,
            &never,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = load.stop_viewers.send(true);
    for v in load.viewers {
        let _ = v.await;
    }
}
