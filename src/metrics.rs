//! The counters of the contract's telemetry table (section 7) and the SLI histograms, in
//! one place: what every other module records into.
//!
//! Counters are plain atomics, so counting a delivery costs one relaxed add; the
//! observable instruments that `telemetry` registers read them when metrics are collected
//! (for OTLP and for `/metrics`). The histograms are OpenTelemetry instruments, made from
//! the meter `telemetry` provides.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use opentelemetry::metrics::{Histogram, Meter};

use crate::domain::CommentKind;
use crate::domain::wire::ErrorCode;

mod egress;

pub use egress::{Egress, InflateRefusal};

/// Histogram boundaries in seconds; 0.1 and 0.25 are the SLO thresholds (`docs/slo.md`),
/// each an exact boundary.
pub const LATENCY_BOUNDARIES: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Boundaries of the compression ratio (compressed over plain size).
pub const RATIO_BOUNDARIES: [f64; 9] = [0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0];

/// The histograms, recorded directly: the SLIs, and how well frames compress.
#[derive(Clone)]
pub struct Latencies {
    /// Handshake completed → `init` written (SLI 1).
    pub init: Histogram<f64>,
    /// Comment `ts` → received by this instance from the broker (SLI 2).
    pub delivery: Histogram<f64>,
    /// Comment `ts` → frame handed to the last local socket of the stream.
    pub fanout: Histogram<f64>,
    /// A frame's compressed size over its plain size, once per compression.
    pub compression_ratio: Histogram<f64>,
}

impl Latencies {
    pub fn new(meter: &Meter) -> Self {
        let histogram = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(LATENCY_BOUNDARIES.to_vec())
                .build()
        };
        Self {
            init: histogram(
                "danmaku.ws.init.duration",
                "WebSocket handshake completed to init frame written",
            ),
            delivery: histogram(
                "danmaku.comment.delivery.duration",
                "Comment publish time to its arrival at this instance",
            ),
            fanout: histogram(
                "danmaku.comment.fanout.duration",
                "Comment publish time to its frame handed to the last local socket",
            ),
            compression_ratio: meter
                .f64_histogram("danmaku.ws.compression")
                .with_unit("1")
                .with_description("A compressed frame's size over its plain size")
                .with_boundaries(RATIO_BOUNDARIES.to_vec())
                .build(),
        }
    }

    /// Histograms that record nowhere (unit tests).
    #[cfg(test)]
    pub(crate) fn noop() -> Self {
        Self::new(&opentelemetry::global::meter("danmaku-unit-test"))
    }
}

/// Why a delivery was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The connection's socket fell too far behind (its queued bytes passed the bound, or
    /// its `init` took too long) and was closed (4001).
    SlowConsumer,
    /// The connection's socket did not take a write within the write timeout (4001).
    WriteTimeout,
    /// Redis messages overflowed the inbound buffer; they are backfilled from history, so
    /// this counts repairs, not losses viewers see.
    BrokerLag,
    /// A subscription gap reached past the retained history: the stream's local sockets
    /// were told to resynchronise (4002).
    HistoryGap,
    /// A room's delivery task fell its queue's bound behind: the backlog was dropped and
    /// the stream's local sockets told to resynchronise (4002).
    RoomLag,
}

impl DropReason {
    const ALL: [DropReason; 5] = [
        Self::SlowConsumer,
        Self::WriteTimeout,
        Self::BrokerLag,
        Self::HistoryGap,
        Self::RoomLag,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::SlowConsumer => "slow_consumer",
            Self::WriteTimeout => "write_timeout",
            Self::BrokerLag => "broker_lag",
            Self::HistoryGap => "history_gap",
            Self::RoomLag => "room_lag",
        }
    }

    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every reason is listed")
    }
}

/// Why a viewer was not sent a comment (it is told of it in `skipped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinReason {
    /// The viewer's budget of user comments per second was spent.
    Budget,
    /// The viewer's socket fell behind and was moved to a thinner tier.
    SlowConsumer,
}

impl ThinReason {
    const ALL: [ThinReason; 2] = [Self::Budget, Self::SlowConsumer];

    fn as_str(self) -> &'static str {
        match self {
            Self::Budget => "budget",
            Self::SlowConsumer => "slow_consumer",
        }
    }
}

/// What became of a comment held for review (the contract's section 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldOutcome {
    /// Held: a blocked term set to `hold` matched it.
    Held,
    /// A moderator approved it: published as a new comment.
    Approved,
    /// A moderator rejected it.
    Rejected,
    /// Nobody decided within an hour, or the stream's 1,000 held ones pushed it out: gone,
    /// its author not told.
    Expired,
}

impl HeldOutcome {
    const ALL: [HeldOutcome; 4] = [Self::Held, Self::Approved, Self::Rejected, Self::Expired];

    fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }
}

const KINDS: [CommentKind; 5] = [
    CommentKind::User,
    CommentKind::Gift,
    CommentKind::Follow,
    CommentKind::Mission,
    CommentKind::System,
];

const REJECT_CODES: [ErrorCode; 10] = [
    ErrorCode::Invalid,
    ErrorCode::TooLong,
    ErrorCode::Unauthorized,
    ErrorCode::Banned,
    ErrorCode::RateLimited,
    ErrorCode::Unavailable,
    ErrorCode::SlowMode,
    ErrorCode::RoleRequired,
    ErrorCode::Blocked,
    ErrorCode::Forbidden,
];

pub struct Metrics {
    connections: AtomicI64,
    streams_subscribed: AtomicI64,
    published: [AtomicU64; KINDS.len()],
    delivered: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    thinned: [AtomicU64; ThinReason::ALL.len()],
    rejected: [AtomicU64; REJECT_CODES.len()],
    held: [AtomicU64; HeldOutcome::ALL.len()],
    handshakes_refused: AtomicU64,
    subscriptions_rebuilt: AtomicU64,
    /// What leaves by the WebSocket, and what compression does to it.
    pub egress: Egress,
    pub latencies: Latencies,
}

impl Metrics {
    pub fn new(latencies: Latencies) -> Self {
        Self {
            connections: AtomicI64::new(0),
            streams_subscribed: AtomicI64::new(0),
            published: Default::default(),
            delivered: AtomicU64::new(0),
            dropped: Default::default(),
            thinned: Default::default(),
            rejected: Default::default(),
            held: Default::default(),
            handshakes_refused: AtomicU64::new(0),
            subscriptions_rebuilt: AtomicU64::new(0),
            egress: Egress::default(),
            latencies,
        }
    }

    // === recording ===

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Relaxed);
    }

    pub fn stream_subscribed(&self) {
        self.streams_subscribed.fetch_add(1, Relaxed);
    }

    pub fn stream_unsubscribed(&self) {
        self.streams_subscribed.fetch_sub(1, Relaxed);
    }

    pub fn published(&self, kind: CommentKind) {
        let i = KINDS
            .iter()
            .position(|k| *k == kind)
            .expect("every kind is listed");
        self.published[i].fetch_add(1, Relaxed);
    }

    pub fn delivered(&self, n: u64) {
        if n > 0 {
            self.delivered.fetch_add(n, Relaxed);
        }
    }

    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.dropped[reason.index()].fetch_add(n, Relaxed);
    }

    pub fn thinned(&self, reason: ThinReason, n: u64) {
        if n > 0 {
            self.thinned[reason as usize].fetch_add(n, Relaxed);
        }
    }

    pub fn rejected(&self, code: ErrorCode) {
        if let Some(i) = REJECT_CODES.iter().position(|c| *c == code) {
            self.rejected[i].fetch_add(1, Relaxed);
        }
    }

    pub fn held(&self, outcome: HeldOutcome, n: u64) {
        if n > 0 {
            self.held[outcome as usize].fetch_add(n, Relaxed);
        }
    }

    pub fn subscription_rebuilt(&self) {
        self.subscriptions_rebuilt.fetch_add(1, Relaxed);
    }

    pub fn handshake_refused(&self) {
        self.handshakes_refused.fetch_add(1, Relaxed);
    }

    // === reading (at collection time) ===

    pub fn connections(&self) -> i64 {
        self.connections.load(Relaxed)
    }

    pub fn streams_subscribed(&self) -> i64 {
        self.streams_subscribed.load(Relaxed)
    }

    pub fn delivered_total(&self) -> u64 {
        self.delivered.load(Relaxed)
    }

    pub fn handshakes_refused(&self) -> u64 {
        self.handshakes_refused.load(Relaxed)
    }

    pub fn subscriptions_rebuilt(&self) -> u64 {
        self.subscriptions_rebuilt.load(Relaxed)
    }

    pub fn published_by_kind(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        KINDS
            .iter()
            .zip(&self.published)
            .map(|(k, n)| (k.as_str(), n.load(Relaxed)))
    }

    pub fn dropped_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL
            .iter()
            .zip(&self.dropped)
            .map(|(r, n)| (r.as_str(), n.load(Relaxed)))
    }

    pub fn thinned_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ThinReason::ALL
            .iter()
            .zip(&self.thinned)
            .map(|(r, n)| (r.as_str(), n.load(Relaxed)))
    }

    pub fn rejected_by_code(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REJECT_CODES
            .iter()
            .zip(&self.rejected)
            .map(|(c, n)| (c.as_str(), n.load(Relaxed)))
    }

    pub fn held_by_outcome(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        HeldOutcome::ALL
            .iter()
            .zip(&self.held)
            .map(|(o, n)| (o.as_str(), n.load(Relaxed)))
    }
}
