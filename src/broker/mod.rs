//! The seam between this instance and the rest of the cluster.
//!
//! The broker owns everything that must agree across instances: publishing (id assignment,
//! history, idempotency, bans), the per-stream subscriptions that bring comments in, history
//! reads, viewer counts, deletions. It delivers what arrives on a subscribed stream to the
//! [`EventSink`] the hub gave it, in id order per stream.
//!
//! Two implementations: [`memory`] (the embedded single-node broker, the default) and, with
//! `DANMAKU_REDIS_URL`, Redis. Nothing outside this module sees either's types.

pub mod memory;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::domain::{Comment, CommentData, CommentId, CommentKind, StreamId, User};

pub use memory::MemoryBroker;

/// What arrives from a subscribed stream.
#[derive(Debug, Clone)]
pub enum BrokerEvent {
    /// New comments, in id order, each newer than any delivered before on this stream.
    Comments {
        stream: StreamId,
        comments: Vec<Comment>,
    },
    /// Comments removed by moderation.
    Deleted {
        stream: StreamId,
        ids: Vec<CommentId>,
    },
    /// A user was banned from the stream: their open sockets there are closed.
    Banned { stream: StreamId, user_id: String },
}

/// Where the broker delivers events. Called synchronously; must not block or call back
/// into the broker.
pub type EventSink = Arc<dyn Fn(BrokerEvent) + Send + Sync>;

/// A comment to publish. The broker assigns `id` and `ts`.
#[derive(Debug, Clone)]
pub struct NewComment {
    pub stream: StreamId,
    pub kind: CommentKind,
    pub user: Option<User>,
    pub text: String,
    pub data: Option<CommentData>,
    /// Same key within [`IDEMPOTENCY_TTL`]: the first comment is returned, nothing published.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    New(Comment),
    /// The idempotency key was seen before; this is the comment it published then.
    Duplicate(Comment),
}

/// How long an idempotency key is remembered (PROTOCOL.md section 4).
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(600);

/// Longest ban a moderator may give, and the length of a ban without `seconds`.
pub const MAX_BAN: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery {
    /// The newest `limit` retained comments.
    Latest { limit: usize },
    /// The oldest `limit` retained comments newer than `id`.
    After { id: CommentId, limit: usize },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    /// Oldest first.
    pub comments: Vec<Comment>,
    /// For [`HistoryQuery::After`]: whether every comment newer than the id is still
    /// retained, so a client resuming from it misses nothing.
    pub complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamStats {
    pub viewer_count: u64,
    pub peak_viewer_count: u64,
    pub comment_count: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BrokerError {
    #[error("the user is banned from this stream")]
    Banned,
    #[error("no such comment")]
    NotFound,
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
}

/// The broker in use. An enum, not a trait object: there are exactly two.
#[derive(Clone)]
pub enum Broker {
    Memory(Arc<MemoryBroker>),
}

impl Broker {
    /// The broker `config` asks for, delivering into `sink`.
    pub async fn connect(config: &Config, sink: EventSink) -> anyhow::Result<Self> {
        match &config.redis_url {
            None => Ok(Self::Memory(Arc::new(MemoryBroker::new(
                config.history_len,
                sink,
            )))),
            Some(_) => anyhow::bail!(
                "DANMAKU_REDIS_URL: the Redis broker is not part of this build yet; unset it to use the embedded broker"
            ),
        }
    }

    pub async fn publish(&self, comment: NewComment) -> Result<Published, BrokerError> {
        match self {
            Self::Memory(m) => m.publish(comment),
        }
    }

    pub async fn history(
        &self,
        stream: &StreamId,
        query: HistoryQuery,
    ) -> Result<HistoryPage, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.history(stream, query)),
        }
    }

    /// Start receiving the stream's events. Returns once delivery is live: anything
    /// published after this returns is delivered to the sink.
    pub async fn subscribe(&self, stream: &StreamId) -> Result<(), BrokerError> {
        match self {
            Self::Memory(m) => {
                m.subscribe(stream);
                Ok(())
            }
        }
    }

    pub async fn unsubscribe(&self, stream: &StreamId) -> Result<(), BrokerError> {
        match self {
            Self::Memory(m) => {
                m.unsubscribe(stream);
                Ok(())
            }
        }
    }

    pub async fn delete(&self, stream: &StreamId, id: CommentId) -> Result<(), BrokerError> {
        match self {
            Self::Memory(m) => m.delete(stream, id),
        }
    }

    pub async fn ban(
        &self,
        stream: &StreamId,
        user_id: &str,
        duration: Duration,
    ) -> Result<(), BrokerError> {
        match self {
            Self::Memory(m) => {
                m.ban(stream, user_id, duration);
                Ok(())
            }
        }
    }

    pub async fn is_banned(&self, stream: &StreamId, user_id: &str) -> Result<bool, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.is_banned(stream, user_id)),
        }
    }

    /// This instance's local viewer count of a stream changed by `delta`.
    pub fn local_viewers_changed(&self, stream: &StreamId, delta: i64) {
        match self {
            Self::Memory(m) => m.viewers_changed(stream, delta),
        }
    }

    /// The stream's viewer count across all instances.
    pub async fn viewer_counts(&self, streams: &[StreamId]) -> Result<Vec<u64>, BrokerError> {
        match self {
            Self::Memory(m) => Ok(streams.iter().map(|s| m.stats(s).viewer_count).collect()),
        }
    }

    pub async fn stats(&self, stream: &StreamId) -> Result<StreamStats, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.stats(stream)),
        }
    }

    /// Whether the broker is reachable and its subscriptions are live (`/readyz`).
    pub fn is_healthy(&self) -> bool {
        match self {
            Self::Memory(_) => true,
        }
    }

    /// Background work (expiry sweeps), until `cancel`.
    pub fn spawn_background(&self, cancel: tokio_util::sync::CancellationToken) {
        match self {
            Self::Memory(m) => memory::spawn_sweeper(m.clone(), cancel),
        }
    }
}
