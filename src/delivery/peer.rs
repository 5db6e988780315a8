//! A connection as its room sees it: the room's delivery task hands it each event and it
//! writes the frame to the socket there and then, without waking the connection's task
//! (the WebSocket protocol's side of the connection, its task, is `ws::connection`).
//! That task is woken only when the socket would not take a frame, when the connection
//! must end (a ban, a resync, a slow consumer, a dead socket), or by its own reads and
//! timers.
//!
//! What to send the viewer, and when to end, is its [`Viewer`]'s choice (a state machine
//! without I/O); the peer holds that machine, the socket's [`Outbox`] and the task's waker
//! under one lock, and carries the machine's decisions out there. Three writers take the
//! lock: the room's task (each event), the connection's task (its own frames, draining the
//! queue) and tungstenite through `ws::codec` (its pongs and closes), so what reaches the
//! socket never interleaves or reorders. A socket whose queue passes
//! [`MAX_QUEUED_BYTES`](super::policy::MAX_QUEUED_BYTES) is cut off at a frame boundary,
//! counted as a slow consumer, and closed with 4001.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use super::member::{Delivery, Member, RoomEvent};
use super::outbox::{Out, Outbox, RawSocket, Wrote};
use super::viewer::{Action, Viewer, Why};
use crate::deflate;
use crate::domain::CommentId;
use crate::domain::wire::SharedFrame;
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

impl From<Why> for Signal {
    fn from(why: Why) -> Self {
        match why {
            Why::Banned => Self::Banned,
            Why::Resync => Self::Resync,
            Why::SlowConsumer { .. } => Self::SlowConsumer,
        }
    }
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
    metrics: Arc<Metrics>,
    /// Set when the socket negotiated compression.
    deflate: Option<Deflate>,
    state: Mutex<State>,
}

/// Compression a socket negotiated (`permessage-deflate`): frames of `min_bytes` or more go
/// out compressed, in the form the frame's first such socket made for all of them.
#[derive(Debug, Clone, Copy)]
pub struct Deflate {
    pub min_bytes: usize,
}

struct State {
    outbox: Outbox,
    viewer: Viewer,
    /// The connection's task, to wake when it has something to see to.
    waker: Option<Waker>,
    signal: Option<Signal>,
    /// Set once the signal went to the task, or the connection ended: nothing more is
    /// written by the room.
    ended: bool,
}

impl<S: RawSocket> Peer<S> {
    /// The peer of a viewer whose share `viewer` decides.
    pub fn new(socket: S, viewer: Viewer, metrics: Arc<Metrics>) -> Self {
        let state = State {
            outbox: Outbox::default(),
            viewer,
            waker: None,
            signal: None,
            ended: false,
        };
        Self {
            socket,
            metrics,
            deflate: None,
            state: Mutex::new(state),
        }
    }

    /// The same, for a socket that negotiated compression.
    pub fn deflating(self, deflate: Deflate) -> Self {
        Self {
            deflate: Some(deflate),
            ..self
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// `init` is written and covered comments up to `last_id`: sends what the room held
    /// meanwhile that `init` did not cover, then lets the room write directly.
    pub fn start(&self, last_id: Option<CommentId>) {
        let mut state = self.state();
        let held = state.viewer.start(last_id);
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
        let out = self.out(frame, 0);
        self.metrics
            .egress
            .written(self.deflate.is_some(), out.wire_len() as u64);
        let mut state = self.state();
        let wrote = state.outbox.write(&self.socket, out, 0);
        self.own_write(&mut state, wrote)
    }

    /// The same for bytes framed already (a ping).
    pub fn send_framed(&self, bytes: &[u8]) -> Result<(), Signal> {
        self.metrics
            .egress
            .written(self.deflate.is_some(), bytes.len() as u64);
        let mut state = self.state();
        let wrote = state.outbox.write_framed(&self.socket, bytes);
        self.own_write(&mut state, wrote)
    }

    /// Bytes framed by tungstenite (its pongs and closes), in order with everything else:
    /// `WouldBlock` if they overfilled the queue (the socket is being cut off).
    pub fn write_framed(&self, bytes: &[u8]) -> io::Result<()> {
        self.metrics
            .egress
            .written(self.deflate.is_some(), bytes.len() as u64);
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

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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

    /// Whether the viewer moderates the stream, anew (a refreshed token's `mod`): from the
    /// next event on it is sent shadowed comments and `held` frames, or no longer.
    pub fn set_moderator(&self, moderator: bool) {
        self.state().viewer.set_moderator(moderator);
    }

    /// The connection is ending: the room writes nothing more to it.
    pub fn end(&self) {
        self.state().ended = true;
    }

    /// Carries out what the viewer makes of one event.
    fn apply(&self, state: &mut State, event: &RoomEvent) -> Delivery {
        let step = state.viewer.on_event(event, state.outbox.queued_bytes());
        let mut delivery = step.delivery;
        match step.action {
            Action::Nothing => {}
            Action::Write(write) => {
                let out = self.out(&write.frame, write.skipped);
                delivery.wrote(self.deflate.is_some(), out.wire_len() as u64);
                let wrote = state.outbox.write(&self.socket, out, write.comments);
                self.wrote(state, wrote);
            }
            Action::End(why) => {
                if let Why::SlowConsumer { dropped } = why {
                    self.metrics.dropped(DropReason::SlowConsumer, dropped);
                }
                self.signal(state, why.into());
            }
        }
        delivery
    }

    /// A frame as this socket is sent it: compressed if it negotiated compression and the
    /// frame is large enough (the frame's compressed form is made once, by its first such
    /// socket), else plain; with `"skipped": skipped` when not 0.
    fn out<'a>(&self, frame: &'a SharedFrame, skipped: u64) -> Out<'a> {
        let text = frame.as_bytes();
        if self.deflate.is_none_or(|d| text.len() < d.min_bytes) {
            return Out::plain(text, skipped);
        }
        let compressed = if skipped == 0 {
            frame.deflated(|text| self.compress(text, deflate::compress))
        } else {
            frame.deflated_open(|body| self.compress(body, deflate::compress_open))
        };
        match compressed {
            Some(payload) => Out::deflated(payload, skipped),
            None => Out::plain(text, skipped),
        }
    }

    /// Compresses with `how`, counted: the frames compressed, and each one's ratio.
    fn compress(&self, text: &[u8], how: fn(&[u8]) -> Option<Bytes>) -> Option<Bytes> {
        let compressed = how(text);
        let ratio = compressed
            .as_ref()
            .map_or(1.0, |c| c.len() as f64 / text.len().max(1) as f64);
        self.metrics.egress.frame_compressed();
        self.metrics.latencies.compression_ratio.record(ratio, &[]);
        compressed
    }

    /// After the room's write: wake the task if bytes now wait, cut the socket off if too
    /// many do, end it if the write failed.
    fn wrote(&self, state: &mut State, wrote: io::Result<Wrote>) {
        match wrote {
            Ok(Wrote::Sent) => {}
            Ok(Wrote::Queued) => {
                state.viewer.queued(state.outbox.queued_bytes());
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
    use crate::delivery::Tier;
    use crate::delivery::policy::{SLOWER, STEP_UP_AFTER};
    use crate::delivery::testing::{chat, comment};
    use crate::delivery::{CommentBatch, Samplers};
    use crate::domain::UserId;
    use crate::domain::{CommentKind, StreamId};
    use crate::metrics::Latencies;

    impl<S: RawSocket> Peer<S> {
        /// The signal, if the room's side ended the connection.
        fn poll_attention_now(&self) -> Option<Signal> {
            self.state().signal
        }
    }

    fn batch(ids: &[u64]) -> RoomEvent {
        let stream = StreamId::parse("s").unwrap();
        let comments = ids.iter().map(|&ms| comment(&stream, ms)).collect();
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
        let peer = Peer::new(server, Viewer::new(None, false, Tier::UNLIMITED), metrics);
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
        let peer = Peer::new(
            server,
            Viewer::new(Some(user.clone()), false, Tier::UNLIMITED),
            metrics,
        );
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
        chat(ids, kind, &"x".repeat(1000), samplers)
    }

    /// A socket that stops reading is held to thinner tiers as its queue grows, down to the
    /// priority lane, before it would be cut off; once it drains it steps back up.
    #[tokio::test]
    async fn a_socket_behind_steps_down_to_the_priority_lane_and_back_up() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let metrics = Arc::new(Metrics::new(Latencies::noop()));
        let peer = Arc::new(Peer::new(
            server,
            Viewer::new(None, false, Tier::UNLIMITED),
            metrics,
        ));
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
        assert_eq!(peer.state().viewer.slower(), 1);
        // Gifts are never thinned: they fill the queue on down to the priority lane.
        while peer.state().outbox.queued_bytes() < 128 * 1024 {
            assert_eq!(peer.deliver(&batch(4, CommentKind::Gift)).sent, 4);
        }
        assert_eq!(
            peer.state().viewer.slower(),
            SLOWER.len(),
            "in the priority lane"
        );
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
        assert_eq!(
            peer.state().viewer.slower(),
            SLOWER.len() - 1,
            "one step up"
        );
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
