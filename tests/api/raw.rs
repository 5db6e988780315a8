//! A raw WebSocket client over TCP, for frames a well-behaved client library refuses to
//! send (unmasked, reserved bits, bad UTF-8) and for a reader that stalls on purpose.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{TestApp, WAIT};

pub struct RawClient {
    pub stream: TcpStream,
}

pub struct RawFrame {
    pub opcode: u8,
    /// RSV1: a compressed message (`permessage-deflate`).
    pub rsv1: bool,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 0x8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl RawClient {
    /// Handshakes on `stream`, optionally with a tiny receive buffer (a reader that stalls
    /// fills it fast), and reads the `init` frame.
    pub async fn connect(app: &TestApp, stream_id: &str, recv_buffer: Option<u32>) -> Self {
        let (mut client, _) = Self::handshake(app, stream_id, recv_buffer, "").await;
        let init = client.read_frame().await.expect("init");
        assert!(String::from_utf8_lossy(&init.payload).contains("\"type\":\"init\""));
        client
    }

    /// Handshakes on `stream` (`path_and_query`: what follows the stream id, `extra`: more
    /// header lines, each ending in CRLF): the client, before `init`, and the `101`'s head.
    pub async fn handshake(
        app: &TestApp,
        path_and_query: &str,
        recv_buffer: Option<u32>,
        extra: &str,
    ) -> (Self, String) {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let mut stream = socket.connect(app.addr).await.unwrap();
        let (stream_id, query) = path_and_query
            .split_once('?')
            .map_or((path_and_query, String::new()), |(s, q)| {
                (s, format!("?{q}"))
            });
        let request = format!(
            "GET /v1/streams/{stream_id}/ws{query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
            app.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        (Self { stream }, head)
    }

    /// One frame as the client would put it on the wire.
    pub fn frame(fin: bool, rsv: u8, opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= 0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            let key = [0x12, 0x34, 0x56, 0x78];
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        out
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next frame, or `None` when the connection ends.
    pub async fn read_frame(&mut self) -> Option<RawFrame> {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).await.ok()?;
        let opcode = head[0] & 0x0f;
        let rsv1 = head[0] & 0x40 != 0;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).await.ok()?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).await.ok()?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        self.stream.read_exact(&mut payload).await.ok()?;
        Some(RawFrame {
            opcode,
            rsv1,
            payload,
        })
    }

    /// Reads (never answering pings) until a close frame: its code, or `None` if the
    /// connection ended without one.
    pub async fn close_code(&mut self) -> Option<u16> {
        self.close_code_within(WAIT * 3).await
    }

    pub async fn close_code_within(&mut self, limit: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.read_frame())
                .await
                .expect("closed in time")?;
            if frame.opcode == 0x8 {
                return frame.close_code();
            }
        }
    }
}
