//! `danmaku-bench floor`: the floor for a server's CPU per delivery, run beside danmaku in the
//! same benchmark so the two can be compared as a ratio.
//!
//! A minimal server of danmaku's protocol on one thread: the WebSocket handshake, `init`, and
//! for each comment a viewer posts one `comments` frame of the same shape and size as
//! danmaku's, encoded once and written with non-blocking `send()`s to every socket of the
//! stream in one pass; a socket that would block keeps the rest in a queue its own writer
//! drains when the socket is writable. Nothing else: no history, no broker, no timers, no
//! auth beyond reading the poster's name from its token. What it costs per delivery is the
//! kernel's loopback send plus the least bookkeeping a server can do. It imports nothing of
//! the crate: `danmaku-bench floor` runs it alone.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Longest request head read before the upgrade.
const MAX_HEAD: usize = 8 * 1024;
/// Largest client frame read (danmaku refuses larger ones too).
const MAX_CLIENT_FRAME: usize = 4 * 1024;

/// Runs the floor server on `listen` until the process is killed.
pub(crate) fn run(listen: SocketAddr, secret: String) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("bind {listen}"))?;
        // One machine-readable line, as danmaku prints, for the scripts that start it.
        println!("floor listening on http://{}", listener.local_addr()?);
        let server = Rc::new(Server {
            secret,
            rooms: RefCell::new(HashMap::new()),
            last_id: Cell::new((0, 0)),
        });
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let server = server.clone();
            tokio::task::spawn_local(async move {
                let _ = server.serve(tcp).await;
            });
        }
    })
}

struct Server {
    secret: String,
    rooms: RefCell<HashMap<String, Vec<Rc<Conn>>>>,
    /// The last comment id given, `(ms, seq)` as danmaku's.
    last_id: Cell<(u64, u64)>,
}

/// One socket's write side: frames go out at once unless earlier ones still wait.
struct Conn {
    tcp: TcpStream,
    pending: RefCell<VecDeque<bytes::Bytes>>,
    wake: Notify,
    dead: Cell<bool>,
}

impl Conn {
    /// Writes `frame` now, or as much as the socket takes and queues the rest.
    fn send(&self, frame: &bytes::Bytes) {
        if self.dead.get() {
            return;
        }
        let mut pending = self.pending.borrow_mut();
        if !pending.is_empty() {
            pending.push_back(frame.clone());
            return;
        }
        match self.tcp.try_write(frame) {
            Ok(n) if n == frame.len() => return,
            Ok(n) => pending.push_back(frame.slice(n..)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => pending.push_back(frame.clone()),
            Err(_) => {
                self.dead.set(true);
                return;
            }
        }
        self.wake.notify_one();
    }

    /// Drains the queue whenever the socket can take more.
    async fn write_pending(&self) {
        loop {
            self.wake.notified().await;
            loop {
                let Some(front) = self.pending.borrow().front().cloned() else {
                    break;
                };
                if self.tcp.writable().await.is_err() {
                    self.dead.set(true);
                    return;
                }
                match self.tcp.try_write(&front) {
                    Ok(n) => {
                        let mut pending = self.pending.borrow_mut();
                        if n == front.len() {
                            pending.pop_front();
                        } else {
                            pending[0] = front.slice(n..);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => {
                        self.dead.set(true);
                        return;
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct ClientFrame {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
}

/// A comment in danmaku's field order, so the frame has the same size.
#[derive(Serialize)]
struct Comment<'a> {
    id: &'a str,
    stream_id: &'a str,
    kind: &'static str,
    user: Option<User<'a>>,
    text: &'a str,
    data: Option<()>,
    ts: u64,
}

#[derive(Serialize)]
struct User<'a> {
    id: &'a str,
    name: &'a str,
}

impl Server {
    async fn serve(self: Rc<Self>, tcp: TcpStream) -> anyhow::Result<()> {
        let mut buf = Vec::with_capacity(1024);
        let head_end = loop {
            anyhow::ensure!(
                read_some(&tcp, &mut buf).await? > 0,
                "closed before a request"
            );
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                break end + 4;
            }
            anyhow::ensure!(buf.len() < MAX_HEAD, "request head too long");
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let (stream, token) = target(&head).context("not a stream's WebSocket")?;
        let key = header(&head, "sec-websocket-key").context("no Sec-WebSocket-Key")?;
        let user = token.and_then(|t| self.user_of(&t));
        let conn = Rc::new(Conn {
            tcp,
            pending: RefCell::new(VecDeque::new()),
            wake: Notify::new(),
            dead: Cell::new(false),
        });
        let accept = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        );
        conn.send(&bytes::Bytes::from(accept));
        let viewers = {
            let mut rooms = self.rooms.borrow_mut();
            let room = rooms.entry(stream.clone()).or_default();
            room.push(conn.clone());
            room.len()
        };
        let init = serde_json::json!({
            "type": "init", "stream_id": stream, "comments": [], "viewer_count": viewers,
            "resumed": false, "server": {"pod": "floor", "slot": "blue", "version": "0"},
        });
        conn.send(&text_frame(&init.to_string()));
        let writer = tokio::task::spawn_local({
            let conn = conn.clone();
            async move { conn.write_pending().await }
        });
        let result = self.read_frames(&conn, &stream, user, buf).await;
        writer.abort();
        conn.dead.set(true);
        if let Some(room) = self.rooms.borrow_mut().get_mut(&stream) {
            room.retain(|c| !Rc::ptr_eq(c, &conn));
        }
        result
    }

    async fn read_frames(
        &self,
        conn: &Conn,
        stream: &str,
        user: Option<(String, String)>,
        mut buf: Vec<u8>,
    ) -> anyhow::Result<()> {
        loop {
            while let Some((opcode, payload, used)) = parse_frame(&buf)? {
                buf.drain(..used);
                match opcode {
                    0x1 => self.on_text(conn, stream, user.as_ref(), &payload),
                    0x8 => {
                        conn.send(&bytes::Bytes::from_static(&[0x88, 0x00]));
                        return Ok(());
                    }
                    0x9 => {
                        let mut pong = vec![0x8A, payload.len() as u8];
                        pong.extend_from_slice(&payload);
                        conn.send(&bytes::Bytes::from(pong));
                    }
                    _ => {}
                }
            }
            if read_some(&conn.tcp, &mut buf).await? == 0 {
                return Ok(());
            }
        }
    }

    fn on_text(&self, conn: &Conn, stream: &str, user: Option<&(String, String)>, text: &[u8]) {
        let Ok(ClientFrame {
            kind,
            text,
            reference,
        }) = serde_json::from_slice::<ClientFrame>(text)
        else {
            return;
        };
        match (kind.as_str(), user, text) {
            ("ping", _, _) => conn.send(&text_frame(r#"{"type":"pong"}"#)),
            ("comment", Some((sub, name)), Some(text)) => {
                let id = self.next_id();
                let comment = Comment {
                    id: &id,
                    stream_id: stream,
                    kind: "user",
                    user: Some(User { id: sub, name }),
                    text: &text,
                    data: None,
                    ts: now_ms(),
                };
                let comment = serde_json::to_string(&comment).expect("a comment serializes");
                let frame = text_frame(&format!(r#"{{"type":"comments","comments":[{comment}]}}"#));
                // The point of the floor: one pass, the same bytes, one non-blocking write each.
                let room = self.rooms.borrow().get(stream).cloned().unwrap_or_default();
                for member in &room {
                    member.send(&frame);
                }
                let ack = serde_json::json!({ "type": "ack", "ref": reference, "id": id });
                conn.send(&text_frame(&ack.to_string()));
            }
            _ => {}
        }
    }

    /// The next comment id, `<ms>-<seq>`, increasing as danmaku's.
    fn next_id(&self) -> String {
        let now = now_ms();
        let (ms, seq) = match self.last_id.get() {
            (ms, seq) if ms >= now => (ms, seq + 1),
            _ => (now, 0),
        };
        self.last_id.set((ms, seq));
        format!("{ms}-{seq}")
    }

    /// The poster's `sub` and name from its token (the floor trusts it: it only needs the
    /// name to build a frame of danmaku's size).
    fn user_of(&self, token: &str) -> Option<(String, String)> {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_required_spec_claims(&["sub"]);
        let key = jsonwebtoken::DecodingKey::from_secret(self.secret.as_bytes());
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .ok()?
            .claims;
        let name = claims.name.unwrap_or_else(|| claims.sub.clone());
        Some((claims.sub, name))
    }
}

/// Reads what the socket has into `buf`; 0 at the end of the stream.
async fn read_some(tcp: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        tcp.readable().await?;
        match tcp.try_read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The stream of `GET /v1/streams/{id}/ws[?access_token=…]`, and the token.
fn target(head: &str) -> Option<(String, Option<String>)> {
    let path = head.lines().next()?.split(' ').nth(1)?;
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let stream = path.strip_prefix("/v1/streams/")?.strip_suffix("/ws")?;
    let token = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("access_token="))
        .map(str::to_owned);
    Some((stream.to_owned(), token))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A server text frame (unmasked) around `text`.
fn text_frame(text: &str) -> bytes::Bytes {
    let len = text.len();
    let mut out = Vec::with_capacity(len + 10);
    out.push(0x81);
    match len {
        0..=125 => out.push(len as u8),
        126..=65_535 => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(text.as_bytes());
    bytes::Bytes::from(out)
}

/// One client frame at the front of `buf`: its opcode, unmasked payload and length in the
/// buffer, or `None` until it is all there.
fn parse_frame(buf: &[u8]) -> anyhow::Result<Option<(u8, Vec<u8>, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let opcode = buf[0] & 0x0f;
    anyhow::ensure!(buf[1] & 0x80 != 0, "client frames are masked");
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 => anyhow::bail!("client frame too long"),
        126 => return Ok(None),
        len => (len as usize, 2),
    };
    anyhow::ensure!(len <= MAX_CLIENT_FRAME, "client frame too long");
    if buf.len() < at + 4 + len {
        return Ok(None);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    at += 4;
    let payload = buf[at..at + len]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    Ok(Some((opcode, payload, at + len)))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_closed_before_its_request_ends_its_task() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(TcpStream::connect(addr).await.unwrap());
        let (tcp, _) = listener.accept().await.unwrap();
        let server = Rc::new(Server {
            secret: "s".into(),
            rooms: RefCell::new(HashMap::new()),
            last_id: Cell::new((0, 0)),
        });
        let served = tokio::time::timeout(std::time::Duration::from_secs(5), server.serve(tcp));
        assert!(served.await.expect("it ends").is_err());
    }

    #[test]
    fn frames_and_requests() {
        assert_eq!(&text_frame("hi")[..], b"\x81\x02hi");
        assert_eq!(&text_frame(&"x".repeat(200))[..4], &[0x81, 126, 0, 200]);
        let masked = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
        assert_eq!(
            parse_frame(&masked).unwrap(),
            Some((1, b"hi".to_vec(), masked.len()))
        );
        assert_eq!(parse_frame(&masked[..5]).unwrap(), None);
        let head = "GET /v1/streams/s1/ws?access_token=t HTTP/1.1\r\nSec-WebSocket-Key: k\r\n\r\n";
        assert_eq!(target(head), Some(("s1".into(), Some("t".into()))));
        assert_eq!(header(head, "sec-websocket-key"), Some("k"));
    }
}
