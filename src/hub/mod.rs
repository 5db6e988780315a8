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
//! The hub holds no broker subscription itself: each connection's [`Membership`] holds the
//! [`Subscription`] the broker gave it for the stream, and the broker decides when to
//! subscribe and unsubscribe.
//!
//! Lock order: the hub never calls the broker while holding a room's map guard (the
//! broker may call [`Hub::dispatch`] while holding its own).

mod batch;
mod viewers;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use dashmap::DashMap;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerError, BrokerEvent, EventSink, Subscription};
use crate::domain::wire::{ServerFrame, SharedFrame};
use crate::domain::{StreamId, UserId, now_ms};
use crate::metrics::Metrics;

pub use batch::CommentBatch;

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
    Banned(UserId),
    /// Comments were lost beyond what the broker could backfill: every socket closes with
    /// 4002 so its client resumes with `after=` and learns from `resumed` what it missed.
    Resync,
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
    metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
#[error("could not subscribe to the stream: {0}")]
pub struct JoinError(#[from] BrokerError);

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Arc::new(HubInner {
                rooms: DashMap::new(),
                metrics,
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

    /// Joins a stream's room and waits until the broker's subscription is live, so
    /// anything published from now on reaches the returned membership.
    pub async fn join(&self, stream: &StreamId, broker: &Broker) -> Result<Membership, JoinError> {
        let seat = self.seat(stream);
        let subscription = broker.subscribe(stream).await?;
        Ok(Membership {
            seat,
            _subscription: subscription,
        })
    }

    /// A place in the stream's room, made before the subscription so that nothing the
    /// subscription delivers can pass this connection by.
    fn seat(&self, stream: &StreamId) -> Seat {
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
        Seat {
            hub: self.clone(),
            stream: stream.clone(),
            rx,
        }
    }

    fn leave(&self, stream: &StreamId) {
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
            BrokerEvent::Banned { stream, user_id } => (stream, RoomEvent::Banned(user_id)),
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

/// A connection's place in a room and its hold on the stream's broker subscription.
/// Dropping it leaves the room and releases the hold.
pub struct Membership {
    seat: Seat,
    /// Held, never read: dropping it (after the seat) releases the hold.
    _subscription: Subscription,
}

impl Membership {
    pub async fn recv(&mut self) -> Result<RoomEvent, broadcast::error::RecvError> {
        self.seat.rx.recv().await
    }

    pub fn try_recv(&mut self) -> Result<RoomEvent, broadcast::error::TryRecvError> {
        self.seat.rx.try_recv()
    }
}

/// A place in a room; dropping it leaves the room.
struct Seat {
    hub: Hub,
    stream: StreamId,
    rx: broadcast::Receiver<RoomEvent>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.hub.leave(&self.stream);
    }
}
