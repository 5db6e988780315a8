//! One stream's room on this instance: its members, the events queued for them, and the
//! task that delivers those events.
//!
//! The broker hands the hub an event while holding its own locks, so the hub only queues
//! it here ([`Room::dispatch`]) and the room's task is woken. The task takes everything
//! queued in one go, merges consecutive comments into one `comments` frame (up to
//! [`MAX_FRAME_COMMENTS`]), encodes each frame once, and hands it to every member in one
//! pass; a member (a connection's [`super::peer`]) asks its viewer what to send and writes
//! it to its socket on the spot. Nothing is woken per viewer per comment, and a stream
//! whose pass takes a while sends what arrived meanwhile as one frame.
//!
//! **Coalescing.** A hot room (local viewers × comments per second at or above
//! [`HOT_DELIVERIES_PER_SEC`]) makes at most one pass per coalescing window
//! (`DANMAKU_COALESCE_MS`): the first comment after a quiet window goes out at once, the
//! ones that follow within the window wait for its end and go out together. A hot room
//! whose pass took longer than half its window waits twice that pass instead (at most
//! [`MAX_WINDOW`]): when the box runs short of CPU, passes slow down and the room sends
//! fewer, fuller frames rather than falling further behind. A cold room never waits. What
//! a comment waited shows in `danmaku.comment.delivery.duration`, recorded as the pass
//! takes it.
//!
//! The queue is bounded by [`MAX_QUEUED_EVENTS`]: a room whose task falls that far behind
//! drops the backlog, counts it, and closes its sockets with 4002 (resync), so every
//! client resumes from history.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use slab::Slab;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::batch::CommentBatch;
use super::member::{Delivery, Member, RoomEvent};
use super::policy::{
    HOT_DELIVERIES_PER_SEC, MAX_FRAME_COMMENTS, MAX_QUEUED_EVENTS, MAX_WINDOW, MIN_SHARE, STRETCH,
    YIELD_EVERY,
};
use super::thinning::Samplers;
use crate::background::Background;
use crate::domain::wire::{ServerFrame, SharedFrame};
use crate::domain::{Comment, CommentId, StreamId, UserId, now_ms};
use crate::metrics::{DropReason, Metrics};

/// What the room's task is to deliver: the broker's events as the hub queues them, and
/// frames of the hub's own (viewer counts).
pub enum Queued {
    Comments(Vec<Comment>),
    Deleted(Vec<CommentId>),
    Frame(SharedFrame),
    /// For the stream's moderators only.
    ToModerators(SharedFrame),
    /// For this user's sockets only.
    ToUser(UserId, SharedFrame),
    Banned(UserId),
    Resync,
}

type Members = Arc<[Arc<dyn Member>]>;

/// One stream's room: shared by the registry that fills it (the hub) and its task.
pub struct Room {
    stream: StreamId,
    metrics: Arc<Metrics>,
    members: Mutex<MemberList>,
    queue: Mutex<VecDeque<Queued>>,
    wake: Notify,
    /// The room is gone from the hub: the task ends once the queue is empty.
    closed: AtomicBool,
    /// Which user comments each thinning tier keeps.
    samplers: Arc<Samplers>,
}

#[derive(Default)]
struct MemberList {
    all: Slab<Arc<dyn Member>>,
    /// `all` as the last pass saw it; dropped on every join and leave (so a gone member's
    /// socket is freed as soon as no pass holds it) and made again by the next pass.
    snapshot: Option<Members>,
}

impl Room {
    /// A room for `stream`, with its task started as one of the instance's `background`
    /// tasks; `window` is `DANMAKU_COALESCE_MS`, a hot room's shortest time between two
    /// passes. The task ends once the room is closed.
    pub fn open(
        stream: StreamId,
        metrics: Arc<Metrics>,
        window: Duration,
        background: &Background,
    ) -> Arc<Self> {
        let room = Arc::new(Self {
            stream,
            metrics,
            members: Mutex::default(),
            queue: Mutex::default(),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            samplers: Arc::default(),
        });
        background.spawn(run(room.clone(), window));
        room
    }

    fn members(&self) -> MutexGuard<'_, MemberList> {
        self.members.lock().expect("not poisoned")
    }

    /// Adds a member; the key removes it.
    pub fn add(&self, member: Arc<dyn Member>) -> usize {
        let mut members = self.members();
        members.snapshot = None;
        members.all.insert(member)
    }

    /// Removes the member [`Room::add`] gave `key`.
    pub fn remove(&self, key: usize) {
        let mut members = self.members();
        members.snapshot = None;
        members.all.remove(key);
    }

    fn snapshot(&self) -> Members {
        let mut members = self.members();
        let MemberList { all, snapshot } = &mut *members;
        snapshot
            .get_or_insert_with(|| all.iter().map(|(_, m)| m.clone()).collect())
            .clone()
    }

    /// Queues an event for the task. A room whose queue is full has fallen behind: it drops
    /// the backlog, counts it, and resynchronises its sockets instead.
    pub fn dispatch(&self, event: Queued) {
        let comments = match &event {
            Queued::Comments(comments) => comments.len() as u64,
            _ => 0,
        };
        if !self.push(event) {
            let dropped = self.fell_behind() + comments;
            let stream = &self.stream;
            tracing::warn!(%stream, dropped, "a room's delivery fell behind; resynchronising its sockets");
            self.metrics.dropped(DropReason::RoomLag, dropped.max(1));
        }
    }

    /// Queues an event for the task; `false` if the queue is full (the event is not queued).
    pub fn push(&self, event: Queued) -> bool {
        let mut queue = self.queue.lock().expect("not poisoned");
        if queue.len() >= MAX_QUEUED_EVENTS {
            return false;
        }
        queue.push_back(event);
        drop(queue);
        self.wake.notify_one();
        true
    }

    /// Drops the backlog of a room that fell behind and queues a resync instead; returns
    /// the comments dropped.
    fn fell_behind(&self) -> u64 {
        let mut queue = self.queue.lock().expect("not poisoned");
        let dropped = queue
            .drain(..)
            .map(|q| match q {
                Queued::Comments(c) => c.len() as u64,
                _ => 0,
            })
            .sum();
        queue.push_back(Queued::Resync);
        drop(queue);
        self.wake.notify_one();
        dropped
    }

    /// The room is gone from the registry: its task ends once the queue is empty.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn take(&self) -> VecDeque<Queued> {
        std::mem::take(&mut *self.queue.lock().expect("not poisoned"))
    }
}

/// A room's task: delivers what is queued, pass after pass, until the room is closed.
async fn run(room: Arc<Room>, window: Duration) {
    let metrics = &room.metrics;
    let mut rate = Rate::new();
    let mut last_pass: Option<Instant> = None;
    let mut wait = window;
    loop {
        room.wake.notified().await;
        loop {
            let members = room.snapshot();
            let hot = !window.is_zero()
                && rate.per_sec() * members.len() as f64 >= HOT_DELIVERIES_PER_SEC;
            if let Some(last) = last_pass.filter(|_| hot) {
                tokio::time::sleep_until(last + wait).await;
            }
            let queued = room.take();
            if queued.is_empty() {
                break;
            }
            let started = Instant::now();
            last_pass = Some(started);
            let members = room.snapshot();
            for event in events(queued, &room.samplers, metrics, &mut rate) {
                pass(&members, &event, metrics).await;
            }
            wait = window.max((started.elapsed() * STRETCH).min(MAX_WINDOW));
        }
        if room.closed.load(Ordering::Acquire) && room.take().is_empty() {
            return;
        }
    }
}

/// Hands one event to every member and records the fan-out SLI. A large room's pass is
/// split into shares (at least [`MIN_SHARE`] members each, at most one per runtime worker)
/// written in parallel; the pass ends when every share is done, so no socket sees the next
/// event first.
async fn pass(members: &Members, event: &RoomEvent, metrics: &Metrics) {
    let n = members.len();
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let shares = workers.min(n / MIN_SHARE).max(1);
    let share = n.div_ceil(shares);
    let others: Vec<_> = (1..shares)
        .map(|i| {
            let (members, event) = (members.clone(), event.clone());
            tokio::spawn(async move {
                let range = i * share..((i + 1) * share).min(members.len());
                deliver(&members[range], &event).await
            })
        })
        .collect();
    let mut delivered = deliver(&members[..share.min(n)], event).await;
    for other in others {
        delivered += other.await.unwrap_or_default();
    }
    delivered.record(metrics);
    if let RoomEvent::Comments(batch) = event {
        let now = now_ms();
        for comment in &batch.comments {
            let latency = now.saturating_sub(comment.ts) as f64 / 1000.0;
            metrics.latencies.fanout.record(latency, &[]);
        }
    }
}

/// Hands one event to some members, yielding now and then.
async fn deliver(members: &[Arc<dyn Member>], event: &RoomEvent) -> Delivery {
    let mut delivered = Delivery::default();
    for (i, member) in members.iter().enumerate() {
        delivered += member.deliver(event);
        if i % YIELD_EVERY == YIELD_EVERY - 1 {
            tokio::task::yield_now().await;
        }
    }
    delivered
}

/// The queued events as the members get them: runs of comments merged into frames of at
/// most [`MAX_FRAME_COMMENTS`], each encoded once. Records SLI 2 for every comment.
fn events(
    queued: VecDeque<Queued>,
    samplers: &Arc<Samplers>,
    metrics: &Metrics,
    rate: &mut Rate,
) -> Vec<RoomEvent> {
    let mut events = Vec::new();
    let mut run: Vec<Comment> = Vec::new();
    let now = now_ms();
    let flush = |run: &mut Vec<Comment>, events: &mut Vec<RoomEvent>| {
        let comments = std::mem::take(run);
        if let Some(batch) = CommentBatch::thinned_by(comments, Some(samplers.clone())) {
            events.push(RoomEvent::Comments(Arc::new(batch)));
        }
    };
    for event in queued {
        let comments = match event {
            Queued::Comments(comments) => comments,
            other => {
                flush(&mut run, &mut events);
                events.push(match other {
                    Queued::Deleted(ids) => {
                        RoomEvent::Frame(ServerFrame::Deleted { ids: &ids }.encode())
                    }
                    Queued::Frame(frame) => RoomEvent::Frame(frame),
                    Queued::ToModerators(frame) => RoomEvent::ToModerators(frame),
                    Queued::ToUser(user, frame) => RoomEvent::ToUser(user, frame),
                    Queued::Banned(user) => RoomEvent::Banned(user),
                    Queued::Resync => RoomEvent::Resync,
                    Queued::Comments(_) => unreachable!("matched above"),
                });
                continue;
            }
        };
        rate.add(comments.len());
        for comment in comments {
            let latency = now.saturating_sub(comment.ts) as f64 / 1000.0;
            metrics.latencies.delivery.record(latency, &[]);
            run.push(comment);
            if run.len() == MAX_FRAME_COMMENTS {
                flush(&mut run, &mut events);
            }
        }
    }
    flush(&mut run, &mut events);
    events
}

/// A room's comments per second, over the last whole second and the current one.
struct Rate {
    started: Instant,
    current: usize,
    previous: usize,
}

impl Rate {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            current: 0,
            previous: 0,
        }
    }

    fn roll(&mut self) {
        let elapsed = self.started.elapsed();
        if elapsed >= Duration::from_secs(2) {
            (self.previous, self.current) = (0, 0);
            self.started = Instant::now();
        } else if elapsed >= Duration::from_secs(1) {
            (self.previous, self.current) = (self.current, 0);
            self.started += Duration::from_secs(1);
        }
    }

    fn add(&mut self, n: usize) {
        self.roll();
        self.current += n;
    }

    fn per_sec(&mut self) -> f64 {
        self.roll();
        self.previous.max(self.current) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::testing::{Recorder, comment};
    use crate::metrics::Latencies;

    /// A room of stream `s` with a 50 ms window, and its metrics.
    fn room() -> (Arc<Room>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new(Latencies::noop()));
        let stream = StreamId::parse("s").unwrap();
        let background = Background::new();
        let room = Room::open(
            stream,
            metrics.clone(),
            Duration::from_millis(50),
            &background,
        );
        (room, metrics)
    }

    /// The broker's comments with these ids (as ms).
    fn comments(range: std::ops::Range<u64>) -> Queued {
        let stream = StreamId::parse("s").unwrap();
        Queued::Comments(range.map(|ms| comment(&stream, ms)).collect())
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_counts_the_last_whole_second() {
        let mut rate = Rate::new();
        rate.add(30);
        assert_eq!(rate.per_sec(), 30.0);
        tokio::time::advance(Duration::from_millis(1100)).await;
        rate.add(5);
        assert_eq!(rate.per_sec(), 30.0, "the last whole second still counts");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(rate.per_sec(), 5.0);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(rate.per_sec(), 0.0);
    }

    /// Events queued while the room's task is busy go out in order, runs of comments
    /// merged into one frame of at most 100, other frames between them kept in place.
    #[tokio::test(flavor = "current_thread")]
    async fn a_pass_merges_runs_of_comments_in_order() {
        let (room, _) = room();
        let recorder = Arc::new(Recorder::default());
        room.add(recorder.clone());
        // On a current-thread runtime the room's task runs only once this test awaits.
        room.dispatch(comments(1..3));
        room.dispatch(comments(3..4));
        room.dispatch(Queued::Deleted(vec![CommentId::new(1, 0)]));
        room.dispatch(comments(4..154));
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
        let (room, metrics) = room();
        let recorder = Arc::new(Recorder::default());
        room.add(recorder.clone());
        for ms in 1..=MAX_QUEUED_EVENTS as u64 + 1 {
            room.dispatch(comments(ms..ms + 1));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let events = recorder.0.lock().unwrap();
        assert!(matches!(events[..], [RoomEvent::Resync]), "{events:?}");
        let dropped = metrics.dropped_by_reason();
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
        let (room, _) = room();
        let slow = Arc::new(Slow(Mutex::default()));
        room.add(slow.clone());
        for _ in 1..1000 {
            room.add(Arc::new(Recorder::default()));
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
        // 160 comments a second to 1,000 viewers: hot from here on (two frames).
        room.dispatch(comments(1..161));
        seen(2).await;
        room.dispatch(comments(161..162));
        let first = seen(3).await;
        room.dispatch(comments(162..163));
        let second = seen(4).await;
        let gap = second - first;
        assert!(
            gap >= Duration::from_millis(78),
            "twice the 40 ms pass, not the 50 ms window: {gap:?}"
        );
        room.close();
    }

    /// A cold room delivers at once; a hot one (viewers × comments/s ≥ 150,000) makes at
    /// most one pass per window, sending what arrived meanwhile as one frame.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_hot_room_coalesces_within_the_window_a_cold_one_does_not() {
        let (room, _) = room();
        let first = Arc::new(Recorder::default());
        room.add(first.clone());
        for _ in 1..1000 {
            room.add(Arc::new(Recorder::default()));
        }
        let settle = Duration::from_millis(1);
        room.dispatch(comments(1..2));
        tokio::time::sleep(settle).await;
        assert_eq!(first.seen().len(), 1, "a cold room does not wait");
        // 160 comments a second to 1,000 viewers: hot from here on.
        room.dispatch(comments(2..162));
        tokio::time::sleep(settle).await;
        // (in two frames: at most 100 comments a frame)
        assert_eq!(first.seen().len(), 3, "it was cold when they arrived");
        room.dispatch(comments(162..163));
        tokio::time::sleep(settle).await;
        assert_eq!(first.seen().len(), 3, "a hot room waits for its window");
        room.dispatch(comments(163..164));
        tokio::time::sleep(Duration::from_millis(60)).await;
        let seen = first.seen();
        assert_eq!(seen.len(), 4);
        assert_eq!(
            seen[3],
            [162, 163],
            "what arrived within the window shares a frame"
        );
        room.close();
    }
}
