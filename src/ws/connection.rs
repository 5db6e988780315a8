//! One WebSocket connection: `init`, then a loop over the room's events, the client's
//! frames, the ping/idle timer and the drain signals, in one task.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::sleep_until;
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::protocol::Role;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame, Utf8Bytes};

use super::Admitted;
use super::close::CloseReason;
use crate::app::AppState;
use crate::auth::Identity;
use crate::broker::{BrokerError, HistoryQuery, NewComment};
use crate::domain::wire::{ClientFrame, ErrorBody, ErrorCode, ServerFrame, SharedFrame};
use crate::domain::{CommentId, CommentKind, CommentText, StreamId, TextError};
use crate::hub::{Membership, RoomEvent};
use crate::lifecycle::ConnectionPermit;
use crate::metrics::DropReason;

/// How long a stream's subscription may take before the connection is closed with 1013.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A write the socket does not take within this long (or within the idle timeout, if
/// shorter: such a socket is as good as silent) marks a slow consumer.
const MAX_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing handshake may take before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Most frames written per flush when events queue up.
const MAX_BATCH: usize = 64;
/// More malformed frames in a row than this close the connection (PROTOCOL.md section 2).
const MAX_MALFORMED_IN_A_ROW: u32 = 10;
/// `reconnect.after_ms` is drawn from `0..RECONNECT_SPREAD_MS` so clients do not all
/// land on the next instance in the same millisecond.
const RECONNECT_SPREAD_MS: u64 = 1000;

/// The upgraded connection, before tungstenite wraps it.
pub(super) type Io = TokioIo<Upgraded>;
type WebSocket = WebSocketStream<Io>;

/// A text frame of the shared bytes, without a copy or a UTF-8 check (the bytes are a
/// `String` the server encoded).
fn shared_text(frame: SharedFrame) -> Message {
    Message::Frame(Frame::message(
        Bytes::from(frame),
        OpCode::Data(Data::Text),
        true,
    ))
}

async fn websocket(io: Io) -> WebSocket {
    WebSocketStream::from_raw_socket(io, Role::Server, Some(super::socket_config())).await
}

/// The socket's task, from the upgrade to the close.
///
/// Every await but the loop's own is boxed (the upgrade, join and `init` in [`open`], and
/// in [`Connection::serve`] a client's frame, a delivery, a ping; the close): the task's
/// future is as large as its largest state and lives as long as the socket, and `select!`
/// keeps its branches' futures alive while a handler awaits, so inline they would add up.
/// `admitted` comes boxed for the same reason: an argument keeps its slot in the future.
pub(super) async fn run(
    on_upgrade: OnUpgrade,
    admitted: Box<Admitted>,
    app: AppState,
    upgraded_at: Instant,
) {
    let Some((mut connection, stream, permit, sent)) =
        Box::pin(open(on_upgrade, admitted, &app, upgraded_at)).await
    else {
        return;
    };
    let reason = match sent {
        Ok(()) => connection.serve(&stream).await,
        Err(reason) => reason,
    };
    if let Some(reason) = reason {
        Box::pin(close(connection.socket, reason)).await;
    } else {
        drop(connection.socket);
    }
    app.metrics.connection_closed();
    drop(connection.membership);
    drop(permit);
}

/// Waits for the upgrade, joins the stream's room and sends `init`: the connection, or
/// `None` if it never opened (the upgrade failed, or the join did and the socket is closed).
async fn open(
    on_upgrade: OnUpgrade,
    admitted: Box<Admitted>,
    app: &AppState,
    upgraded_at: Instant,
) -> Option<(Connection, StreamId, ConnectionPermit, Result<(), End>)> {
    let mut io = match on_upgrade.await {
        Ok(upgraded) => TokioIo::new(upgraded),
        Err(error) => {
            tracing::debug!(%error, "WebSocket upgrade failed");
            return None;
        }
    };
    let Admitted {
        stream,
        identity,
        after,
        permit,
    } = *admitted;
    let joined = tokio::time::timeout(JOIN_TIMEOUT, app.hub.join(&stream, &app.broker)).await;
    let membership = match joined {
        Ok(Ok(membership)) => membership,
        Ok(Err(error)) => {
            tracing::warn!(%stream, %error, "could not join stream");
            close(websocket(io).await, CloseReason::TryAgainLater).await;
            return None;
        }
        Err(_) => {
            tracing::warn!(%stream, "stream subscription timed out");
            close(websocket(io).await, CloseReason::TryAgainLater).await;
            return None;
        }
    };
    app.metrics.connection_opened();
    let write_timeout = MAX_WRITE_TIMEOUT.min(app.config.idle_timeout());
    let sent = match init_frame(app, &stream, after).await {
        Ok((frame, last_id)) => write_init(&mut io, frame, write_timeout, app)
            .await
            .map(|()| last_id),
        Err(reason) => Err(reason),
    };
    let mut connection = Connection {
        socket: websocket(io).await,
        membership,
        identity,
        app: app.clone(),
        last_id: None,
        malformed: 0,
        write_timeout,
    };
    let sent = sent.map(|last_id| {
        connection.last_id = last_id;
        app.metrics
            .latencies
            .init
            .record(upgraded_at.elapsed().as_secs_f64(), &[]);
    });
    Some((connection, stream, permit, sent))
}

/// The `init` frame (PROTOCOL.md section 2) and the newest comment id it covers.
async fn init_frame(
    app: &AppState,
    stream: &crate::domain::StreamId,
    after: Option<CommentId>,
) -> Result<(SharedFrame, Option<CommentId>), End> {
    let config = &app.config;
    let broker = &app.broker;
    let unavailable = |error: BrokerError| {
        tracing::warn!(%stream, %error, "could not read history for init");
        Some(CloseReason::TryAgainLater)
    };
    let resumed = match after {
        Some(id) => {
            let page = broker
                .history(
                    stream,
                    HistoryQuery::After {
                        id,
                        limit: crate::broker::ALL_RETAINED,
                    },
                )
                .await
                .map_err(unavailable)?;
            page.complete.then_some((id, page.comments))
        }
        None => None,
    };
    let mut last_id = None;
    let (comments, resumed) = match resumed {
        Some((id, comments)) => {
            last_id = Some(id);
            (comments, true)
        }
        None => {
            let page = broker
                .history(
                    stream,
                    HistoryQuery::Latest {
                        limit: config.init_comments.min(config.history_len),
                    },
                )
                .await
                .map_err(unavailable)?;
            (page.comments, false)
        }
    };
    if let Some(last) = comments.last() {
        last_id = Some(last.id);
    }
    let viewer_count = broker
        .viewer_counts(std::slice::from_ref(stream))
        .await
        .map_err(unavailable)?[0];
    app.hub.viewers_seen(stream, viewer_count);
    let frame = ServerFrame::Init {
        stream_id: stream,
        comments: &comments,
        viewer_count,
        resumed,
        server: &app.server,
    }
    .encode();
    Ok((frame, last_id))
}

/// Writes `init` as one text frame straight to the connection, before tungstenite wraps it
/// (see [`super::RawUpgrade`]): one write of a buffer that is freed right after.
async fn write_init(
    io: &mut Io,
    frame: SharedFrame,
    write_timeout: Duration,
    app: &AppState,
) -> Result<(), End> {
    let payload = Bytes::from(frame);
    let mut bytes = Vec::with_capacity(payload.len() + 10);
    Frame::message(payload, OpCode::Data(Data::Text), true)
        .format(&mut bytes)
        .expect("a Vec takes any frame");
    let mut written = 0;
    let result = tokio::time::timeout(write_timeout, async {
        while written < bytes.len() {
            match io.write(&bytes[written..]).await? {
                0 => return Err(std::io::ErrorKind::WriteZero.into()),
                n => written += n,
            }
        }
        io.flush().await
    })
    .await;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(None),
        Err(_) => {
            app.metrics.dropped(DropReason::WriteTimeout, 1);
            // A close frame after part of a frame would be garbage to the client.
            Err((written == 0).then_some(CloseReason::SlowConsumer))
        }
    }
}

struct Connection {
    socket: WebSocket,
    membership: Membership,
    identity: Identity,
    app: AppState,
    /// The newest comment id this socket has been sent; older ones are never sent again.
    last_id: Option<CommentId>,
    malformed: u32,
    write_timeout: Duration,
}

/// How the loop ended: `Some(reason)` to send a close frame, `None` when the peer is gone.
type End = Option<CloseReason>;

impl Connection {
    async fn serve(&mut self, stream: &crate::domain::StreamId) -> End {
        let idle_timeout = self.app.config.idle_timeout();
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
        let lifecycle = self.app.lifecycle.clone();
        let closing = lifecycle.closing().cancelled();
        tokio::pin!(closing);
        let draining = lifecycle.draining().cancelled();
        tokio::pin!(draining);

        loop {
            tokio::select! {
                biased;
                () = &mut closing => return Some(CloseReason::GoingAway),
                () = &mut draining, if !hint_scheduled => {
                    hint_scheduled = true;
                    // Spread the hints over most of the drain time so reconnects arrive at
                    // the other instances as a stream, not a wave.
                    let spread = self.app.config.drain().mul_f64(0.9);
                    let delay = spread.mul_f64(rand::rng().random::<f64>());
                    hint.as_mut().reset(tokio::time::Instant::now() + delay);
                }
                () = &mut hint => {
                    hint.as_mut().reset(far_future);
                    let after_ms = rand::rng().random_range(0..RECONNECT_SPREAD_MS);
                    let frame = shared_text(ServerFrame::Reconnect { after_ms }.encode());
                    if let Err(end) = Box::pin(self.write_now(frame)).await {
                        return end;
                    }
                }
                message = self.socket.next() => {
                    last_seen = Instant::now();
                    match message {
                        Some(Ok(message)) => {
                            if let Err(end) = Box::pin(self.on_message(stream, message)).await {
                                return end;
                            }
                        }
                        Some(Err(error)) => return close_reason_for(error),
                        None => return None,
                    }
                }
                event = self.membership.recv() => {
                    let event = match event {
                        Ok(event) => event,
                        Err(RecvError::Lagged(missed)) => return self.slow_consumer(stream, missed),
                        Err(RecvError::Closed) => return Some(CloseReason::Internal),
                    };
                    if let Err(end) = Box::pin(self.deliver(stream, event)).await {
                        return end;
                    }
                }
                () = &mut timer => {
                    let now = Instant::now();
                    if now.duration_since(last_seen) >= idle_timeout {
                        return Some(CloseReason::IdleTimeout);
                    }
                    if let Err(end) = Box::pin(self.write_now(Message::Ping(Bytes::new()))).await {
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
    async fn deliver(
        &mut self,
        stream: &crate::domain::StreamId,
        first: RoomEvent,
    ) -> Result<(), End> {
        let mut comments = 0u64;
        let mut frames = 0usize;
        let mut next = Some(first);
        let written = tokio::time::timeout(self.write_timeout, async {
            while let Some(event) = next.take() {
                match event {
                    RoomEvent::Comments(batch) => {
                        let frame = batch.frame_after(self.last_id);
                        batch.handed_to_one(&self.app.metrics);
                        if let Some((frame, n)) = frame {
                            self.last_id = Some(batch.last);
                            comments += n as u64;
                            frames += 1;
                            self.socket
                                .feed(shared_text(frame))
                                .await
                                .map_err(|_| None)?;
                        }
                    }
                    RoomEvent::Frame(frame) => {
                        frames += 1;
                        self.socket
                            .feed(shared_text(frame))
                            .await
                            .map_err(|_| None)?;
                    }
                    RoomEvent::Resync => return Err(Some(CloseReason::Resync)),
                    RoomEvent::Banned(user_id) => {
                        if matches!(&self.identity, Identity::Viewer(v) if *v.user.id == *user_id) {
                            // Tell the person why before closing, then close with 4003.
                            let error = ErrorBody::new(
                                ErrorCode::Banned,
                                "you were banned from this stream",
                            );
                            let frame = ServerFrame::Error(&error).encode();
                            self.socket
                                .feed(shared_text(frame))
                                .await
                                .map_err(|_| None)?;
                            self.socket.flush().await.map_err(|_| None)?;
                            return Err(Some(CloseReason::Banned));
                        }
                    }
                }
                if frames >= MAX_BATCH {
                    break;
                }
                next = match self.membership.try_recv() {
                    Ok(event) => Some(event),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => None,
                    Err(TryRecvError::Lagged(missed)) => {
                        return Err(self.slow_consumer(stream, missed));
                    }
                };
            }
            self.socket.flush().await.map_err(|_| None)
        })
        .await;
        self.app.metrics.delivered(comments);
        match written {
            Ok(result) => result,
            Err(_) => {
                tracing::info!(%stream, "closing a socket whose writes stalled");
                self.app
                    .metrics
                    .dropped(DropReason::WriteTimeout, comments.max(1));
                Err(Some(CloseReason::SlowConsumer))
            }
        }
    }

    fn slow_consumer(&self, stream: &crate::domain::StreamId, missed: u64) -> End {
        tracing::info!(%stream, missed, "closing a slow consumer");
        self.app.metrics.dropped(DropReason::SlowConsumer, missed);
        Some(CloseReason::SlowConsumer)
    }

    async fn on_message(
        &mut self,
        stream: &crate::domain::StreamId,
        message: Message,
    ) -> Result<(), End> {
        match message {
            Message::Text(text) => match serde_json::from_str::<ClientFrame>(&text) {
                Ok(ClientFrame::Ping) => {
                    self.malformed = 0;
                    self.write_now(shared_text(ServerFrame::Pong.encode()))
                        .await
                }
                Ok(ClientFrame::Comment { text, reference }) => {
                    self.post(stream, text, reference).await
                }
                Err(_) => {
                    let error = ErrorBody::new(
                        ErrorCode::Invalid,
                        "expected a JSON frame of type comment or ping",
                    );
                    self.refuse(error).await
                }
            },
            Message::Binary(_) => Err(Some(CloseReason::Policy)),
            // tungstenite queues the pong; flush so it leaves now.
            Message::Ping(_) => self.socket.flush().await.map_err(|_| None),
            Message::Pong(_) | Message::Frame(_) => Ok(()),
            Message::Close(_) => {
                // tungstenite queued the close reply; send it and stop.
                let _ = self.socket.flush().await;
                Err(None)
            }
        }
    }

    async fn post(
        &mut self,
        stream: &crate::domain::StreamId,
        text: String,
        reference: Option<String>,
    ) -> Result<(), End> {
        if reference
            .as_ref()
            .is_some_and(|r| r.chars().count() > ClientFrame::MAX_REF_CHARS)
        {
            return self
                .refuse(ErrorBody::new(
                    ErrorCode::Invalid,
                    "ref must be at most 64 characters",
                ))
                .await;
        }
        let error = |code, message: &str| ErrorBody::new(code, message).with_ref(reference.clone());
        let viewer = match &self.identity {
            Identity::Viewer(v) if !v.token_expired() => v.clone(),
            Identity::Viewer(_) => {
                return self
                    .refuse(error(ErrorCode::Unauthorized, "your token has expired"))
                    .await;
            }
            Identity::Anonymous => {
                return self
                    .refuse(error(ErrorCode::Unauthorized, "sign in to post comments"))
                    .await;
            }
        };
        let text = match CommentText::parse(text, self.app.config.max_comment_chars) {
            Ok(text) => text,
            Err(e @ TextError::TooLong { .. }) => {
                return self.refuse(error(ErrorCode::TooLong, &e.to_string())).await;
            }
            Err(e) => return self.refuse(error(ErrorCode::Invalid, &e.to_string())).await,
        };
        self.malformed = 0;
        if let Err(wait) = self.app.hub.rate_limits().check(stream, &viewer.user.id) {
            let retry_after_ms = wait.as_millis().max(1) as u64;
            let body = error(ErrorCode::RateLimited, "you are posting too fast")
                .with_retry_after_ms(retry_after_ms);
            return self.refuse(body).await;
        }
        let published = self
            .app
            .broker
            .publish(NewComment {
                stream: stream.clone(),
                kind: CommentKind::User,
                user: Some(viewer.user),
                text: text.into_string(),
                data: None,
                idempotency_key: None,
            })
            .await;
        match published {
            Ok(published) => {
                let comment = match published {
                    crate::broker::Published::New(c) | crate::broker::Published::Duplicate(c) => c,
                };
                self.app.metrics.published(CommentKind::User);
                let ack = ServerFrame::Ack {
                    reference: reference.as_deref(),
                    id: comment.id,
                }
                .encode();
                self.write_now(shared_text(ack)).await
            }
            Err(BrokerError::Banned) => {
                self.refuse(error(ErrorCode::Banned, "you are banned from this stream"))
                    .await
            }
            Err(e) => {
                tracing::warn!(%stream, error = %e, "publish failed");
                self.refuse(error(
                    ErrorCode::Unavailable,
                    "could not post right now; try again",
                ))
                .await
            }
        }
    }

    /// Sends an `error` frame; `invalid` ones count towards the malformed-in-a-row limit.
    async fn refuse(&mut self, error: ErrorBody) -> Result<(), End> {
        self.app.metrics.rejected(error.code);
        if error.code == ErrorCode::Invalid {
            self.malformed += 1;
        }
        let frame = ServerFrame::Error(&error).encode();
        self.write_now(shared_text(frame)).await?;
        if self.malformed > MAX_MALFORMED_IN_A_ROW {
            return Err(Some(CloseReason::Policy));
        }
        Ok(())
    }

    async fn write_now(&mut self, message: Message) -> Result<(), End> {
        match tokio::time::timeout(self.write_timeout, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(None),
            Err(_) => {
                self.app.metrics.dropped(DropReason::WriteTimeout, 1);
                Err(Some(CloseReason::SlowConsumer))
            }
        }
    }
}

/// The close code for a read error: RFC 6455 violations get the RFC's code.
fn close_reason_for(error: tungstenite::Error) -> End {
    use tungstenite::error::{CapacityError, Error, ProtocolError};
    match Some(&error) {
        Some(Error::Capacity(
            CapacityError::MessageTooLong { .. } | CapacityError::TooManyHeaders,
        )) => Some(CloseReason::TooBig),
        Some(Error::Utf8(_)) => Some(CloseReason::BadData),
        Some(Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake | ProtocolError::SendAfterClosing,
        )) => None,
        Some(Error::Protocol(_)) => Some(CloseReason::ProtocolError),
        _ => None,
    }
}

async fn close(mut socket: WebSocket, reason: CloseReason) {
    let frame = CloseFrame {
        code: reason.code().into(),
        reason: Utf8Bytes::from_static(reason.reason()),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}
