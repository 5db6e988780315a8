//! The local registry: which connections of this instance watch which stream, and the
//! fan-out to them.
//!
//! Each stream with local connections has a [`Room`]: a bounded broadcast buffer of
//! [`ROOM_BUFFER`] events shared by all its sockets. A broker event is encoded into a frame
//! once, and every socket receives a clone of the same bytes. A socket that falls more than
//! `ROOM_BUFFER` events behind is closed as a slow consumer (close code 4001) and counted,
//! so one slow viewer never holds memory or delays the others; it reconnects with `after=`
//! and is backfilled from history.
//!
//! Lock order: the hub never calls the broker while holding a room's map guard (the
//! broker may call [`Hub::dispatch`] while holding its own).

mod rate;
mod subscriptions;
mod viewers;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerError, BrokerEvent, EventSink};
use crate::config::Config;
use crate::domain::wire::{ServerFrame, SharedFrame};
use crate::domain::{Comment, CommentId, StreamId, now_ms};
use crate::metrics::Metrics;

pub use rate::RateLimits;
use subscriptions::Command;

/// Events a room's buffer holds before its slowest socket counts as a slow consumer.
/// At ~300 bytes a frame this bounds a room's buffered bytes to ~300 KiB.
pub const ROOM_BUFFER: usize = 1024;

/// Most comments in one `comments` frame (at most ~3 KiB each: ~300 KiB a frame).
pub const MAX_FRAME_COMMENTS: usize = 100;

/// What a room broadcasts to its sockets.
#[derive(Debug, Clone)]
pub enum RoomEvent {
    Comments(Arc<CommentBatch>),
    /// An encoded frame every socket sends as is (`deleted`, `viewers`).
    Frame(SharedFrame),
    /// This user was banned from the stream: their sockets close.
    Banned(Arc<str>),
    /// Comments were lost beyond what the broker could backfill: every socket closes with
    /// 4002 so its client resumes with `after=` and learns from `resumed` what it missed.
    Resync,
}

/// Comments encoded once into a `comments` frame.
#[derive(Debug)]
pub struct CommentBatch {
    pub first: CommentId,
    pub last: CommentId,
    pub frame: SharedFrame,
    pub comments: Vec<Comment>,
    /// Sockets that have yet to handle this batch; the last one records the fan-out
    /// duration (one atomic decrement per socket, no lock).
    remaining: AtomicUsize,
}

impl CommentBatch {
    fn new(comments: Vec<Comment>) -> Option<Self> {
        let first = comments.first()?.id;
        let last = comments.last()?.id;
        let frame = ServerFrame::Comments {
            comments: &comments,
        }
        .encode();
        Some(Self {
            first,
            last,
            frame,
            comments,
            remaining: AtomicUsize::new(0),
        })
    }

    /// A socket has handed this batch's frame to its connection (or skipped it): the last
    /// one records `danmaku.comment.fanout.duration` for each comment.
    pub fn handed_to_one(&self, metrics: &Metrics) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let now = now_ms();
            for comment in &self.comments {
                metrics
                    .latencies
                    .fanout
                    .record(now.saturating_sub(comment.ts) as f64 / 1000.0, &[]);
            }
        }
    }

    /// The frame for a socket that has already seen everything up to `seen`, and how many
    /// comments it carries: the shared bytes when all are new, a frame of only the newer
    /// ones otherwise, or nothing.
    pub fn frame_after(&self, seen: Option<CommentId>) -> Option<(SharedFrame, usize)> {
        match seen {
            Some(seen) if self.last <= seen => None,
            Some(seen) if self.first <= seen => {
                let newer: Vec<Comment> = self
                    .comments
                    .iter()
                    .filter(|c| c.id > seen)
                    .cloned()
                    .collect();
                Some((
                    ServerFrame::Comments { comments: &newer }.encode(),
                    newer.len(),
                ))
            }
            _ => Some((self.frame.clone(), self.comments.len())),
        }
    }
}

struct Room {
    tx: broadcast::Sender<RoomEvent>,
    local: usize,
    /// The viewer count last pushed to this room.
    viewers_pushed: Option<u64>,
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    rooms: DashMap<StreamId, Room>,
    subscriptions: mpsc::UnboundedSender<Command>,
    /// Taken by [`Hub::start`], which runs the subscription manager.
    commands: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    rate: RateLimits,
    metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
#[error("could not subscribe to the stream: {0}")]
pub struct JoinError(#[from] BrokerError);

impl Hub {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        // Unbounded, yet bounded in practice: a connection sends one Acquire and one
        // Release, and the manager adds a few messages per stream in transition.
        let (subscriptions, commands) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(HubInner {
                rooms: DashMap::new(),
                subscriptions,
                commands: std::sync::Mutex::new(Some(commands)),
                rate: RateLimits::new(config.rate_per_sec, config.rate_burst),
                metrics,
            }),
        }
    }

    /// The sink the broker delivers into.
    pub fn sink(&self) -> EventSink {
        let hub = self.clone();
        Arc::new(move |event| hub.dispatch(event))
    }

    /// Starts the subscription manager and the periodic work, until `cancel`.
    pub fn start(&self, broker: Broker, config: &Config, cancel: CancellationToken) {
        let commands = self
            .inner
            .commands
            .lock()
            .expect("not poisoned")
            .take()
            .expect("the hub starts once");
        subscriptions::spawn(
            broker.clone(),
            commands,
            self.inner.subscriptions.clone(),
            config.unsubscribe_linger(),
            self.inner.metrics.clone(),
            cancel.clone(),
        );
        viewers::spawn(self.clone(), broker, cancel.clone());
        rate::spawn_pruner(self.clone(), cancel);
    }

    /// Joins a stream's room and waits until the broker subscription is live, so anything
    /// published from now on reaches the returned membership.
    pub async fn join(&self, stream: &StreamId, broker: &Broker) -> Result<Membership, JoinError> {
        let rx = {
            let mut room = self
                .inner
                .rooms
                .entry(stream.clone())
                .or_insert_with(|| Room {
                    tx: broadcast::channel(ROOM_BUFFER).0,
                    local: 0,
                    viewers_pushed: None,
                });
            room.local += 1;
            room.tx.subscribe()
        };
        let membership = Membership {
            hub: self.clone(),
            broker: broker.clone(),
            stream: stream.clone(),
            rx,
        };
        broker.local_viewers_changed(stream, 1);
        let (reply, subscribed) = oneshot::channel();
        let _ = self
            .inner
            .subscriptions
            .send(Command::Acquire(stream.clone(), reply));
        // A dropped reply means the manager stopped (shutdown): the stream is not live.
        subscribed
            .await
            .map_err(|_| BrokerError::Unavailable("shutting down".into()))??;
        Ok(membership)
    }

    fn leave(&self, stream: &StreamId, broker: &Broker) {
        let mut emptied = false;
        if let Some(mut room) = self.inner.rooms.get_mut(stream) {
            room.local -= 1;
            emptied = room.local == 0;
        }
        if emptied {
            self.inner
                .rooms
                .remove_if(stream, |_, room| room.local == 0);
        }
        broker.local_viewers_changed(stream, -1);
        let _ = self
            .inner
            .subscriptions
            .send(Command::Release(stream.clone()));
    }

    /// Fans a broker event out to the stream's local sockets, encoding it once.
    pub fn dispatch(&self, event: BrokerEvent) {
        let (stream, event) = match event {
            BrokerEvent::Comments {
                stream,
                mut comments,
            } => {
                // A backfill can be long: keep every frame small enough to send.
                while comments.len() > MAX_FRAME_COMMENTS {
                    let rest = comments.split_off(MAX_FRAME_COMMENTS);
                    let first = std::mem::replace(&mut comments, rest);
                    self.dispatch(BrokerEvent::Comments {
                        stream: stream.clone(),
                        comments: first,
                    });
                }
                // SLI 2: publish time to arrival at this instance, once per comment.
                let now = now_ms();
                for comment in &comments {
                    self.inner
                        .metrics
                        .latencies
                        .delivery
                        .record(now.saturating_sub(comment.ts) as f64 / 1000.0, &[]);
                }
                match CommentBatch::new(comments) {
                    Some(batch) => (stream, RoomEvent::Comments(Arc::new(batch))),
                    None => return,
                }
            }
            BrokerEvent::Deleted { stream, ids } => (
                stream,
                RoomEvent::Frame(ServerFrame::Deleted { ids: &ids }.encode()),
            ),
            BrokerEvent::Banned { stream, user_id } => (stream, RoomEvent::Banned(user_id.into())),
            BrokerEvent::Resync { stream } => (stream, RoomEvent::Resync),
        };
        if let Some(room) = self.inner.rooms.get(&stream) {
            if let RoomEvent::Comments(batch) = &event {
                // No socket can join while the room's guard is held.
                batch
                    .remaining
                    .store(room.tx.receiver_count(), Ordering::Release);
            }
            // An error only means no socket is listening right now.
            let _ = room.tx.send(event);
        }
    }

    pub fn rate_limits(&self) -> &RateLimits {
        &self.inner.rate
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
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
            let _ = room
                .tx
                .send(RoomEvent::Frame(ServerFrame::Viewers { count }.encode()));
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

/// A connection's place in a room. Dropping it leaves the room and releases the
/// subscription when it was the last.
pub struct Membership {
    hub: Hub,
    broker: Broker,
    stream: StreamId,
    rx: broadcast::Receiver<RoomEvent>,
}

impl Membership {
    pub async fn recv(&mut self) -> Result<RoomEvent, broadcast::error::RecvError> {
        self.rx.recv().await
    }

    pub fn try_recv(&mut self) -> Result<RoomEvent, broadcast::error::TryRecvError> {
        self.rx.try_recv()
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.leave(&self.stream, &self.broker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CommentKind, User};

    fn comment(ms: u64) -> Comment {
        Comment {
            id: CommentId::new(ms, 0),
            stream_id: StreamId::parse("s").unwrap(),
            kind: CommentKind::User,
            user: Some(User {
                id: "u".into(),
                name: "u".into(),
            }),
            text: format!("c{ms}"),
            data: None,
            ts: ms,
        }
    }

    #[test]
    fn batches_skip_what_a_socket_has_seen() {
        let batch = CommentBatch::new(vec![comment(1), comment(2), comment(3)]).unwrap();
        assert_eq!(batch.frame_after(None).unwrap(), (batch.frame.clone(), 3));
        assert_eq!(
            batch.frame_after(Some(CommentId::new(0, 5))).unwrap(),
            (batch.frame.clone(), 3)
        );
        assert!(batch.frame_after(Some(CommentId::new(3, 0))).is_none());
        let (partial, n) = batch.frame_after(Some(CommentId::new(1, 0))).unwrap();
        assert_eq!(n, 2);
        let v: serde_json::Value = serde_json::from_str(partial.as_str()).unwrap();
        let ids: Vec<&str> = v["comments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["2-0", "3-0"]);
    }
}
