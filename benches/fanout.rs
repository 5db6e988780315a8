//! Fan-out micro-benchmarks: one new comment delivered to N local sockets of one stream.
//!
//! - `hub_fanout`: N members joined on the hub of a real instance (embedded broker).
//!   One iteration dispatches one comment; the room's task hands it to every member, which
//!   runs its viewer's state machine (`danmaku::delivery::Viewer::on_event`, the per-socket
//!   choice through `CommentBatch::for_socket`) under a lock, as a connection's peer does:
//!   everything the engine does per comment except the socket write.
//! - `socket_fanout`: N connections running the production connection loop
//!   (`danmaku::ws::serve`: join, `init`, the loop; the room's task writing to the
//!   sockets) over Unix socket pairs, each with a tokio-tungstenite client on the other
//!   end. One iteration dispatches one comment and waits until all N clients have read its
//!   frame, so the figure includes the clients' reads too. At most 5,000 sockets: a pair
//!   takes two of the process's 20,000 open files.
//!
//! `Throughput::Elements(N)`: the elements/s figures are deliveries per second.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use danmaku::App;
use danmaku::app::Parts;
use danmaku::auth::Identity;
use danmaku::broker::BrokerEvent;
use danmaku::config::Config;
use danmaku::delivery::{Action, Delivery, Member, RoomEvent, Tier, Viewer};
use danmaku::domain::{Comment, CommentId, CommentKind, StreamId, User, UserId, now_ms};
use danmaku::hub::Membership;
use danmaku::ws::{READ_BUFFER, Session};
use futures_util::StreamExt;
use tokio::net::UnixStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// Members of the one stream.
const SIZES: [usize; 4] = [1, 100, 1_000, 10_000];
/// Local sockets of the one stream.
const SOCKETS: [usize; 4] = [1, 100, 1_000, 5_000];
/// Comments built ahead of a timed run, outside the timing.
const CHUNK: u64 = 256;
/// Longest wait for one comment (or every `init`) to reach every client before the
/// benchmark fails (a lost delivery must not hang `cargo test`).
const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);

/// A real instance (embedded broker, real telemetry instruments), built by `App::build`;
/// its listener is bound but never served.
struct Node {
    app: App,
}

impl Node {
    /// Must run inside a Tokio runtime (the instance's background tasks).
    async fn start() -> Self {
        let mut config = Config::defaults();
        config.listen = "127.0.0.1:0".parse().expect("an address");
        config.pod_name = "bench".into();
        config.cpu_ready_threshold = 1.0;
        // Coalescing off: a benchmark's comments come faster than any stream's, so every
        // room would count as hot and each iteration would wait out the 40 ms window.
        config.coalesce_ms = 0;
        let app = App::build(config).await.expect("the instance builds");
        Self { app }
    }

    fn parts(&self) -> &Parts {
        self.app.parts()
    }

    async fn join(&self, stream: &StreamId, member: Arc<dyn Member>) -> Membership {
        let parts = self.parts();
        parts
            .hub
            .join(stream, &parts.broker, member)
            .await
            .expect("the stream subscribes")
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
                    id: UserId::parse("user-4242").expect("a valid user id"),
                    name: "a viewer".into(),
                }),
                text: format!("comment number {} with a typical length of text", self.seq),
                data: None,
                ts: now_ms(),
                media_ts: None,
                by_moderator: false,
                shadow: false,
            }],
        }
    }

    fn chunk(&mut self, n: u64) -> Vec<BrokerEvent> {
        (0..n).map(|_| self.next_event()).collect()
    }
}

// === hub_fanout ===

/// A connection without its socket: its viewer decides what it would write (with nothing
/// queued), the frame is kept from the optimizer, the delivery counted.
struct Receiver {
    viewer: std::sync::Mutex<Viewer>,
    reads: Arc<Countdown>,
}

impl Receiver {
    fn new(reads: Arc<Countdown>) -> Self {
        let mut viewer = Viewer::new(None, false, Tier::UNLIMITED);
        viewer.start(None);
        Self {
            viewer: std::sync::Mutex::new(viewer),
            reads,
        }
    }
}

impl Member for Receiver {
    fn deliver(&self, event: &RoomEvent) -> Delivery {
        let step = self.viewer.lock().expect("not poisoned").on_event(event, 0);
        if let Action::Write(write) = step.action
            && matches!(event, RoomEvent::Comments(_))
        {
            black_box(write);
            self.reads.one_read();
        }
        step.delivery
    }
}

fn hub_fanout(c: &mut Criterion) {
    // Current-thread: the instance's background tasks (viewer pushes, CPU sampling, rate
    // pruning) run only between timed chunks, so they add little noise to the timing.
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
        let reads = Arc::new(Countdown::new());
        let (node, receivers, memberships) = rt.block_on(async {
            let node = Node::start().await;
            let mut receivers = Vec::with_capacity(n);
            let mut memberships = Vec::with_capacity(n);
            for _ in 0..n {
                let receiver = Arc::new(Receiver::new(reads.clone()));
                memberships.push(node.join(&stream, receiver.clone()).await);
                receivers.push(receiver);
            }
            (node, receivers, memberships)
        });
        let mut comments = Comments::new(&stream);
        // False when a filter on the command line skipped this benchmark.
        let mut ran = false;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            ran = true;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let chunk = comments.chunk(left.min(CHUNK));
                    left -= chunk.len() as u64;
                    total += rt.block_on(async {
                        let start = Instant::now();
                        for event in chunk {
                            reads.remaining.store(n, Ordering::Release);
                            node.parts().hub.dispatch(event);
                            reads.wait("the comment").await;
                        }
                        start.elapsed()
                    });
                }
                total
            });
        });
        assert!(
            !ran || receivers.iter().all(|r| {
                let viewer = r.viewer.lock().expect("not poisoned");
                viewer.last_id().is_some()
            }),
            "every member received the comments"
        );
        rt.block_on(async move {
            drop(memberships);
            drop(node);
        });
    }
    group.finish();
}

// === socket_fanout ===

/// The viewers' side: tungstenite zeroes its whole read buffer before every read (128 KiB
/// by default), which would make the clients' reads, not the server, the figure.
fn client_socket_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_BUFFER)
}

/// Counts down the clients yet to read the current frame.
struct Countdown {
    remaining: AtomicUsize,
    done: Notify,
}

impl Countdown {
    fn new() -> Self {
        Self {
            remaining: AtomicUsize::new(0),
            done: Notify::new(),
        }
    }

    fn one_read(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    async fn wait(&self, what: &str) {
        tokio::time::timeout(DELIVERY_DEADLINE, self.done.notified())
            .await
            .unwrap_or_else(|_| panic!("every client reads {what}"));
    }
}

/// A viewer: reads `init`, then frames until the server closes, counting each `comments`
/// frame (the instance also pushes `viewers` frames while the connections join, and may
/// send a `reconnect` hint as they stop).
async fn client(
    mut socket: WebSocketStream<UnixStream>,
    ready: Arc<Countdown>,
    reads: Arc<Countdown>,
) {
    match socket.next().await {
        Some(Ok(Message::Text(init))) if init.as_str().starts_with(r#"{"type":"init""#) => {
            ready.one_read()
        }
        other => panic!("expected init, got {other:?}"),
    }
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(frame) = message {
            if frame.as_str().starts_with(r#"{"type":"comments""#) {
                black_box(frame);
                reads.one_read();
            } else {
                // Viewer counts while the connections join; a drain hint when they stop.
                assert!(
                    frame.as_str().starts_with(r#"{"type":"viewers""#)
                        || frame.as_str().starts_with(r#"{"type":"reconnect""#),
                    "{frame}"
                );
            }
        }
    }
}

/// N connections on one stream: the production loop on one end of each pipe, a client on
/// the other.
struct Sockets {
    node: Arc<Node>,
    stream: StreamId,
    n: usize,
    reads: Arc<Countdown>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sockets {
    async fn start(n: usize) -> Self {
        let node = Arc::new(Node::start().await);
        let stream = StreamId::parse("bench-sockets").expect("a valid stream id");
        let ws = node.parts().ws_state();
        let (ready, reads) = (Arc::new(Countdown::new()), Arc::new(Countdown::new()));
        ready.remaining.store(n, Ordering::Release);
        let mut tasks = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let (server_io, client_io) = UnixStream::pair().expect("a socket pair");
            let session = Box::new(Session {
                stream: stream.clone(),
                identity: Identity::Anonymous,
                after: None,
                epoch: None,
                budget: Tier::UNLIMITED,
                permit: node.parts().lifecycle.admit().expect("no connection limit"),
                upgraded_at: Instant::now(),
                deflate: None,
            });
            tasks.push(tokio::spawn(danmaku::ws::serve(
                server_io,
                bytes::Bytes::new(),
                session,
                ws.clone(),
            )));
            let client_socket = WebSocketStream::from_raw_socket(
                client_io,
                Role::Client,
                Some(client_socket_config()),
            )
            .await;
            tasks.push(tokio::spawn(client(
                client_socket,
                ready.clone(),
                reads.clone(),
            )));
        }
        // Every connection has joined once its client has read `init`.
        ready.wait("init").await;
        Self {
            node,
            stream,
            n,
            reads,
            tasks,
        }
    }

    /// Dispatches each comment from a task on the runtime (as the broker does, from the
    /// publishing connection's task) and waits until every client has read its frame.
    async fn run(&self, events: Vec<BrokerEvent>) -> Duration {
        let (node, reads, n) = (self.node.clone(), self.reads.clone(), self.n);
        let driver = tokio::spawn(async move {
            let start = Instant::now();
            for event in events {
                reads.remaining.store(n, Ordering::Release);
                node.parts().hub.dispatch(event);
                reads.wait("the comment").await;
            }
            start.elapsed()
        });
        driver.await.expect("the driver does not panic")
    }

    async fn stop(self) {
        self.node.parts().lifecycle.close_all();
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
    for n in SOCKETS {
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
