//! A connection as its room sees it: the room's delivery task hands it each event and it
//! writes the frame to the socket there and then, without waking the connection's task
//! (the WebSocket protocol's side of the connection, its task, is `ws::connection`).
//! That task is woken only when the socket would not take a frame, when the connection
//! must end (a ban, a resync, a slow consumer, a dead socket), or by its own reads and
//! timers.
//!
//! Until the connection's `init` is written the peer holds the room's events (at most
//! [`MAX_HELD`]); then it sends those `init` did not cover, and from there on writes
//! as they come.
//!
//! **Thinning and the priority lane.** A viewer is sent the user comments of its tier (its
//! budget, see [`super::thinning`]); what it is not sent is counted and told in the `skipped`
//! of its next `comments` frame. A socket that falls behind moves down to thinner tiers
//! as its queue grows ([`SLOWER`]), down to the priority lane (system, moderator and its
//! own comments only), and back up a step per second once its queue is empty. Only a
//! socket that falls [`MAX_QUEUED_BYTES`](super::policy::MAX_QUEUED_BYTES) behind even
//! so is cut off at a frame boundary, counted as a slow consumer, and closed with 4001.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use super::outbox::{Outbox, RawSocket, Wrote};
use super::policy::{MAX_HELD, SLOWER, STEP_UP_AFTER};
use super::{Delivery, Member, RoomEvent, Tier};
use crate::domain::wire::SharedFrame;
use crate::domain::{CommentId, UserId};
use crate::metrics::{DropReason, Metrics};

/// Why the room's side ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The connection's user was banned from the stream.
    Banned,
    /// The stream lost comments the broker could not backfill.
    Resync,
    /// The socket fell too far behind; what it had queued was dropped.
    SlowConsumer,
    /// A write failed: the peer is gone.
    Gone,
}

/// What the connection's task must see to.
pub enum Attention {
    /// The connection must end.
    End(Signal),
    /// Bytes wait that the socket would not take, since then: arm the write timeout.
    Blocked(Instant),
    /// Everything waiting has been written.
    Drained,
}

pub struct Peer<S> {
    socket: S,
    /// The connection's user, if it has one (a ban names a user; its own comments are
    /// never thinned).
    user: Option<UserId>,
    /// The viewer's budget of user comments.
    budget: Tier,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    outbox: Outbox,
    /// The connection's task, to wake when it has something to see to.
    waker: Option<Waker>,
    signal: Option<Signal>,
    /// Set once the signal went to the task, or the connection ended: nothing more is
    /// written by the room.
    ended: bool,
    /// `init` is written: events go straight to the socket.
    started: bool,
    held: Vec<RoomEvent>,
    /// The newest comment id this socket has been sent or told of; older ones are never
    /// sent again.
    last_id: Option<CommentId>,
    /// Comments not sent since the last `comments` frame: the next one's `skipped`.
    skipped: u64,
    /// Steps down [`SLOWER`] the socket is held, and when it last changed.
    slower: usize,
    slower_since: Option<Instant>,
}

impl<S: RawSocket> Peer<S> {
    pub fn new(socket: S, user: Option<UserId>, budget: Tier, metrics: Arc<Metrics>) -> Self {
        Self {
            socket,
            user,
            budget,
            metrics,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// `init` is written and covered comments up to `last_id`: sends what the room held
    /// meanwhile that `init` did not cover, then lets the room write directly.
    pub fn start(&self, last_id: Option<CommentId>) {
        let mut state = self.state();
        state.last_id = last_id;
        state.started = true;
        let held = std::mem::take(&mut state.held);
        let mut delivered = Delivery::default();
        for event in &held {
            delivered += self.apply(&mut state, event);
        }
        delivered.record(&self.metrics);
    }

    /// Queues a frame of the connection's own (`init`, an `ack`, a `pong`, …) behind
    /// whatever waits; the task sees it out. Goes out even after the room's side ended the
    /// connection (the `error` frame before a ban's close); fails only if the socket is
    /// gone or this frame overfilled it.
    pub fn send(&self, frame: &SharedFrame) -> Result<(), Signal> {
        let mut state = self.state();
        let wrote = state.outbox.write_text(&self.socket, frame.as_bytes(), 0);
        self.own_write(&mut state, wrote)
    }

    /// The same for bytes framed already (a ping).
    pub fn send_framed(&self, bytes: &[u8]) -> Result<(), Signal> {
        let mut state = self.state();
        let wrote = state.outbox.write_framed(&self.socket, bytes);
        self.own_write(&mut state, wrote)
    }

    /// Bytes framed by tungstenite (its pongs and closes), in order with everything else:
    /// `WouldBlock` if they overfilled the queue (the socket is being cut off).
    pub fn write_framed(&self, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.state();
        match state.outbox.write_framed(&self.socket, bytes) {
            Ok(Wrote::Full) => {
                self.wrote(&mut state, Ok(Wrote::Full));
                Err(io::ErrorKind::WouldBlock.into())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The socket, for reads (writes go through the peer).
    pub fn socket(&self) -> &S {
        &self.socket
    }

    fn own_write(&self, state: &mut State, wrote: io::Result<Wrote>) -> Result<(), Signal> {
        match wrote {
            Ok(Wrote::Sent | Wrote::Queued) => Ok(()),
            Ok(Wrote::Full) => {
                self.wrote(state, Ok(Wrote::Full));
                Err(Signal::SlowConsumer)
            }
            Err(_) => Err(Signal::Gone),
        }
    }

    /// Writes what waits: `Ready` once nothing does.
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.state();
        state.outbox.poll_drain(&self.socket, cx)
    }

    /// Waits until the task has something to see to (`blocked`: the write timeout is
    /// armed already, so report only the end of the blockage).
    pub fn poll_attention(&self, cx: &mut Context<'_>, armed: bool) -> Poll<Attention> {
        let mut state = self.state();
        if let Some(signal) = state.signal {
            state.ended = true;
            return Poll::Ready(Attention::End(signal));
        }
        if !state.outbox.is_empty() {
            match state.outbox.poll_drain(&self.socket, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Attention::End(Signal::Gone)),
                Poll::Pending if armed => {}
                Poll::Pending => {
                    let since = state.outbox.stalled_since().unwrap_or_else(Instant::now);
                    return Poll::Ready(Attention::Blocked(since));
                }
            }
        }
        if armed && state.outbox.is_empty() {
            return Poll::Ready(Attention::Drained);
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Comments in frames the socket has not taken yet.
    pub fn queued_comments(&self) -> u64 {
        self.state().outbox.comments()
    }

    /// While bytes wait: since when the socket has taken none of them.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.state().outbox.stalled_since()
    }

    /// The connection is ending: the room writes nothing more to it.
    pub fn end(&self) {
        self.state().ended = true;
    }

    /// Sends one event to the socket.
    fn apply(&self, state: &mut State, event: &RoomEvent) -> Delivery {
        match event {
            RoomEvent::Comments(batch) => {
                let tier = self.tier(state);
                let user = self.user.as_ref();
                let Some(sent) = batch.for_socket(tier, user, &mut state.last_id) else {
                    return Delivery::default();
                };
                state.skipped += sent.skipped;
                let mut delivery = Delivery::sent(sent.comments);
                if state.slower > 0 {
                    delivery.behind = sent.skipped;
                } else {
                    delivery.over_budget = sent.skipped;
                }
                if let Some(frame) = sent.frame {
                    let skipped = std::mem::take(&mut state.skipped);
                    let wrote = state.outbox.write_comments(
                        &self.socket,
                        frame.as_bytes(),
                        sent.comments,
                        skipped,
                    );
                    self.wrote(state, wrote);
                }
                delivery
            }
            RoomEvent::Frame(frame) => {
                let wrote = state.outbox.write_text(&self.socket, frame.as_bytes(), 0);
                self.wrote(state, wrote);
                Delivery::default()
            }
            RoomEvent::Banned(user) => {
                if self.user.as_ref() == Some(user) {
                    self.signal(state, Signal::Banned);
                }
                Delivery::default()
            }
            RoomEvent::Resync => {
                self.signal(state, Signal::Resync);
                Delivery::default()
            }
        }
    }

    /// The tier this socket is sent now: its budget, or less while it is behind. A socket
    /// whose queue is empty steps back up, one step per [`STEP_UP_AFTER`] at most.
    fn tier(&self, state: &mut State) -> Tier {
        if state.slower > 0
            && state.outbox.is_empty()
            && state
                .slower_since
                .is_none_or(|since| since.elapsed() >= STEP_UP_AFTER)
        {
            state.slower -= 1;
            state.slower_since = Some(Instant::now());
        }
        match state.slower {
            0 => self.budget,
            n => self.budget.min(Tier::at_most(SLOWER[n - 1].1)),
        }
    }

    /// A socket with bytes waiting steps down [`SLOWER`] as far as they reach.
    fn fell_behind(state: &mut State) {
        let queued = state.outbox.queued_bytes();
        let steps = SLOWER
            .iter()
            .take_while(|(from, _)| queued >= *from)
            .count();
        if steps > state.slower {
            state.slower = steps;
            state.slower_since = Some(Instant::now());
        }
    }

    /// After the room's write: wake the task if bytes now wait, cut the socket off if too
    /// many do, end it if the write failed.
    fn wrote(&self, state: &mut State, wrote: io::Result<Wrote>) {
        match wrote {
            Ok(Wrote::Sent) => {}
            Ok(Wrote::Queued) => {
                Self::fell_behind(state);
                if let Some(waker) = state.waker.take() {
                    waker.wake();
                }
            }
            Ok(Wrote::Full) => {
                let dropped = state.outbox.cut_off();
                tracing::info!(dropped, "cutting off a slow consumer");
                self.metrics
                    .dropped(DropReason::SlowConsumer, dropped.max(1));
                self.signal(state, Signal::SlowConsumer);
            }
            Err(_) => self.signal(state, Signal::Gone),
        }
    }

    fn signal(&self, state: &mut State, signal: Signal) {
        if state.signal.is_none() {
            state.signal = Some(signal);
        }
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

impl<S: RawSocket> Member for Peer<S> {
    fn deliver(&self, event: &RoomEvent) -> Delivery {
        let mut state = self.state();
        if state.ended || state.signal.is_some() {
            return Delivery::default();
        }
        if !state.started {
            if state.held.len() < MAX_HELD {
                state.held.push(event.clone());
            } else {
                let held = state.held.len() as u64;
                self.metrics.dropped(DropReason::SlowConsumer, held);
                self.signal(&mut state, Signal::SlowConsumer);
            }
            return Delivery::default();
        }
        self.apply(&mut state, event)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::UnixStream;

    use super::*;
    use crate::delivery::{CommentBatch, Samplers};
    use crate::domain::{Comment, CommentKind, StreamId};
    use crate::metrics::Latencies;

    impl<S: RawSocket> Peer<S> {
        /// The signal, if the room's side ended the connection.
        fn poll_attention_now(&self) -> Option<Signal> {
            self.state().signal
        }
    }

    fn batch(ids: &[u64]) -> RoomEvent {
        let stream = StreamId::parse("s").unwrap();
        let comments = ids
            .iter()
            .map(|&ms| Comment {
                id: CommentId::new(ms, 0),
                stream_id: stream.clone(),
                kind: CommentKind::System,
                user: None,
                text: format!("c{ms}"),
                data: None,
                ts: ms,
                by_moderator: false,
            })
            .collect();
        RoomEvent::Comments(Arc::new(CommentBatch::new(comments).unwrap()))
    }

    /// The text of every frame the client has been sent so far.
    async fn frames(client: &mut UnixStream) -> Vec<String> {
        let mut bytes = vec![0; 64 * 1024];
        let n = client.read(&mut bytes).await.unwrap();
        let mut rest = &bytes[..n];
        let mut frames = Vec::new();
        while !rest.is_empty() {
            assert_eq!(rest[0], 0x81, "a final text frame");
            let len = rest[1] as usize;
            assert!(len < 126, "short frames only in this test");
            frames.push(String::from_utf8(rest[2..2 + len].to_vec()).unwrap());
            rest = &rest[2 + len..];
        }
        frames
    }

    /// Events that arrive while `init` is written wait for it and skip what it carried;
    /// after that, events go straight to the socket.
    #[tokio::test]
    async fn events_before_init_are_held_and_deduplicated() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let metrics = Arc::new(Metrics::new(Latencies::noop()));
        let peer = Peer::new(server, None, Tier::UNLIMITED, metrics);
        assert_eq!(peer.deliver(&batch(&[1, 2])).sent, 0, "held, not sent");
        peer.send(&SharedFrame::from("init".to_owned())).unwrap();
        peer.start(Some(CommentId::new(1, 0)));
        assert_eq!(peer.deliver(&batch(&[3])).sent, 1);
        let frames = frames(&mut client).await;
        assert_eq!(frames.len(), 3, "{frames:?}");
        assert_eq!(frames[0], "init");
        assert!(frames[1].contains(r#""id":"2-0""#) && !frames[1].contains(r#""1-0""#));
        assert!(frames[2].contains(r#""id":"3-0""#));
    }

    /// A ban of the connection's user, and only of it, ends the connection.
    #[tokio::test]
    async fn a_ban_of_this_user_ends_the_connection() {
        let (server, _client) = UnixStream::pair().unwrap();
        let metrics = Arc::new(Metrics::new(Latencies::noop()));
        let user = UserId::parse("u").unwrap();
        let peer = Peer::new(server, Some(user.clone()), Tier::UNLIMITED, metrics);
        peer.start(None);
        peer.deliver(&RoomEvent::Banned(UserId::parse("other").unwrap()));
        let waiting = poll_fn(|cx| Poll::Ready(peer.poll_attention(cx, false).is_pending()));
        assert!(waiting.await, "another user's ban is not this connection's");
        peer.deliver(&RoomEvent::Banned(user));
        match poll_fn(|cx| peer.poll_attention(cx, false)).await {
            Attention::End(signal) => assert_eq!(signal, Signal::Banned),
            _ => panic!("expected the end"),
        }
        assert_eq!(
            peer.deliver(&batch(&[1])).sent,
            0,
            "nothing is written after the end"
        );
    }

    /// Comments of `kind` with long texts, thinned by `samplers`.
    fn long(ids: std::ops::Range<u64>, kind: CommentKind, samplers: &Arc<Samplers>) -> RoomEvent {
        let stream = StreamId::parse("s").unwrap();
        let comments = ids
            .map(|ms| Comment {
                id: CommentId::new(ms, 0),
                stream_id: stream.clone(),
                kind,
                user: Some(crate::domain::User {
                    id: UserId::parse("chat").unwrap(),
                    name: "chat".into(),
                }),
                text: "x".repeat(1000),
                data: None,
                ts: ms,
                by_moderator: false,
            })
            .collect();
        let batch = CommentBatch::thinned_by(comments, Some(samplers.clone())).unwrap();
        RoomEvent::Comments(Arc::new(batch))
    }

    /// A socket that stops reading is held to thinner tiers as its queue grows, down to the
    /// priority lane, before it would be cut off; once it drains it steps back up.
    #[tokio::test]
    async fn a_socket_behind_steps_down_to_the_priority_lane_and_back_up() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let metrics = Arc::new(Metrics::new(Latencies::noop()));
        let peer = Arc::new(Peer::new(server, None, Tier::UNLIMITED, metrics));
        peer.start(None);
        let samplers = Arc::new(Samplers::default());
        let mut next = 0;
        let mut batch = |n: u64, kind| {
            next += n;
            long(next - n..next, kind, &samplers)
        };
        // Unread, the socket fills, then its queue; chat is left out from 16 KiB queued on.
        let chat = peer.deliver(&batch(4, CommentKind::User));
        assert_eq!(chat.sent, 4, "in its own tier while nothing waits");
        while peer.state().outbox.queued_bytes() < 16 * 1024 {
            peer.deliver(&batch(4, CommentKind::Gift));
        }
        assert_eq!(peer.state().slower, 1);
        // Gifts are never thinned: they fill the queue on down to the priority lane.
        while peer.state().outbox.queued_bytes() < 128 * 1024 {
            assert_eq!(peer.deliver(&batch(4, CommentKind::Gift)).sent, 4);
        }
        assert_eq!(peer.state().slower, SLOWER.len(), "in the priority lane");
        let chat = peer.deliver(&batch(10, CommentKind::User));
        assert_eq!((chat.sent, chat.behind), (0, 10), "chat is left out");
        let gift = peer.deliver(&batch(1, CommentKind::Gift));
        assert_eq!(gift.sent, 1, "a gift goes out");
        assert!(peer.poll_attention_now().is_none(), "not cut off");

        // The reader catches up; a second later the socket steps back up.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0; 1 << 16];
            while client.read(&mut buf).await.unwrap_or(0) > 0 {}
        });
        poll_fn(|cx| peer.poll_flush(cx)).await.unwrap();
        tokio::time::sleep(STEP_UP_AFTER + Duration::from_millis(100)).await;
        let chat = peer.deliver(&batch(10, CommentKind::User));
        assert_eq!(peer.state().slower, SLOWER.len() - 1, "one step up");
        assert_eq!(
            (chat.sent, chat.behind),
            (2, 8),
            "a fresh tier of 2 a second"
        );
        peer.end();
        drop(peer);
        reader.abort();
    }
}
