//! The WebSocket protocol as the connection reads it, through tungstenite: the socket's
//! settings, the client's frames, the replies tungstenite writes itself (pongs, the close
//! handshake) and closing. The server's own frames do not pass through tungstenite: they
//! are framed once and written by the delivery engine's outbox (`delivery::outbox`), in
//! order with tungstenite's replies, which reach the socket through the same outbox
//! ([`PeerIo`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tungstenite::protocol::{Role, WebSocketConfig};

use super::close::{CloseReason, End};
use crate::deflate::inflate::{Inflater, Refused};
use crate::delivery::{Peer, RawSocket};
use crate::metrics::InflateRefusal;

/// tungstenite's defaults cost ~137 KB per idle socket: a 128 KiB read buffer allocated up
/// front, a 128 KiB write buffer, 64 MiB messages. These fit comments of 200 characters: a
/// 512-byte read buffer that grows only for a larger frame (an idle socket keeps it, so it
/// is small; a 4 KiB client frame takes a few reads), and client messages and frames of at
/// most 4 KiB. tungstenite writes only its pongs and closes, straight through (no write
/// buffer); the outbox bounds what waits.
pub const READ_BUFFER: usize = 512;
pub const MAX_CLIENT_FRAME: usize = 4 * 1024;

/// How long a closing handshake may take before the socket is dropped.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A WebSocket ping frame with no payload.
pub(super) const PING: [u8; 2] = [0x89, 0];

fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_CLIENT_FRAME))
        .max_frame_size(Some(MAX_CLIENT_FRAME))
}

/// The socket as tungstenite reads and writes it: reads come from the socket (after any
/// bytes read with the HTTP request), compressed frames inflated when the connection
/// negotiated `permessage-deflate`; writes (its pongs and close frames) go through the
/// peer, in order with everything else.
pub(super) struct PeerIo<S> {
    pub(super) peer: Arc<Peer<S>>,
    prefix: Bytes,
    inflating: Option<Box<Inflating>>,
}

/// A compressed connection's reads: bytes from the socket not yet a whole compressed frame,
/// and frames ready for tungstenite. Both are emptied (their memory freed) between client
/// messages, so an idle socket keeps nothing.
struct Inflating {
    inflater: Inflater,
    raw: BytesMut,
    ready: BytesMut,
}

impl<S> PeerIo<S> {
    pub(super) fn new(peer: Arc<Peer<S>>, prefix: Bytes, inflate: bool) -> Self {
        let inflating = inflate.then(|| {
            Box::new(Inflating {
                inflater: Inflater::new(MAX_CLIENT_FRAME),
                raw: BytesMut::new(),
                ready: BytesMut::new(),
            })
        });
        Self {
            peer,
            prefix,
            inflating,
        }
    }
}

impl<S: RawSocket> PeerIo<S> {
    /// Reads what the socket has, the prefix first.
    fn poll_read_raw(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.len());
            buf[..n].copy_from_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(n));
        }
        let socket = self.peer.socket();
        loop {
            std::task::ready!(socket.poll_read_ready(cx))?;
            match socket.try_read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    /// Reads through the inflater: frames come out once it has made them.
    fn poll_read_inflated(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let inflating = self.inflating.as_mut().expect("an inflating connection");
            if !inflating.ready.is_empty() {
                let n = inflating.ready.len().min(buf.remaining());
                buf.put_slice(&inflating.ready.split_to(n));
                if inflating.ready.is_empty() {
                    inflating.ready = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0; READ_BUFFER];
            let n = std::task::ready!(self.poll_read_raw(cx, &mut chunk))?;
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            let inflating = self.inflating.as_mut().expect("an inflating connection");
            inflating.raw.extend_from_slice(&chunk[..n]);
            let processed = inflating
                .inflater
                .process(&mut inflating.raw, &mut inflating.ready);
            if inflating.raw.is_empty() {
                inflating.raw = BytesMut::new();
            }
            if let Err(refused) = processed {
                self.peer.metrics().egress.inflate_refused(match refused {
                    Refused::TooBig => InflateRefusal::TooBig,
                    Refused::Corrupt => InflateRefusal::Corrupt,
                });
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, refused)));
            }
        }
    }
}

impl<S: RawSocket> AsyncRead for PeerIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.inflating.is_some() {
            return self.poll_read_inflated(cx, buf);
        }
        let n = std::task::ready!(self.poll_read_raw(cx, buf.initialize_unfilled()))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: RawSocket> AsyncWrite for PeerIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.peer.write_framed(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.peer.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.peer.poll_flush(cx)
    }
}

/// A message from the client, as the connection loop sees it.
#[derive(Debug)]
pub(super) enum Incoming {
    /// A text frame (valid UTF-8).
    Text(Bytes),
    Binary,
    /// A WebSocket ping; tungstenite wrote its pong.
    Ping,
    /// A pong (or a bare frame): proof of life, nothing to answer.
    Pong,
    /// The client's close frame; the reply is queued and leaves with the next flush.
    Close,
}

/// The server side of a WebSocket over any byte stream.
pub(super) struct Socket<S> {
    inner: WebSocketStream<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    /// Wraps a stream that has done its HTTP upgrade.
    pub(super) async fn wrap(io: S) -> Self {
        Self {
            inner: WebSocketStream::from_raw_socket(io, Role::Server, Some(socket_config())).await,
        }
    }

    /// Writes what tungstenite queued (the reply to a client's close), within
    /// [`CLOSE_TIMEOUT`].
    pub(super) async fn flush(&mut self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.inner.flush()).await;
    }

    /// Sends a close frame with `reason` after whatever waits (within `wait`) and drops the
    /// socket.
    pub(super) async fn close(mut self, reason: CloseReason, wait: Duration) {
        let frame = CloseFrame {
            code: reason.code().into(),
            reason: Utf8Bytes::from_static(reason.reason()),
        };
        let close = self.inner.send(Message::Close(Some(frame)));
        let _ = tokio::time::timeout(wait, close).await;
    }
}

/// The client's messages, `None` once the stream ended; an error says how the connection
/// must end because of what arrived (RFC 6455 violations get the RFC's close code).
impl<S: AsyncRead + AsyncWrite + Unpin> Stream for Socket<S> {
    type Item = Result<Incoming, End>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let message = match std::task::ready!(self.inner.poll_next_unpin(cx)) {
            None => return Poll::Ready(None),
            Some(Ok(message)) => message,
            Some(Err(error)) => return Poll::Ready(Some(Err(end_for(error)))),
        };
        Poll::Ready(Some(Ok(match message {
            Message::Text(text) => Incoming::Text(Bytes::from(text)),
            Message::Binary(_) => Incoming::Binary,
            Message::Ping(_) => Incoming::Ping,
            Message::Pong(_) | Message::Frame(_) => Incoming::Pong,
            Message::Close(_) => Incoming::Close,
        })))
    }
}

/// How a read error ends the connection: RFC 6455 violations get the RFC's code.
fn end_for(error: tungstenite::Error) -> End {
    use tungstenite::error::{CapacityError, Error, ProtocolError};
    match error {
        Error::Capacity(CapacityError::MessageTooLong { .. } | CapacityError::TooManyHeaders) => {
            End::Close(CloseReason::TooBig)
        }
        Error::Utf8(_) => End::Close(CloseReason::BadData),
        Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake | ProtocolError::SendAfterClosing,
        ) => End::PeerGone,
        Error::Protocol(_) => End::Close(CloseReason::ProtocolError),
        // A compressed message the inflater refused: a bomb, or not deflate data.
        Error::Io(e) => match e.get_ref().and_then(|e| e.downcast_ref::<Refused>()) {
            Some(Refused::TooBig) => End::Close(CloseReason::TooBig),
            Some(Refused::Corrupt) => End::Close(CloseReason::ProtocolError),
            None => End::PeerGone,
        },
        _ => End::PeerGone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's frames read as [`Incoming`] messages; the close frame carries the code.
    #[tokio::test]
    async fn client_frames_read_back_and_close_carries_the_code() {
        let (server, client) = tokio::io::duplex(64 * 1024);
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let mut socket = Socket::wrap(server).await;
        client.send(Message::Text("hello".into())).await.unwrap();
        assert!(matches!(socket.next().await, Some(Ok(Incoming::Text(t))) if t == "hello"));
        client.send(Message::Binary(Bytes::new())).await.unwrap();
        assert!(matches!(socket.next().await, Some(Ok(Incoming::Binary))));
        client.send(Message::Ping(Bytes::new())).await.unwrap();
        assert!(matches!(socket.next().await, Some(Ok(Incoming::Ping))));
        // tungstenite writes the pong as it next reads or flushes.
        socket.flush().await;
        assert!(matches!(client.next().await, Some(Ok(Message::Pong(_)))));
        socket.close(CloseReason::Policy, CLOSE_TIMEOUT).await;
        match client.next().await.unwrap().unwrap() {
            Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1008),
            other => panic!("{other:?}"),
        }
    }
}
