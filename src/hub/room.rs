//! One stream's room on this instance: its members, the events queued for them, and the
//! task that delivers those events.
//!
//! The broker hands the hub an event while holding its own locks, so the hub only queues
//! it and wakes the room's task. The task takes everything queued in one go, merges
//! consecutive comments into one `comments` frame (up to [`MAX_FRAME_COMMENTS`]), encodes
//! each frame once, and hands it to every member in one pass; a member writes it to its
//! socket on the spot (see `ws::peer`). Nothing is woken per viewer per comment, and a
//! stream whose pass takes a while sends what arrived meanwhile as one frame.
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

use super::thinning::Samplers;
use super::{CommentBatch, Delivery, MAX_FRAME_COMMENTS, Member, RoomEvent};
use crate::domain::wire::{ServerFrame, SharedFrame};
use crate::domain::{Comment, CommentId, UserId, now_ms};
use crate::metrics::Metrics;

/// Deliveries per second (local viewers × comments per second) from which a room coalesces:
/// about three quarters of a core of sends (a loopback send costs ~5 µs), where frames, not
/// comments, become what a box runs out of.
pub const HOT_DELIVERIES_PER_SEC: f64 = 150_000.0;

/// A hot room whose pass took long waits this many times the pass before the next one (up
/// to [`MAX_WINDOW`]), if that is longer than its window: when the box runs short of CPU
/// its passes slow down, and fewer, fuller frames are what it can still send.
const STRETCH: u32 = 2;

/// The longest a hot room waits between passes, however long its passes take.
const MAX_WINDOW: Duration = Duration::from_millis(100);

/// Events queued for a room's task before it counts as fallen behind.
pub const MAX_QUEUED_EVENTS: usize = 4096;

/// Members handed an event between two yields of the room's task, so that a pass over a
/// large room does not hold a runtime worker for long.
const YIELD_EVERY: usize = 512;

/// Fewest members per share when a pass is split over the runtime's workers: below this
/// a share's sends cost less than handing it to another worker.
const MIN_SHARE: usize = 256;

/// What the broker said, queued for the room's task.
pub(super) enum Queued {
    Comments(Vec<Comment>),
    Deleted(Vec<CommentId>),
    Frame(SharedFrame),
    Banned(UserId),
    Resync,
}

pub(super) type Members = Arc<[Arc<dyn Member>]>;

/// The part of a room its task shares with the hub.
pub(super) struct Shared {
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

impl Shared {
    pub(super) fn new() -> Self {
        Self {
            members: Mutex::default(),
            queue: Mutex::default(),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            samplers: Arc::default(),
        }
    }

    fn members(&self) -> MutexGuard<'_, MemberList> {
        self.members.lock().expect("not poisoned")
    }

    pub(super) fn add(&self, member: Arc<dyn Member>) -> usize {
        let mut members = self.members();
        members.snapshot = None;
        members.all.insert(member)
    }

    pub(super) fn remove(&self, key: usize) {
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

    /// Queues an event for the task; `false` if the queue is full (the event is not queued).
    pub(super) fn push(&self, event: Queued) -> bool {
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
    pub(super) fn fell_behind(&self) -> u64 {
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

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn take(&self) -> VecDeque<Queued> {
        std::mem::take(&mut *self.queue.lock().expect("not poisoned"))
    }
}

/// A room's task: delivers what is queued, pass after pass, until the room is closed.
pub(super) async fn run(shared: Arc<Shared>, metrics: Arc<Metrics>, window: Duration) {
    let mut rate = Rate::new();
    let mut last_pass: Option<Instant> = None;
    let mut wait = window;
    loop {
        shared.wake.notified().await;
        loop {
            let members = shared.snapshot();
            let hot = !window.is_zero()
                && rate.per_sec() * members.len() as f64 >= HOT_DELIVERIES_PER_SEC;
            if let Some(last) = last_pass.filter(|_| hot) {
                tokio::time::sleep_until(last + wait).await;
            }
            let queued = shared.take();
            if queued.is_empty() {
                break;
            }
            let started = Instant::now();
            last_pass = Some(started);
            let members = shared.snapshot();
            for event in events(queued, &shared.samplers, &metrics, &mut rate) {
                pass(&members, &event, &metrics).await;
            }
            wait = window.max((started.elapsed() * STRETCH).min(MAX_WINDOW));
        }
        if shared.closed.load(Ordering::Acquire) && shared.take().is_empty() {
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
}
