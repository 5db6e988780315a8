//! The least HTTP/1.1 client the service API needs: a request (a JSON body when it has one)
//! with a bearer token on one keep-alive connection from a chosen source address, one request
//! at a time, and the status and body read back (`Content-Length` or chunked).
//!
//! Posters send system comments with it (`POST /v1/streams/{id}/comments`); the soak's
//! moderator deletes, bans and lists with it. A request that fails on a kept-alive connection
//! (the server closed it while idle) is sent once more on a new one; the posters make that safe
//! with an idempotency key, and the moderator's requests are idempotent. It imports nothing
//! of the crate.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// Longest wait for one request's answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read (the service API's answers are a few hundred bytes; a ten-
/// minute replay window of a busy stream, megabytes).
const MAX_BODY: usize = 64 << 20;

/// One kept-alive connection to an instance.
pub(crate) struct Client {
    addr: SocketAddr,
    source: Ipv4Addr,
    host: String,
    conn: Option<BufReader<TcpStream>>,
}

/// A response: its status and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Client {
    /// A client of the instance at `base` (`ws://ip:port` or `http://ip:port`), connecting
    /// from `source`.
    pub(crate) fn new(base: &str, source: Ipv4Addr) -> anyhow::Result<Self> {
        let host = base
            .trim_start_matches("ws://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let addr: SocketAddr = host
            .parse()
            .with_context(|| format!("{host}: instances are given as ws://<ip>:<port>"))?;
        Ok(Self {
            addr,
            source,
            host: host.to_owned(),
            conn: None,
        })
    }

    /// `POST path` with `body` as JSON and `Authorization: Bearer <bearer>`.
    pub(crate) async fn post_json(
        &mut self,
        path: &str,
        bearer: &str,
        body: &[u8],
    ) -> anyhow::Result<Response> {
        self.request("POST", path, Some(bearer), Some(body)).await
    }

    /// `method path`, with `Authorization: Bearer <bearer>` and `body` as JSON when given.
    pub(crate) async fn request(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> anyhow::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(bearer) = bearer {
            head.push_str(&format!("Authorization: Bearer {bearer}\r\n"));
        }
        if let Some(body) = body {
            head.push_str("Content-Type: application/json\r\n");
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut head = head.into_bytes();
        head.extend_from_slice(body.unwrap_or_default());
        let reused = self.conn.is_some();
        match self.exchange(&head).await {
            Ok(response) => Ok(response),
            Err(_) if reused => {
                // The kept-alive connection may have been closed by the server meanwhile.
                self.conn = None;
                self.exchange(&head).await
            }
            Err(e) => Err(e),
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<Response> {
        let attempt = async {
            if self.conn.is_none() {
                let socket = TcpSocket::new_v4()?;
                socket
                    .bind(SocketAddr::new(self.source.into(), 0))
                    .with_context(|| format!("bind {}", self.source))?;
                let tcp = socket.connect(self.addr).await.context("connect")?;
                tcp.set_nodelay(true)?;
                self.conn = Some(BufReader::new(tcp));
            }
            let conn = self.conn.as_mut().expect("connected above");
            conn.get_mut().write_all(request).await?;
            read_response(conn).await
        };
        let result = tokio::time::timeout(TIMEOUT, attempt)
            .await
            .context("timed out")
            .and_then(|r| r);
        match result {
            Ok((response, keep_alive)) => {
                if !keep_alive {
                    self.conn = None;
                }
                Ok(response)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

/// Reads one response; also whether the connection may be used again.
async fn read_response(conn: &mut BufReader<TcpStream>) -> anyhow::Result<(Response, bool)> {
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        bail!("connection closed before the response");
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP status line: {line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut keep_alive = line.starts_with("HTTP/1.1");
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            bail!("connection closed in the response head");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = Some(value.parse::<usize>().context("Content-Length")?),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => keep_alive = !value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line).await?;
            let size = line.trim_end().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size.trim(), 16)
                .with_context(|| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    line.clear();
                    if conn.read_line(&mut line).await? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            if body.len() + size > MAX_BODY {
                bail!("response body over {MAX_BODY} bytes");
            }
            let start = body.len();
            body.resize(start + size, 0);
            conn.read_exact(&mut body[start..]).await?;
            let mut crlf = [0u8; 2];
            conn.read_exact(&mut crlf).await?;
        }
    } else if let Some(length) = length {
        if length > MAX_BODY {
            bail!("response body over {MAX_BODY} bytes");
        }
        body.resize(length, 0);
        conn.read_exact(&mut body).await?;
    } else if status != 204 && status != 304 && !(100..200).contains(&status) {
        // No framing: the body runs to the end of the connection.
        conn.take(MAX_BODY as u64).read_to_end(&mut body).await?;
        keep_alive = false;
    }
    Ok((Response { status, body }, keep_alive))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each request read on one connection with the next canned
    /// response, and reports the requests it read.
    async fn serve(
        responses: Vec<&'static str>,
    ) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut requests = Vec::new();
            let (tcp, _) = listener.accept().await.unwrap();
            let mut conn = BufReader::new(tcp);
            for response in responses {
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    conn.read_line(&mut line).await.unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                conn.read_exact(&mut body).await.unwrap();
                requests.push(head + &String::from_utf8(body).unwrap());
                conn.get_mut().write_all(response.as_bytes()).await.unwrap();
            }
            requests
        });
        (addr, task)
    }

    #[tokio::test]
    async fn posts_on_one_kept_alive_connection() {
        let (addr, server) = serve(vec![
            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{\"comment\":1}",
            "HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
        ])
        .await;
        let mut client = Client::new(&format!("ws://{addr}"), Ipv4Addr::LOCALHOST).unwrap();
        let first = client
            .post_json("/v1/streams/s/comments", "tok", br#"{"kind":"gift"}"#)
            .await
            .unwrap();
        assert_eq!(first.status, 201);
        assert_eq!(first.body, br#"{"comment":1}"#);
        let second = client.post_json("/x", "tok", b"{}").await.unwrap();
        assert_eq!(second.status, 401);
        assert_eq!(second.body, br#"{"a":1}"#);
        let requests = server.await.unwrap();
        assert_eq!(requests.len(), 2, "both on the one connection");
        assert!(requests[0].starts_with("POST /v1/streams/s/comments HTTP/1.1\r\n"));
        assert!(requests[0].contains("Authorization: Bearer tok\r\n"));
        assert!(requests[0].ends_with("\r\n\r\n{\"kind\":\"gift\"}"));
    }
}
