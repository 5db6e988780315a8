//! The local registry: which connections of this instance watch which stream, and the
//! broker's events dispatched to them.
//!
//! Each stream with local connections has a [`Room`] of the delivery engine
//! ([`crate::delivery`]): its [`Member`]s, a queue of the broker's events for them, and a
//! task that delivers those events. The hub keeps the rooms by stream, seats and unseats
//! connections, turns each broker event into what the room queues, keeps each room's page
//! of recent comments for `init` ([`recent`]) and pushes viewer counts ([`viewers`]).
//!
//! The hub holds no broker subscription itself: each connection's [`Membership`] holds the
//! [`Subscription`] the broker gave it for the stream, and the broker decides when to
//! subscribe and unsubscribe.
//!
//! Lock order: the hub never calls the broker while holding a room's map guard (the
//! broker may call [`Hub::dispatch`] while holding its own); dispatching only queues.

mod recent;
mod viewers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use crate::background::Background;
use crate::broker::{Broker, BrokerError, BrokerEvent, EventSink, Subscription};
use crate::delivery::{Member, Queued, Room};
use crate::domain::StreamId;
use crate::domain::wire::ServerFrame;
use crate::metrics::Metrics;

pub use recent::Recent;
use recent::RecentCache;

/// A room as the registry keeps it.
struct Seated {
    room: Arc<Room>,
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
    rooms: DashMap<StreamId, Seated>,
    metrics: Arc<Metrics>,
    /// `DANMAKU_COALESCE_MS`: a hot room's shortest time between two passes.
    window: Duration,
    /// Where the rooms' tasks and the viewer-count pushes run.
    background: Background,
}

#[derive(Debug, thiserror::Error)]
#[error("could not subscribe to the stream: {0}")]
pub struct JoinError(#[from] BrokerError);

impl Hub {
    pub fn new(metrics: Arc<Metrics>, window: Duration, background: Background) -> Self {
        Self {
            inner: Arc::new(HubInner {
                rooms: DashMap::new(),
                metrics,
                window,
                background,
            }),
        }
    }

    /// The sink the broker delivers into.
    pub fn sink(&self) -> EventSink {
        let hub = self.clone();
        Arc::new(move |event| hub.dispatch(event))
    }

    /// Starts the viewer-count pushes.
    pub fn start(&self, broker: Broker) {
        viewers::spawn(self.clone(), broker, &self.inner.background);
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
        let mut seated = self.inner.rooms.entry(stream.clone()).or_insert_with(|| {
            let (metrics, window) = (self.inner.metrics.clone(), self.inner.window);
            Seated {
                room: Room::open(stream.clone(), metrics, window, &self.inner.background),
                local: 0,
                viewers_pushed: None,
                recent: Arc::default(),
            }
        });
        seated.local += 1;
        let key = seated.room.add(member);
        Seat {
            hub: self.clone(),
            stream: stream.clone(),
            key,
        }
    }

    fn leave(&self, stream: &StreamId, key: usize) {
        let mut emptied = false;
        if let Some(mut seated) = self.inner.rooms.get_mut(stream) {
            seated.room.remove(key);
            seated.local -= 1;
            emptied = seated.local == 0;
        }
        if emptied
            && let Some((_, seated)) = self
                .inner
                .rooms
                .remove_if(stream, |_, seated| seated.local == 0)
        {
            seated.room.close();
        }
    }

    /// Queues a broker event for the stream's room; its task encodes and delivers it.
    pub fn dispatch(&self, event: BrokerEvent) {
        // Whether the event changes what a fresh `init` shows.
        let mut changes_history = true;
        let (stream, queued) = match event {
            BrokerEvent::Comments { stream, comments } => (stream, Queued::Comments(comments)),
            BrokerEvent::Deleted { stream, ids } => (stream, Queued::Deleted(ids)),
            BrokerEvent::Banned { stream, user_id } => {
                changes_history = false;
                (stream, Queued::Banned(user_id))
            }
            BrokerEvent::Resync { stream } => (stream, Queued::Resync),
            // `init` carries the settings: a change makes the kept page stale too.
            BrokerEvent::Settings { stream, settings } => {
                let frame = ServerFrame::Settings {
                    settings: &settings,
                };
                (stream, Queued::Frame(frame.encode()))
            }
            BrokerEvent::Held { stream, comment } => {
                changes_history = false;
                let frame = ServerFrame::Held { comment: &comment };
                (stream, Queued::ToModerators(frame.encode()))
            }
            BrokerEvent::Released {
                stream,
                user,
                held_id,
                id,
            } => {
                changes_history = false;
                let frame = ServerFrame::Released { held_id, id }.encode();
                (stream, Queued::ToUser(user, frame))
            }
            BrokerEvent::Dropped {
                stream,
                user,
                held_id,
            } => {
                changes_history = false;
                let frame = ServerFrame::Dropped { held_id }.encode();
                (stream, Queued::ToUser(user, frame))
            }
            BrokerEvent::Interrupted { stream } => {
                // Nothing for the sockets: only the kept `init` page may no longer hold.
                if let Some(seated) = self.inner.rooms.get(&stream) {
                    seated.recent.changed();
                }
                return;
            }
        };
        let Some(seated) = self.inner.rooms.get(&stream) else {
            return;
        };
        if changes_history {
            seated.recent.changed();
        }
        seated.room.dispatch(queued);
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
        let cache = self
            .inner
            .rooms
            .get(stream)
            .map(|seated| seated.recent.clone());
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
        if let Some(mut seated) = self.inner.rooms.get_mut(stream)
            && seated.viewers_pushed.is_some_and(|pushed| pushed != count)
        {
            seated.viewers_pushed = Some(count);
            // Dropped if the room's queue is full (no resync for a count).
            let frame = ServerFrame::Viewers { count }.encode();
            seated.room.push(Queued::Frame(frame));
        }
    }

    /// Marks the count a new connection saw in its `init`, so no push repeats it.
    pub fn viewers_seen(&self, stream: &StreamId, count: u64) {
        if let Some(mut seated) = self.inner.rooms.get_mut(stream)
            && seated.viewers_pushed.is_none()
        {
            seated.viewers_pushed = Some(count);
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
    use super::*;
    use crate::broker::MemoryBroker;
    use crate::delivery::RoomEvent;
    use crate::delivery::testing::{Recorder, comment};
    use crate::domain::{CommentId, UserId};
    use crate::metrics::Latencies;

    /// What `hub.recent` answers for `s` when a read would give `last`.
    async fn recent_last(hub: &Hub, s: &StreamId, last: u64) -> u64 {
        let read = || async move {
            let mut recent = Recent::new(
                Vec::new(),
                10,
                crate::domain::Epoch::new(1),
                Default::default(),
            );
            recent.last_id = Some(CommentId::new(last, 0));
            Ok::<_, ()>(recent)
        };
        hub.recent(s, read).await.unwrap().last_id.unwrap().ms
    }

    fn hub_and_broker() -> (Hub, Broker) {
        let metrics = Arc::new(Metrics::new(Latencies::noop()));
        let hub = Hub::new(
            metrics.clone(),
            Duration::from_millis(50),
            Background::new(),
        );
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

    /// Each broker event of a stream reaches its room's members as the room's event of
    /// its kind, in order; another stream's do not.
    #[tokio::test(flavor = "current_thread")]
    async fn a_streams_broker_events_reach_its_room() {
        let (hub, broker) = hub_and_broker();
        let s = StreamId::parse("s").unwrap();
        let other = StreamId::parse("other").unwrap();
        let recorder = Arc::new(Recorder::default());
        let _member = hub.join(&s, &broker, recorder.clone()).await.unwrap();
        let user = UserId::parse("u").unwrap();
        hub.dispatch(BrokerEvent::Comments {
            stream: other.clone(),
            comments: vec![comment(&other, 1)],
        });
        hub.dispatch(BrokerEvent::Comments {
            stream: s.clone(),
            comments: vec![comment(&s, 2)],
        });
        hub.dispatch(BrokerEvent::Interrupted { stream: s.clone() });
        hub.dispatch(BrokerEvent::Deleted {
            stream: s.clone(),
            ids: vec![CommentId::new(2, 0)],
        });
        hub.dispatch(BrokerEvent::Banned {
            stream: s.clone(),
            user_id: user.clone(),
        });
        hub.dispatch(BrokerEvent::Resync { stream: s.clone() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(recorder.seen(), [vec![2], vec![0], vec![0], vec![0]]);
        let events = recorder.0.lock().unwrap();
        let deleted = r#"{"type":"deleted","ids":["2-0"]}"#;
        assert!(
            matches!(&events[1], RoomEvent::Frame(frame) if frame.as_str() == deleted),
            "{events:?}"
        );
        assert!(matches!(&events[2], RoomEvent::Banned(banned) if *banned == user));
        assert!(matches!(events[3], RoomEvent::Resync));
    }
}
