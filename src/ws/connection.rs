//! One WebSocket connection, from its first byte to its close, in one task: join the
//! stream, write `init`, then one loop over the room's events, the client's frames, the
//! ping/idle timer and the drain signals.
//!
//! Generic over the byte stream: the server runs it over an upgraded HTTP connection,
//! benchmarks and tests over in-memory pipes.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::sleep_until;

use super::WsState;
use super::close::{CloseReason, End};
use super::codec::{Incoming, Socket, write_unwrapped};
use super::init::init_frame;
use crate::auth::Identity;
use crate::domain::wire::{ClientFrame, ErrorBody, ErrorCode, ServerFrame};
use crate::domain::{CommentId, StreamId};
use crate::hub::{Membership, RoomEvent};
use crate::lifecycle::ConnectionPermit;
use crate::metrics::DropReason;

/// How long a stream's subscription may take before the connection is closed with 1013.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A write the socket does not take within this long (or within the idle timeout, if
/// shorter: such a socket is as good as silent) marks a slow consumer.
const MAX_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most frames written per flush when events queue up.
const MAX_BATCH: usize = 64;
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
    /// Its slot under `DANMAKU_MAX_CONNECTIONS`, held until the connection ends.
    pub permit: ConnectionPermit,
    /// When the handshake completed (SLI 1 runs from here to `init` written).
    pub upgraded_at: Instant,
}

/// Runs a connection over `io`, a byte stream that has done its HTTP upgrade, until it
/// closes.
///
/// Every await but the loop's own is boxed (joining and `init` in [`open`], and in
/// [`Connection::run`] a client's frame, a delivery, a ping; the close): the task's future
/// is as large as its largest state and lives as long as the socket, and `select!` keeps
/// its branches' futures alive while a handler awaits, so inline they would add up.
/// `session` comes boxed for the same reason: an argument keeps its slot in the future.
pub async fn serve<S>(io: S, session: Box<Session>, ws: WsState)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some((mut connection, permit, sent)) = Box::pin(open(io, session, &ws)).await else {
        return;
    };
    let end = match sent {
        Ok(()) => connection.run().await,
        Err(end) => end,
    };
    let Connection {
        socket, membership, ..
    } = connection;
    match end {
        End::Close(reason) => Box::pin(socket.close(reason)).await,
        End::PeerGone => drop(socket),
    }
    ws.metrics.connection_closed();
    drop(membership);
    drop(permit);
}

/// Joins the stream's room and sends `init`: the connection, or `None` if it never opened
/// (the join failed and the socket is closed).
async fn open<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    session: Box<Session>,
    ws: &WsState,
) -> Option<(Connection<S>, ConnectionPermit, Result<(), End>)> {
    let Session {
        stream,
        identity,
        after,
        permit,
        upgraded_at,
    } = *session;
    let joined = tokio::time::timeout(JOIN_TIMEOUT, ws.hub.join(&stream, &ws.broker)).await;
    let membership = match joined {
        Ok(Ok(membership)) => membership,
        Ok(Err(error)) => {
            tracing::warn!(%stream, %error, "could not join stream");
            Socket::wrap(io)
                .await
                .close(CloseReason::TryAgainLater)
                .await;
            return None;
        }
        Err(_) => {
            tracing::warn!(%stream, "stream subscription timed out");
            Socket::wrap(io)
                .await
                .close(CloseReason::TryAgainLater)
                .await;
            return None;
        }
    };
    ws.metrics.connection_opened();
    let write_timeout = MAX_WRITE_TIMEOUT.min(ws.settings.idle_timeout);
    let sent = match init_frame(ws, &stream, after).await {
        Ok((frame, last_id)) => write_init(&mut io, frame, write_timeout, ws)
            .await
            .map(|()| last_id),
        Err(end) => Err(end),
    };
    let mut connection = Connection {
        socket: Socket::wrap(io).await,
        stream,
        membership,
        identity,
        ws: ws.clone(),
        last_id: None,
        malformed: 0,
        write_timeout,
    };
    let sent = sent.map(|last_id| {
        connection.last_id = last_id;
        ws.metrics
            .latencies
            .init
            .record(upgraded_at.elapsed().as_secs_f64(), &[]);
    });
    Some((connection, permit, sent))
}

/// Writes `init` before the socket is wrapped, under the write timeout.
async fn write_init<S: AsyncWrite + Unpin>(
    io: &mut S,
    frame: crate::domain::wire::SharedFrame,
    write_timeout: Duration,
    ws: &WsState,
) -> Result<(), End> {
    let mut written = 0;
    let result =
        tokio::time::timeout(write_timeout, write_unwrapped(io, frame, &mut written)).await;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::PeerGone),
        Err(_) => {
            ws.metrics.dropped(DropReason::WriteTimeout, 1);
            // A close frame after part of a frame would be garbage to the client.
            Err(if written == 0 {
                End::Close(CloseReason::SlowConsumer)
            } else {
                End::PeerGone
            })
        }
    }
}

pub(super) struct Connection<S> {
    pub(super) socket: Socket<S>,
    pub(super) stream: StreamId,
    membership: Membership,
    pub(super) identity: Identity,
    pub(super) ws: WsState,
    /// The newest comment id this socket has been sent; older ones are never sent again.
    last_id: Option<CommentId>,
    /// Malformed frames in a row.
    pub(super) malformed: u32,
    write_timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    async fn run(&mut self) -> End {
        let idle_timeout = self.ws.settings.idle_timeout;
        let ping_every = idle_timeout / 3;
        let mut last_seen = Instant::now();
        let timer = sleep_until((last_seen + ping_every).into());
        tokio::pin!(timer);
        let far_future = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        let hint = sleep_until(far_future);
        tokio::pin!(hint);
        let mut hint_scheduled = false;
        // Made once and kept across turns: every connection shares these two tokens, and
        // making their futures anew on each wake-up takes the tokens' lock every time.
        let lifecycle = self.ws.lifecycle.clone();
        let closing = lifecycle.closing().cancelled();
        tokio::pin!(closing);
        let draining = lifecycle.draining().cancelled();
        tokio::pin!(draining);

        loop {
            tokio::select! {
                biased;
                () = &mut closing => return End::Close(CloseReason::GoingAway),
                () = &mut draining, if !hint_scheduled => {
                    hint_scheduled = true;
                    // Spread the hints over most of the drain time so reconnects arrive at
                    // the other instances as a stream, not a wave.
                    let spread = self.ws.settings.drain.mul_f64(0.9);
                    let delay = spread.mul_f64(rand::rng().random::<f64>());
                    hint.as_mut().reset(tokio::time::Instant::now() + delay);
                }
                () = &mut hint => {
                    hint.as_mut().reset(far_future);
                    let after_ms = rand::rng().random_range(0..RECONNECT_SPREAD_MS);
                    let frame = ServerFrame::Reconnect { after_ms }.encode();
                    if let Err(end) = Box::pin(self.write_now(frame)).await {
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
                event = self.membership.recv() => {
                    let event = match event {
                        Ok(event) => event,
                        Err(RecvError::Lagged(missed)) => return self.slow_consumer(missed),
                        Err(RecvError::Closed) => return End::Close(CloseReason::Internal),
                    };
                    if let Err(end) = Box::pin(self.deliver(event)).await {
                        return end;
                    }
                }
                () = &mut timer => {
                    let now = Instant::now();
                    if now.duration_since(last_seen) >= idle_timeout {
                        return End::Close(CloseReason::IdleTimeout);
                    }
                    if let Err(end) = Box::pin(self.ping()).await {
                        return end;
                    }
                    let next = (now + ping_every).min(last_seen + idle_timeout);
                    timer.as_mut().reset(next.into());
                }
            }
        }
    }

    /// Writes `first` and whatever else the room has queued (up to [`MAX_BATCH`] frames)
    /// with one flush.
    async fn deliver(&mut self, first: RoomEvent) -> Result<(), End> {
        let mut comments = 0u64;
        let mut frames = 0usize;
        let mut next = Some(first);
        let written = tokio::time::timeout(self.write_timeout, async {
            while let Some(event) = next.take() {
                match event {
                    RoomEvent::Comments(batch) => {
                        let frame = batch.frame_for(&mut self.last_id, &self.ws.metrics);
                        if let Some((frame, n)) = frame {
                            comments += n as u64;
                            frames += 1;
                            self.socket.feed(frame).await?;
                        }
                    }
                    RoomEvent::Frame(frame) => {
                        frames += 1;
                        self.socket.feed(frame).await?;
                    }
                    RoomEvent::Resync => return Err(End::Close(CloseReason::Resync)),
                    RoomEvent::Banned(user_id) => {
                        if matches!(&self.identity, Identity::Viewer(v) if v.user.id == user_id) {
                            // Tell the person why before closing, then close with 4003.
                            let error = ErrorBody::new(
                                ErrorCode::Banned,
                                "you were banned from this stream",
                            );
                            self.socket
                                .feed(ServerFrame::Error(&error).encode())
                                .await?;
                            self.socket.flush().await?;
                            return Err(End::Close(CloseReason::Banned));
                        }
                    }
                }
                if frames >= MAX_BATCH {
                    break;
                }
                next = match self.membership.try_recv() {
                    Ok(event) => Some(event),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => None,
                    Err(TryRecvError::Lagged(missed)) => return Err(self.slow_consumer(missed)),
                };
            }
            self.socket.flush().await
        })
        .await;
        self.ws.metrics.delivered(comments);
        match written {
            Ok(result) => result,
            Err(_) => {
                tracing::info!(stream = %self.stream, "closing a socket whose writes stalled");
                self.ws
                    .metrics
                    .dropped(DropReason::WriteTimeout, comments.max(1));
                Err(End::Close(CloseReason::SlowConsumer))
            }
        }
    }

    fn slow_consumer(&self, missed: u64) -> End {
        tracing::info!(stream = %self.stream, missed, "closing a slow consumer");
        self.ws.metrics.dropped(DropReason::SlowConsumer, missed);
        End::Close(CloseReason::SlowConsumer)
    }

    async fn on_message(&mut self, message: Incoming) -> Result<(), End> {
        match message {
            Incoming::Text(text) => match serde_json::from_slice::<ClientFrame>(&text) {
                Ok(ClientFrame::Ping) => {
                    self.malformed = 0;
                    self.write_now(ServerFrame::Pong.encode()).await
                }
                Ok(ClientFrame::Comment { text, reference }) => self.post(text, reference).await,
                Err(_) => {
                    let error = ErrorBody::new(
                        ErrorCode::Invalid,
                        "expected a JSON frame of type comment or ping",
                    );
                    self.refuse(error).await
                }
            },
            Incoming::Binary => Err(End::Close(CloseReason::Policy)),
            // The pong is queued; flush so it leaves now.
            Incoming::Ping => self.socket.flush().await,
            Incoming::Pong => Ok(()),
            Incoming::Close => {
                // The close reply is queued; send it and stop.
                let _ = self.socket.flush().await;
                Err(End::PeerGone)
            }
        }
    }

    /// Sends an `error` frame; `invalid` ones count towards the malformed-in-a-row limit.
    pub(super) async fn refuse(&mut self, error: ErrorBody) -> Result<(), End> {
        self.ws.metrics.rejected(error.code);
        if error.code == ErrorCode::Invalid {
            self.malformed += 1;
        }
        self.write_now(ServerFrame::Error(&error).encode()).await?;
        if self.malformed > MAX_MALFORMED_IN_A_ROW {
            return Err(End::Close(CloseReason::Policy));
        }
        Ok(())
    }

    /// Sends one frame now, under the write timeout.
    pub(super) async fn write_now(
        &mut self,
        frame: crate::domain::wire::SharedFrame,
    ) -> Result<(), End> {
        let sent = tokio::time::timeout(self.write_timeout, self.socket.send(frame)).await;
        self.within_timeout(sent)
    }

    async fn ping(&mut self) -> Result<(), End> {
        let sent = tokio::time::timeout(self.write_timeout, self.socket.ping()).await;
        self.within_timeout(sent)
    }

    /// A write that did not finish within the write timeout marks a slow consumer.
    fn within_timeout(
        &self,
        result: Result<Result<(), End>, tokio::time::error::Elapsed>,
    ) -> Result<(), End> {
        result.unwrap_or_else(|_| {
            self.ws.metrics.dropped(DropReason::WriteTimeout, 1);
            Err(End::Close(CloseReason::SlowConsumer))
        })
    }
}
