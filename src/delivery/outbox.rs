//! The bytes a socket has yet to take, and the one way bytes reach a socket.
//!
//! A room's delivery task writes a frame straight to the socket with one non-blocking
//! `writev` (header and shared payload); only what the socket would not take waits here,
//! for the connection's own task to write when the socket is writable again. Every write
//! to a socket happens under its peer's lock and only when this queue is empty, or from
//! the queue's head: frames never interleave or reorder.
//!
//! The queue is bounded by [`MAX_QUEUED_BYTES`]; a socket that falls further behind is a
//! slow consumer (see [`super::peer`]).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use tokio::net::{TcpStream, UnixStream};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Data, OpCode};

use super::policy::{MAX_QUEUED_BYTES, MAX_SLICES};
use crate::deflate;

/// A connected byte stream that can be written without `&mut` (so a room's task and the
/// connection's task can share it) and polled for readiness.
pub trait RawSocket: Send + Sync + 'static {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

macro_rules! raw_socket {
    ($type:ty) => {
        impl RawSocket for $type {
            fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                <$type>::try_write_vectored(self, bufs)
            }
            fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$type>::poll_write_ready(self, cx)
            }
            fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
                <$type>::try_read(self, buf)
            }
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$type>::poll_read_ready(self, cx)
            }
        }
    };
}

raw_socket!(TcpStream);
raw_socket!(UnixStream);

/// A WebSocket frame header (at most 10 bytes: servers do not mask).
#[derive(Clone, Copy)]
pub(super) struct Header {
    bytes: [u8; 10],
    len: u8,
}

impl Header {
    /// An empty header, for bytes that are framed already.
    const NONE: Self = Self {
        bytes: [0; 10],
        len: 0,
    };

    /// The header of a final text frame of `payload_len` bytes; `compressed`: its payload is
    /// a compressed message (RSV1, RFC 7692).
    pub(super) fn text(payload_len: usize, compressed: bool) -> Self {
        let header = FrameHeader {
            rsv1: compressed,
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        let mut bytes = [0; 10];
        let mut out = &mut bytes[..];
        header
            .format(payload_len as u64, &mut out)
            .expect("an unmasked header fits 10 bytes");
        let len = 10 - out.len();
        Self {
            bytes,
            len: len as u8,
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// The end of a `comments` frame that carries `skipped`: the one part of it that is this
/// socket's own (the rest is the room's shared bytes, less their closing brace).
#[derive(Clone, Copy)]
pub(super) struct Tail {
    bytes: [u8; 40],
    len: u8,
}

impl Tail {
    pub(super) const NONE: Self = Self {
        bytes: [0; 40],
        len: 0,
    };

    /// `,"skipped":<n>}` (at most 32 bytes: `u64::MAX` has 20 digits); `compressed`: as the
    /// stored block that ends a compressed message (5 bytes more).
    pub(super) fn skipped(n: u64, compressed: bool) -> Self {
        use std::io::Write;
        let mut text = [0; 32];
        let mut out = &mut text[..];
        write!(out, ",\"skipped\":{n}}}").expect("fits 32 bytes");
        let written = 32 - out.len();
        let text = &text[..written];
        let mut bytes = [0; 40];
        let mut out = &mut bytes[..];
        if compressed {
            deflate::stored(text, &mut out).expect("fits 40 bytes");
        } else {
            out.write_all(text).expect("fits 40 bytes");
        }
        let len = 40 - out.len();
        Self {
            bytes,
            len: len as u8,
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// One frame as a socket is sent it: its header, the shared payload (`len` bytes of it: all,
/// or all but the closing brace a tail replaces) and the socket's own tail.
pub(super) struct Out<'a> {
    pub(super) header: Header,
    pub(super) payload: &'a Bytes,
    pub(super) len: usize,
    pub(super) tail: Tail,
}

impl<'a> Out<'a> {
    /// A frame's text as it is, with `"skipped": skipped` added when not 0 (the shared bytes
    /// then go out bar their closing brace).
    pub(super) fn plain(text: &'a Bytes, skipped: u64) -> Self {
        if skipped == 0 {
            return Self {
                header: Header::text(text.len(), false),
                payload: text,
                len: text.len(),
                tail: Tail::NONE,
            };
        }
        debug_assert_eq!(text.last(), Some(&b'}'), "a JSON object");
        let tail = Tail::skipped(skipped, false);
        let len = text.len() - 1;
        Self {
            header: Header::text(len + tail.len as usize, false),
            payload: text,
            len,
            tail,
        }
    }

    /// A frame compressed: `payload` is its whole compressed form when `skipped` is 0, else
    /// the open one that the stored tail with `"skipped"` completes.
    pub(super) fn deflated(payload: &'a Bytes, skipped: u64) -> Self {
        let tail = match skipped {
            0 => Tail::NONE,
            n => Tail::skipped(n, true),
        };
        Self {
            header: Header::text(payload.len() + tail.len as usize, true),
            payload,
            len: payload.len(),
            tail,
        }
    }

    /// Bytes on the wire.
    pub(super) fn wire_len(&self) -> usize {
        self.header.len as usize + self.len + self.tail.len as usize
    }
}

/// One frame (or framed bytes) waiting, and how much of it went out already.
struct Waiting {
    header: Header,
    payload: Bytes,
    tail: Tail,
    written: usize,
    /// Comments it carries, for counting what a cut-off socket lost.
    comments: u64,
}

impl Waiting {
    fn len(&self) -> usize {
        self.header.len as usize + self.payload.len() + self.tail.len as usize
    }

    /// The unwritten part, as at most three slices.
    fn slices(&self) -> [&[u8]; 3] {
        let mut written = self.written;
        let mut parts = [
            self.header.as_slice(),
            &self.payload[..],
            self.tail.as_slice(),
        ];
        for part in &mut parts {
            let skip = written.min(part.len());
            *part = &part[skip..];
            written -= skip;
        }
        parts
    }
}

/// What a socket has yet to take.
#[derive(Default)]
pub(super) struct Outbox {
    queue: VecDeque<Waiting>,
    bytes: usize,
    /// While the queue is not empty: since when the socket has taken none of it.
    since: Option<Instant>,
}

/// How a write went.
pub(super) enum Wrote {
    /// All of it is on the socket.
    Sent,
    /// Some or all of it waits in the queue: the connection's task must write it.
    Queued,
    /// It waits, but the queue is now over [`MAX_QUEUED_BYTES`].
    Full,
}

impl Outbox {
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// While bytes wait: since when the socket has taken none of them (a socket that
    /// takes some, however slowly, is not stalled).
    pub(super) fn stalled_since(&self) -> Option<Instant> {
        self.since
    }

    /// Bytes waiting.
    pub(super) fn queued_bytes(&self) -> usize {
        self.bytes
    }

    /// Comments in frames not wholly written.
    pub(super) fn comments(&self) -> u64 {
        self.queue.iter().map(|w| w.comments).sum()
    }

    /// Writes `out` now if nothing waits before it and the socket takes it, else queues
    /// what it did not take.
    pub(super) fn write(
        &mut self,
        socket: &impl RawSocket,
        out: Out<'_>,
        comments: u64,
    ) -> io::Result<Wrote> {
        let mut written = 0;
        let payload = &out.payload[..out.len];
        if self.queue.is_empty() {
            let slices = [
                IoSlice::new(out.header.as_slice()),
                IoSlice::new(payload),
                IoSlice::new(out.tail.as_slice()),
            ];
            let slices = if out.tail.len == 0 {
                &slices[..2]
            } else {
                &slices
            };
            written = try_write(socket, slices)?;
            if written == out.wire_len() {
                return Ok(Wrote::Sent);
            }
        }
        let payload = if out.len == out.payload.len() {
            out.payload.clone()
        } else {
            out.payload.slice(..out.len)
        };
        Ok(self.push(out.header, payload, out.tail, written, comments))
    }

    /// The same for bytes that are framed already (tungstenite's pongs and closes).
    pub(super) fn write_framed(
        &mut self,
        socket: &impl RawSocket,
        bytes: &[u8],
    ) -> io::Result<Wrote> {
        if self.queue.is_empty() {
            let written = try_write(socket, &[IoSlice::new(bytes)])?;
            if written == bytes.len() {
                return Ok(Wrote::Sent);
            }
            let rest = Bytes::copy_from_slice(&bytes[written..]);
            return Ok(self.push(Header::NONE, rest, Tail::NONE, 0, 0));
        }
        let bytes = Bytes::copy_from_slice(bytes);
        Ok(self.push(Header::NONE, bytes, Tail::NONE, 0, 0))
    }

    fn push(
        &mut self,
        header: Header,
        payload: Bytes,
        tail: Tail,
        written: usize,
        comments: u64,
    ) -> Wrote {
        if self.queue.is_empty() {
            self.since = Some(Instant::now());
        }
        let waiting = Waiting {
            header,
            payload,
            tail,
            written,
            comments,
        };
        self.bytes += waiting.len() - written;
        self.queue.push_back(waiting);
        if self.bytes > MAX_QUEUED_BYTES {
            Wrote::Full
        } else {
            Wrote::Queued
        }
    }

    /// Writes the queue as the socket takes it: `Ready(Ok)` once it is empty, `Pending`
    /// (with `cx` woken when the socket is writable) while it is not.
    pub(super) fn poll_drain(
        &mut self,
        socket: &impl RawSocket,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.queue.is_empty() {
            ready!(socket.poll_write_ready(cx))?;
            let mut slices = Vec::with_capacity(3 * MAX_SLICES.min(self.queue.len()));
            for waiting in self.queue.iter().take(MAX_SLICES) {
                for slice in waiting.slices() {
                    if !slice.is_empty() {
                        slices.push(IoSlice::new(slice));
                    }
                }
            }
            let written = try_write(socket, &slices)?;
            self.advance(written);
        }
        Poll::Ready(Ok(()))
    }

    fn advance(&mut self, mut written: usize) {
        if written == 0 {
            return;
        }
        self.bytes -= written;
        while written > 0 {
            let head = self.queue.front_mut().expect("wrote no more than queued");
            let left = head.len() - head.written;
            if written < left {
                head.written += written;
                break;
            }
            written -= left;
            self.queue.pop_front();
        }
        self.since = (!self.queue.is_empty()).then(Instant::now);
    }

    /// Drops every frame not begun (a socket being cut off): what stays is the rest of a
    /// frame half written, so whatever follows (a close frame) still reads as a frame.
    /// Returns the comments dropped.
    pub(super) fn cut_off(&mut self) -> u64 {
        let keep = usize::from(self.queue.front().is_some_and(|w| w.written > 0));
        let dropped: u64 = self.queue.iter().skip(keep).map(|w| w.comments).sum();
        self.queue.truncate(keep);
        self.bytes = self.queue.front().map_or(0, |w| w.len() - w.written);
        if self.queue.is_empty() {
            self.since = None;
        }
        dropped
    }
}

/// A non-blocking write: the bytes taken, `0` if none.
fn try_write(socket: &impl RawSocket, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    match socket.try_write_vectored(slices) {
        Ok(0) if slices.iter().any(|s| !s.is_empty()) => Err(io::ErrorKind::WriteZero.into()),
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::AsyncReadExt;

    use super::*;

    #[test]
    fn headers_frame_text_of_every_length() {
        assert_eq!(Header::text(5, false).as_slice(), [0x81, 5]);
        assert_eq!(Header::text(300, false).as_slice(), [0x81, 126, 1, 44]);
        assert_eq!(Header::text(70_000, false).len, 10);
        // RSV1 marks a compressed message.
        assert_eq!(Header::text(5, true).as_slice(), [0xc1, 5]);
    }

    /// A socket that stops reading: frames queue in order, half a frame survives a cut-off,
    /// and the queue drains once the reader reads.
    #[tokio::test]
    async fn what_the_socket_does_not_take_waits_in_order() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let mut outbox = Outbox::default();
        let payload = Bytes::from(vec![b'x'; 1000]);
        let mut frames = 0;
        while outbox.is_empty() {
            outbox.write(&server, Out::plain(&payload, 0), 1).unwrap();
            frames += 1;
        }
        for _ in 0..10 {
            assert!(matches!(
                outbox.write(&server, Out::plain(&payload, 0), 1).unwrap(),
                Wrote::Queued
            ));
        }
        assert!(outbox.stalled_since().is_some());
        assert_eq!(outbox.comments(), 11);
        let half_written = outbox.queue.front().unwrap().written > 0;
        let dropped = outbox.cut_off();
        assert_eq!(dropped, if half_written { 10 } else { 11 });
        outbox.write_framed(&server, &[0x88, 0]).unwrap();
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        poll_fn(|cx| outbox.poll_drain(&server, cx)).await.unwrap();
        assert!(outbox.is_empty() && outbox.stalled_since().is_none());
        drop(server);
        let all = reader.await.unwrap();
        // The loop's last frame is the queue's head: kept only if it was begun.
        let whole = frames - 1 + usize::from(half_written);
        assert_eq!(all.len(), whole * 1004 + 2);
        assert_eq!(&all[all.len() - 2..], [0x88, 0]);
        assert!(
            all.chunks(1004)
                .take(whole)
                .all(|f| f[..4] == [0x81, 126, 3, 232])
        );
    }

    /// `skipped` goes in before the shared frame's closing brace, whether the frame goes out
    /// at once or waits and goes out in pieces.
    #[tokio::test]
    async fn skipped_is_added_to_the_shared_frame() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let mut outbox = Outbox::default();
        let frame = Bytes::from_static(br#"{"type":"comments","comments":[1]}"#);
        outbox.write(&server, Out::plain(&frame, 0), 1).unwrap();
        outbox.write(&server, Out::plain(&frame, 42), 1).unwrap();
        // Fill the socket so the next one waits, and read everything back.
        let filler = Bytes::from(vec![b'x'; 4000]);
        while outbox.is_empty() {
            outbox.write(&server, Out::plain(&filler, 0), 0).unwrap();
        }
        outbox.write(&server, Out::plain(&frame, 7), 1).unwrap();
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        poll_fn(|cx| outbox.poll_drain(&server, cx)).await.unwrap();
        drop(server);
        let all = reader.await.unwrap();
        let mut frames = Vec::new();
        let mut rest = &all[..];
        while !rest.is_empty() {
            let (len, at) = match rest[1] {
                126 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
                n => (usize::from(n), 2),
            };
            frames.push(&rest[at..at + len]);
            rest = &rest[at + len..];
        }
        assert_eq!(frames[0], &frame[..]);
        assert_eq!(
            frames[1],
            br#"{"type":"comments","comments":[1],"skipped":42}"#
        );
        assert_eq!(
            *frames.last().unwrap(),
            br#"{"type":"comments","comments":[1],"skipped":7}"#
        );
    }

    /// A compressed frame takes the socket's `skipped` as a stored block after the shared
    /// compressed bytes: it inflates to the plain frame with the tail.
    #[tokio::test]
    async fn skipped_follows_a_compressed_frame_as_a_stored_block() {
        let (server, mut client) = UnixStream::pair().unwrap();
        let mut outbox = Outbox::default();
        let text = format!(
            r#"{{"type":"comments","comments":[{}]}}"#,
            "1,".repeat(200) + "1"
        );
        let open = deflate::compress_open(&text.as_bytes()[..text.len() - 1]).unwrap();
        outbox.write(&server, Out::deflated(&open, 7), 1).unwrap();
        drop(server);
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        assert_eq!(all[0], 0xc1, "final text frame, RSV1");
        let (len, at) = match all[1] {
            126 => (usize::from(u16::from_be_bytes([all[2], all[3]])), 4),
            n => (usize::from(n), 2),
        };
        assert_eq!(all.len(), at + len);
        let mut payload = all[at..].to_vec();
        payload.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut inflate = flate2::Decompress::new(false);
        let mut plain = Vec::with_capacity(4096);
        inflate
            .decompress_vec(&payload, &mut plain, flate2::FlushDecompress::Sync)
            .unwrap();
        let expected = text.replace("]}", r#"],"skipped":7}"#);
        assert_eq!(String::from_utf8(plain).unwrap(), expected);
    }
}
