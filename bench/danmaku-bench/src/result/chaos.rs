//! The chaos soak's result (`bench/chaos`): what the verifier found in every viewer's log, the
//! faults and what each did to the viewers, and the run's timeline. Plain data, written to and
//! read back from `chaos.json`; it imports nothing else of the crate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::result::Percentiles;

/// One chaos run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ChaosResult {
    /// `git rev-parse --short HEAD` of the tree that ran it.
    pub commit: String,
    /// When the run started, RFC 3339 UTC.
    pub started_at: String,
    /// The seed of every random draw (faults, their targets, backoffs): the same seed draws the
    /// same faults in the same order.
    pub seed: u64,
    /// The command line's parameters.
    pub params: serde_json::Value,
    /// Length of the loaded phase, seconds.
    pub duration_s: f64,
    /// The instances, in the order of every per-instance series.
    pub instances: Vec<String>,
    pub delivery: Delivery,
    pub posting: Posting,
    /// Publish (`ts`) → receive, every comment a viewer received live or in a resumed `init`.
    pub latency_ms: Option<Percentiles>,
    pub readiness: Readiness,
    pub proxy: ProxyStats,
    pub faults: Vec<FaultRecord>,
    /// One point per second.
    pub timeline: Vec<ChaosTick>,
    /// The first few silent gaps, duplicates and reorders, with what the logs show.
    pub evidence: Vec<Evidence>,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
}

/// What the verifier found, over every viewer of every stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Delivery {
    /// Logical viewers (each lives across its reconnects).
    pub viewers: u64,
    /// Connection attempts, and those that reached `init`.
    pub attempts: u64,
    pub connections: u64,
    /// Comments the posters and services were told were published (acks, 201/200), end
    /// markers included.
    pub published: u64,
    /// Comments some viewer received that no answer named (published, but the answer was lost
    /// with its connection and the resend published anew).
    pub unacknowledged: u64,
    /// Comments viewers received, live or in a resumed `init` (a fresh `init`'s are history).
    pub received: u64,
    /// The sum of `skipped` told.
    pub skipped: u64,
    /// Resumes answered `resumed: true`.
    pub resumed: u64,
    /// Gaps the server declared: a resume answered `resumed: false`, or a close 4002.
    pub accounted_gaps: u64,
    /// Comments inside those gaps that the viewer did not get.
    pub declared_missing: u64,
    /// Connections over which a viewer lacked comments that nothing accounted for, and how
    /// many comments (a comment that came late, out of order, counts as a reorder instead).
    pub silent_gaps: u64,
    pub silent_missing: u64,
    pub duplicates: u64,
    pub reorders: u64,
    /// Comments told in `skipped` beyond what was published (an over-count).
    pub excess: u64,
    /// `reconnect` hints received.
    pub hints: u64,
    /// Connections' ends by close code (`0`: no close frame, the socket dropped).
    pub closes: BTreeMap<String, u64>,
    /// Viewers connected at the end that never got their stream's end marker.
    pub unfinished: u64,
    /// The longest a viewer went without a comment, ms.
    pub longest_gap_ms: u64,
}

/// What the posters and services did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Posting {
    /// WebSocket comments acknowledged, and frames resent with their `ref` after a reconnect
    /// or an `unavailable`.
    pub ws_acked: u64,
    pub ws_resent: u64,
    /// `error` frames by code.
    pub ws_errors: BTreeMap<String, u64>,
    /// Service posts answered `201`, answered `200` (a retried key), and failed tries (5xx,
    /// connection errors) that were retried.
    pub http_created: u64,
    pub http_replayed: u64,
    pub http_retries: u64,
    /// Comments still unacknowledged when posting stopped.
    pub abandoned: u64,
}

/// Readiness over the run: each instance's `/readyz`, polled every second.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Readiness {
    pub polls: u64,
    /// The fewest instances ready in one poll, over the whole run and outside full Redis
    /// restarts (with every Redis node down, no instance can be ready).
    pub min_ready: u64,
    pub min_ready_outside_redis_restarts: u64,
    /// Polls in which no instance was ready, outside full Redis restarts.
    pub zero_ready_polls: u64,
}

/// What the TCP proxy between the instances and Redis did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ProxyStats {
    /// Connections relayed, by owner (`danmaku-0`…, `redis` for a replica's link, `other`).
    pub relayed: BTreeMap<String, u64>,
    /// Connections refused (their instance was cut) and cut (closed by a cut).
    pub refused: u64,
    pub cut: u64,
}

/// One fault and what it did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct FaultRecord {
    /// Seconds from the start of the load, and the Unix time in ms.
    pub t_s: f64,
    pub at_ms: u64,
    /// `kill`, `drain`, `failover`, `master-kill`, `migrate`, `redis-restart` or `cut`.
    pub kind: String,
    /// What it hit: an instance, a Redis node, a slot.
    pub target: String,
    /// How long it took until everything was back, seconds.
    pub took_s: f64,
    /// What was done, step by step, or why it failed.
    pub note: String,
    /// From here on, up to the next fault: viewers that reconnected, resumes answered
    /// `resumed: false`, closes 4002, the longest a viewer went without a comment, and the
    /// comments declared missing and missing silently.
    pub reconnected: u64,
    pub resumed_false: u64,
    pub resync_4002: u64,
    pub longest_gap_ms: u64,
    pub declared_missing: u64,
    pub silent_missing: u64,
}

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ChaosTick {
    /// Seconds from the start of the load.
    pub t_s: f64,
    /// Viewer connections past `init`.
    pub connected: u64,
    /// Instances whose `/readyz` answered 200, and which (same order as `instances`).
    pub ready: u64,
    #[serde(default)]
    pub ready_each: Vec<bool>,
    /// Comments received this second, and their delivery latency's p99 (0 when none).
    pub delivered: u64,
    pub p99_ms: f64,
    /// Each instance's RSS (same order as `instances`); `None` while it is down.
    pub rss_bytes: Vec<Option<u64>>,
}

/// A silent gap, duplicate or reorder, and where to look.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Evidence {
    /// `silent gap`, `duplicate` or `reorder`.
    pub what: String,
    pub stream: usize,
    pub viewer: u32,
    /// Unix ms of the frame that showed it.
    pub t_ms: u64,
    /// The instance the viewer was connected to.
    pub instance: Option<usize>,
    /// The ids concerned (the first few missing ones, or the repeated one).
    pub ids: Vec<String>,
    pub detail: String,
}
