//! The socket plan, and the accept loop's budget on real sockets: [`serve`] with a plan of a
//! few sockets, so the budget fills without touching the process's open-file limit.

use std::sync::atomic::AtomicUsize;

use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::*;

/// How long an expected close or answer may take.
const WAIT: Duration = Duration::from_secs(5);
/// How long a socket must stay open to count as kept.
const KEPT: Duration = Duration::from_millis(300);

#[test]
fn the_plan_keeps_headroom_below_the_limit() {
    let plan = SocketPlan::new(256, 0);
    assert_eq!(
        plan,
        SocketPlan {
            sockets: 224,
            websockets: 192
        }
    );
    let plan = SocketPlan::new(100_000, 0);
    assert_eq!(plan.websockets, 95_000);
    assert_eq!(plan.sockets, 97_500);
    assert_eq!(SocketPlan::new(256, 10).websockets, 10);
    assert_eq!(SocketPlan::new(16, 0).websockets, 0);
    assert_eq!(
        SocketPlan::new(u64::MAX, 0).websockets,
        usize::MAX - usize::MAX / 20
    );
}

/// The accept loop on 127.0.0.1:0 with `sockets` client sockets, serving `GET /ok` at once,
/// `GET /hold` once `gate` gives a permit (`held` counts the requests waiting there) and
/// `POST /body`, which reads its body as the service API's body reader does: its connection
/// marked as waiting for the client meanwhile (`reading` counts those that started).
struct Server {
    addr: std::net::SocketAddr,
    lifecycle: Arc<Lifecycle>,
    gate: Arc<Semaphore>,
    held: Arc<AtomicUsize>,
    reading: Arc<AtomicUsize>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start(sockets: usize) -> Server {
    let gate = Arc::new(Semaphore::new(0));
    let held = Arc::new(AtomicUsize::new(0));
    let reading = Arc::new(AtomicUsize::new(0));
    let hold = {
        let (gate, held) = (gate.clone(), held.clone());
        move || async move {
            held.fetch_add(1, Ordering::SeqCst);
            gate.acquire().await.expect("the gate stays open").forget();
            "done"
        }
    };
    let body = {
        let reading = reading.clone();
        move |request: Request<Body>| async move {
            let slot = request.extensions().get::<ConnectionSlot>().cloned();
            let slot = slot.expect("the accept loop hands each request its connection");
            slot.waiting();
            reading.fetch_add(1, Ordering::SeqCst);
            let body = axum::body::to_bytes(request.into_body(), 1024).await;
            slot.serving();
            body.map(|b| b.len().to_string()).unwrap_or_default()
        }
    };
    let router = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/hold", get(hold))
        .route("/body", post(body));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lifecycle = Arc::new(Lifecycle::new(sockets));
    let plan = SocketPlan {
        sockets,
        websockets: sockets,
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(
        listener,
        router,
        plan,
        lifecycle.clone(),
        Duration::from_secs(30),
        stop.clone(),
    ));
    Server {
        addr,
        lifecycle,
        gate,
        held,
        reading,
        stop,
        task,
    }
}

impl Server {
    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// Stops the loop; it returns once every connection has ended.
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the accept loop returns after stop")
            .unwrap();
    }
}

/// Writes a keep-alive `GET path`.
async fn send_get(stream: &mut TcpStream, path: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
}

/// A keep-alive `GET path` and its answer: status and body.
async fn get_on(stream: &mut TcpStream, path: &str) -> (u16, String) {
    send_get(stream, path).await;
    read_answer(stream).await
}

/// Reads one whole answer: its status and body.
async fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed before a whole answer: {raw:?}");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")?
                    .parse()
                    .ok()
            })
            .expect("a content-length");
        if body.len() >= length {
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            return (status, body.to_owned());
        }
    }
}

/// Whether the server closed `stream` within `limit`, having sent nothing on it.
async fn closed_silently(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(limit, stream.read(&mut buf)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!(
            "expected no bytes, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
}

/// Waits until `check` holds, or fails after [`WAIT`].
async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_full_budget_closes_the_socket_that_waited_longest_for_its_request() {
    let server = start(3).await;
    // Three sockets that send nothing fill the budget, accepted in this order.
    let mut oldest = server.connect().await;
    let mut second = server.connect().await;
    let mut third = server.connect().await;

    // A fourth gets in and is served; the oldest silent socket is closed to make room.
    let mut fourth = server.connect().await;
    assert_eq!(get_on(&mut fourth, "/ok").await, (200, "ok".into()));
    assert!(
        closed_silently(&mut oldest, WAIT).await,
        "the oldest was kept"
    );
    assert!(
        !closed_silently(&mut second, KEPT).await,
        "the second was closed too"
    );
    assert!(
        !closed_silently(&mut third, KEPT).await,
        "the third was closed too"
    );

    // The served socket waits for its next request at the back of the line: the next
    // newcomer closes the second, then the third, and only then the fourth.
    let mut fifth = server.connect().await;
    assert_eq!(get_on(&mut fifth, "/ok").await, (200, "ok".into()));
    assert!(
        closed_silently(&mut second, WAIT).await,
        "the second was kept"
    );
    assert!(
        !closed_silently(&mut third, KEPT).await,
        "the third was closed"
    );
    assert_eq!(get_on(&mut fourth, "/ok").await, (200, "ok".into()));

    let mut sixth = server.connect().await;
    assert_eq!(get_on(&mut sixth, "/ok").await, (200, "ok".into()));
    assert!(
        closed_silently(&mut third, WAIT).await,
        "the third was kept"
    );
    assert_eq!(get_on(&mut fourth, "/ok").await, (200, "ok".into()));
    assert_eq!(get_on(&mut fifth, "/ok").await, (200, "ok".into()));
    server.stop().await;
}

#[tokio::test]
async fn requests_in_flight_are_never_closed_to_make_room_and_free_their_sockets_when_done() {
    let server = start(2).await;
    let held = server.held.clone();
    let mut first = server.connect().await;
    send_get(&mut first, "/hold").await;
    until("the first request in its handler", || {
        held.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut second = server.connect().await;
    send_get(&mut second, "/hold").await;
    until("the second request in its handler", || {
        held.load(Ordering::SeqCst) == 2
    })
    .await;

    // Nothing can be closed to make room: a newcomer is closed at once, unanswered.
    let mut refused = server.connect().await;
    let _ = refused
        .write_all(b"GET /ok HTTP/1.1\r\nHost: test\r\n\r\n")
        .await;
    assert!(
        closed_silently(&mut refused, WAIT).await,
        "a newcomer was let in"
    );

    // Answered (the gate lets them through in order), both wait for their next request, so
    // a newcomer is let in and closes the one that has waited longer.
    server.gate.add_permits(1);
    assert_eq!(read_answer(&mut first).await, (200, "done".into()));
    server.gate.add_permits(1);
    assert_eq!(read_answer(&mut second).await, (200, "done".into()));
    let mut later = server.connect().await;
    assert_eq!(get_on(&mut later, "/ok").await, (200, "ok".into()));
    assert!(
        closed_silently(&mut first, WAIT).await,
        "the first idle socket was kept"
    );
    assert!(
        !closed_silently(&mut second, KEPT).await,
        "the second was closed too"
    );
    server.stop().await;
}

#[tokio::test]
async fn websockets_count_against_the_socket_budget() {
    let server = start(2).await;
    // Upgraded sockets are counted by the lifecycle, not as HTTP sockets.
    let permits: Vec<_> = (0..2).map(|_| server.lifecycle.admit().unwrap()).collect();
    let mut refused = server.connect().await;
    let _ = refused
        .write_all(b"GET /ok HTTP/1.1\r\nHost: test\r\n\r\n")
        .await;
    assert!(
        closed_silently(&mut refused, WAIT).await,
        "served beyond the budget"
    );

    drop(permits);
    let mut served = server.connect().await;
    assert_eq!(get_on(&mut served, "/ok").await, (200, "ok".into()));
    server.stop().await;
}

#[tokio::test]
async fn a_request_whose_body_is_late_may_be_closed_to_make_room() {
    let server = start(2).await;
    let reading = server.reading.clone();
    let mut late = server.connect().await;
    let head = "POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n";
    late.write_all(format!("{head}12345").as_bytes())
        .await
        .unwrap();
    until("the body being read", || {
        reading.load(Ordering::SeqCst) == 1
    })
    .await;
    // A silent socket that came after: the late body has waited longer.
    let mut silent = server.connect().await;

    let mut newcomer = server.connect().await;
    assert_eq!(get_on(&mut newcomer, "/ok").await, (200, "ok".into()));
    assert!(
        closed_silently(&mut late, WAIT).await,
        "the late body was kept"
    );
    assert!(
        !closed_silently(&mut silent, KEPT).await,
        "the silent socket was closed"
    );

    // A whole body is read and answered, and its connection served again after.
    let mut whole = server.connect().await;
    whole
        .write_all(format!("{head}1234567890").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_answer(&mut whole).await, (200, "10".into()));
    assert_eq!(get_on(&mut whole, "/ok").await, (200, "ok".into()));
    server.stop().await;
}
