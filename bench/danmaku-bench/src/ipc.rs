//! What the coordinator and its worker processes say to each other: one JSON object per line,
//! a [`Plan`] then [`Command`]s on the worker's stdin, [`Event`]s on its stdout. Plain data
//! but for a histogram's wire form (`stats`) and the target (`proto`); the coordinator (`run`),
//! `plan`, `worker` and `tally` use it.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::proto::Target;
use crate::stats::Buckets;

/// Everything one worker process does in a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Plan {
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
    /// Fanout: one moderator per stream with posters, posting the stream's end marker
    /// ([`crate::proto::end_text`]) once every poster's comments are acknowledged.
    #[serde(default)]
    pub closers: Vec<PosterSpec>,
    /// Whether viewers wait for their stream's end marker (the settle ends once all have it).
    #[serde(default)]
    pub expect_end: bool,
    /// Bearer token of the service API, for system comments.
    #[serde(default)]
    pub service_token: Option<String>,
    /// Whether viewers offer `permessage-deflate` (`--deflate`) and inflate what comes
    /// compressed.
    #[serde(default)]
    pub deflate: bool,
    /// The Pusher app (`--target pusher`): its key in the viewers' URL, its id and secret in
    /// the posters' signed triggers.
    #[serde(default)]
    pub pusher: Option<crate::proto::pusher::App>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scenario {
    Idle,
    Fanout,
    Storm,
    Churn,
    /// Fan-out, churn and moderation together for a long while (`danmaku-bench soak`).
    Soak,
}

impl Scenario {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Fanout => "fanout",
            Scenario::Storm => "storm",
            Scenario::Churn => "churn",
            Scenario::Soak => "soak",
        }
    }

    /// Whether viewers stay connected and count what they receive (fan-out and soak).
    pub(crate) fn fans_out(self) -> bool {
        matches!(self, Scenario::Fanout | Scenario::Soak)
    }

    /// Whether connect-and-leave loops run during the measured phase (churn and soak).
    pub(crate) fn churns(self) -> bool {
        matches!(self, Scenario::Churn | Scenario::Soak)
    }
}

/// Where one connection goes, and from which local address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Endpoint {
    /// `ws://host:port` of the instance.
    pub base: String,
    pub stream: String,
    /// Index of the stream in the run (for loss accounting).
    pub stream_index: u32,
    pub source: Ipv4Addr,
    /// User comments per second the connection asks for at most (`max_rate=`).
    #[serde(default)]
    pub max_rate: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PosterSpec {
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
    /// Fraction of the comments posted as system comments (gifts, over the service API).
    #[serde(default)]
    pub system_share: f64,
    /// Fraction of the user comments that hold the shadow term ([`crate::proto::SHADOW_TERM`]).
    #[serde(default)]
    pub shadow_share: f64,
}

/// Coordinator → worker, after the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub(crate) enum Command {
    /// Every worker's history is posted: open the viewers' connections.
    Connect,
    /// Start posting before the measured phase (`--lead-in`): nothing is measured yet.
    Post,
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
pub(crate) enum Event {
    /// The posters are connected and the history is posted; waiting for [`Command::Connect`]
    /// (so that no viewer connects before every stream's history is in).
    Prefilled,
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
pub(crate) struct TickCounts {
    pub deliveries: u64,
    pub frames: u64,
    /// Comments the server told viewers it left out (`skipped`).
    #[serde(default)]
    pub skipped: u64,
    /// Viewers still waiting for their stream's end marker.
    #[serde(default)]
    pub awaiting_end: u64,
    pub connected: u64,
    pub upgrades: u64,
    pub latency: Buckets,
}

/// A worker's totals over the measured phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Totals {
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
    /// `comments` frames that carried at least one delivery.
    pub comment_frames: u64,
    pub deliveries: u64,
    /// Bytes the viewers' sockets read over the measured phase (danmaku only): the wire
    /// bytes, before any inflating, over the same span as `deliveries`.
    #[serde(default)]
    pub wire_bytes: u64,
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
    /// The streams whose end marker the server acknowledged.
    #[serde(default)]
    pub ends_accepted: Vec<u32>,
}

/// What the viewers of one stream that stayed connected through the run saw, summed over
/// them, with what must hold per viewer kept per viewer (as counts of viewers per value).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StreamTotals {
    pub stream_index: u32,
    pub viewers: u64,
    /// Distinct benchmark comments received (user and system; not the end marker).
    pub distinct: u64,
    /// Sum of `skipped`.
    #[serde(default)]
    pub skipped: u64,
    /// Distinct user comments received, and the fewest and most one viewer received.
    #[serde(default)]
    pub user: u64,
    #[serde(default)]
    pub user_min: u64,
    #[serde(default)]
    pub user_max: u64,
    /// Distinct system comments received.
    #[serde(default)]
    pub system: u64,
    /// Viewers that received the end marker.
    #[serde(default)]
    pub ended: u64,
    /// Each viewer's received + skipped (the end marker counted), as (value, viewers) in
    /// increasing value: it must equal the comments published on the stream after the
    /// viewer's `init`. (Pairs, not a map: an internally tagged [`Event`] cannot read a map's
    /// integer keys back.)
    #[serde(default)]
    pub accounted: Vec<(u64, u64)>,
}

impl StreamTotals {
    /// Adds another worker's viewers of the same stream.
    pub(crate) fn merge(&mut self, other: &StreamTotals) {
        if other.viewers == 0 {
            return;
        }
        self.user_min = if self.viewers == 0 {
            other.user_min
        } else {
            self.user_min.min(other.user_min)
        };
        self.user_max = self.user_max.max(other.user_max);
        self.stream_index = other.stream_index;
        self.viewers += other.viewers;
        self.distinct += other.distinct;
        self.skipped += other.skipped;
        self.user += other.user;
        self.system += other.system;
        self.ended += other.ended;
        for &(value, viewers) in &other.accounted {
            match self.accounted.binary_search_by_key(&value, |a| a.0) {
                Ok(at) => self.accounted[at].1 += viewers,
                Err(at) => self.accounted.insert(at, (value, viewers)),
            }
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PosterTotals {
    pub index: u32,
    pub stream_index: u32,
    /// User comments (over the WebSocket).
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// System comments (over the service API).
    #[serde(default)]
    pub system_sent: u64,
    #[serde(default)]
    pub system_accepted: u64,
    #[serde(default)]
    pub system_rejected: u64,
    /// User comments acknowledged that held the shadow term (in `accepted` too): nobody but
    /// their poster receives them.
    #[serde(default)]
    pub shadow_accepted: u64,
}

impl PosterTotals {
    /// Comments sent and not yet answered.
    pub(crate) fn in_flight(&self) -> u64 {
        (self.sent + self.system_sent).saturating_sub(
            self.accepted + self.rejected + self.system_accepted + self.system_rejected,
        )
    }
}
