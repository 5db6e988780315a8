//! What the coordinator and its worker processes say to each other: one JSON object per line,
//! a [`Plan`] then [`Command`]s on the worker's stdin, [`Event`]s on its stdout.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::proto::Target;
use crate::stats::Buckets;

/// Everything one worker process does in a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub scenario: Scenario,
    pub target: Target,
    pub worker: u32,
    /// Viewers (idle, fanout, storm).
    pub viewers: Vec<Endpoint>,
    /// Posters (fanout, and the history fill of the other scenarios).
    pub posters: Vec<PosterSpec>,
    /// Churn: how many connect/leave loops, and where they may connect.
    pub churn_slots: u32,
    pub churn_hold_ms: (u64, u64),
    pub churn_choices: Vec<Endpoint>,
    /// Handshakes in flight at once in this worker.
    pub concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Idle,
    Fanout,
    Storm,
    Churn,
}

impl Scenario {
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Fanout => "fanout",
            Scenario::Storm => "storm",
            Scenario::Churn => "churn",
        }
    }
}

/// Where one connection goes, and from which local address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    /// `ws://host:port` of the instance.
    pub base: String,
    pub stream: String,
    /// Index of the stream in the run (for loss accounting).
    pub stream_index: u32,
    pub source: Ipv4Addr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PosterSpec {
    /// Global poster number, written into every comment it posts.
    pub index: u32,
    pub endpoint: Endpoint,
    pub user: String,
    /// A signed JWT for danmaku (`None` for the Socket.IO peer, which takes the user as is).
    pub token: Option<String>,
    /// Comments per second during the measured phase.
    pub rate: f64,
    /// Comments to post before the run (history for `init`), as fast as acknowledged.
    pub prefill: u32,
}

/// Coordinator → worker, after the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Start the measured phase (posting, churn loops, the storm's reconnect wave).
    Start,
    /// Stop posting; keep reading.
    StopPosting,
    /// Report totals, close everything and exit.
    Finish,
}

/// Worker → coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// Every connection of the plan is open (or failed), history is posted.
    Ready {
        connected: u64,
        connect_errors: u64,
        init: Buckets,
    },
    /// One second of the measured phase.
    Tick(TickCounts),
    /// The storm's reconnect wave is over.
    WaveDone {
        upgrades: u64,
        elapsed_ms: f64,
    },
    Done(Box<Totals>),
    /// A problem worth a line in the coordinator's output (not fatal).
    Warn {
        message: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TickCounts {
    pub deliveries: u64,
    pub frames: u64,
    pub connected: u64,
    pub upgrades: u64,
    pub latency: Buckets,
}

/// A worker's totals over the measured phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    pub cpu_s: f64,
    /// CPU seconds used from the start until posting stopped (the load's own window; a long
    /// settle after it would dilute the worker's busy share).
    #[serde(default)]
    pub active_cpu_s: f64,
    /// When the last delivery arrived, seconds after the measured phase started.
    #[serde(default)]
    pub last_delivery_s: f64,
    /// Every text frame read during the measured phase (the tool's unit of work).
    pub frames: u64,
    pub comment_frames: u64,
    pub deliveries: u64,
    pub duplicates: u64,
    pub order_violations: u64,
    pub disconnects: u64,
    pub connect_errors: u64,
    pub upgrades: u64,
    pub cycles: u64,
    pub latency: Buckets,
    pub send_latency: Buckets,
    pub init: Buckets,
    /// Viewers that stayed connected through the run, and the distinct comments they got.
    pub streams: Vec<StreamTotals>,
    pub posters: Vec<PosterTotals>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamTotals {
    pub stream_index: u32,
    pub viewers: u64,
    pub distinct: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PosterTotals {
    pub index: u32,
    pub stream_index: u32,
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
}
