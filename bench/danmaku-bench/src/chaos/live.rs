//! What the chaos soak's clients share while it runs: the logs they write (one file per stream
//! for the viewers, one for what was published) and the counts the sampler reads every second
//! (viewers connected, delivery latency). Uses `journal`, `stats` and `result::chaos`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::chaos::journal::{self, CommentId, Event, Source};
use crate::result::chaos::Posting;
use crate::stats::Latency;

/// The Unix time in ms.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Everything the clients write and count.
pub(crate) struct Live {
    viewers: Vec<Mutex<BufWriter<File>>>,
    published: Mutex<BufWriter<File>>,
    /// Viewer connections past `init`, and on each instance.
    pub connected: AtomicU64,
    on_instance: Vec<AtomicU64>,
    /// This second's delivery latencies, and the whole run's.
    second: Mutex<(u64, Latency)>,
    total: Mutex<Latency>,
    pub posting: Mutex<Posting>,
}

impl Live {
    /// Opens the logs under `dir` for `streams` streams, counting over `instances`.
    pub(crate) fn create(dir: &Path, streams: usize, instances: usize) -> anyhow::Result<Live> {
        let open = |name: String| -> anyhow::Result<Mutex<BufWriter<File>>> {
            Ok(Mutex::new(BufWriter::new(File::create(dir.join(name))?)))
        };
        Ok(Live {
            viewers: (0..streams)
                .map(|s| open(viewer_log_name(s)))
                .collect::<anyhow::Result<_>>()?,
            published: open("published.log".into())?,
            connected: AtomicU64::new(0),
            on_instance: (0..instances).map(|_| AtomicU64::new(0)).collect(),
            second: Mutex::new((0, Latency::default())),
            total: Mutex::new(Latency::default()),
            posting: Mutex::new(Posting::default()),
        })
    }

    pub(crate) fn log(&self, stream: usize, viewer: u32, event: &Event) {
        let line = journal::viewer_line(viewer, event);
        let _ = self.viewers[stream]
            .lock()
            .expect("viewer log")
            .write_all(line.as_bytes());
    }

    pub(crate) fn published(&self, stream: usize, id: CommentId, source: Source) {
        let line = journal::published_line(stream, id, source);
        let _ = self
            .published
            .lock()
            .expect("published log")
            .write_all(line.as_bytes());
    }

    /// Records the delivery latency of comments published at `ts` (Unix ms), received now.
    pub(crate) fn delivered(&self, ts: impl Iterator<Item = u64>) {
        let now = now_ms();
        let mut second = self.second.lock().expect("latency");
        let mut total = self.total.lock().expect("latency");
        for ts in ts {
            let us = now.saturating_sub(ts) as i64 * 1000;
            second.0 += 1;
            second.1.record_us(us);
            total.record_us(us);
        }
    }

    /// This second's deliveries and their p99 (ms), starting a new second.
    pub(crate) fn take_second(&self) -> (u64, f64) {
        let mut second = self.second.lock().expect("latency");
        let p99 = second.1.percentiles().map_or(0.0, |p| p.p99);
        let n = second.0;
        second.0 = 0;
        second.1.reset();
        (n, p99)
    }

    pub(crate) fn total_latency(&self) -> Latency {
        self.total.lock().expect("latency").clone()
    }

    pub(crate) fn viewer_connected(&self, instance: usize, up: bool) {
        for n in [&self.connected, &self.on_instance[instance]] {
            if up {
                n.fetch_add(1, Ordering::Relaxed);
            } else {
                n.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The instance with the most viewers connected (the lowest index of a tie).
    pub(crate) fn busiest(&self) -> usize {
        let counts = self.on_instance.iter().map(|n| n.load(Ordering::Relaxed));
        let (mut best, mut most) = (0, 0);
        for (i, n) in counts.enumerate() {
            if n > most {
                (best, most) = (i, n);
            }
        }
        best
    }

    pub(crate) fn count(&self, what: impl FnOnce(&mut Posting)) {
        what(&mut self.posting.lock().expect("posting"));
    }

    pub(crate) fn flush(&self) {
        for log in self.viewers.iter().chain([&self.published]) {
            let _ = log.lock().expect("log").flush();
        }
    }
}

/// The file of stream `stream`'s viewer log.
pub(crate) fn viewer_log_name(stream: usize) -> String {
    format!("viewers-{stream}.log")
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
