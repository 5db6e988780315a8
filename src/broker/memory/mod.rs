//! The embedded broker: one node, everything in this process's memory.
//!
//! A real mode, not a test double: it is what `danmaku` runs with when no Redis is
//! configured. Every per-stream part is bounded ([`state`]) and a stream nobody watched or
//! posted to for [`STREAM_IDLE_EXPIRY`] is forgotten, as its Redis keys would expire.
//! [`moderation`] holds what moderators change: deletions, bans, settings, blocked terms,
//! held comments.
//!
//! Subscribing is a reference count per stream: no I/O, so a viewer's subscription is live
//! at once. The count still outlives its last holder by the linger, as with Redis, so the
//! `danmaku.streams.subscribed` gauge means the same with either broker.

mod moderation;
mod replay;
mod state;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::one::RefMut;

use super::{
    BanMode, BrokerError, BrokerEvent, EventSink, HistoryPage, HistoryQuery, NewComment, Published,
    Route, StreamStats,
};
use crate::background::Background;
use crate::domain::{Comment, CommentId, CommentKind, Epoch, ReplayLimits, StreamId, now_ms};
use crate::metrics::{HeldOutcome, Metrics};
use state::{DELETIONS_FOR, Posted, StreamState};

/// A stream with no viewers and no activity for this long is dropped from memory.
pub const STREAM_IDLE_EXPIRY: Duration = Duration::from_secs(24 * 3600);
const SWEEP_EVERY: Duration = Duration::from_secs(60);

pub struct MemoryBroker {
    history_len: usize,
    streams: DashMap<StreamId, StreamState>,
    /// Streams this instance is subscribed to: only their events reach the sink.
    subscribed: DashMap<StreamId, Held>,
    linger: Duration,
    sink: EventSink,
    metrics: Arc<Metrics>,
    replay: ReplayLimits,
}

/// A subscribed stream's holders.
struct Held {
    refs: usize,
    /// Bumped by every release to zero; a linger only ends its own generation.
    generation: u64,
}

impl MemoryBroker {
    pub fn new(
        history_len: usize,
        linger: Duration,
        sink: EventSink,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            history_len,
            streams: DashMap::new(),
            subscribed: DashMap::new(),
            linger,
            sink,
            metrics,
            replay: ReplayLimits::DEFAULT,
        }
    }

    /// Keeps comments for replay within `limits` (the defaults without this).
    pub fn with_replay(mut self, limits: ReplayLimits) -> Self {
        self.replay = limits;
        self
    }

    /// The public comments whose media time lies in `[from, to)`, by media time then id
    /// (`NotFound` with replay off).
    pub(super) fn replay(
        &self,
        stream: &StreamId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Comment>, BrokerError> {
        if self.replay.is_off() {
            return Err(BrokerError::NotFound);
        }
        Ok(self.streams.get_mut(stream).map_or_else(Vec::new, |mut s| {
            s.replay.window(from, to, self.replay, now_ms())
        }))
    }

    /// The stream's state, made if it has none, touched now.
    fn state(&self, stream: &StreamId, now: Instant) -> RefMut<'_, StreamId, StreamState> {
        let mut state = self
            .streams
            .entry(stream.clone())
            .or_insert_with(|| StreamState::new(now));
        state.touched = now;
        self.forget_expired(&mut state, now);
        state
    }

    /// Forgets what outlived its time on one stream, counting the held comments that expired.
    fn forget_expired(&self, state: &mut StreamState, now: Instant) {
        let expired = state.forget_expired(now);
        self.metrics.held(HeldOutcome::Expired, expired);
    }

    /// Hands `event` to the hub if this instance is subscribed to `stream` (called while
    /// the stream's entry is locked, so events of one stream reach the hub in order).
    fn emit(&self, stream: &StreamId, event: BrokerEvent) {
        if self.subscribed.contains_key(stream) {
            (self.sink)(event);
        }
    }

    /// A local viewer takes a hold on the stream: counted, and subscribed at once.
    pub(super) fn acquire(&self, stream: &StreamId) {
        self.viewers_changed(stream, 1);
        let mut held = self.subscribed.entry(stream.clone()).or_insert_with(|| {
            self.metrics.stream_subscribed();
            Held {
                refs: 0,
                generation: 0,
            }
        });
        held.refs += 1;
    }

    /// A hold is dropped; the last one starts the linger, after which the stream is
    /// unsubscribed unless someone took a hold again.
    pub(super) fn release(self: &Arc<Self>, stream: &StreamId) {
        self.viewers_changed(stream, -1);
        let generation = {
            let Some(mut held) = self.subscribed.get_mut(stream) else {
                return;
            };
            held.refs = held.refs.saturating_sub(1);
            if held.refs > 0 {
                return;
            }
            held.generation += 1;
            held.generation
        };
        // A hold dropped outside the runtime (a test's teardown) has no linger to wait for.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.unsubscribe_unheld(stream, generation);
        };
        let (broker, stream) = (self.clone(), stream.clone());
        runtime.spawn(async move {
            tokio::time::sleep(broker.linger).await;
            broker.unsubscribe_unheld(&stream, generation);
        });
    }

    /// Forgets the stream's subscription if nobody took a hold since release `generation`.
    fn unsubscribe_unheld(&self, stream: &StreamId, generation: u64) {
        let gone = self
            .subscribed
            .remove_if(stream, |_, held| {
                held.refs == 0 && held.generation == generation
            })
            .is_some();
        if gone {
            self.metrics.stream_unsubscribed();
        }
    }

    pub(super) fn publish(&self, new: NewComment) -> Result<Published, BrokerError> {
        let now = Instant::now();
        let mut state = self.state(&new.stream, now);
        if let Some(first) = new.dedup.as_ref().and_then(|k| state.idempotency.get(k)) {
            return Ok(first.again());
        }
        let route = Self::check(&mut state, &new, now)?;
        let ts = now_ms();
        let comment = Comment {
            id: CommentId::next_after(state.last_id, ts),
            stream_id: new.stream.clone(),
            kind: new.kind,
            user: new.user,
            text: new.text.into_string(),
            data: new.data,
            ts,
            media_ts: new.media_ts,
            by_moderator: new.by_moderator,
            shadow: route == Route::Shadow,
        };
        let (posted, event) = if route == Route::Hold {
            let (comment, evicted) = state.hold(comment, now);
            self.metrics.held(HeldOutcome::Expired, u64::from(evicted));
            let event = BrokerEvent::Held {
                stream: new.stream.clone(),
                comment: comment.clone(),
            };
            (
                Posted {
                    comment,
                    held: true,
                },
                event,
            )
        } else {
            state.append(comment.clone(), self.history_len, self.replay);
            let event = BrokerEvent::Comments {
                stream: new.stream.clone(),
                comments: vec![comment.clone()],
            };
            (
                Posted {
                    comment,
                    held: false,
                },
                event,
            )
        };
        if let Some(key) = new.dedup {
            state.remember(key, posted.clone(), now);
        }
        // Delivered while the stream's entry is still locked, so concurrent publishes on
        // one stream reach the hub in id order.
        self.emit(&new.stream, event);
        Ok(if posted.held {
            Published::Held {
                comment: posted.comment,
                duplicate: false,
            }
        } else {
            Published::New(posted.comment)
        })
    }

    /// The checks of a publish, in the Redis script's order: a ban or mute refuses, a
    /// shadow ban shadows; then, for a viewer's comment, the stream's roles and slow mode.
    /// (The rate limit is the instance's own with this broker.) Returns how it goes out.
    fn check(
        state: &mut StreamState,
        new: &NewComment,
        now: Instant,
    ) -> Result<Route, BrokerError> {
        // A chat ban holds back the user's own comments, not a service's comment on their
        // behalf (a paid gift still shows).
        let Some(author) = new.user.as_ref().filter(|_| new.kind == CommentKind::User) else {
            return Ok(new.route);
        };
        let route = match state.ban_mode(&author.id, now) {
            Some(BanMode::Ban | BanMode::Mute) => return Err(BrokerError::Banned),
            Some(BanMode::Shadow) => Route::Shadow,
            None => new.route,
        };
        if new.by_service || new.by_moderator {
            return Ok(route);
        }
        if !state.settings.lets_post(&new.roles) {
            return Err(BrokerError::RoleRequired);
        }
        if let Some(retry_after) = state.slow_down(&author.id, now) {
            return Err(BrokerError::SlowMode { retry_after });
        }
        Ok(route)
    }

    pub(super) fn history(&self, stream: &StreamId, query: HistoryQuery) -> HistoryPage {
        let Some(state) = self.streams.get(stream) else {
            return HistoryPage {
                comments: Vec::new(),
                complete: true,
            };
        };
        match query {
            HistoryQuery::Latest { limit } => {
                let skip = state.history.len().saturating_sub(limit);
                HistoryPage {
                    comments: state.history.iter().skip(skip).cloned().collect(),
                    complete: true,
                }
            }
            HistoryQuery::After { id, limit } => {
                let start = state.history.partition_point(|c| c.id <= id);
                HistoryPage {
                    comments: state
                        .history
                        .iter()
                        .skip(start)
                        .take(limit)
                        .cloned()
                        .collect(),
                    complete: state.trimmed_upto.is_none_or(|t| id >= t),
                }
            }
        }
    }

    pub(super) fn epoch(&self, stream: &StreamId) -> Epoch {
        let now = Instant::now();
        let state = self
            .streams
            .entry(stream.clone())
            .or_insert_with(|| StreamState::new(now));
        state.epoch.clone()
    }

    pub(super) fn deleted_since(&self, stream: &StreamId, since_ms: u64) -> Vec<CommentId> {
        let horizon = now_ms().saturating_sub(DELETIONS_FOR.as_millis() as u64);
        self.streams.get(stream).map_or_else(Vec::new, |s| {
            s.deleted
                .iter()
                .filter(|(at, _)| *at >= since_ms.max(horizon))
                .map(|(_, id)| *id)
                .collect()
        })
    }

    fn viewers_changed(&self, stream: &StreamId, delta: i64) {
        let now = Instant::now();
        let mut state = self
            .streams
            .entry(stream.clone())
            .or_insert_with(|| StreamState::new(now));
        state.touched = now;
        state.viewers = state.viewers.saturating_add_signed(delta);
        state.peak_viewers = state.peak_viewers.max(state.viewers);
    }

    pub(super) fn stats(&self, stream: &StreamId) -> StreamStats {
        self.streams
            .get(stream)
            .map_or_else(StreamStats::default, |s| StreamStats {
                viewer_count: s.viewers,
                peak_viewer_count: s.peak_viewers,
                comment_count: s.comment_count,
            })
    }

    /// Forgets streams nobody watched or touched for [`STREAM_IDLE_EXPIRY`], and at once
    /// those nobody watches that hold nothing (no comments, bans, keys, settings, terms or
    /// held comments): a handshake to a made-up stream leaves nothing behind for long.
    fn sweep(&self, now: Instant) -> usize {
        let before = self.streams.len();
        self.streams.retain(|_, s| {
            self.forget_expired(s, now);
            s.viewers > 0
                || (s.holds_something() && now.duration_since(s.touched) < STREAM_IDLE_EXPIRY)
        });
        before - self.streams.len()
    }

    /// Streams with state in memory (for tests and debugging).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }
}

pub(super) fn spawn_sweeper(broker: Arc<MemoryBroker>, background: &Background) {
    background.every(SWEEP_EVERY, move || {
        let forgotten = broker.sweep(Instant::now());
        if forgotten > 0 {
            tracing::debug!(forgotten, "forgot idle streams");
        }
        std::future::ready(())
    });
}
