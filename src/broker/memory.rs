//! The embedded broker: one node, everything in this process's memory.
//!
//! A real mode, not a test double: it is what `danmaku` runs with when no Redis is
//! configured. Every per-stream map is bounded (history by `DANMAKU_HISTORY_LEN`, idempotency
//! keys by their 10-minute expiry, bans by their duration) and a stream nobody watched or
//! posted to for [`STREAM_IDLE_EXPIRY`] is forgotten, as its Redis keys would expire.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use super::{
    BrokerError, BrokerEvent, EventSink, HistoryPage, HistoryQuery, IDEMPOTENCY_TTL, NewComment,
    Published, StreamStats,
};
use crate::domain::{Comment, CommentId, StreamId, now_ms};

/// A stream with no viewers and no activity for this long is dropped from memory.
pub const STREAM_IDLE_EXPIRY: Duration = Duration::from_secs(24 * 3600);
const SWEEP_EVERY: Duration = Duration::from_secs(60);

pub struct MemoryBroker {
    history_len: usize,
    streams: DashMap<StreamId, StreamState>,
    /// Streams this instance is subscribed to: only their events reach the sink.
    subscribed: DashMap<StreamId, ()>,
    sink: EventSink,
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
    bans: HashMap<String, Instant>,
    idempotency: HashMap<String, Comment>,
    /// Keys in insertion order with their expiry, to forget them in order.
    idempotency_expiry: VecDeque<(Instant, String)>,
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
            idempotency: HashMap::new(),
            idempotency_expiry: VecDeque::new(),
            touched: now,
        }
    }

    fn forget_expired_keys(&mut self, now: Instant) {
        while let Some((expiry, _)) = self.idempotency_expiry.front() {
            if *expiry > now {
                break;
            }
            let (_, key) = self.idempotency_expiry.pop_front().expect("front exists");
            self.idempotency.remove(&key);
        }
    }

    fn is_banned(&self, user_id: &str, now: Instant) -> bool {
        self.bans.get(user_id).is_some_and(|until| *until > now)
    }
}

impl MemoryBroker {
    pub fn new(history_len: usize, sink: EventSink) -> Self {
        Self {
            history_len,
            streams: DashMap::new(),
            subscribed: DashMap::new(),
            sink,
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
        if let Some(first) = new
            .idempotency_key
            .as_ref()
            .and_then(|k| state.idempotency.get(k))
        {
            return Ok(Published::Duplicate(first.clone()));
        }
        if let Some(user) = &new.user
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
            text: new.text,
            data: new.data,
            ts,
        };
        state.last_id = Some(id);
        state.comment_count += 1;
        state.history.push_back(comment.clone());
        while state.history.len() > self.history_len {
            let trimmed = state.history.pop_front().expect("longer than the cap");
            state.trimmed_upto = Some(trimmed.id);
        }
        if let Some(key) = new.idempotency_key {
            state.idempotency.insert(key.clone(), comment.clone());
            state
                .idempotency_expiry
                .push_back((now + IDEMPOTENCY_TTL, key));
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

    pub(super) fn subscribe(&self, stream: &StreamId) {
        self.subscribed.insert(stream.clone(), ());
    }

    pub(super) fn unsubscribe(&self, stream: &StreamId) {
        self.subscribed.remove(stream);
    }

    pub(super) fn delete(&self, stream: &StreamId, id: CommentId) -> Result<(), BrokerError> {
        let mut state = self.streams.get_mut(stream).ok_or(BrokerError::NotFound)?;
        let index = state
            .history
            .binary_search_by(|c| c.id.cmp(&id))
            .map_err(|_| BrokerError::NotFound)?;
        state.history.remove(index);
        if self.subscribed.contains_key(stream) {
            (self.sink)(BrokerEvent::Deleted {
                stream: stream.clone(),
                ids: vec![id],
            });
        }
        Ok(())
    }

    pub(super) fn ban(&self, stream: &StreamId, user_id: &str, duration: Duration) {
        let now = Instant::now();
        let mut state = self
            .streams
            .entry(stream.clone())
            .or_insert_with(|| StreamState::new(now));
        state.touched = now;
        state.bans.retain(|_, until| *until > now);
        state.bans.insert(user_id.to_owned(), now + duration);
        if self.subscribed.contains_key(stream) {
            (self.sink)(BrokerEvent::Banned {
                stream: stream.clone(),
                user_id: user_id.to_owned(),
            });
        }
    }

    pub(super) fn is_banned(&self, stream: &StreamId, user_id: &str) -> bool {
        self.streams
            .get(stream)
            .is_some_and(|s| s.is_banned(user_id, Instant::now()))
    }

    pub(super) fn viewers_changed(&self, stream: &StreamId, delta: i64) {
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

pub(crate) fn spawn_sweeper(broker: Arc<MemoryBroker>, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = every.tick() => {
                    let forgotten = broker.sweep(Instant::now());
                    if forgotten > 0 {
                        tracing::debug!(forgotten, "forgot idle streams");
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CommentKind, User};
    use std::sync::Mutex;

    fn broker(history_len: usize) -> (MemoryBroker, Arc<Mutex<Vec<BrokerEvent>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink_seen = seen.clone();
        let sink: EventSink = Arc::new(move |e| sink_seen.lock().unwrap().push(e));
        (MemoryBroker::new(history_len, sink), seen)
    }

    fn new_comment(stream: &str, text: &str, key: Option<&str>) -> NewComment {
        NewComment {
            stream: StreamId::parse(stream).unwrap(),
            kind: CommentKind::User,
            user: Some(User {
                id: "u1".into(),
                name: "U".into(),
            }),
            text: text.into(),
            data: None,
            idempotency_key: key.map(String::from),
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

    #[test]
    fn delivers_only_while_subscribed() {
        let (b, seen) = broker(10);
        let s = StreamId::parse("s").unwrap();
        published(b.publish(new_comment("s", "before", None)));
        b.subscribe(&s);
        published(b.publish(new_comment("s", "during", None)));
        b.unsubscribe(&s);
        published(b.publish(new_comment("s", "after", None)));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(
            matches!(&seen[0], BrokerEvent::Comments { comments, .. } if comments[0].text == "during")
        );
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
        b.ban(&s, "u1", Duration::from_secs(60));
        assert!(b.is_banned(&s, "u1"));
        assert_eq!(
            b.publish(new_comment("s", "x", None)).unwrap_err(),
            BrokerError::Banned
        );
        b.ban(&s, "u1", Duration::ZERO);
        assert!(!b.is_banned(&s, "u1"));
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
