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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerError, BrokerEvent, EventSink, Subscription};
use crate::domain::wire::{ServerFrame, SharedFrame};
use crate::domain::{CommentId, StreamId, UserId, now_ms};
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
    /// Bumped by every comment, deletion or resync dispatched to the room: a [`Recent`]
    /// page read before the last bump may be stale.
    changes: AtomicU64,
    /// The newest comments as the last fresh `init` read them, and `changes` then.
    recent: Mutex<Option<(u64, Arc<Recent>)>>,
}

/// A stream's newest comments, encoded once for every fresh `init` until the next comment
/// or deletion: a reconnect storm costs a handshake and a write per client, not a history
/// read and an encoding each. Kept only while the stream has local connections (only then
/// does this instance see every change to it).
#[derive(Debug)]
pub struct Recent {
    /// The comments, oldest first, as `init`'s JSON array.
    pub comments: Box<serde_json::value::RawValue>,
    /// The newest of them.
    pub last_id: Option<CommentId>,
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
                    changes: AtomicU64::new(0),
                    recent: Mutex::new(None),
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
        // Whether the event changes what a fresh `init` shows.
        let mut changes_history = true;
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
            BrokerEvent::Banned { stream, user_id } => {
                changes_history = false;
                (stream, RoomEvent::Banned(user_id))
            }
            BrokerEvent::Resync { stream } => (stream, RoomEvent::Resync),
        };
        if let Some(room) = self.inner.rooms.get(&stream) {
            if let RoomEvent::Comments(batch) = &event {
                // No socket can join while the room's guard is held.
                batch
                    .remaining
                    .store(room.tx.receiver_count(), Ordering::Release);
            }
            if changes_history {
                room.changes.fetch_add(1, Ordering::AcqRel);
            }
            // An error only means no socket is listening right now.
            let _ = room.tx.send(event);
        }
    }

    /// The stream's newest comments as kept by [`Hub::keep_recent`], if nothing changed
    /// since; otherwise the change count to hand back to `keep_recent` with a fresh read.
    pub fn recent(&self, stream: &StreamId) -> Result<Arc<Recent>, u64> {
        let Some(room) = self.inner.rooms.get(stream) else {
            return Err(u64::MAX);
        };
        let changes = room.changes.load(Ordering::Acquire);
        match &*room.recent.lock().expect("not poisoned") {
            Some((at, recent)) if *at == changes => Ok(recent.clone()),
            _ => Err(changes),
        }
    }

    /// Keeps `recent`, read after [`Hub::recent`] answered `changes`, unless the stream
    /// changed since (the read may have missed that change).
    pub fn keep_recent(&self, stream: &StreamId, changes: u64, recent: Arc<Recent>) {
        if let Some(room) = self.inner.rooms.get(stream) {
            let mut kept = room.recent.lock().expect("not poisoned");
            if room.changes.load(Ordering::Acquire) == changes {
                *kept = Some((changes, recent));
            }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::broker::MemoryBroker;
    use crate::domain::{Comment, CommentKind};
    use crate::metrics::Latencies;

    fn recent(last: u64) -> Arc<Recent> {
        Arc::new(Recent {
            comments: crate::domain::wire::encode_comments(&[]),
            last_id: Some(CommentId::new(last, 0)),
        })
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
        }
    }

    #[tokio::test]
    async fn recent_comments_are_kept_until_the_stream_changes() {
        let metrics = Arc::new(Metrics::new(Latencies::noop()));
        let hub = Hub::new(metrics.clone());
        let broker = Broker::Memory(Arc::new(MemoryBroker::new(
            10,
            Duration::from_secs(1),
            hub.sink(),
            metrics,
        )));
        let s = StreamId::parse("s").unwrap();
        assert!(hub.recent(&s).is_err(), "no room, nothing kept");
        let _member = hub.join(&s, &broker).await.unwrap();
        let before = hub.recent(&s).unwrap_err();
        hub.keep_recent(&s, before, recent(1));
        assert_eq!(hub.recent(&s).unwrap().last_id, Some(CommentId::new(1, 0)));

        let banned = UserId::parse("u").unwrap();
        hub.dispatch(BrokerEvent::Banned {
            stream: s.clone(),
            user_id: banned,
        });
        assert!(hub.recent(&s).is_ok(), "a ban does not change history");

        hub.dispatch(BrokerEvent::Comments {
            stream: s.clone(),
            comments: vec![comment(&s, 2)],
        });
        let after = hub.recent(&s).unwrap_err();
        hub.keep_recent(&s, before, recent(1));
        assert!(
            hub.recent(&s).is_err(),
            "a page read before the comment is not kept"
        );
        hub.keep_recent(&s, after, recent(2));
        assert_eq!(hub.recent(&s).unwrap().last_id, Some(CommentId::new(2, 0)));

        hub.dispatch(BrokerEvent::Deleted {
            stream: s.clone(),
            ids: vec![CommentId::new(2, 0)],
        });
        assert!(hub.recent(&s).is_err(), "a deletion changes history");
    }
}
