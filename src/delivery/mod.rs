//! The delivery engine: from an event queued for a stream's room to the bytes on each of
//! its sockets.
//!
//! - [`room`]: one stream's [`Room`]: the queue the hub dispatches into and the task that
//!   takes it, merges runs of comments into frames, encodes each frame once and hands it to
//!   every [`Member`] in one pass (coalescing a hot room's passes).
//! - [`batch`]: a run of comments encoded once, and once more per thinning tier in use;
//!   [`thinning`]: the tiers and the samplers that choose what each tier keeps.
//! - [`policy`]: every number of the slow-viewer policy, with its reason, in one table.
//! - [`peer`]: a connection as its room sees it: the member that writes each frame to its
//!   socket there and then; [`outbox`]: the one way bytes reach a socket, and the bounded
//!   queue of what it would not take yet.
//!
//! It imports only `domain` and `metrics` (checked by `scripts/check-modules`): the hub
//! (which rooms exist) and the WebSocket protocol sit above it.

mod batch;
mod outbox;
mod peer;
pub mod policy;
mod room;
mod thinning;

use std::sync::Arc;

use crate::domain::UserId;
use crate::domain::wire::SharedFrame;
use crate::metrics::{Metrics, ThinReason};

pub use batch::{CommentBatch, Sent};
pub use outbox::RawSocket;
pub use peer::{Attention, Peer, Signal};
pub use room::{Queued, Room};
pub use thinning::{Samplers, Tier};

/// What a room hands its members.
#[derive(Debug, Clone)]
pub enum RoomEvent {
    Comments(Arc<CommentBatch>),
    /// An encoded frame every socket sends as is (`deleted`, `viewers`).
    Frame(SharedFrame),
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
}

impl Delivery {
    pub fn sent(n: u64) -> Self {
        Self {
            sent: n,
            ..Self::default()
        }
    }

    /// Counts these deliveries in the metrics.
    pub fn record(&self, metrics: &Metrics) {
        metrics.delivered(self.sent);
        metrics.thinned(ThinReason::Budget, self.over_budget);
        metrics.thinned(ThinReason::SlowConsumer, self.behind);
    }
}

impl std::ops::AddAssign for Delivery {
    fn add_assign(&mut self, other: Self) {
        self.sent += other.sent;
        self.over_budget += other.over_budget;
        self.behind += other.behind;
    }
}

/// A member for tests (here and in the hub's): keeps what it is handed.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Recorder(pub(crate) std::sync::Mutex<Vec<RoomEvent>>);

#[cfg(test)]
impl Member for Recorder {
    fn deliver(&self, event: &RoomEvent) -> Delivery {
        self.0.lock().unwrap().push(event.clone());
        match event {
            RoomEvent::Comments(batch) => Delivery::sent(batch.comments.len() as u64),
            _ => Delivery::default(),
        }
    }
}

#[cfg(test)]
impl Recorder {
    /// Comment ids per `comments` event, and any other event as `[0]`.
    pub(crate) fn seen(&self) -> Vec<Vec<u64>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                RoomEvent::Comments(b) => b.comments.iter().map(|c| c.id.ms).collect(),
                _ => vec![0],
            })
            .collect()
    }
}

/// A system comment of `stream` for tests (here and in the hub's), its id and `ts` `ms`.
#[cfg(test)]
pub(crate) fn comment(stream: &crate::domain::StreamId, ms: u64) -> crate::domain::Comment {
    crate::domain::Comment {
        id: crate::domain::CommentId::new(ms, 0),
        stream_id: stream.clone(),
        kind: crate::domain::CommentKind::System,
        user: None,
        text: "t".into(),
        data: None,
        ts: ms,
        by_moderator: false,
    }
}
