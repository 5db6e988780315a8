//! One WebSocket connection, from its first byte to its close: join the stream, write
//! `init`, then one loop over the client's frames, the ping/idle timer, the drain signals
//! and what the room's side asks of it.
//!
//! The room's comments never pass through this task: the room's delivery task writes them
//! to the socket itself (see [`crate::delivery::Peer`]). This task wakes for the client's frames,
//! its timers, and when the room's side needs it: bytes the socket would not take (written
//! here as the socket takes them, under the write timeout), or an end (ban, resync, slow
//! consumer, dead socket).
//!
//! Generic over the socket: the server runs it over TCP, benchmarks and tests over Unix
//! socket pairs.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use rand::Rng;
use tokio::time::sleep_until;

use super::WsState;
use super::close::{CloseReason, End};
use super::codec::{CLOSE_TIMEOUT, Incoming, PING, PeerIo, Socket};
use super::init::{Init, init_frame};
use crate::auth::Identity;
use crate::delivery::policy::MAX_WRITE_TIMEOUT;
use crate::delivery::{Attention, Deflate, Peer, RawSocket, Signal, Tier, Viewer};
use crate::domain::wire::{ClientFrame, ErrorBody, ErrorCode, ServerFrame, SharedFrame};
use crate::domain::{CommentId, Epoch, StreamId};
use crate::hub::Membership;
use crate::lifecycle::ConnectionPermit;
use crate::metrics::DropReason;

/// How long a stream's subscription may take before the connection is closed with 1013.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// More malformed frames in a row than this close the connection (the contract's
/// section 2).
const MAX_MALFORMED_IN_A_ROW: u32 = 10;
/// `reconnect.after_ms` is drawn from `0..RECONNECT_SPREAD_MS` so clients do not all
/// land on the next instance in the same millisecond.
const RECONNECT_SPREAD_MS: u64 = 1000;

/// A connection that passed the handshake's checks.
pub struct Session {
    pub stream: StreamId,
    pub identity: Identity,
    /// `after=`: resume after this comment id.
    pub after: Option<CommentId>,
    /// `epoch=`: of this epoch of the stream (a resume across epochs is not one).
    pub epoch: Option<Epoch>,
    /// The user comments per second it is sent at most (`DANMAKU_VIEWER_MAX_RATE`,
    /// lowered by `max_rate=`).
    pub budget: Tier,
    /// Its slot under `DANMAKU_MAX_CONNECTIONS`, held until the connection ends.
    pub permit: ConnectionPermit,
    /// When the handshake completed (SLI 1 runs from here to `init` written).
    pub upgraded_at: Instant,
    /// Set when the handshake negotiated compression (`permessage-deflate`).
    pub deflate: Option<Deflate>,
}

/// Runs a connection over `socket`, which has done its HTTP upgrade (`prefix`: bytes the
/// client sent after its handshake that were read with it), until it closes.
///
/// Every await but the loop's own is boxed (joining and `init` in [`open`], and in
/// [`Connection::run`] a client's frame; the close): the task's future is as large as its
/// largest state and lives as long as the socket, and `select!` keeps its branches'
/// futures alive while a handler awaits, so inline they would add up. `session` comes
/// boxed for the same reason: an argument keeps its slot in the future.
pub async fn serve<S: RawSocket>(socket: S, prefix: Bytes, session: Box<Session>, ws: WsState) {
    let audience = session.identity.audience(&session.stream);
    let user = audience.user.cloned();
    let viewer = Viewer::new(user, audience.moderator, session.budget);
    let mut peer = Peer::new(socket, viewer, ws.metrics.clone());
    if let Some(deflate) = session.deflate {
        peer = peer.deflating(deflate);
    }
    let io = PeerIo::new(Arc::new(peer), prefix, session.deflate.is_some());
    let Some((mut connection, permit, sent)) = Box::pin(open(io, session, &ws)).await else {
        return;
    };
    let end = match sent {
        Ok(()) => connection.run().await,
        Err(end) => end,
    };
    let Connection {
        socket,
        peer,
        membership,
        write_timeout,
        ..
    } = connection;
    peer.end();
    match end {
        // A slow consumer's client learns why once it reads what it was sent; give it as
        // long as any write.
        End::Close(CloseReason::SlowConsumer) => {
            Box::pin(socket.close(CloseReason::SlowConsumer, write_timeout)).await;
        }
        End::Close(reason) => Box::pin(socket.close(reason, CLOSE_TIMEOUT)).await,
        End::PeerGone => drop(socket),
    }
    ws.metrics.connection_closed();
    drop(membership);
    drop(permit);
}

/// Joins the stream's room and sends `init`: the connection, or `None` if it never opened
/// (the join failed and the socket is closed).
async fn open<S: RawSocket>(
    io: PeerIo<S>,
    session: Box<Session>,
    ws: &WsState,
) -> Option<(Connection<S>, ConnectionPermit, Result<(), End>)> {
    let Session {
        stream,
        identity,
        after,
        epoch,
        permit,
        upgraded_at,
        budget: _,
        deflate: _,
    } = *session;
    let peer = io.peer.clone();
    let joined =
        tokio::time::timeout(JOIN_TIMEOUT, ws.hub.join(&stream, &ws.broker, peer.clone())).await;
    let membership = match joined {
        Ok(Ok(membership)) => membership,
        Ok(Err(error)) => {
            tracing::warn!(%stream, %error, "could not join stream");
            let reason = CloseReason::TryAgainLater;
            Socket::wrap(io).await.close(reason, CLOSE_TIMEOUT).await;
            return None;
        }
        Err(_) => {
            tracing::warn!(%stream, "stream subscription timed out");
            let reason = CloseReason::TryAgainLater;
            Socket::wrap(io).await.close(reason, CLOSE_TIMEOUT).await;
            return None;
        }
    };
    ws.metrics.connection_opened();
    let write_timeout = MAX_WRITE_TIMEOUT.min(ws.settings.idle_timeout);
    let mut connection = Connection {
        socket: Socket::wrap(io).await,
        peer,
        stream,
        membership,
        identity,
        ws: ws.clone(),
        malformed: 0,
        write_timeout,
    };
    let audience = connection.identity.audience(&connection.stream);
    let sent = match init_frame(ws, &connection.stream, after, epoch, audience).await {
        Ok(init) => connection.write_init(init).await,
        Err(end) => Err(end),
    };
    if sent.is_ok() {
        let init = upgraded_at.elapsed().as_secs_f64();
        ws.metrics.latencies.init.record(init, &[]);
    }
    Some((connection, permit, sent))
}

pub(super) struct Connection<S> {
    socket: Socket<PeerIo<S>>,
    pub(super) peer: Arc<Peer<S>>,
    pub(super) stream: StreamId,
    membership: Membership,
    pub(super) identity: Identity,
    pub(super) ws: WsState,
    /// Malformed frames in a row.
    pub(super) malformed: u32,
    write_timeout: Duration,
}

impl<S: RawSocket> Connection<S> {
    /// Writes `init` (within the write timeout), then lets the room write to the socket.
    async fn write_init(&mut self, init: Init) -> Result<(), End> {
        self.peer.send(&init.frame).map_err(ended_by)?;
        if let Some(deleted) = &init.deleted {
            self.peer.send(deleted).map_err(ended_by)?;
        }
        let last_id = init.last_id;
        let peer = &self.peer;
        let flushed =
            tokio::time::timeout(self.write_timeout, poll_fn(|cx| peer.poll_flush(cx))).await;
        match flushed {
            Ok(Ok(())) => {
                self.peer.start(last_id);
                Ok(())
            }
            Ok(Err(_)) => Err(End::PeerGone),
            Err(_) => {
                self.ws.metrics.dropped(DropReason::WriteTimeout, 1);
                Err(End::Close(CloseReason::SlowConsumer))
            }
        }
    }

    async fn run(&mut self) -> End {
        let mut last_seen = Instant::now();
        let timer = sleep_until((last_seen + self.ws.settings.idle_timeout / 3).into());
        tokio::pin!(timer);
        let far_future = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        let hint = sleep_until(far_future);
        tokio::pin!(hint);
        let mut hint_scheduled = false;
        // Armed while bytes wait that the socket would not take.
        let write_deadline = sleep_until(far_future);
        tokio::pin!(write_deadline);
        let mut blocked = false;
        // Made once and kept across turns: every connection shares these two tokens, and
        // making their futures anew on each wake-up takes the tokens' lock every time.
        let lifecycle = self.ws.lifecycle.clone();
        let closing = lifecycle.closing().cancelled();
        tokio::pin!(closing);
        let draining = lifecycle.draining().cancelled();
        tokio::pin!(draining);
        let peer = self.peer.clone();

        loop {
            tokio::select! {
                biased;
                () = &mut closing => return End::Close(CloseReason::GoingAway),
                attention = poll_fn(|cx| peer.poll_attention(cx, blocked)) => match attention {
                    Attention::End(signal) => return self.ended(signal),
                    Attention::Blocked(since) => {
                        blocked = true;
                        write_deadline.as_mut().reset((since + self.write_timeout).into());
                    }
                    Attention::Drained => {
                        blocked = false;
                        write_deadline.as_mut().reset(far_future);
                    }
                },
                () = &mut write_deadline, if blocked => match self.write_stalled() {
                    Ok(deadline) => write_deadline.as_mut().reset(deadline.into()),
                    Err(end) => return end,
                },
                () = &mut draining, if !hint_scheduled => {
                    hint_scheduled = true;
                    hint.as_mut().reset(tokio::time::Instant::now() + self.hint_delay());
                }
                () = &mut hint => {
                    hint.as_mut().reset(far_future);
                    if let Err(end) = self.write_now(reconnect_hint()) {
                        return end;
                    }
                }
                message = self.socket.next() => {
                    last_seen = Instant::now();
                    match message {
                        Some(Ok(message)) => {
                            if let Err(end) = Box::pin(self.on_message(message)).await {
                                return end;
                            }
                        }
                        Some(Err(end)) => return end,
                        None => return End::PeerGone,
                    }
                }
                () = &mut timer => match self.ping(last_seen) {
                    Ok(next) => timer.as_mut().reset(next.into()),
                    Err(end) => return end,
                },
            }
        }
    }

    /// The write deadline passed: a later one if the socket took some of its bytes
    /// meanwhile (a socket that takes them, however slowly, is not stalled), else the end
    /// of a slow consumer.
    fn write_stalled(&self) -> Result<Instant, End> {
        if let Some(since) = self.peer.stalled_since()
            && since + self.write_timeout > Instant::now()
        {
            return Ok(since + self.write_timeout);
        }
        tracing::info!(stream = %self.stream, "closing a socket whose writes stalled");
        let lost = self.peer.queued_comments().max(1);
        self.ws.metrics.dropped(DropReason::WriteTimeout, lost);
        Err(End::Close(CloseReason::SlowConsumer))
    }

    /// When, after the drain began, this connection gets its `reconnect` hint: spread over
    /// most of the drain time so reconnects arrive at the other instances as a stream, not
    /// a wave.
    fn hint_delay(&self) -> Duration {
        let spread = self.ws.settings.drain.mul_f64(0.9);
        spread.mul_f64(rand::rng().random::<f64>())
    }

    /// The ping timer fired (`last_seen`: when the client last sent anything): pings and
    /// answers when the timer fires next, or ends a connection idle for the idle timeout.
    fn ping(&self, last_seen: Instant) -> Result<Instant, End> {
        let idle_timeout = self.ws.settings.idle_timeout;
        let now = Instant::now();
        if now.duration_since(last_seen) >= idle_timeout {
            return Err(End::Close(CloseReason::IdleTimeout));
        }
        self.peer.send_framed(&PING).map_err(ended_by)?;
        Ok((now + idle_timeout / 3).min(last_seen + idle_timeout))
    }

    /// The room's side ended the connection: how it closes.
    fn ended(&mut self, signal: Signal) -> End {
        if signal == Signal::Banned {
            // Tell the person why before closing with 4003.
            let error = ErrorBody::new(ErrorCode::Banned, "you were banned from this stream");
            if let Err(end) = self.write_now(ServerFrame::Error(&error).encode()) {
                return end;
            }
        }
        if signal == Signal::SlowConsumer {
            tracing::info!(stream = %self.stream, "closing a slow consumer");
        }
        ended_by(signal)
    }

    async fn on_message(&mut self, message: Incoming) -> Result<(), End> {
        match message {
            Incoming::Text(text) => match serde_json::from_slice::<ClientFrame>(&text) {
                Ok(ClientFrame::Ping) => {
                    self.malformed = 0;
                    self.write_now(ServerFrame::Pong.encode())
                }
                Ok(ClientFrame::Comment {
                    text,
                    reference,
                    media_ts,
                }) => self.post(text, media_ts, reference).await,
                Ok(ClientFrame::Refresh { token }) => {
                    self.malformed = 0;
                    self.refresh(token).await
                }
                Ok(ClientFrame::Delete { id, reference }) => self.delete(id, reference).await,
                Err(_) => {
                    let error = ErrorBody::new(
                        ErrorCode::Invalid,
                        "expected a JSON frame of type comment, delete, ping or refresh",
                    );
                    self.refuse(error)
                }
            },
            Incoming::Binary => Err(End::Close(CloseReason::Policy)),
            // tungstenite wrote the pong as it read the ping.
            Incoming::Ping | Incoming::Pong => Ok(()),
            Incoming::Close => {
                // tungstenite queued the close reply; send it and stop.
                self.socket.flush().await;
                Err(End::PeerGone)
            }
        }
    }

    /// Sends an `error` frame; `invalid` ones count towards the malformed-in-a-row limit.
    pub(super) fn refuse(&mut self, error: ErrorBody) -> Result<(), End> {
        self.ws.metrics.rejected(error.code);
        if error.code == ErrorCode::Invalid {
            self.malformed += 1;
        }
        self.write_now(ServerFrame::Error(&error).encode())?;
        if self.malformed > MAX_MALFORMED_IN_A_ROW {
            return Err(End::Close(CloseReason::Policy));
        }
        Ok(())
    }

    /// Sends one frame: now if the socket takes it, else after what waits (the loop sees
    /// it out under the write timeout).
    pub(super) fn write_now(&self, frame: SharedFrame) -> Result<(), End> {
        self.peer.send(&frame).map_err(ended_by)
    }
}

/// A `reconnect` hint, its `after_ms` drawn from `0..RECONNECT_SPREAD_MS`.
fn reconnect_hint() -> SharedFrame {
    let after_ms = rand::rng().random_range(0..RECONNECT_SPREAD_MS);
    ServerFrame::Reconnect { after_ms }.encode()
}

/// How a connection ends when the room's side ended it.
fn ended_by(signal: Signal) -> End {
    match signal {
        Signal::Banned => End::Close(CloseReason::Banned),
        Signal::Resync => End::Close(CloseReason::Resync),
        Signal::SlowConsumer => End::Close(CloseReason::SlowConsumer),
        Signal::Gone => End::PeerGone,
    }
}
