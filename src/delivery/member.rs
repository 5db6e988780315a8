//! A room's members: what the room's task hands each of them, in the room's order, and what
//! they did with it. In production each member is a connection's [`super::Peer`]; tests and
//! benchmarks bring their own.

use std::sync::Arc;

use super::batch::CommentBatch;
use crate::domain::UserId;
use crate::domain::wire::SharedFrame;
use crate::metrics::{Metrics, ThinReason};

/// What a room hands its members.
#[derive(Debug, Clone)]
pub enum RoomEvent {
    Comments(Arc<CommentBatch>),
    /// An encoded frame every socket sends as is (`deleted`, `viewers`, `settings`).
    Frame(SharedFrame),
    /// A frame for the stream's moderators only (`held`).
    ToModerators(SharedFrame),
    /// A frame for this user's sockets only (`released`, `dropped`).
    ToUser(UserId, SharedFrame),
    /// This user was banned from the stream: their sockets close.
    Banned(UserId),
    /// Comments were lost beyond what the broker could backfill: every socket closes with
    /// 4002 so its client resumes with `after=` and learns from `resumed` what it missed.
    Resync,
}

/// A connection as its room sees it.
pub trait Member: Send + Sync + 'static {
    /// The room's next event, in the room's order, from the room's task. Must not wait:
    /// a member writes what its socket takes now and keeps (boundedly) what it does not.
    fn deliver(&self, event: &RoomEvent) -> Delivery;
}

/// What members did with an event: the comments handed to sockets, and those left out
/// (and told of in `skipped`), by why.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub sent: u64,
    /// Left out by the viewer's budget.
    pub over_budget: u64,
    /// Left out because the viewer's socket fell behind.
    pub behind: u64,
    /// Bytes handed to sockets without compression negotiated, and with it.
    pub plain_bytes: u64,
    pub deflate_bytes: u64,
}

impl Delivery {
    pub fn sent(n: u64) -> Self {
        Self {
            sent: n,
            ..Self::default()
        }
    }

    /// `bytes` handed to a socket; `deflate`: one that negotiated compression.
    pub fn wrote(&mut self, deflate: bool, bytes: u64) {
        if deflate {
            self.deflate_bytes += bytes;
        } else {
            self.plain_bytes += bytes;
        }
    }

    /// Counts these deliveries in the metrics.
    pub fn record(&self, metrics: &Metrics) {
        metrics.delivered(self.sent);
        metrics.egress.written(false, self.plain_bytes);
        metrics.egress.written(true, self.deflate_bytes);
        metrics.thinned(ThinReason::Budget, self.over_budget);
        metrics.thinned(ThinReason::SlowConsumer, self.behind);
    }
}

impl std::ops::AddAssign for Delivery {
    fn add_assign(&mut self, other: Self) {
        self.sent += other.sent;
        self.over_budget += other.over_budget;
        self.behind += other.behind;
        self.plain_bytes += other.plain_bytes;
        self.deflate_bytes += other.deflate_bytes;
    }
}
