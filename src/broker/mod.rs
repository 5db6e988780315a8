//! The seam between this instance and the rest of the cluster.
//!
//! The broker owns everything that must agree across instances: publishing (id assignment,
//! history, idempotency, bans), history reads, viewer counts, deletions, and the one set of
//! this instance's stream subscriptions. The hub asks for a stream with
//! [`Broker::subscribe`] once per local viewer and holds the [`Subscription`] it gets back;
//! the broker subscribes on the first, unsubscribes after the last one is dropped plus
//! `DANMAKU_UNSUBSCRIBE_LINGER_MS`, and delivers what arrives on a subscribed stream to the
//! [`EventSink`] the hub gave it, in id order per stream.
//!
//! Two implementations: [`memory`] (the embedded single-node broker, the default) and, with
//! `DANMAKU_REDIS_URL`, Redis. Nothing outside this module sees either's types. The seam
//! takes validated types ([`NewComment`] holds a [`CommentText`], a [`UserId`], …), never
//! raw strings.

pub mod memory;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::background::Background;
use crate::config::Config;
use crate::domain::{
    Comment, CommentData, CommentId, CommentKind, CommentText, Epoch, IdempotencyKey, StreamId,
    User, UserId,
};
use crate::metrics::Metrics;

pub use memory::MemoryBroker;
use redis::RedisBroker;

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
    Banned { stream: StreamId, user_id: UserId },
    /// Comments were lost beyond what history can backfill: local sockets of the stream
    /// must resynchronise (they are closed with 4002 and resume with `after=`).
    Resync { stream: StreamId },
    /// The stream's delivery was interrupted and is being repaired (its subscription's
    /// connection dropped, or it may have gone deaf): what was read of its history before
    /// may be stale. What it missed follows as a backfill, or as a [`Self::Resync`].
    Interrupted { stream: StreamId },
}

/// Where the broker delivers events. Called synchronously; must not block or call back
/// into the broker.
pub type EventSink = Arc<dyn Fn(BrokerEvent) + Send + Sync>;

/// A comment to publish, built only from validated parts. The broker assigns `id` and `ts`.
#[derive(Debug, Clone)]
pub struct NewComment {
    pub stream: StreamId,
    pub kind: CommentKind,
    pub user: Option<User>,
    pub text: CommentText,
    pub data: Option<CommentData>,
    /// The author moderates the stream: the comment is never thinned.
    pub by_moderator: bool,
    /// The same key again within its time: the first comment is returned, nothing published.
    pub dedup: Option<Dedup>,
    /// The author's rate limit, for a broker that keeps it across instances (Redis: one
    /// bucket per stream and user, in the stream's slot, checked in the publish itself).
    /// The embedded broker ignores it: the instance's own limiter is the whole truth there.
    pub rate: Option<RateLimit>,
}

/// Comments per second and burst of a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_sec: f64,
    pub burst: f64,
}

/// What makes a publish idempotent on its stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dedup {
    /// A service's `idempotency_key`, for [`IDEMPOTENCY_TTL`].
    Service(IdempotencyKey),
    /// A viewer's `ref` on its WebSocket, per user, for [`REF_TTL`]: a resend after a lost
    /// `ack` (on any instance) is answered with the first `ack`.
    Ref { user: UserId, reference: String },
}

impl Dedup {
    pub fn ttl(&self) -> Duration {
        match self {
            Self::Service(_) => IDEMPOTENCY_TTL,
            Self::Ref { .. } => REF_TTL,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    New(Comment),
    /// The idempotency key was seen before; this is the comment it published then.
    Duplicate(Comment),
}

/// How long an idempotency key is remembered (the contract's section 4).
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(600);

/// How long a viewer's `ref` is remembered (the contract's section 8).
pub const REF_TTL: Duration = Duration::from_secs(120);

/// A ban in force.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ban {
    pub user_id: UserId,
    /// When it ends (epoch ms).
    pub expires_at: u64,
}

/// Longest ban a moderator may give, and the length of a ban without `seconds`.
pub const MAX_BAN: Duration = Duration::from_secs(30 * 24 * 3600);

/// A `limit` larger than any retained history: "everything after the id".
pub const ALL_RETAINED: usize = 100_000;

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

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BrokerError {
    #[error("the user is banned from this stream")]
    Banned,
    #[error("no such comment")]
    NotFound,
    #[error("the user posts too fast")]
    RateLimited { retry_after: Duration },
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// The broker could not answer (Redis out of reach, a timeout, an unexpected reply), with
/// the cause as the error's source. Not logged here: the layer that answers the client
/// logs it, once. Cheap to clone: the cause is shared.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the broker is unavailable: {cause}")]
pub struct Unavailable {
    #[source]
    cause: Arc<dyn std::error::Error + Send + Sync>,
}

impl Unavailable {
    pub fn new(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            cause: Arc::from(cause.into()),
        }
    }
}

/// Two reports are equal when they are of the same failure.
impl PartialEq for Unavailable {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cause, &other.cause)
    }
}

impl Eq for Unavailable {}

/// The broker in use. An enum, not a trait object: there are exactly two.
///
/// The Redis arms box their futures: fred's are several KiB, and an unboxed arm would make
/// every caller's future (each connection's task, for the whole life of the connection)
/// that large even with the embedded broker. Measured: 5.4 → 10.9 KiB per idle socket.
#[derive(Clone)]
pub enum Broker {
    Memory(Arc<MemoryBroker>),
    Redis(Arc<RedisBroker>),
}

/// One local viewer's hold on a stream, from [`Broker::subscribe`]: while any is held this
/// instance is subscribed to the stream, and each one counts in the stream's viewer count.
/// Dropping it releases both; the subscription outlives the last one by the linger.
#[must_use = "the subscription is released when this is dropped"]
pub struct Subscription {
    broker: Broker,
    stream: StreamId,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        match &self.broker {
            Broker::Memory(m) => m.release(&self.stream),
            Broker::Redis(r) => r.release(&self.stream),
        }
    }
}

impl Broker {
    /// The broker `config` asks for, delivering into `sink`; its background work runs as
    /// tasks of `background`.
    pub async fn connect(
        config: &Config,
        sink: EventSink,
        metrics: Arc<Metrics>,
        background: &Background,
    ) -> anyhow::Result<Self> {
        match config.redis()? {
            None => {
                let memory = Arc::new(MemoryBroker::new(
                    config.history_len,
                    config.unsubscribe_linger(),
                    sink,
                    metrics,
                ));
                memory::spawn_sweeper(memory.clone(), background);
                Ok(Self::Memory(memory))
            }
            Some(settings) => {
                let redis = RedisBroker::connect(
                    &settings,
                    &config.pod_name,
                    config.history_len,
                    config.unsubscribe_linger(),
                    sink,
                    metrics,
                    background,
                )
                .await?;
                Ok(Self::Redis(redis))
            }
        }
    }

    /// Counts a local viewer of `stream` and holds the stream's subscription for it.
    /// Returns once delivery is live: anything published after this returns is delivered
    /// to the sink. Dropping the future before that releases what it took.
    pub async fn subscribe(&self, stream: &StreamId) -> Result<Subscription, BrokerError> {
        // Taking the hold and making its guard happen together, before any await, so a
        // cancelled caller always releases what it took.
        let live = match self {
            Self::Memory(m) => {
                m.acquire(stream);
                None
            }
            Self::Redis(r) => Some(r.acquire(stream)),
        };
        let subscription = Subscription {
            broker: self.clone(),
            stream: stream.clone(),
        };
        if let Some(live) = live {
            live.await
                .map_err(|_| Unavailable::new("the broker stopped"))??;
        }
        Ok(subscription)
    }

    pub async fn publish(&self, comment: NewComment) -> Result<Published, BrokerError> {
        match self {
            Self::Memory(m) => m.publish(comment),
            Self::Redis(r) => Box::pin(r.publish(comment)).await,
        }
    }

    pub async fn history(
        &self,
        stream: &StreamId,
        query: HistoryQuery,
    ) -> Result<HistoryPage, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.history(stream, query)),
            Self::Redis(r) => Box::pin(r.history(stream, query)).await,
        }
    }

    pub async fn delete(&self, stream: &StreamId, id: CommentId) -> Result<(), BrokerError> {
        match self {
            Self::Memory(m) => m.delete(stream, id),
            Self::Redis(r) => Box::pin(r.delete(stream, id)).await,
        }
    }

    pub async fn ban(
        &self,
        stream: &StreamId,
        user: &UserId,
        duration: Duration,
    ) -> Result<(), BrokerError> {
        match self {
            Self::Memory(m) => {
                m.ban(stream, user, duration);
                Ok(())
            }
            Self::Redis(r) => Box::pin(r.ban(stream, user, duration)).await,
        }
    }

    /// The stream's epoch (the contract's section 8): it changes when the stream's history
    /// was lost, so ids of an older epoch say nothing about the current history.
    pub async fn epoch(&self, stream: &StreamId) -> Result<Epoch, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.epoch(stream)),
            Self::Redis(r) => Box::pin(r.epoch(stream)).await,
        }
    }

    /// The ids of the stream's comments deleted at or after `since_ms` (epoch ms), as far
    /// back as the moderation log goes (the newest 1,000 events of the last day), oldest
    /// deletion first.
    pub async fn deleted_since(
        &self,
        stream: &StreamId,
        since_ms: u64,
    ) -> Result<Vec<CommentId>, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.deleted_since(stream, since_ms)),
            Self::Redis(r) => Box::pin(r.deleted_since(stream, since_ms)).await,
        }
    }

    /// Lifts a user's ban on a stream: `false` if there was none.
    pub async fn unban(&self, stream: &StreamId, user: &UserId) -> Result<bool, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.unban(stream, user)),
            Self::Redis(r) => Box::pin(r.unban(stream, user)).await,
        }
    }

    /// The stream's bans in force, soonest to end first.
    pub async fn bans(&self, stream: &StreamId) -> Result<Vec<Ban>, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.bans(stream)),
            Self::Redis(r) => Box::pin(r.bans(stream)).await,
        }
    }

    pub async fn is_banned(&self, stream: &StreamId, user: &UserId) -> Result<bool, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.is_banned(stream, user)),
            Self::Redis(r) => Box::pin(r.is_banned(stream, user)).await,
        }
    }

    /// The stream's viewer count across all instances.
    pub async fn viewer_counts(&self, streams: &[StreamId]) -> Result<Vec<u64>, BrokerError> {
        match self {
            Self::Memory(m) => Ok(streams.iter().map(|s| m.stats(s).viewer_count).collect()),
            Self::Redis(r) => Box::pin(r.viewer_counts(streams)).await,
        }
    }

    pub async fn stats(&self, stream: &StreamId) -> Result<StreamStats, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.stats(stream)),
            Self::Redis(r) => Box::pin(r.stats(stream)).await,
        }
    }

    /// Whether rate limits are kept by the broker across instances ([`NewComment::rate`]).
    pub fn limits_rates(&self) -> bool {
        matches!(self, Self::Redis(_))
    }

    /// Whether the broker is reachable and its subscriptions are live (`/readyz`).
    pub fn is_healthy(&self) -> bool {
        match self {
            Self::Memory(_) => true,
            Self::Redis(r) => r.is_healthy(),
        }
    }

    /// Closes connections to Redis (after the last socket is gone).
    pub async fn close(&self) {
        if let Self::Redis(r) = self {
            r.close().await;
        }
    }
}

/// The answer a waiting [`Broker::subscribe`] gets once the stream's delivery is live.
type Live = oneshot::Receiver<Result<(), BrokerError>>;
