//! The contract's error object in the answers hyper writes by itself.
//!
//! A request hyper cannot parse (a request line over 64 KiB, headers over its buffer or more
//! than 100 of them, bytes that are not HTTP) never reaches the router: hyper answers `414`,
//! `431` or `400` itself, with an empty body, and closes. Those answers are recognised on
//! their way out (a `4xx` head with hyper's `connection: close` and `content-length: 0`,
//! which no handler of ours writes: every refusal of ours has a JSON body) and replaced by
//! the same status with the error body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::domain::wire::{ErrorBody, ErrorCode};

/// What follows the status line in hyper's own error answers.
const AUTOMATIC_HEADERS: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\n";

/// A socket whose automatic `400`, `414` and `431` answers get the error body.
pub struct ErrorBodies<T> {
    inner: T,
    /// A replacement answer and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> ErrorBodies<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: None,
        }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncWrite + Unpin> ErrorBodies<T> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            if *written == bytes.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The answer with the error body for one of hyper's own, if `head` is one.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let message = match head.get(..13)? {
        b"HTTP/1.1 400 " => "the request is not valid HTTP/1.1",
        b"HTTP/1.1 414 " => "the request line is too long",
        b"HTTP/1.1 431 " => "the request headers are too large",
        _ => return None,
    };
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    if !head[line_end..].starts_with(AUTOMATIC_HEADERS) {
        return None;
    }
    let body = ErrorBody::new(ErrorCode::Invalid, message).to_json();
    let mut answer = head[..line_end].to_vec();
    answer.extend_from_slice(
        format!(
            "\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    Some(answer)
}

impl<T: AsyncRead + Unpin> AsyncRead for ErrorBodies<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ErrorBodies<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(answer) = replacement(buf) {
            self.pending = Some((answer, 0));
            // Written now as far as the socket takes it; flush and shutdown write the rest.
            if let Poll::Ready(Err(error)) = self.poll_pending(cx) {
                return Poll::Ready(Err(error));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_answers_are_replaced() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let answer = String::from_utf8(replacement(hyper).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["code"], "invalid");
        // Ours have a body; other statuses are left alone.
        assert!(replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 60\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"{\"type\":\"comments\"}").is_none());
    }
}
