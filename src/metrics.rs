//! The named counters of PROTOCOL.md section 7, created in one place.
//!
//! Plain atomics for now, rendered as Prometheus text by `GET /metrics` with the names
//! Prometheus gives the OTLP instruments. The OpenTelemetry export (and the latency
//! histograms) build on these names.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::domain::CommentKind;
use crate::domain::wire::ErrorCode;

/// Why a delivery was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The connection fell behind its stream's shared buffer and was closed (4001).
    SlowConsumer,
    /// The connection's socket did not take a write within the write timeout (4001).
    WriteTimeout,
    /// Redis messages overflowed the inbound buffer; they are backfilled from history, so
    /// this counts repairs, not losses viewers see.
    BrokerLag,
    /// A subscription gap reached past the retained history: the stream's local sockets
    /// were told to resynchronise (4002).
    HistoryGap,
}

impl DropReason {
    const ALL: [DropReason; 4] = [
        Self::SlowConsumer,
        Self::WriteTimeout,
        Self::BrokerLag,
        Self::HistoryGap,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::SlowConsumer => "slow_consumer",
            Self::WriteTimeout => "write_timeout",
            Self::BrokerLag => "broker_lag",
            Self::HistoryGap => "history_gap",
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

const REJECT_CODES: [ErrorCode; 6] = [
    ErrorCode::Invalid,
    ErrorCode::TooLong,
    ErrorCode::Unauthorized,
    ErrorCode::Banned,
    ErrorCode::RateLimited,
    ErrorCode::Unavailable,
];

#[derive(Debug, Default)]
pub struct Metrics {
    connections: AtomicI64,
    streams_subscribed: AtomicI64,
    published: [AtomicU64; KINDS.len()],
    delivered: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    rejected: [AtomicU64; REJECT_CODES.len()],
    handshakes_refused: AtomicU64,
    subscriptions_rebuilt: AtomicU64,
}

impl Metrics {
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
        self.delivered.fetch_add(n, Relaxed);
    }

    pub fn dropped(&self, reason: DropReason, n: u64) {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is listed");
        self.dropped[i].fetch_add(n, Relaxed);
    }

    pub fn rejected(&self, code: ErrorCode) {
        if let Some(i) = REJECT_CODES.iter().position(|c| *c == code) {
            self.rejected[i].fetch_add(1, Relaxed);
        }
    }

    pub fn subscription_rebuilt(&self) {
        self.subscriptions_rebuilt.fetch_add(1, Relaxed);
    }

    pub fn handshake_refused(&self) {
        self.handshakes_refused.fetch_add(1, Relaxed);
    }

    pub fn delivered_total(&self) -> u64 {
        self.delivered.load(Relaxed)
    }

    pub fn dropped_total(&self, reason: DropReason) -> u64 {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is listed");
        self.dropped[i].load(Relaxed)
    }

    /// Prometheus text exposition (version 0.0.4).
    /// `not_ready`: every reason `/readyz` fails now (empty: ready); `cpu`: the fraction
    /// the CPU gate compares with its threshold.
    pub fn render(&self, not_ready: &[&str], cpu: f64) -> String {
        let mut out = String::with_capacity(2048);
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let one = |v: String| vec![(String::new(), v)];
        family(
            "danmaku_ws_connections",
            "gauge",
            "Open WebSocket connections.",
            &one(self.connections.load(Relaxed).to_string()),
        );
        family(
            "danmaku_streams_subscribed",
            "gauge",
            "Streams this instance holds a broker subscription for.",
            &one(self.streams_subscribed.load(Relaxed).to_string()),
        );
        let by = |label: &str, names: &[&str], values: &[AtomicU64]| -> Vec<(String, String)> {
            names
                .iter()
                .zip(values)
                .map(|(n, v)| (format!("{{{label}=\"{n}\"}}"), v.load(Relaxed).to_string()))
                .collect()
        };
        let kinds: Vec<&str> = KINDS.iter().map(|k| k.as_str()).collect();
        family(
            "danmaku_comments_published_total",
            "counter",
            "Comments accepted.",
            &by("kind", &kinds, &self.published),
        );
        family(
            "danmaku_comments_delivered_total",
            "counter",
            "Comment deliveries written to sockets.",
            &one(self.delivered.load(Relaxed).to_string()),
        );
        let reasons: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        family(
            "danmaku_comments_dropped_total",
            "counter",
            "Deliveries dropped.",
            &by("reason", &reasons, &self.dropped),
        );
        let codes: Vec<&str> = REJECT_CODES.iter().map(|c| c.as_str()).collect();
        family(
            "danmaku_comments_rejected_total",
            "counter",
            "Client comments refused.",
            &by("code", &codes, &self.rejected),
        );
        family(
            "danmaku_ws_handshakes_refused_total",
            "counter",
            "WebSocket handshakes refused before the upgrade.",
            &one(self.handshakes_refused.load(Relaxed).to_string()),
        );
        family(
            "danmaku_broker_subscriptions_rebuilt_total",
            "counter",
            "Broker subscriptions rebuilt after a probe went unanswered or the stream's slot moved.",
            &one(self.subscriptions_rebuilt.load(Relaxed).to_string()),
        );
        let readiness: Vec<(String, String)> = if not_ready.is_empty() {
            one("1".into())
        } else {
            not_ready
                .iter()
                .map(|r| (format!("{{reason=\"{r}\"}}"), "0".into()))
                .collect()
        };
        family(
            "danmaku_readiness_state",
            "gauge",
            "1 ready, 0 not ready (with the reason).",
            &readiness,
        );
        family(
            "danmaku_process_cpu_utilization",
            "gauge",
            "The CPU fraction readiness compares with its threshold.",
            &one(format!("{cpu:.4}")),
        );
        out
    }
}
