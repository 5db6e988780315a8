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
mod moderation;
mod redis;
mod types;
mod visible;

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::background::Background;
use crate::config::Config;
use crate::domain::{Comment, CommentId, Epoch, StreamId};
use crate::metrics::Metrics;

pub use memory::MemoryBroker;
use redis::RedisBroker;
pub use types::{
    ALL_RETAINED, Ban, BanMode, BrokerError, BrokerEvent, Dedup, EventSink, HELD_FOR, HistoryPage,
    HistoryQuery, IDEMPOTENCY_TTL, MAX_BAN, MAX_HELD_FOR_REVIEW, NewComment, Published, REF_TTL,
    RateLimit, Route, StreamStats, Unavailable,
};

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
                let memory = Arc::new(
                    MemoryBroker::new(
                        config.history_len,
                        config.unsubscribe_linger(),
                        sink,
                        metrics,
                    )
                    .with_replay(config.replay()),
                );
                memory::spawn_sweeper(memory.clone(), background);
                Ok(Self::Memory(memory))
            }
            Some(settings) => {
                let redis =
                    RedisBroker::connect(&settings, config, sink, metrics, background).await?;
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

    /// The stream's public comments whose media time (`media_ts`, else `ts`) lies in
    /// `[from, to)`, ordered by media time then id, without deleted or shadowed ones (the
    /// contract's section 10); `NotFound` when replay is off.
    pub async fn replay(
        &self,
        stream: &StreamId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Comment>, BrokerError> {
        match self {
            Self::Memory(m) => m.replay(stream, from, to),
            Self::Redis(r) => Box::pin(r.replay(stream, from, to)).await,
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
