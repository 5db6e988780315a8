//! Abuse at the HTTP and connection level: requests that never finish, more sockets than the
//! process has files, oversized request lines, headers and bodies. Most of these run the
//! binary under a low open-file limit (`prlimit`).

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// A plain `GET` on a fresh connection: the status, or why there was none.
async fn get_fresh(base: &str, path: &str) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    client
        .get(format!("{base}{path}"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

/// Everything the server sends until it closes the connection (or `limit` passes): the
/// bytes, and whether it closed.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status and JSON body of one raw HTTP response.
pub fn parse_response(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, body)
}

pub fn assert_error_body(body: &Value, code: &str) {
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_requests_are_closed_in_time_and_livez_answers_throughout() {
    let (_child, base) = spawn_command(
        danmaku_command_with_files(256),
        &[("DANMAKU_HTTP_TIMEOUT_MS", "1500")],
    )
    .await;
    let addr = base.strip_prefix("http://").unwrap().to_owned();
    let unfinished: [&[u8]; 4] = [
        b"",
        b"GET /livez HT",
        b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Half: ",
        b"POST /v1/streams/s/comments HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"kind\":",
    ];
    let started = Instant::now();
    let mut sockets = Vec::new();
    for i in 0..300 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let part = unfinished[i % unfinished.len()];
        if !part.is_empty() {
            // The server may already have closed it to make room.
            let _ = stream.write_all(part).await;
        }
        sockets.push((i % unfinished.len(), stream));
        if i % 50 == 0 {
            assert_eq!(
                get_fresh(&base, "/livez").await,
                Ok(200),
                "after {i} sockets"
            );
        }
    }
    // Until the header timeout has passed, probes keep being answered.
    while started.elapsed() < Duration::from_millis(2000) {
        assert_eq!(get_fresh(&base, "/livez").await, Ok(200));
        assert_eq!(get_fresh(&base, "/readyz").await, Ok(200));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every socket is closed within the timeout (plus slack); a late body got a 408 first.
    let mut timed_out_bodies = 0;
    for (kind, mut stream) in sockets {
        let left = Duration::from_millis(5000).saturating_sub(started.elapsed());
        let (bytes, closed) = read_to_close(&mut stream, left).await;
        assert!(closed, "a socket of kind {kind} is still open");
        if kind == 3 && !bytes.is_empty() {
            let (status, body) = parse_response(&bytes);
            assert_eq!(status, 408);
            assert_error_body(&body, "invalid");
            timed_out_bodies += 1;
        }
    }
    assert!(timed_out_bodies > 0, "no late body was answered");
    assert_eq!(get_fresh(&base, "/livez").await, Ok(200));
}

#[tokio::test]
async fn a_late_body_gets_408_and_a_huge_announced_one_413_at_once() {
    let app = spawn_app_with(|c| c.http_timeout_ms = 500).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /v1/streams/s/comments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SERVICE_TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{{\"kind\":"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let (bytes, closed) = read_to_close(&mut stream, WAIT).await;
    assert!(closed);
    let (status, body) = parse_response(&bytes);
    assert_eq!(status, 408);
    assert_error_body(&body, "invalid");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /v1/streams/s/comments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SERVICE_TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let (bytes, _) = read_to_close(&mut stream, WAIT).await;
    let (status, body) = parse_response(&bytes);
    assert_eq!(status, 413);
    assert_error_body(&body, "invalid");
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

/// A WebSocket handshake on `ws_base`: the socket (after `init`), or the refusal's status and
/// body.
async fn handshake(url: &str) -> Result<WsClient, (u16, Value)> {
    use tokio_tungstenite::tungstenite;
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("an answer to the handshake in time")
    {
        Ok((ws, _)) => {
            let mut client = WsClient { ws };
            assert_eq!(client.next_json().await["type"], "init");
            Ok(client)
        }
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// Connects viewers to `url` until one is refused: the viewers and the refusal.
async fn fill(url: &str, at_most: usize) -> (Vec<WsClient>, (u16, Value)) {
    let mut viewers = Vec::new();
    loop {
        assert!(viewers.len() <= at_most, "never refused");
        match handshake(url).await {
            Ok(viewer) => viewers.push(viewer),
            Err(refusal) => return (viewers, refusal),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let mut command = tokio::process::Command::new("prlimit");
    command.args(["--nofile=128:300", "--", env!("CARGO_BIN_EXE_danmaku")]);
    let (_child, base) = spawn_command(clean_command(command), &[]).await;
    let url = format!("{}/v1/streams/raised/ws", base.replace("http://", "ws://"));
    let (viewers, refusal) = fill(&url, 300).await;
    // 300 files less 64 of headroom (128 would have left 64).
    assert_eq!(viewers.len(), 236);
    assert_eq!(refusal.0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_fill_the_open_file_limit_less_headroom_then_get_503() {
    let (_child, base) = spawn_command(
        danmaku_command_with_files(256),
        &[("DANMAKU_SERVICE_TOKENS", SERVICE_TOKEN)],
    )
    .await;
    let url = format!("{}/v1/streams/full/ws", base.replace("http://", "ws://"));
    let (mut viewers, refusal) = fill(&url, 256).await;
    // 256 files less max(64, 5 %) of headroom.
    assert_eq!(viewers.len(), 192);
    assert_eq!(refusal.0, 503);
    assert_error_body(&refusal.1, "unavailable");
    // Refused at once every time, and the rest of the instance keeps answering.
    for _ in 0..20 {
        let started = Instant::now();
        let (status, _) = handshake(&url).await.err().expect("refused");
        assert_eq!(status, 503);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    assert_eq!(get_fresh(&base, "/livez").await, Ok(200));
    let posted = reqwest::Client::new()
        .post(format!("{base}/v1/streams/full/comments"))
        .bearer_auth(SERVICE_TOKEN)
        .json(&serde_json::json!({"kind": "system", "text": "still here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    for viewer in viewers.iter_mut().step_by(37) {
        assert_eq!(viewer.comments(1).await[0]["text"], "still here");
    }
    // Room again once some leave.
    viewers.truncate(180);
    eventually("a handshake to be accepted again", || async {
        handshake(&url).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_client_that_sends_a_whole_oversized_body_before_reading_gets_the_413() {
    let app = spawn_app().await;
    let body = format!(
        "{{\"kind\":\"system\",\"text\":\"{}\"}}",
        "x".repeat(2 << 20)
    );
    for attempt in 0..5 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST /v1/streams/big/comments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SERVICE_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // In pieces, as a client on a real network would: the answer is ready long before
        // the last piece is written.
        for piece in body.as_bytes().chunks(64 * 1024) {
            let written = stream.write_all(piece).await;
            assert!(written.is_ok(), "attempt {attempt}: {written:?}");
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let (bytes, closed) = read_to_close(&mut stream, WAIT).await;
        assert!(closed, "attempt {attempt}");
        let (status, answer) = parse_response(&bytes);
        assert_eq!(status, 413, "attempt {attempt}");
        assert_error_body(&answer, "invalid");
    }
    // The instance is fine afterwards.
    assert_eq!(app.post_system("big", "small").await["text"], "small");
}

#[tokio::test]
async fn requests_too_large_to_parse_get_the_error_object() {
    let app = spawn_app().await;
    let many_headers: String = (0..150).map(|i| format!("X-{i}: y\r\n")).collect();
    let cases = [
        (
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)),
            414,
        ),
        (
            format!(
                "GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "b".repeat(500_000)
            ),
            431,
        ),
        (format!("GET /livez HTTP/1.1\r\n{many_headers}\r\n"), 431),
        ("NOT\u{1} HTTP AT ALL\r\n\r\n".to_owned(), 400),
    ];
    for (request, expected) in cases {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        // The server may answer and close before it has read everything.
        let _ = stream.write_all(request.as_bytes()).await;
        let (bytes, closed) = read_to_close(&mut stream, WAIT).await;
        assert!(closed);
        let (status, body) = parse_response(&bytes);
        assert_eq!(status, expected, "{}", String::from_utf8_lossy(&bytes));
        assert_error_body(&body, "invalid");
    }
    // A WebSocket still upgrades through the same path.
    app.viewer("after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_never_finish_do_not_lock_out_probes() {
    let (_child, base) = spawn_command(
        danmaku_command_with_files(256),
        &[("DANMAKU_HTTP_TIMEOUT_MS", "5000")],
    )
    .await;
    let addr = base.strip_prefix("http://").unwrap().to_owned();
    let mut sockets = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let _ = stream
            .write_all(
                b"POST /v1/streams/s/comments HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
            )
            .await;
        sockets.push(stream);
    }
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(get_fresh(&base, "/livez").await, Ok(200));
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
