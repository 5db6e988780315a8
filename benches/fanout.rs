//! Fan-out micro-benchmarks: one new comment delivered to N local sockets of one stream.
//!
//! - `hub_fanout`: N memberships joined on a [`Hub`] with the embedded broker. One
//!   iteration dispatches one comment and has every membership take it (`try_recv`), build
//!   its frame (`frame_after` with its last seen id), call `handed_to_one` and count the
//!   delivery: everything a connection does per comment except the socket write.
//! - `socket_fanout`: the same, and each of the N receivers writes the shared frame to a
//!   real WebSocket (tokio-tungstenite over a `tokio::io::duplex` pair). One iteration
//!   dispatches one comment and waits until all N clients have read its frame, so the
//!   figure includes the client side's read of each frame too.
//!
//! The connection loop of `src/ws/connection.rs` runs over axum's `WebSocket`, which only
//! an HTTP upgrade can make, so `serve` and `deliver` below mirror `Connection::serve`
//! and `Connection::deliver` over tokio-tungstenite (same socket buffer sizes, same write
//! timeout around each batch, same `select!` branches); keep them in step with it.
//!
//! `Throughput::Elements(N)`: the elements/s figures are deliveries per second.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use danmaku::broker::{Broker, BrokerEvent};
use danmaku::config::Config;
use danmaku::domain::wire::SharedFrame;
use danmaku::domain::{Comment, CommentId, CommentKind, StreamId, User, now_ms};
use danmaku::hub::{Hub, Membership, RoomEvent};
use danmaku::metrics::Metrics;
use danmaku::telemetry::{Latencies, Telemetry};
use danmaku::ws::{MAX_CLIENT_FRAME, MAX_WRITE_BUFFER, READ_BUFFER, WRITE_BUFFER};
use futures_util::{SinkExt, StreamExt};
use tokio::io::DuplexStream;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::task::JoinHandle;
use tokio::time::sleep_until;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;

/// Local sockets of the one stream.
const SIZES: [usize; 4] = [1, 100, 1_000, 10_000];
/// Comments built ahead of a timed run, outside the timing.
const CHUNK: u64 = 256;
/// `src/ws/connection.rs`: most frames written per flush, longest write.
const MAX_BATCH: usize = 64;
const MAX_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes each direction of a duplex pair buffers (a kernel socket buffer stands in).
const DUPLEX_BUFFER: usize = 64 * 1024;
/// Longest wait for one comment to reach every client before the benchmark fails (a
/// lost delivery must not hang `cargo test`).
const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);

/// A hub with the embedded broker and the real telemetry instruments, as `App::build`
/// wires them.
struct Node {
    config: Config,
    hub: Hub,
    broker: Broker,
    metrics: Arc<Metrics>,
    background: CancellationToken,
    _telemetry: Telemetry,
}

impl Node {
    /// Must run inside a Tokio runtime (the hub's background tasks).
    async fn start() -> Self {
        let mut config = Config::defaults();
        config.redis_url = None;
        config.pod_name = "bench".into();
        config.validate().expect("a valid configuration");
        let telemetry = Telemetry::new(&config).expect("telemetry starts");
        let metrics = Arc::new(Metrics::new(Latencies::new(&telemetry.meter())));
        let hub = Hub::new(&config, metrics.clone());
        let background = CancellationToken::new();
        let broker = Broker::connect(&config, hub.sink(), metrics.clone(), background.clone())
            .await
            .expect("the embedded broker starts");
        hub.start(broker.clone(), &config, background.clone());
        Self {
            config,
            hub,
            broker,
            metrics,
            background,
            _telemetry: telemetry,
        }
    }

    async fn join(&self, stream: &StreamId) -> Membership {
        self.hub
            .join(stream, &self.broker)
            .await
            .expect("the stream subscribes")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.background.cancel();
    }
}

/// New comments on one stream, as the broker would deliver them: a fresh, increasing id
/// each, `ts` now (so the latency histograms record realistic values).
struct Comments {
    stream: StreamId,
    base_ms: u64,
    seq: u64,
}

impl Comments {
    fn new(stream: &StreamId) -> Self {
        Self {
            stream: stream.clone(),
            base_ms: now_ms(),
            seq: 0,
        }
    }

    fn next_event(&mut self) -> BrokerEvent {
        self.seq += 1;
        BrokerEvent::Comments {
            stream: self.stream.clone(),
            comments: vec![Comment {
                id: CommentId::new(self.base_ms, self.seq),
                stream_id: self.stream.clone(),
                kind: CommentKind::User,
                user: Some(User {
                    id: "user-4242".into(),
                    name: "a viewer".into(),
                }),
                text: format!("comment number {} with a typical length of text", self.seq),
                data: None,
                ts: now_ms(),
            }],
        }
    }

    fn chunk(&mut self, n: u64) -> Vec<BrokerEvent> {
        (0..n).map(|_| self.next_event()).collect()
    }
}

/// Runs `iters` iterations of `one` over comments built in chunks outside the timing;
/// returns the time spent in `one`.
fn timed_chunks(iters: u64, comments: &mut Comments, mut one: impl FnMut(BrokerEvent)) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let chunk = comments.chunk(left.min(CHUNK));
        left -= chunk.len() as u64;
        let start = Instant::now();
        for event in chunk {
            one(event);
        }
        total += start.elapsed();
    }
    total
}

// === hub_fanout ===

/// A connection without its socket: its membership and the newest id it has been sent.
struct Receiver {
    membership: Membership,
    last_id: Option<CommentId>,
}

impl Receiver {
    /// What `Connection::deliver` does with each queued event, minus the socket write.
    fn drain(&mut self, metrics: &Metrics) {
        let mut comments = 0u64;
        loop {
            match self.membership.try_recv() {
                Ok(RoomEvent::Comments(batch)) => {
                    let frame = batch.frame_after(self.last_id);
                    batch.handed_to_one(metrics);
                    if let Some((frame, n)) = frame {
                        self.last_id = Some(batch.last);
                        comments += n as u64;
                        black_box(frame);
                    }
                }
                Ok(RoomEvent::Frame(frame)) => {
                    black_box(frame);
                }
                Ok(event @ (RoomEvent::Banned(_) | RoomEvent::Resync)) => {
                    panic!("unexpected room event {event:?}")
                }
                Err(TryRecvError::Empty) => break,
                Err(error) => panic!("a membership fell behind: {error}"),
            }
        }
        metrics.delivered(comments);
    }
}

fn hub_fanout(c: &mut Criterion) {
    // Current-thread: the hub's background tasks (viewer pushes, rate pruning, the
    // subscription manager) run only during setup, so they add no noise to the timing.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("hub_fanout");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in SIZES {
        let stream = StreamId::parse("bench-hub").expect("a valid stream id");
        let (node, mut receivers) = rt.block_on(async {
            let node = Node::start().await;
            let mut receivers = Vec::with_capacity(n);
            for _ in 0..n {
                receivers.push(Receiver {
                    membership: node.join(&stream).await,
                    last_id: None,
                });
            }
            (node, receivers)
        });
        let mut comments = Comments::new(&stream);
        // False when a filter on the command line skipped this benchmark.
        let mut ran = false;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            ran = true;
            b.iter_custom(|iters| {
                timed_chunks(iters, &mut comments, |event| {
                    node.hub.dispatch(event);
                    for receiver in &mut receivers {
                        receiver.drain(&node.metrics);
                    }
                })
            });
        });
        assert!(
            !ran || receivers.iter().all(|r| r.last_id.is_some()),
            "every membership received the comments"
        );
        rt.block_on(async move {
            drop(receivers);
            drop(node);
        });
    }
    group.finish();
}

// === socket_fanout ===

/// A text frame of the shared bytes, without a copy or a UTF-8 check: what axum's
/// `Message::Text(Utf8Bytes)` becomes inside its `WebSocket` (tungstenite's `write` turns
/// `Message::Text` into exactly this frame).
fn text(frame: SharedFrame) -> Message {
    Message::Frame(Frame::message(
        Bytes::from(frame),
        OpCode::Data(Data::Text),
        true,
    ))
}

/// The server side's socket configuration of `src/ws/mod.rs`.
fn server_socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(MAX_CLIENT_FRAME))
        .max_frame_size(Some(MAX_CLIENT_FRAME))
}

/// The viewers' side: tungstenite zeroes its whole read buffer before every read (128 KiB
/// by default), which would make the clients' reads, not the server, the figure.
fn client_socket_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_BUFFER)
}

type Socket = WebSocketStream<DuplexStream>;

/// The drain signals of `Lifecycle`.
#[derive(Clone)]
struct Lifecycle {
    closing: CancellationToken,
    draining: CancellationToken,
}

/// Mirrors `Connection::serve` after `init`: the same `select!` over the drain signals,
/// the client's frames, the room's events and the ping/idle timer.
async fn serve(
    mut socket: Socket,
    mut membership: Membership,
    metrics: Arc<Metrics>,
    lifecycle: Lifecycle,
    idle_timeout: Duration,
) {
    let write_timeout = MAX_WRITE_TIMEOUT.min(idle_timeout);
    let ping_every = idle_timeout / 3;
    let mut last_seen = Instant::now();
    let timer = sleep_until((last_seen + ping_every).into());
    tokio::pin!(timer);
    let far_future = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let hint = sleep_until(far_future);
    tokio::pin!(hint);
    let mut last_id = None;
    loop {
        tokio::select! {
            biased;
            _ = lifecycle.closing.cancelled() => return,
            // The real loop schedules a `reconnect` hint here; nothing drains in a run.
            _ = lifecycle.draining.cancelled() => return,
            () = &mut hint => return,
            message = socket.next() => {
                last_seen = Instant::now();
                match message {
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
            event = membership.recv() => {
                let event = match event {
                    Ok(event) => event,
                    Err(RecvError::Lagged(missed)) => panic!("a socket fell behind by {missed}"),
                    Err(RecvError::Closed) => return,
                };
                let delivered = deliver(
                    &mut socket,
                    &mut membership,
                    &mut last_id,
                    &metrics,
                    write_timeout,
                    event,
                )
                .await;
                if !delivered {
                    return;
                }
            }
            () = &mut timer => {
                let now = Instant::now();
                if now.duration_since(last_seen) >= idle_timeout {
                    return;
                }
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
                let next = (now + ping_every).min(last_seen + idle_timeout);
                timer.as_mut().reset(next.into());
            }
        }
    }
}

/// Mirrors `Connection::deliver`: writes `first` and whatever else the room has queued
/// (up to [`MAX_BATCH`] frames) with one flush, under the write timeout. False when the
/// connection would close.
async fn deliver(
    socket: &mut Socket,
    membership: &mut Membership,
    last_id: &mut Option<CommentId>,
    metrics: &Metrics,
    write_timeout: Duration,
    first: RoomEvent,
) -> bool {
    let mut comments = 0u64;
    let mut frames = 0usize;
    let mut next = Some(first);
    let written = tokio::time::timeout(write_timeout, async {
        while let Some(event) = next.take() {
            match event {
                RoomEvent::Comments(batch) => {
                    let frame = batch.frame_after(*last_id);
                    batch.handed_to_one(metrics);
                    if let Some((frame, n)) = frame {
                        *last_id = Some(batch.last);
                        comments += n as u64;
                        frames += 1;
                        socket.feed(text(frame)).await.map_err(|_| ())?;
                    }
                }
                RoomEvent::Frame(frame) => {
                    frames += 1;
                    socket.feed(text(frame)).await.map_err(|_| ())?;
                }
                RoomEvent::Resync | RoomEvent::Banned(_) => return Err(()),
            }
            if frames >= MAX_BATCH {
                break;
            }
            next = match membership.try_recv() {
                Ok(event) => Some(event),
                Err(TryRecvError::Empty | TryRecvError::Closed) => None,
                Err(TryRecvError::Lagged(missed)) => panic!("a socket fell behind by {missed}"),
            };
        }
        socket.flush().await.map_err(|_| ())
    })
    .await;
    metrics.delivered(comments);
    matches!(written, Ok(Ok(())))
}

/// Counts down the clients yet to read the current comment's frame.
struct Countdown {
    remaining: AtomicUsize,
    done: Notify,
}

impl Countdown {
    fn one_read(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }
}

/// A viewer: reads frames until the server closes, counting each text frame.
async fn client(mut socket: Socket, countdown: Arc<Countdown>) {
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(frame) = message {
            debug_assert!(frame.as_str().starts_with(r#"{"type":"comments""#));
            black_box(frame);
            countdown.one_read();
        }
    }
}

/// N socket pairs on one stream, their server tasks and client tasks.
struct Sockets {
    node: Arc<Node>,
    stream: StreamId,
    n: usize,
    countdown: Arc<Countdown>,
    lifecycle: Lifecycle,
    tasks: Vec<JoinHandle<()>>,
}

impl Sockets {
    async fn start(n: usize) -> Self {
        let node = Arc::new(Node::start().await);
        let stream = StreamId::parse("bench-sockets").expect("a valid stream id");
        let countdown = Arc::new(Countdown {
            remaining: AtomicUsize::new(0),
            done: Notify::new(),
        });
        let lifecycle = Lifecycle {
            closing: CancellationToken::new(),
            draining: CancellationToken::new(),
        };
        let idle_timeout = node.config.idle_timeout();
        let mut tasks = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let (server_io, client_io) = tokio::io::duplex(DUPLEX_BUFFER);
            let server = WebSocketStream::from_raw_socket(
                server_io,
                Role::Server,
                Some(server_socket_config()),
            )
            .await;
            let client_socket = WebSocketStream::from_raw_socket(
                client_io,
                Role::Client,
                Some(client_socket_config()),
            )
            .await;
            let membership = node.join(&stream).await;
            tasks.push(tokio::spawn(serve(
                server,
                membership,
                node.metrics.clone(),
                lifecycle.clone(),
                idle_timeout,
            )));
            tasks.push(tokio::spawn(client(client_socket, countdown.clone())));
        }
        Self {
            node,
            stream,
            n,
            countdown,
            lifecycle,
            tasks,
        }
    }

    /// Dispatches each comment from a task on the runtime (as the broker does, from the
    /// publishing connection's task) and waits until every client has read its frame.
    async fn run(&self, events: Vec<BrokerEvent>) -> Duration {
        let (node, countdown, n) = (self.node.clone(), self.countdown.clone(), self.n);
        let driver = tokio::spawn(async move {
            let start = Instant::now();
            for event in events {
                countdown.remaining.store(n, Ordering::Release);
                node.hub.dispatch(event);
                tokio::time::timeout(DELIVERY_DEADLINE, countdown.done.notified())
                    .await
                    .expect("every client reads the comment");
            }
            start.elapsed()
        });
        driver.await.expect("the driver does not panic")
    }

    async fn stop(self) {
        self.lifecycle.closing.cancel();
        for task in self.tasks {
            task.await.expect("no socket task panics");
        }
    }
}

fn socket_fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("socket_fanout");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for n in SIZES {
        let sockets = rt.block_on(Sockets::start(n));
        let mut comments = Comments::new(&sockets.stream);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let chunk = comments.chunk(left.min(CHUNK));
                    left -= chunk.len() as u64;
                    total += rt.block_on(sockets.run(chunk));
                }
                total
            });
        });
        rt.block_on(sockets.stop());
    }
    group.finish();
}

criterion_group!(benches, hub_fanout, socket_fanout);
criterion_main!(benches);
