//! The local registry: which connections of this instance watch which stream, and the
//! fan-out to them.
//!
//! Each stream with local connections has a room (see [`room`]): its [`Member`]s, a queue
//! of the broker's events for them, and a task that delivers those events, encoding each
//! frame once and handing the same bytes to every member in one pass. A member writes to
//! its socket on the spot; one that falls behind is cut off by its own bound (the hub
//! holds no per-socket buffer).
//!
//! The hub holds no broker subscription itself: each connection's [`Membership`] holds the
//! [`Subscription`] the broker gave it for the stream, and the broker decides when to
//! subscribe and unsubscribe.
//!
//! Lock order: the hub never calls the broker while holding a room's map guard (the
//! broker may call [`Hub::dispatch`] while holding its own); dispatching only queues.

mod batch;
mod recent;
mod room;
mod thinning;
mod viewers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerError, BrokerEvent, EventSink, Subscription};
use crate::domain::wire::{ServerFrame, SharedFrame};
use crate::domain::{StreamId, UserId};
use crate::metrics::{DropReason, Metrics, ThinReason};

pub use batch::{CommentBatch, Sent};
pub use recent::Recent;
use recent::RecentCache;
pub use room::{HOT_DELIVERIES_PER_SEC, MAX_QUEUED_EVENTS};
pub use thinning::{Samplers, Tier};

/// Most comments in one `comments` frame (at most ~3 KiB each: ~300 KiB a frame).
pub const MAX_FRAME_COMMENTS: usize = 100;

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

struct Room {
    shared: Arc<room::Shared>,
    local: usize,
    /// The viewer count last pushed to this room.
    viewers_pushed: Option<u64>,
    /// The newest comments for fresh `init`s, kept until the stream changes.
    recent: Arc<RecentCache>,
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    rooms: DashMap<StreamId, Room>,
    metrics: Arc<Metrics>,
    /// `DANMAKU_COALESCE_MS`: a hot room's shortest time between two passes.
    window: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("could not subscribe to the stream: {0}")]
pub struct JoinError(#[from] BrokerError);

impl Hub {
    pub fn new(metrics: Arc<Metrics>, window: Duration) -> Self {
        Self {
            inner: Arc::new(HubInner {
                rooms: DashMap::new(),
                metrics,
                window,
            }),
        }
    }

    /// The sink the broker delivers into.
    pub fn sink(&self) -> EventSink {
        let hub = self.clone();
        Arc::new(move |event| hub.dispatch(event))
    }

    /// Starts the viewer-count pushes, until `cancel`.
    pub fn start(&self, broker: Broker, cancel: CancellationToken) {
        viewers::spawn(self.clone(), broker, cancel);
    }

    /// Joins `member` to a stream's room and waits until the broker's subscription is
    /// live, so anything published from now on reaches it.
    pub async fn join(
        &self,
        stream: &StreamId,
        broker: &Broker,
        member: Arc<dyn Member>,
    ) -> Result<Membership, JoinError> {
        let seat = self.seat(stream, member);
        let subscription = broker.subscribe(stream).await?;
        Ok(Membership {
            _seat: seat,
            _subscription: subscription,
        })
    }

    /// A place in the stream's room, made before the subscription so that nothing the
    /// subscription delivers can pass this connection by.
    fn seat(&self, stream: &StreamId, member: Arc<dyn Member>) -> Seat {
        let mut room = self.inner.rooms.entry(stream.clone()).or_insert_with(|| {
            let shared = Arc::new(room::Shared::new());
            let task = room::run(
                shared.clone(),
                self.inner.metrics.clone(),
                self.inner.window,
            );
            tokio::spawn(task);
            Room {
                shared,
                local: 0,
                viewers_pushed: None,
                recent: Arc::default(),
            }
        });
        room.local += 1;
        let key = room.shared.add(member);
        Seat {
            hub: self.clone(),
            stream: stream.clone(),
            key,
        }
    }

    fn leave(&self, stream: &StreamId, key: usize) {
        let mut emptied = false;
        if let Some(mut room) = self.inner.rooms.get_mut(stream) {
            room.shared.remove(key);
            room.local -= 1;
            emptied = room.local == 0;
        }
        if emptied
            && let Some((_, room)) = self
                .inner
                .rooms
                .remove_if(stream, |_, room| room.local == 0)
        {
            room.shared.close();
        }
    }

    /// Queues a broker event for the stream's room; its task encodes and delivers it.
    pub fn dispatch(&self, event: BrokerEvent) {
        // Whether the event changes what a fresh `init` shows.
        let mut changes_history = true;
        let (stream, queued) = match event {
            BrokerEvent::Comments { stream, comments } => {
                (stream, room::Queued::Comments(comments))
            }
            BrokerEvent::Deleted { stream, ids } => (stream, room::Queued::Deleted(ids)),
            BrokerEvent::Banned { stream, user_id } => {
                changes_history = false;
                (stream, room::Queued::Banned(user_id))
            }
            BrokerEvent::Resync { stream } => (stream, room::Queued::Resync),
            BrokerEvent::Interrupted { stream } => {
                // Nothing for the sockets: only the kept `init` page may no longer hold.
                if let Some(room) = self.inner.rooms.get(&stream) {
                    room.recent.changed();
                }
                return;
            }
        };
        let Some(room) = self.inner.rooms.get(&stream) else {
            return;
        };
        if changes_history {
            room.recent.changed();
        }
        let comments = match &queued {
            room::Queued::Comments(comments) => comments.len() as u64,
            _ => 0,
        };
        if !room.shared.push(queued) {
            let dropped = room.shared.fell_behind() + comments;
            tracing::warn!(%stream, dropped, "a room's delivery fell behind; resynchronising its sockets");
            self.inner
                .metrics
                .dropped(DropReason::RoomLag, dropped.max(1));
        }
    }

    /// The stream's newest comments for a fresh `init`: the room's kept page if nothing
    /// changed since it was read, else `read`'s, kept for the next connection (and shared
    /// with those that ask while it runs). Call it only with a seat in the room (why a
    /// shared read is then safe: the `recent` module): without a room nothing is kept.
    pub async fn recent<F, Fut, E>(&self, stream: &StreamId, read: F) -> Result<Arc<Recent>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Recent, E>>,
    {
        let cache = self.inner.rooms.get(stream).map(|room| room.recent.clone());
        match cache {
            Some(cache) => cache.get_or_read(read).await,
            None => read().await.map(Arc::new),
        }
    }

    /// Streams with local connections.
    pub fn local_streams(&self) -> Vec<StreamId> {
        self.inner.rooms.iter().map(|r| r.key().clone()).collect()
    }

    /// Pushes a `viewers` frame to the room if the count changed since the last push. A
    /// room whose first `init` has not gone out yet gets nothing: that `init` carries it.
    fn push_viewers(&self, stream: &StreamId, count: u64) {
        if let Some(mut room) = self.inner.rooms.get_mut(stream)
            && room.viewers_pushed.is_some_and(|pushed| pushed != count)
        {
            room.viewers_pushed = Some(count);
            let frame = ServerFrame::Viewers { count }.encode();
            room.shared.push(room::Queued::Frame(frame));
        }
    }

    /// Marks the count a new connection saw in its `init`, so no push repeats it.
    pub fn viewers_seen(&self, stream: &StreamId, count: u64) {
        if let Some(mut room) = self.inner.rooms.get_mut(stream)
            && room.viewers_pushed.is_none()
        {
            room.viewers_pushed = Some(count);
        }
    }
}

/// A connection's place in a room and its hold on the stream's broker subscription.
/// Dropping it leaves the room and releases the hold.
pub struct Membership {
    _seat: Seat,
    /// Held, never read: dropping it (after the seat) releases the hold.
    _subscription: Subscription,
}

/// A place in a room; dropping it leaves the room.
struct Seat {
    hub: Hub,
    stream: StreamId,
    key: usize,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.hub.leave(&self.stream, self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::broker::MemoryBroker;
    use crate::domain::{Comment, CommentId, CommentKind};
    use crate::metrics::Latencies;

    /// A member that keeps what it is handed.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<RoomEvent>>);

    impl Member for Recorder {
        fn deliver(&self, event: &RoomEvent) -> Delivery {
            self.0.lock().unwrap().push(event.clone());
            match event {
                RoomEvent::Comments(batch) => Delivery::sent(batch.comments.len() as u64),
                _ => Delivery::default(),
            }
        }
    }

    impl Recorder {
        /// Comment ids per `comments` event, and `deleted` frames as `"deleted"`.
        fn seen(&self) -> Vec<Vec<u64>> {
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

    /// What `hub.recent` answers for `s` when a read would give `last`.
    async fn recent_last(hub: &Hub, s: &StreamId, last: u64) -> u64 {
        let read = || async move {
            Ok::<_, ()>(Recent {
                comments: crate::domain::wire::encode_comments(&[]),
                last_id: Some(CommentId::new(last, 0)),
                epoch: crate::domain::Epoch::new(1),
            })
        };
        hub.recent(s, read).await.unwrap().last_id.unwrap().ms
    }

    fn comment(stream: &StreamId, ms: u64) -> Comment {
        Comment {
            id: CommentId::new(ms, 0),
            stream_id: stream.clone(),
            kind: CommentKind::System,
            user: None,
            text: "t".into(),
            data: None,
            ts: ms,
            by_moderator: false,
        }
    }

    fn hub_and_broker() -> (Hub, Broker) {
        let metrics = Arc::new(Metrics::new(Latencies::noop()));
        let hub = Hub::new(metrics.clone(), Duration::from_millis(50));
        let broker = Broker::Memory(Arc::new(MemoryBroker::new(
            10,
            Duration::from_secs(1),
            hub.sink(),
            metrics,
        )));
        (hub, broker)
    }

    #[tokio::test]
    async fn recent_comments_are_kept_until_the_stream_changes() {
        let (hub, broker) = hub_and_broker();
        let s = StreamId::parse("s").unwrap();
        assert_eq!(recent_last(&hub, &s, 1).await, 1);
        assert_eq!(recent_last(&hub, &s, 2).await, 2, "no room, nothing kept");
        let _member = hub
            .join(&s, &broker, Arc::new(Recorder::default()))
            .await
            .unwrap();
        assert_eq!(recent_last(&hub, &s, 1).await, 1);
        assert_eq!(recent_last(&hub, &s, 9).await, 1, "kept");

        let banned = UserId::parse("u").unwrap();
        hub.dispatch(BrokerEvent::Banned {
            stream: s.clone(),
            user_id: banned,
        });
        assert_eq!(
            recent_last(&hub, &s, 9).await,
            1,
            "a ban does not change history"
        );

        hub.dispatch(BrokerEvent::Comments {
            stream: s.clone(),
            comments: vec![comment(&s, 2)],
        });
        assert_eq!(recent_last(&hub, &s, 2).await, 2, "a comment does");
        assert_eq!(recent_last(&hub, &s, 9).await, 2);

        hub.dispatch(BrokerEvent::Deleted {
            stream: s.clone(),
            ids: vec![CommentId::new(2, 0)],
        });
        assert_eq!(
            recent_last(&hub, &s, 3).await,
            3,
            "a deletion changes history"
        );
    }

    /// Events queued while the room's task is busy go out in order, runs of comments
    /// merged into one frame of at most 100, other frames between them kept in place.
    #[tokio::test(flavor = "current_thread")]
    async fn a_pass_merges_runs_of_comments_in_order() {
        let (hub, broker) = hub_and_broker();
        let s = StreamId::parse("s").unwrap();
        let recorder = Arc::new(Recorder::default());
        let _member = hub.join(&s, &broker, recorder.clone()).await.unwrap();
        let comments = |range: std::ops::Range<u64>| BrokerEvent::Comments {
            stream: s.clone(),
            comments: range.map(|ms| comment(&s, ms)).collect(),
        };
        // On a current-thread runtime the room's task runs only once this test awaits.
        hub.dispatch(comments(1..3));
        hub.dispatch(comments(3..4));
        hub.dispatch(BrokerEvent::Deleted {
            stream: s.clone(),
            ids: vec![CommentId::new(1, 0)],
        });
        hub.dispatch(comments(4..154));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let seen = recorder.seen();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(seen[0], [1, 2, 3]);
        assert_eq!(seen[1], [0]);
        assert_eq!(seen[2], (4..104).collect::<Vec<_>>());
        assert_eq!(seen[3], (104..154).collect::<Vec<_>>());
    }

    /// A room whose task cannot keep up drops its backlog and resynchronises its sockets.
    #[tokio::test(flavor = "current_thread")]
    async fn a_room_that_falls_behind_resyncs() {
        let (hub, broker) = hub_and_broker();
        let s = StreamId::parse("s").unwrap();
        let recorder = Arc::new(Recorder::default());
        let _member = hub.join(&s, &broker, recorder.clone()).await.unwrap();
        for ms in 1..=MAX_QUEUED_EVENTS as u64 + 1 {
            hub.dispatch(BrokerEvent::Comments {
                stream: s.clone(),
                comments: vec![comment(&s, ms)],
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let events = recorder.0.lock().unwrap();
        assert!(matches!(events[..], [RoomEvent::Resync]), "{events:?}");
        let dropped = hub.inner.metrics.dropped_by_reason();
        let room_lag = dropped.into_iter().find(|(r, _)| *r == "room_lag");
        // The backlog and the comment that found the queue full.
        assert_eq!(room_lag, Some(("room_lag", MAX_QUEUED_EVENTS as u64 + 1)));
    }

    /// A hot room whose pass takes long (here: one member takes 40 ms) waits twice the
    /// pass between two passes, longer than its 50 ms window.
    #[tokio::test(flavor = "current_thread")]
    async fn a_hot_room_whose_pass_is_slow_stretches_its_window() {
        struct Slow(Mutex<Vec<std::time::Instant>>);
        impl Member for Slow {
            fn deliver(&self, event: &RoomEvent) -> Delivery {
                self.0.lock().unwrap().push(std::time::Instant::now());
                std::thread::sleep(Duration::from_millis(40));
                match event {
                    RoomEvent::Comments(batch) => Delivery::sent(batch.comments.len() as u64),
                    _ => Delivery::default(),
                }
            }
        }
        let (hub, broker) = hub_and_broker();
        let s = StreamId::parse("s").unwrap();
        let slow = Arc::new(Slow(Mutex::default()));
        let mut members = vec![hub.join(&s, &broker, slow.clone()).await.unwrap()];
        for _ in 1..1000 {
            let member = Arc::new(Recorder::default());
            members.push(hub.join(&s, &broker, member).await.unwrap());
        }
        let seen = |n: usize| {
            let slow = slow.clone();
            async move {
                while slow.0.lock().unwrap().len() < n {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                slow.0.lock().unwrap()[n - 1]
            }
        };
        let comments = |range: std::ops::Range<u64>| BrokerEvent::Comments {
            stream: s.clone(),
            comments: range.map(|ms| comment(&s, ms)).collect(),
        };
        // 160 comments a second to 1,000 viewers: hot from here on (two frames).
        hub.dispatch(comments(1..161));
        seen(2).await;
        hub.dispatch(comments(161..162));
        let first = seen(3).await;
        hub.dispatch(comments(162..163));
        let second = seen(4).await;
        let gap = second - first;
        assert!(
            gap >= Duration::from_millis(78),
            "twice the 40 ms pass, not the 50 ms window: {gap:?}"
        );
        drop(members);
    }

    /// A cold room delivers at once; a hot one (viewers × comments/s ≥ 150,000) makes at
    /// most one pass per window, sending what arrived meanwhile as one frame.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_hot_room_coalesces_within_the_window_a_cold_one_does_not() {
        let (hub, broker) = hub_and_broker();
        let s = StreamId::parse("s").unwrap();
        let first = Arc::new(Recorder::default());
        let mut members = vec![hub.join(&s, &broker, first.clone()).await.unwrap()];
        for _ in 1..1000 {
            let member = Arc::new(Recorder::default());
            members.push(hub.join(&s, &broker, member).await.unwrap());
        }
        let comments = |range: std::ops::Range<u64>| BrokerEvent::Comments {
            stream: s.clone(),
            comments: range.map(|ms| comment(&s, ms)).collect(),
        };
        let settle = Duration::from_millis(1);
        hub.dispatch(comments(1..2));
        tokio::time::sleep(settle).await;
        assert_eq!(first.seen().len(), 1, "a cold room does not wait");
        // 160 comments a second to 1,000 viewers: hot from here on.
        hub.dispatch(comments(2..162));
        tokio::time::sleep(settle).await;
        // (in two frames: at most 100 comments a frame)
        assert_eq!(first.seen().len(), 3, "it was cold when they arrived");
        hub.dispatch(comments(162..163));
        tokio::time::sleep(settle).await;
        assert_eq!(first.seen().len(), 3, "a hot room waits for its window");
        hub.dispatch(comments(163..164));
        tokio::time::sleep(Duration::from_millis(60)).await;
        let seen = first.seen();
        assert_eq!(seen.len(), 4);
        assert_eq!(
            seen[3],
            [162, 163],
            "what arrived within the window shares a frame"
        );
        drop(members);
    }
}
