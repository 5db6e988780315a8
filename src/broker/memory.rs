//! The embedded broker: one node, everything in this process's memory.
//!
//! A real mode, not a test double: it is what `danmaku` runs with when no Redis is
//! configured. Every per-stream map is bounded (history by `DANMAKU_HISTORY_LEN`, idempotency
//! keys by their 10-minute expiry, bans by their duration) and a stream nobody watched or
//! posted to for [`STREAM_IDLE_EXPIRY`] is forgotten, as its Redis keys would expire.
//!
//! Subscribing is a reference count per stream: no I/O, so a viewer's subscription is live
//! at once. The count still outlives its last holder by the linger, as with Redis, so the
//! `danmaku.streams.subscribed` gauge means the same with either broker.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::{
    Ban, BrokerError, BrokerEvent, Dedup, EventSink, HistoryPage, HistoryQuery, NewComment,
    Published, StreamStats,
};
use crate::background::Background;
use crate::domain::{Comment, CommentId, CommentKind, Epoch, StreamId, UserId, now_ms};
use crate::metrics::Metrics;

/// Deletions a stream remembers for resuming clients, and for how long.
const DELETIONS_KEPT: usize = 1000;
const DELETIONS_FOR: Duration = Duration::from_secs(24 * 3600);

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
}

/// A subscribed stream's holders.
struct Held {
    refs: usize,
    /// Bumped by every release to zero; a linger only ends its own generation.
    generation: u64,
}

struct StreamState {
    history: VecDeque<Comment>,
    last_id: Option<CommentId>,
    /// The newest id trimmed off the front of `history` by the length cap. A resume from
    /// an id older than this would miss comments.
    trimmed_upto: Option<CommentId>,
    comment_count: u64,
    viewers: u64,
    peak_viewers: u64,
    bans: HashMap<UserId, Instant>,
    /// Made with the stream's state; a stream forgotten and made again has a new one.
    epoch: Epoch,
    /// The newest deletions (epoch ms, id), oldest first: at most [`DELETIONS_KEPT`], for a
    /// day, as the Redis moderation log keeps them.
    deleted: VecDeque<(u64, CommentId)>,
    idempotency: HashMap<Dedup, Comment>,
    /// Keys in insertion order with their expiry, to forget them in order: one queue per
    /// time to live (services' keys, viewers' refs), so each stays in expiry order.
    idempotency_expiry: [VecDeque<(Instant, Dedup)>; 2],
    touched: Instant,
}

impl StreamState {
    fn new(now: Instant) -> Self {
        Self {
            history: VecDeque::new(),
            last_id: None,
            trimmed_upto: None,
            comment_count: 0,
            viewers: 0,
            peak_viewers: 0,
            bans: HashMap::new(),
            // Made before any comment of it, on the clock that stamps their ids.
            epoch: Epoch::new(now_ms()),
            deleted: VecDeque::new(),
            idempotency: HashMap::new(),
            idempotency_expiry: Default::default(),
            touched: now,
        }
    }

    fn forget_expired_keys(&mut self, now: Instant) {
        for queue in &mut self.idempotency_expiry {
            while let Some((expiry, _)) = queue.front() {
                if *expiry > now {
                    break;
                }
                let (_, key) = queue.pop_front().expect("front exists");
                self.idempotency.remove(&key);
            }
        }
    }

    fn is_banned(&self, user: &UserId, now: Instant) -> bool {
        self.bans.get(user).is_some_and(|until| *until > now)
    }
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
        let mut state = self
            .streams
            .entry(new.stream.clone())
            .or_insert_with(|| StreamState::new(now));
        state.touched = now;
        state.forget_expired_keys(now);
        if let Some(first) = new.dedup.as_ref().and_then(|k| state.idempotency.get(k)) {
            return Ok(Published::Duplicate(first.clone()));
        }
        // A chat ban holds back the user's own comments, not a service's comment on their
        // behalf (a paid gift still shows).
        if let Some(user) = new.user.as_ref().filter(|_| new.kind == CommentKind::User)
            && state.is_banned(&user.id, now)
        {
            return Err(BrokerError::Banned);
        }
        let ts = now_ms();
        let id = CommentId::next_after(state.last_id, ts);
        let comment = Comment {
            id,
            stream_id: new.stream.clone(),
            kind: new.kind,
            user: new.user,
            text: new.text.into_string(),
            data: new.data,
            ts,
            by_moderator: new.by_moderator,
        };
        state.last_id = Some(id);
        state.comment_count += 1;
        state.history.push_back(comment.clone());
        while state.history.len() > self.history_len {
            let trimmed = state.history.pop_front().expect("longer than the cap");
            state.trimmed_upto = Some(trimmed.id);
        }
        if let Some(key) = new.dedup {
            let queue = usize::from(matches!(key, Dedup::Ref { .. }));
            state.idempotency.insert(key.clone(), comment.clone());
            state.idempotency_expiry[queue].push_back((now + key.ttl(), key));
        }
        // Deliver while the stream's entry is still locked, so concurrent publishes on one
        // stream reach the hub in id order.
        if self.subscribed.contains_key(&new.stream) {
            (self.sink)(BrokerEvent::Comments {
                stream: new.stream,
                comments: vec![comment.clone()],
            });
        }
        Ok(Published::New(comment))
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

    pub(super) fn delete(&self, stream: &StreamId, id: CommentId) -> Result<(), BrokerError> {
        let mut state = self.streams.get_mut(stream).ok_or(BrokerError::NotFound)?;
        let index = state
            .history
            .binary_search_by(|c| c.id.cmp(&id))
            .map_err(|_| BrokerError::NotFound)?;
        state.history.remove(index);
        let now = now_ms();
        state.deleted.push_back((now, id));
        while state.deleted.len() > DELETIONS_KEPT
            || state
                .deleted
                .front()
                .is_some_and(|(at, _)| at + DELETIONS_FOR.as_millis() as u64 <= now)
        {
            state.deleted.pop_front();
        }
        if self.subscribed.contains_key(stream) {
            (self.sink)(BrokerEvent::Deleted {
                stream: stream.clone(),
                ids: vec![id],
            });
        }
        Ok(())
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

    pub(super) fn ban(&self, stream: &StreamId, user: &UserId, duration: Duration) {
        let now = Instant::now();
        let mut state = self
            .streams
            .entry(stream.clone())
            .or_insert_with(|| StreamState::new(now));
        state.touched = now;
        state.bans.retain(|_, until| *until > now);
        state.bans.insert(user.clone(), now + duration);
        if self.subscribed.contains_key(stream) {
            (self.sink)(BrokerEvent::Banned {
                stream: stream.clone(),
                user_id: user.clone(),
            });
        }
    }

    pub(super) fn unban(&self, stream: &StreamId, user: &UserId) -> bool {
        let now = Instant::now();
        self.streams.get_mut(stream).is_some_and(|mut s| {
            let lifted = s.bans.remove(user).is_some_and(|until| until > now);
            s.bans.retain(|_, until| *until > now);
            lifted
        })
    }

    pub(super) fn bans(&self, stream: &StreamId) -> Vec<Ban> {
        let (now, now_ms) = (Instant::now(), now_ms());
        let mut bans: Vec<Ban> = self.streams.get(stream).map_or_else(Vec::new, |s| {
            s.bans
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(user, until)| Ban {
                    user_id: user.clone(),
                    expires_at: now_ms + (*until - now).as_millis() as u64,
                })
                .collect()
        });
        bans.sort_by(|a, b| (a.expires_at, &a.user_id).cmp(&(b.expires_at, &b.user_id)));
        bans
    }

    pub(super) fn is_banned(&self, stream: &StreamId, user: &UserId) -> bool {
        self.streams
            .get(stream)
            .is_some_and(|s| s.is_banned(user, Instant::now()))
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
    /// those nobody watches that hold nothing (no comments, bans or keys): a handshake to a
    /// made-up stream leaves nothing behind for long.
    fn sweep(&self, now: Instant) -> usize {
        let before = self.streams.len();
        self.streams.retain(|_, s| {
            s.forget_expired_keys(now);
            s.bans.retain(|_, until| *until > now);
            let holds_something =
                s.comment_count > 0 || !s.bans.is_empty() || !s.idempotency.is_empty();
            s.viewers > 0 || (holds_something && now.duration_since(s.touched) < STREAM_IDLE_EXPIRY)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CommentText, IdempotencyKey, User};
    use crate::metrics::Latencies;
    use std::sync::Mutex;

    const LINGER: Duration = Duration::from_secs(2);

    fn broker(history_len: usize) -> (Arc<MemoryBroker>, Arc<Mutex<Vec<BrokerEvent>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink_seen = seen.clone();
        let sink: EventSink = Arc::new(move |e| sink_seen.lock().unwrap().push(e));
        let metrics = Arc::new(Metrics::new(Latencies::noop()));
        (
            Arc::new(MemoryBroker::new(history_len, LINGER, sink, metrics)),
            seen,
        )
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn new_comment(stream: &str, text: &str, key: Option<&str>) -> NewComment {
        NewComment {
            stream: StreamId::parse(stream).unwrap(),
            kind: CommentKind::User,
            user: Some(User {
                id: user("u1"),
                name: "U".into(),
            }),
            text: CommentText::parse(text.into(), 200).unwrap(),
            data: None,
            by_moderator: false,
            dedup: key.map(|k| Dedup::Service(IdempotencyKey::parse(k).unwrap())),
            rate: None,
        }
    }

    fn published(p: Result<Published, BrokerError>) -> Comment {
        match p.unwrap() {
            Published::New(c) => c,
            Published::Duplicate(c) => panic!("unexpected duplicate {c:?}"),
        }
    }

    #[test]
    fn ids_increase_and_history_is_capped_and_resumable_only_inside_it() {
        let (b, _) = broker(3);
        let s = StreamId::parse("s").unwrap();
        let ids: Vec<CommentId> = (0..5)
            .map(|i| published(b.publish(new_comment("s", &i.to_string(), None))).id)
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let latest = b.history(&s, HistoryQuery::Latest { limit: 10 });
        assert_eq!(
            latest.comments.iter().map(|c| c.id).collect::<Vec<_>>(),
            ids[2..]
        );
        let resume = b.history(
            &s,
            HistoryQuery::After {
                id: ids[1],
                limit: 10,
            },
        );
        assert!(resume.complete);
        assert_eq!(resume.comments.len(), 3);
        let too_old = b.history(
            &s,
            HistoryQuery::After {
                id: ids[0],
                limit: 10,
            },
        );
        assert!(!too_old.complete);
        let page = b.history(
            &s,
            HistoryQuery::After {
                id: ids[2],
                limit: 1,
            },
        );
        assert_eq!(page.comments[0].id, ids[3]);
        assert_eq!(b.stats(&s).comment_count, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn delivers_while_held_and_for_the_linger_after() {
        let (b, seen) = broker(10);
        let s = StreamId::parse("s").unwrap();
        published(b.publish(new_comment("s", "before", None)));
        b.acquire(&s);
        b.acquire(&s);
        assert_eq!(
            b.metrics.streams_subscribed(),
            1,
            "one subscription, two holders"
        );
        published(b.publish(new_comment("s", "held", None)));
        b.release(&s);
        b.release(&s);
        published(b.publish(new_comment("s", "lingering", None)));
        tokio::time::sleep(LINGER + Duration::from_millis(1)).await;
        assert_eq!(b.metrics.streams_subscribed(), 0);
        published(b.publish(new_comment("s", "after", None)));
        let texts: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                BrokerEvent::Comments { comments, .. } => comments[0].text.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["held", "lingering"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_taken_during_the_linger_keeps_the_subscription() {
        let (b, _) = broker(10);
        let s = StreamId::parse("s").unwrap();
        b.acquire(&s);
        b.release(&s);
        tokio::time::sleep(LINGER / 2).await;
        b.acquire(&s);
        tokio::time::sleep(LINGER * 2).await;
        assert_eq!(b.metrics.streams_subscribed(), 1);
        assert_eq!(b.stats(&s).viewer_count, 1);
        b.release(&s);
        tokio::time::sleep(LINGER * 2).await;
        assert_eq!(b.metrics.streams_subscribed(), 0);
        assert_eq!(b.stats(&s).viewer_count, 0);
    }

    #[test]
    fn idempotency_keys_return_the_first_comment() {
        let (b, _) = broker(10);
        let first = published(b.publish(new_comment("s", "one", Some("k"))));
        match b.publish(new_comment("s", "two", Some("k"))).unwrap() {
            Published::Duplicate(c) => assert_eq!(c, first),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.stats(&StreamId::parse("s").unwrap()).comment_count, 1);
    }

    #[test]
    fn bans_refuse_comments_and_expire() {
        let (b, _) = broker(10);
        let s = StreamId::parse("s").unwrap();
        b.ban(&s, &user("u1"), Duration::from_secs(60));
        assert!(b.is_banned(&s, &user("u1")));
        assert_eq!(
            b.publish(new_comment("s", "x", None)).unwrap_err(),
            BrokerError::Banned
        );
        b.ban(&s, &user("u1"), Duration::ZERO);
        assert!(!b.is_banned(&s, &user("u1")));
    }

    #[test]
    fn delete_removes_from_history() {
        let (b, _) = broker(10);
        let s = StreamId::parse("s").unwrap();
        let c = published(b.publish(new_comment("s", "x", None)));
        b.delete(&s, c.id).unwrap();
        assert!(
            b.history(&s, HistoryQuery::Latest { limit: 10 })
                .comments
                .is_empty()
        );
        assert_eq!(b.delete(&s, c.id), Err(BrokerError::NotFound));
    }

    #[test]
    fn viewers_and_peak_and_sweep() {
        let (b, _) = broker(10);
        let s = StreamId::parse("s").unwrap();
        b.viewers_changed(&s, 1);
        b.viewers_changed(&s, 1);
        b.viewers_changed(&s, -1);
        assert_eq!(
            b.stats(&s),
            StreamStats {
                viewer_count: 1,
                peak_viewer_count: 2,
                comment_count: 0
            }
        );
        let far = Instant::now() + STREAM_IDLE_EXPIRY + Duration::from_secs(1);
        assert_eq!(b.sweep(far), 0, "a watched stream is kept");
        b.viewers_changed(&s, -1);
        assert_eq!(
            b.sweep(Instant::now()),
            1,
            "an unwatched stream without comments goes at once"
        );
        assert_eq!(b.stream_count(), 0);
        published(b.publish(new_comment("s", "kept", None)));
        assert_eq!(
            b.sweep(Instant::now()),
            0,
            "a stream with comments stays for a day"
        );
        assert_eq!(b.sweep(far), 1);
    }
}
