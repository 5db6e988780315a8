//! A connection's socket as tungstenite reads it: the bytes read from the TCP stream are
//! counted (wire bytes, before any inflating) into the worker's [`WireTally`] while it
//! measures, and, on a connection that offered `permessage-deflate`, the server's compressed
//! frames are made plain by the server's own [`Inflater`] before tungstenite (which knows no
//! extension and refuses RSV1) sees them. Writes pass straight through.
//!
//! The HTTP response of the handshake passes as it is: inflating starts after its blank line
//! (`\r\n\r\n`), so a first frame read together with the response is inflated too.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use danmaku::deflate::inflate::Inflater;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most a compressed message may inflate to (tungstenite's own frame limit).
pub(super) const INFLATE_LIMIT: usize = 16 << 20;

/// The end of an HTTP response's head.
const HEAD_END: &[u8; 4] = b"\r\n\r\n";

/// Wire bytes read by a worker's counted connections while it measures.
#[derive(Default)]
pub(crate) struct WireTally {
    measuring: Cell<bool>,
    bytes: Cell<u64>,
}

impl WireTally {
    /// Starts counting from zero (the measured phase starts).
    pub(super) fn start(&self) {
        self.bytes.set(0);
        self.measuring.set(true);
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    fn add(&self, n: usize) {
        if self.measuring.get() {
            self.bytes.set(self.bytes.get() + n as u64);
        }
    }
}

/// A socket whose reads are counted (into `tally`, when given) and inflated (when `inflate`).
pub(crate) struct Wire<S> {
    inner: S,
    tally: Option<Rc<WireTally>>,
    inflating: Option<Box<Inflating>>,
}

struct Inflating {
    inflater: Inflater,
    /// How much of [`HEAD_END`] the bytes so far end with; 4 once the handshake's response is
    /// through.
    head: usize,
    /// Wire bytes of a frame not yet whole.
    input: BytesMut,
    /// Plain bytes tungstenite has not read yet.
    output: BytesMut,
}

impl<S> Wire<S> {
    /// `inflater`: on a connection that offered `permessage-deflate`, what inflates its
    /// compressed frames (danmaku's messages each on their own; a peer's may keep a context).
    pub(crate) fn new(inner: S, tally: Option<Rc<WireTally>>, inflater: Option<Inflater>) -> Self {
        let inflating = inflater.map(|inflater| {
            Box::new(Inflating {
                inflater,
                head: 0,
                input: BytesMut::new(),
                output: BytesMut::new(),
            })
        });
        Self {
            inner,
            tally,
            inflating,
        }
    }
}

impl Inflating {
    /// Takes `bytes` read from the wire: the handshake's response as is, frames inflated.
    fn take(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while self.head < HEAD_END.len() && !bytes.is_empty() {
            let byte = bytes[0];
            self.output.extend_from_slice(&bytes[..1]);
            bytes = &bytes[1..];
            self.head = if byte == HEAD_END[self.head] {
                self.head + 1
            } else {
                usize::from(byte == HEAD_END[0])
            };
        }
        if self.head < HEAD_END.len() {
            return Ok(());
        }
        self.input.extend_from_slice(bytes);
        self.inflater
            .process(&mut self.input, &mut self.output)
            .map_err(|refused| io::Error::new(io::ErrorKind::InvalidData, refused))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Wire<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(inflating) = this.inflating.as_deref_mut() else {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            if let Some(tally) = &this.tally {
                tally.add(buf.filled().len() - before);
            }
            return Poll::Ready(Ok(()));
        };
        loop {
            if !inflating.output.is_empty() {
                let n = inflating.output.len().min(buf.remaining());
                buf.put_slice(&inflating.output[..n]);
                inflating.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 4096];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let bytes = read.filled();
            if bytes.is_empty() {
                return Poll::Ready(Ok(())); // The end of the stream.
            }
            if let Some(tally) = &this.tally {
                tally.add(bytes.len());
            }
            inflating.take(bytes)?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Wire<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server frame (unmasked, FIN) of `opcode` with RSV1 as given.
    fn frame(opcode: u8, rsv1: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | if rsv1 { 0x40 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    #[tokio::test]
    async fn a_compressed_frame_fed_in_small_pieces_comes_out_plain_and_is_counted_as_sent() {
        let text = r#"{"type":"comments","comments":["#.to_owned()
            + &vec![r#"{"id":"1-0","text":"bench 1 1 1","ts":1}"#; 40].join(",")
            + "]}";
        let compressed = danmaku::deflate::compress(text.as_bytes()).expect("it compresses");
        let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let small = br#"{"type":"viewers","count":1}"#;
        let mut wire = response.to_vec();
        wire.extend(frame(0x1, true, &compressed));
        wire.extend(frame(0x1, false, small));

        let (mut server, client) = tokio::io::duplex(64);
        let tally = Rc::new(WireTally::default());
        tally.start();
        let mut reader = Wire::new(
            client,
            Some(tally.clone()),
            Some(Inflater::new(INFLATE_LIMIT)),
        );
        let sent = wire.clone();
        let writer = async move {
            for piece in sent.chunks(7) {
                server.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            drop(server);
        };
        let mut plain = Vec::new();
        let (_, read) = tokio::join!(writer, reader.read_to_end(&mut plain));
        read.unwrap();

        let mut expected = response.to_vec();
        expected.extend(frame(0x1, false, text.as_bytes()));
        expected.extend(frame(0x1, false, small));
        assert_eq!(
            plain, expected,
            "the response as is, then plain text frames"
        );
        assert_eq!(
            tally.bytes(),
            wire.len() as u64,
            "wire bytes, before inflating"
        );
        assert!(compressed.len() < text.len() / 4);
    }

    #[tokio::test]
    async fn without_deflate_reads_pass_through_and_count_only_while_measuring() {
        let (mut server, client) = tokio::io::duplex(64);
        let tally = Rc::new(WireTally::default());
        let mut reader = Wire::new(client, Some(tally.clone()), None);
        server.write_all(b"before").await.unwrap();
        let mut buf = [0u8; 6];
        reader.read_exact(&mut buf).await.unwrap();
        tally.start();
        server.write_all(b"measured").await.unwrap();
        drop(server);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"measured");
        assert_eq!(tally.bytes(), 8);
    }
}
