//! The JSON result of one scenario run: what `danmaku-bench` writes to `bench/results/` and what
//! the HTML report and the comparison table read back. Plain data, the bottom layer: it imports
//! nothing else of the crate, and everything that writes or reads a result imports it.

pub(crate) mod chaos;
pub(crate) mod soak;

use serde::{Deserialize, Serialize};

/// One scenario run against one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunResult {
    /// `idle`, `fanout`, `storm`, `churn` or `soak`.
    pub scenario: String,
    /// `danmaku` or `socketio`: the wire protocol spoken.
    pub target: String,
    /// A name for the run in tables and plot legends (defaults to the target).
    pub label: String,
    /// `git rev-parse --short HEAD` of the tree that ran the benchmark (`unknown` outside git).
    pub commit: String,
    /// When the run started, RFC 3339 UTC.
    pub started_at: String,
    /// The instances driven (WebSocket base URLs).
    pub urls: Vec<String>,
    /// The scenario's parameters as given on the command line.
    pub params: serde_json::Value,
    pub summary: Summary,
    /// One point per second of the measured phase (t = 0 at its start).
    pub timeline: Vec<Tick>,
    /// Publish→receive latency distribution over the whole measured phase, as (ms, fraction ≤).
    /// Empty for scenarios without comments.
    pub latency_cdf: Vec<CdfPoint>,
    /// `init` latency distribution (storm, churn), as (ms, fraction ≤).
    pub init_cdf: Vec<CdfPoint>,
    /// CPU and RSS of every server process given with `--pid`, sampled each second.
    pub instances: Vec<InstanceSeries>,
    /// What the load generator itself cost.
    pub tool: ToolCost,
    /// Which side limited the result, and why.
    pub limit: Limit,
    /// The soak's samples, moderation and verdict (`soak` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<soak::SoakReport>,
}

/// Headline figures. Fields that a scenario does not produce are `None`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Summary {
    /// Connections that were open during the measured phase.
    pub connections: u64,
    /// Length of the measured phase, seconds.
    pub duration_s: f64,
    /// Comments per second the posters tried to send (fanout).
    pub offered_comments_per_s: Option<f64>,
    /// Comments the posters sent (fanout).
    #[serde(default)]
    pub sent_comments: Option<u64>,
    /// Comments the server acknowledged (fanout).
    pub accepted_comments: Option<u64>,
    /// Comments the server refused (error acks; fanout).
    pub rejected_comments: Option<u64>,
    /// Comment deliveries received by viewers (fanout), duplicates excluded.
    pub deliveries: Option<u64>,
    pub deliveries_per_s: Option<f64>,
    /// Frames received by viewers carrying those deliveries (a frame may batch several).
    pub frames: Option<u64>,
    /// Deliveries per `comments` frame.
    #[serde(default)]
    pub comments_per_frame: Option<f64>,
    /// Bytes the viewers read off their sockets over the measured phase (fanout against
    /// danmaku): the wire bytes, compressed or not, every frame and header included, over the
    /// same span as `deliveries`.
    #[serde(default)]
    pub wire_bytes: Option<u64>,
    /// `wire_bytes` per delivery.
    #[serde(default)]
    pub wire_bytes_per_delivery: Option<f64>,
    /// Comments the server told viewers it chose not to send them (the sum of `skipped`:
    /// thinned to their budget, or left out while they were behind), fanout.
    #[serde(default)]
    pub skipped: Option<u64>,
    #[serde(default)]
    pub skipped_per_s: Option<f64>,
    /// Comments a viewer that stayed connected neither received nor was told it was not
    /// sent: the sum over viewers of published − received − skipped, where below 0.
    pub losses: Option<u64>,
    /// The sum over viewers of received + skipped − published, where above 0 (an
    /// accounting error of the server's `skipped`, or a comment counted twice).
    #[serde(default)]
    pub excess: Option<u64>,
    /// User comments one viewer received per second of posting: the mean over viewers, the
    /// fewest and the most.
    #[serde(default)]
    pub user_per_viewer_per_s: Option<PerViewerRate>,
    /// User comments per second posted to a viewer's stream, the mean over viewers: what an
    /// unthinned viewer would get.
    #[serde(default)]
    pub offered_user_per_viewer_per_s: Option<f64>,
    /// System comments (gifts over the service API) the posters sent, the server accepted
    /// and refused.
    #[serde(default)]
    pub system_sent_comments: Option<u64>,
    /// User comments accepted that held the shadow term (`--shadow-share`): their viewers
    /// were not meant to receive them, and are not counted as losing them.
    #[serde(default)]
    pub shadowed_comments: Option<u64>,
    #[serde(default)]
    pub system_accepted_comments: Option<u64>,
    #[serde(default)]
    pub system_rejected_comments: Option<u64>,
    /// System comments received by viewers (counted in `deliveries` too).
    #[serde(default)]
    pub system_deliveries: Option<u64>,
    /// System comments a viewer never received (never thinned, so every one missing is lost;
    /// also counted in `losses` unless the server counted it in `skipped`).
    #[serde(default)]
    pub system_losses: Option<u64>,
    /// System comments received, percent of accepted ones × viewers of their stream.
    #[serde(default)]
    pub system_received_pct: Option<f64>,
    pub duplicates: Option<u64>,
    /// Comments received out of id order (danmaku promises id order per connection).
    pub order_violations: Option<u64>,
    /// Connections closed by the server or failed during the measured phase.
    pub disconnects: u64,
    /// Connection attempts that failed (handshake refused, connect error, timeout).
    pub connect_errors: u64,
    /// Publish→receive latency from each comment's `ts` (ms resolution of `ts`).
    pub latency_ms: Option<Percentiles>,
    /// Poster send → viewer receive, from a microsecond stamp in the comment text.
    pub send_latency_ms: Option<Percentiles>,
    /// Handshake start → `init` received (storm, churn, and every connect of other scenarios).
    pub init_latency_ms: Option<Percentiles>,
    /// Completed WebSocket upgrades per second during the storm's reconnect wave.
    pub upgrades_per_s: Option<f64>,
    /// Connect/leave cycles per second (churn).
    pub cycles_per_s: Option<f64>,
    /// Server RSS growth divided by connections held (idle), bytes.
    pub rss_per_connection_bytes: Option<f64>,
    /// Server CPU (all instances) per connection held, in core-microseconds per second (idle).
    pub cpu_us_per_connection_s: Option<f64>,
    /// Server CPU seconds (all instances) during the measured phase.
    pub server_cpu_s: Option<f64>,
    /// Server CPU milliseconds per 1,000 deliveries (fanout).
    pub server_cpu_ms_per_1k_deliveries: Option<f64>,
    /// Peak server RSS summed over instances, bytes.
    pub server_rss_bytes: Option<u64>,
    /// Fraction of the whole machine's CPU busy while the load was on (from `/proc/stat`,
    /// softirq included).
    #[serde(default)]
    pub machine_busy: Option<f64>,
    /// CPU seconds of the other sampled processes (`--other-pid`: Redis) in the measured phase.
    #[serde(default)]
    pub other_cpu_s: Option<f64>,
}

/// A per-viewer rate: its mean over viewers, the lowest and the highest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PerViewerRate {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// One second of the measured phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Tick {
    /// Seconds since the measured phase started (end of this one-second bucket).
    pub t_s: f64,
    /// Deliveries received in this second.
    pub deliveries: u64,
    /// Frames received in this second.
    pub frames: u64,
    /// Comments the server told viewers it left out (`skipped`) in this second.
    #[serde(default)]
    pub skipped: u64,
    /// Connections open at the end of this second.
    pub connected: u64,
    /// Upgrades (`init` received) completed in this second.
    pub upgrades: u64,
    /// Publish→receive latency percentiles of this second's deliveries (0 when none).
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
}

/// A point of a cumulative distribution.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct CdfPoint {
    pub ms: f64,
    pub fraction: f64,
}

/// One server process, sampled each second.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct InstanceSeries {
    /// `pid <n>` or the name given with `--pid name=n`.
    pub name: String,
    pub pid: u32,
    pub samples: Vec<InstanceSample>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct InstanceSample {
    /// Seconds since the measured phase started (negative during setup).
    pub t_s: f64,
    /// CPU used over the last second, in cores (1.0 = one core busy).
    pub cpu_cores: f64,
    pub rss_bytes: u64,
}

/// The load generator's own cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ToolCost {
    pub workers: u32,
    /// CPU seconds used by all workers during the measured phase.
    pub cpu_s: f64,
    /// CPU seconds used by all workers while the load was on (before the settle).
    #[serde(default)]
    pub active_cpu_s: f64,
    /// Frames the workers received during the measured phase.
    pub frames: u64,
    /// Worker CPU per received frame, nanoseconds.
    pub ns_per_frame: Option<f64>,
    /// The busiest worker's CPU use while the load was on, in cores (1.0 = saturated).
    pub max_worker_cores: f64,
}

/// Which side limited the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Limit {
    /// `tool`, `server`, `machine` or `none`.
    pub verdict: String,
    pub reason: String,
}
