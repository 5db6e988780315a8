//! The accept loop: every TCP connection is served by hyper's HTTP/1 server, with a deadline
//! for each request's head, inside a budget of sockets that fits the process's open-file
//! limit.
//!
//! The budget ([`SocketPlan`]) keeps headroom below the limit for what else needs a file
//! (the listener, Redis, OTLP, health probes). WebSockets stop short of it (their handshakes
//! get `503`, see `Lifecycle::admit`), so a few sockets are always left for plain HTTP. When
//! every socket of the budget is taken anyway, the connection that has waited longest
//! for its client (no complete request head yet, or a body still coming) is closed to make
//! room: a client that sends
//! its request at once (a probe, the service API) is served even while a flood of sockets
//! that never finish theirs is open.

mod error_bodies;

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use crate::lifecycle::Lifecycle;

pub use error_bodies::ErrorBodies;

/// Files kept free of client sockets, at least: the listener, stdio, the runtime's own,
/// Redis and OTLP connections, and some plain-HTTP sockets while WebSockets are at their cap.
const MIN_HEADROOM: usize = 64;

/// After an accept fails because the process is out of files: how long before the next try
/// (the loop must neither spin nor stop).
const FULL_PAUSE: Duration = Duration::from_millis(20);

/// How many client sockets the process may hold, from its open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketPlan {
    /// Client sockets open at once, HTTP and WebSocket together.
    pub sockets: usize,
    /// WebSocket connections admitted at once.
    pub websockets: usize,
}

impl SocketPlan {
    /// The plan for an open-file limit of `files`; `max_connections` 0 fits WebSockets to
    /// the limit (less headroom: 64 files or 5 %, whichever is more), otherwise it is the
    /// WebSocket cap as configured.
    pub fn new(files: u64, max_connections: usize) -> Self {
        let files = usize::try_from(files).unwrap_or(usize::MAX);
        let headroom = MIN_HEADROOM.max(files / 20);
        // Half the headroom stays free of every client socket; the other half is for plain
        // HTTP once WebSockets are at their cap.
        let sockets = files.saturating_sub(headroom / 2);
        let websockets = match max_connections {
            0 => files.saturating_sub(headroom),
            n => n,
        };
        Self {
            sockets,
            websockets,
        }
    }

    /// The plan for this process's soft open-file limit.
    pub fn for_this_process(max_connections: usize) -> Self {
        let files = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
            Ok((soft, _hard)) => soft,
            Err(error) => {
                tracing::warn!(%error, "cannot read the open-file limit; assuming 1024");
                1024
            }
        };
        Self::new(files, max_connections)
    }
}

/// The sockets served over HTTP (upgraded ones count in the [`Lifecycle`] instead), and those
/// that wait for a request head, oldest first.
struct Budget {
    plan: SocketPlan,
    lifecycle: Arc<Lifecycle>,
    http: AtomicUsize,
    waiting: Mutex<BTreeMap<u64, CancellationToken>>,
    next_key: AtomicU64,
}

impl Budget {
    fn full(&self) -> bool {
        self.http.load(Ordering::Acquire) + self.lifecycle.open_connections() >= self.plan.sockets
    }

    /// Closes the connection that has waited longest for a request head; false if none waits.
    fn evict_oldest(&self) -> bool {
        let oldest = self.waiting.lock().expect("not poisoned").pop_first();
        match oldest {
            Some((_, evict)) => {
                evict.cancel();
                true
            }
            None => false,
        }
    }
}

/// One served socket's place in the [`Budget`].
struct Slot {
    budget: Arc<Budget>,
    evict: CancellationToken,
    /// Its key in `waiting` while it waits for a request head.
    waiting_key: Mutex<Option<u64>>,
    released: AtomicBool,
}

impl Slot {
    fn take(budget: &Arc<Budget>) -> Arc<Self> {
        budget.http.fetch_add(1, Ordering::AcqRel);
        let slot = Arc::new(Self {
            budget: budget.clone(),
            evict: CancellationToken::new(),
            waiting_key: Mutex::new(None),
            released: AtomicBool::new(false),
        });
        slot.waiting();
        slot
    }

    /// Waiting for a request head: may be closed to make room.
    fn waiting(&self) {
        let key = self.budget.next_key.fetch_add(1, Ordering::Relaxed);
        self.budget
            .waiting
            .lock()
            .expect("not poisoned")
            .insert(key, self.evict.clone());
        if let Some(old) = self.waiting_key.lock().expect("not poisoned").replace(key) {
            self.budget
                .waiting
                .lock()
                .expect("not poisoned")
                .remove(&old);
        }
    }

    /// Serving a request: kept.
    fn busy(&self) {
        if let Some(key) = self.waiting_key.lock().expect("not poisoned").take() {
            self.budget
                .waiting
                .lock()
                .expect("not poisoned")
                .remove(&key);
        }
    }

    /// Its socket is closing (evicted or done): it no longer counts.
    fn release(&self) {
        self.busy();
        if !self.released.swap(true, Ordering::AcqRel) {
            self.budget.http.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A request's connection, in the request's extensions: the body reader marks it as waiting
/// while the body is late to come, so it may be closed to make room as one that has not
/// sent its head may.
#[derive(Clone)]
pub struct ConnectionSlot(Arc<Slot>);

impl ConnectionSlot {
    /// Waiting for the client (its body): may be closed to make room.
    pub fn waiting(&self) {
        self.0.waiting();
    }

    /// Serving the request: kept.
    pub fn serving(&self) {
        self.0.busy();
    }
}

/// Serves `router` on `listener` until `stop` is cancelled, then closes idle connections,
/// lets requests in flight finish and returns when every connection has ended.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    plan: SocketPlan,
    lifecycle: Arc<Lifecycle>,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let budget = Arc::new(Budget {
        plan,
        lifecycle,
        http: AtomicUsize::new(0),
        waiting: Mutex::new(BTreeMap::new()),
        next_key: AtomicU64::new(0),
    });
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let http1 = Arc::new(http1);
    let connections = TaskTracker::new();
    let mut last_full_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                if budget.full() {
                    if !budget.evict_oldest() {
                        // Every socket is a WebSocket or a request in flight: closed at once
                        // rather than left to wait in the backlog.
                        drop(stream);
                        continue;
                    }
                    // Lets the evicted connection's task close its socket before the next
                    // accept takes another file.
                    tokio::task::yield_now().await;
                }
                let slot = Slot::take(&budget);
                connections.spawn(connection(
                    stream,
                    router.clone(),
                    http1.clone(),
                    slot,
                    stop.clone(),
                ));
            }
            Err(error) if out_of_files(&error) => {
                if last_full_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(%error, "out of files: closing sockets that sent no request");
                    last_full_warning = Some(Instant::now());
                }
                budget.evict_oldest();
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(FULL_PAUSE) => {}
                }
            }
            // A connection reset before it was accepted and the like: the next one is fine.
            Err(error) => tracing::debug!(%error, "accept failed"),
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

fn out_of_files(error: &io::Error) -> bool {
    // EMFILE (the process's limit) and ENFILE (the system's).
    matches!(error.raw_os_error(), Some(24 | 23))
}

async fn connection(
    stream: TcpStream,
    router: Router,
    http1: Arc<hyper::server::conn::http1::Builder>,
    slot: Arc<Slot>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let service_slot = slot.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        service_slot.busy();
        request
            .extensions_mut()
            .insert(ConnectionSlot(service_slot.clone()));
        let slot = service_slot.clone();
        let mut router = router.clone();
        async move {
            let response = router.call(request.map(Body::new)).await;
            // After a `101` the socket is the WebSocket's: never closed to make room.
            if response
                .as_ref()
                .is_ok_and(|r| r.status() != StatusCode::SWITCHING_PROTOCOLS)
            {
                slot.waiting();
            }
            response
        }
    });
    let conn = http1
        .serve_connection(TokioIo::new(ErrorBodies::new(stream)), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = slot.evict.cancelled() => {
            slot.release();
            return;
        }
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    slot.release();
    if let Err(error) = result {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}

#[cfg(test)]
mod tests;
