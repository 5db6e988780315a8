//! `spawn_app()` and clients that talk to it like real apps do.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use danmaku::app::Parts;
use danmaku::auth::Claims;
use danmaku::broker::{Broker, NewComment, Route};
use danmaku::domain::{CommentKind, CommentText, StreamId, User, UserId};
use danmaku::{App, Config};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const JWT_SECRET: &str = "test-secret-of-at-least-32-bytes";
pub const SERVICE_TOKEN: &str = "svc-token";
/// How long any single expected event may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestApp {
    pub addr: SocketAddr,
    pub state: Parts,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The app with test defaults: JWT and service tokens set, generous rate limits, a short
/// drain and linger.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.jwt_secret = Some(JWT_SECRET.into());
    config.service_tokens = Some(danmaku::config::List(vec![SERVICE_TOKEN.into()]));
    config.rate_per_sec = 1000.0;
    config.rate_burst = 1000.0;
    config.drain_ms = 1000;
    config.unsubscribe_linger_ms = 100;
    config.pod_name = "test-pod".into();
    // Every test shares this process's CPU: only the CPU gate's own tests turn it on.
    config.cpu_ready_threshold = 1.0;
    configure(&mut config);
    let app = App::build(config).await.expect("the app builds");
    let addr = app.local_addr();
    let state = app.parts().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        state,
        http: reqwest::Client::new(),
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, stream: &str, query: &str) -> String {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        format!("ws://{}/v1/streams/{stream}/ws{q}", self.addr)
    }

    /// A viewer token for `sub`, valid for an hour, moderating `moderates`.
    pub fn token(&self, sub: &str, moderates: &[&str]) -> String {
        self.token_expiring(sub, moderates, 3600)
    }

    pub fn token_expiring(&self, sub: &str, moderates: &[&str], exp_in_secs: i64) -> String {
        let now = danmaku::domain::now_ms() / 1000;
        let claims = Claims {
            sub: sub.into(),
            name: Some(format!("{sub}-name")),
            exp: now.saturating_add_signed(exp_in_secs),
            moderates: moderates.iter().map(|s| s.to_string()).collect(),
            roles: Vec::new(),
        };
        self.state
            .auth
            .mint(&claims)
            .expect("the test app has a JWT secret")
    }

    /// A viewer token with any header and claims, signed with the test app's HS256 secret.
    pub fn sign(&self, header: jsonwebtoken::Header, claims: Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    /// Connects and reads `init`.
    pub async fn viewer(&self, stream: &str) -> (WsClient, Value) {
        self.viewer_with(stream, "").await
    }

    /// Connects as `sub` (token in `access_token`) and reads `init`.
    pub async fn user(&self, stream: &str, sub: &str) -> (WsClient, Value) {
        self.viewer_with(stream, &format!("access_token={}", self.token(sub, &[])))
            .await
    }

    pub async fn viewer_with(&self, stream: &str, query: &str) -> (WsClient, Value) {
        let mut client = self
            .connect(stream, query, &[])
            .await
            .unwrap_or_else(|(s, b)| panic!("refused {s}: {b}"));
        let init = client.next_json().await;
        assert_eq!(init["type"], "init", "{init}");
        (client, init)
    }

    /// A handshake with extra headers: the client, or the refusal's status and JSON body.
    pub async fn connect(
        &self,
        stream: &str,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, (u16, Value)> {
        let mut request = self.ws_url(stream, query).into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("handshake in time")
        {
            Ok((ws, _)) => Ok(WsClient { ws }),
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_deref()
                    .map(|b| serde_json::from_slice(b).unwrap())
                    .unwrap_or(Value::Null);
                Err((status, body))
            }
            Err(e) => panic!("handshake failed: {e}"),
        }
    }

    pub async fn refused(
        &self,
        stream: &str,
        query: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        match self.connect(stream, query, headers).await {
            Ok(_) => panic!("the handshake was accepted"),
            Err(refusal) => refusal,
        }
    }

    /// `POST /v1/streams/{stream}/comments` with the service token.
    pub async fn post(&self, stream: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/v1/streams/{stream}/comments")))
            .bearer_auth(SERVICE_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Posts a system comment and returns it.
    pub async fn post_system(&self, stream: &str, text: &str) -> Value {
        let response = self
            .post(stream, json!({"kind": "system", "text": text}))
            .await;
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["comment"].clone()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(SERVICE_TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name_and_labels)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .unwrap_or_else(|| panic!("no {name_and_labels} in /metrics:\n{text}"))
            .parse()
            .unwrap()
    }

    /// Triggers shutdown; returns how long `run` took to return.
    pub async fn shutdown(mut self) -> Duration {
        let started = Instant::now();
        let _ = self.shutdown.take().unwrap().send(());
        let handle = self.handle.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("run returns")
            .unwrap()
            .unwrap();
        started.elapsed()
    }

    /// Starts shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) -> JoinHandle<anyhow::Result<()>> {
        let _ = self.shutdown.take().unwrap().send(());
        self.handle.take().unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    Code(u16),
    /// The TCP connection ended without a close frame.
    Dropped,
}

impl WsClient {
    pub async fn send_json(&mut self, value: Value) {
        self.ws
            .send(Message::Text(value.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// The next JSON frame, skipping WebSocket pings and pongs. Panics on close or timeout.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("the connection is open")
                .expect("a valid frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// The next frame of `kind`, skipping the pushes that arrive on their own clock:
    /// `viewers`, and `comments` unless those are what is asked for.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next_json().await;
            if frame["type"] == kind {
                return frame;
            }
            assert!(
                frame["type"] == "viewers" || frame["type"] == "comments",
                "expected {kind}, got {frame}"
            );
        }
    }

    /// Comments received until `n` have arrived (across `comments` frames).
    pub async fn comments(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let frame = self.next_of("comments").await;
            out.extend(frame["comments"].as_array().unwrap().iter().cloned());
        }
        out
    }

    /// Reads until the server closes; frames before the close are ignored.
    pub async fn closed(&mut self) -> Closed {
        self.closed_within(WAIT * 3).await
    }

    pub async fn closed_within(&mut self, limit: Duration) -> Closed {
        let deadline = Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline.into(), self.ws.next())
                .await
                .expect("closed in time");
            match next {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map_or(Closed::Code(1005), |f| Closed::Code(u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Closed::Dropped,
            }
        }
    }

    /// Asserts no JSON frame other than `viewers` arrives within `window`.
    pub async fn quiet_for(&mut self, window: Duration) {
        let deadline = Instant::now() + window;
        while let Ok(next) = tokio::time::timeout_at(deadline.into(), self.ws.next()).await {
            match next {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(frame["type"], "viewers", "unexpected frame {frame}");
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
    }
}

/// Polls `check` until it holds or [`WAIT`] passes: a condition, never a sleep.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `danmaku` binary with none of the test process's `DANMAKU_*` or `OTEL_*` variables.
pub fn danmaku_command() -> tokio::process::Command {
    clean_command(tokio::process::Command::new(env!("CARGO_BIN_EXE_danmaku")))
}

/// The binary as [`danmaku_command`], under an open-file limit of `files` (util-linux's
/// `prlimit`, soft and hard).
pub fn danmaku_command_with_files(files: u64) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("prlimit");
    command.args([
        &format!("--nofile={files}:{files}"),
        "--",
        env!("CARGO_BIN_EXE_danmaku"),
    ]);
    clean_command(command)
}

/// `command` without the test process's `DANMAKU_*` or `OTEL_*` variables, logging warnings.
pub fn clean_command(mut command: tokio::process::Command) -> tokio::process::Command {
    for (key, _) in std::env::vars() {
        if key.starts_with("DANMAKU_") || key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    command
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// Starts the binary on a free 127.0.0.1 port with `envs`; returns it and its base URL
/// (`http://127.0.0.1:<port>`), read from the line it prints once listening.
pub async fn spawn_binary(envs: &[(&str, &str)]) -> (tokio::process::Child, String) {
    spawn_command(danmaku_command(), envs).await
}

/// [`spawn_binary`] for a command of [`danmaku_command`]'s kind.
pub async fn spawn_command(
    mut command: tokio::process::Command,
    envs: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    command
        .env("DANMAKU_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let base = line
        .strip_prefix("danmaku listening on ")
        .expect(&line)
        .to_owned();
    (child, base)
}

/// Publishes through the app's own broker, as a service or a viewer would (without
/// HTTP's per-request cost, so a test can keep up 200 comments a second).
pub async fn publish(broker: &Broker, stream: &str, kind: CommentKind, author: &str, text: &str) {
    let user = (kind == CommentKind::User).then(|| User {
        id: UserId::parse(author).unwrap(),
        name: author.into(),
    });
    broker
        .publish(NewComment {
            stream: StreamId::parse(stream).unwrap(),
            kind,
            user,
            text: CommentText::parse(text.into(), 200).unwrap(),
            data: None,
            media_ts: None,
            by_moderator: false,
            dedup: None,
            rate: None,
            by_service: true,
            roles: Vec::new(),
            route: Route::Public,
        })
        .await
        .unwrap();
}
