//! Every WebSocket byte: the socket's buffer settings, framing the server's frames, reading
//! the client's, pings, and the closing handshake. The only file that sees tungstenite; the
//! rest of the server speaks [`SharedFrame`]s, [`Incoming`] messages and [`End`]s.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame, Utf8Bytes};
use tungstenite::protocol::{Role, WebSocketConfig};

use super::close::{CloseReason, End};
use crate::domain::wire::SharedFrame;

/// tungstenite's defaults cost ~137 KB per idle socket: a 128 KiB read buffer allocated up
/// front, a 128 KiB write buffer, 64 MiB messages. These fit comments of 200 characters: a
/// 512-byte read buffer that grows only for a larger frame (an idle socket keeps it, so it
/// is small; a 4 KiB client frame takes a few reads), client messages and frames of at most
/// 4 KiB, and a write buffer that collects a batch of frames into one write. tungstenite's
/// write buffer keeps the capacity of the largest write, so `init` (up to the whole
/// history) does not go through it: it is written with [`write_unwrapped`] before the
/// socket is wrapped. The cap fits the largest frame that does, a `comments` frame of 100
/// comments; a stalled socket is cut off by the write timeout long before it holds that.
pub const READ_BUFFER: usize = 512;
pub const WRITE_BUFFER: usize = 16 * 1024;
pub const MAX_WRITE_BUFFER: usize = 4 * 1024 * 1024;
pub const MAX_CLIENT_FRAME: usize = 4 * 1024;

/// How long a closing handshake may take before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(MAX_CLIENT_FRAME))
        .max_frame_size(Some(MAX_CLIENT_FRAME))
}

/// A message from the client, as the connection loop sees it.
#[derive(Debug)]
pub(super) enum Incoming {
    /// A text frame (valid UTF-8).
    Text(Bytes),
    Binary,
    /// A WebSocket ping; its pong is queued and leaves with the next flush.
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
    /// Wraps a stream that has done its HTTP upgrade (and any unwrapped writes).
    pub(super) async fn wrap(io: S) -> Self {
        Self {
            inner: WebSocketStream::from_raw_socket(io, Role::Server, Some(socket_config())).await,
        }
    }

    /// Queues a text frame of the shared bytes (no copy, no UTF-8 check: the server made
    /// them from a `String`); it leaves with the next flush, or when the buffer is full.
    pub(super) async fn feed(&mut self, frame: SharedFrame) -> Result<(), End> {
        self.inner
            .feed(text(frame))
            .await
            .map_err(|_| End::PeerGone)
    }

    pub(super) async fn flush(&mut self) -> Result<(), End> {
        self.inner.flush().await.map_err(|_| End::PeerGone)
    }

    /// Queues and flushes one frame.
    pub(super) async fn send(&mut self, frame: SharedFrame) -> Result<(), End> {
        self.inner
            .send(text(frame))
            .await
            .map_err(|_| End::PeerGone)
    }

    pub(super) async fn ping(&mut self) -> Result<(), End> {
        self.inner
            .send(Message::Ping(Bytes::new()))
            .await
            .map_err(|_| End::PeerGone)
    }

    /// Sends a close frame with `reason` (within [`CLOSE_TIMEOUT`]) and drops the socket.
    pub(super) async fn close(mut self, reason: CloseReason) {
        let frame = CloseFrame {
            code: reason.code().into(),
            reason: Utf8Bytes::from_static(reason.reason()),
        };
        let close = self.inner.send(Message::Close(Some(frame)));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
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

fn text(frame: SharedFrame) -> Message {
    Message::Frame(Frame::message(
        frame.into_bytes(),
        OpCode::Data(Data::Text),
        true,
    ))
}

/// Writes one text frame straight to a stream that is not wrapped yet: one write of a
/// buffer freed right after (see [`WRITE_BUFFER`] for why `init` goes this way).
/// `written` counts the bytes that went out, so that after a timeout the caller knows
/// whether a close frame could still follow.
pub(super) async fn write_unwrapped<S: AsyncWrite + Unpin>(
    io: &mut S,
    frame: SharedFrame,
    written: &mut usize,
) -> std::io::Result<()> {
    let payload = frame.into_bytes();
    let mut bytes = Vec::with_capacity(payload.len() + 10);
    Frame::message(payload, OpCode::Data(Data::Text), true)
        .format(&mut bytes)
        .expect("a Vec takes any frame");
    while *written < bytes.len() {
        match io.write(&bytes[*written..]).await? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => *written += n,
        }
    }
    io.flush().await
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
        _ => End::PeerGone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's frames, read back by a tungstenite client over an in-memory pipe.
    #[tokio::test]
    async fn frames_written_wrapped_or_not_read_back_as_text() {
        let (server, client) = tokio::io::duplex(64 * 1024);
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let mut server = server;
        let mut written = 0;
        let init = SharedFrame::from(r#"{"type":"init"}"#.to_owned());
        write_unwrapped(&mut server, init, &mut written)
            .await
            .unwrap();
        assert!(written > 0);
        let mut socket = Socket::wrap(server).await;
        socket
            .send(SharedFrame::from(r#"{"type":"pong"}"#.to_owned()))
            .await
            .unwrap();
        for expected in [r#"{"type":"init"}"#, r#"{"type":"pong"}"#] {
            match client.next().await.unwrap().unwrap() {
                Message::Text(text) => assert_eq!(text.as_str(), expected),
                other => panic!("{other:?}"),
            }
        }
        client.send(Message::Text("hello".into())).await.unwrap();
        assert!(matches!(socket.next().await, Some(Ok(Incoming::Text(t))) if t == "hello"));
        client.send(Message::Binary(Bytes::new())).await.unwrap();
        assert!(matches!(socket.next().await, Some(Ok(Incoming::Binary))));
        socket.close(CloseReason::Policy).await;
        match client.next().await.unwrap().unwrap() {
            Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1008),
            other => panic!("{other:?}"),
        }
    }
}
