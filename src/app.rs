//! Wiring: build the hub, the broker and the router from a [`Config`], bind the listener,
//! and run until the shutdown future resolves, then drain.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::broker::Broker;
use crate::config::Config;
use crate::domain::wire::ServerInfo;
use crate::hub::Hub;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::readiness::{CpuGate, Readiness, available_cpus};
use crate::telemetry::{Latencies, Telemetry};

/// After the last `reconnect` hint: how long sockets get to close before the app returns.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: Config,
    pub hub: Hub,
    pub broker: Broker,
    pub auth: Auth,
    pub lifecycle: Arc<Lifecycle>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub telemetry: Telemetry,
    pub server: ServerInfo,
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Shared {
    /// Every reason this instance should not get new connections now (`/readyz`).
    pub fn not_ready_reasons(&self) -> Vec<&'static str> {
        not_ready_reasons(&self.lifecycle, &self.broker, &self.readiness)
    }
}

fn not_ready_reasons(
    lifecycle: &Lifecycle,
    broker: &Broker,
    readiness: &Readiness,
) -> Vec<&'static str> {
    let mut reasons = Vec::new();
    if lifecycle.is_draining() {
        reasons.push("draining");
    }
    if !broker.is_healthy() {
        reasons.push("broker");
    }
    if !readiness.cpu_ready() {
        reasons.push("cpu");
    }
    reasons
}

pub struct App {
    listener: TcpListener,
    state: AppState,
    background: CancellationToken,
}

impl App {
    /// Validates the configuration, connects the broker and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let telemetry = Telemetry::new(&config)?;
        let metrics = Arc::new(Metrics::new(Latencies::new(&telemetry.meter())));
        let hub = Hub::new(&config, metrics.clone());
        let background = CancellationToken::new();
        let broker =
            Broker::connect(&config, hub.sink(), metrics.clone(), background.clone()).await?;
        hub.start(broker.clone(), &config, background.clone());
        let gate = CpuGate::new(
            config.cpu_ready_threshold,
            available_cpus(),
            config.gate_tuning(),
            Instant::now(),
        );
        let readiness = Arc::new(Readiness::new(gate));
        crate::readiness::spawn_sampler(readiness.clone(), background.clone());
        let lifecycle = Arc::new(Lifecycle::new(config.max_connections));
        let probe = {
            let (lifecycle, broker, readiness) =
                (lifecycle.clone(), broker.clone(), readiness.clone());
            Arc::new(move || {
                (
                    not_ready_reasons(&lifecycle, &broker, &readiness),
                    readiness.cpu_fraction(),
                )
            })
        };
        telemetry.observe(metrics.clone(), probe);
        let listener = listen(config.listen).map_err(|e| {
            anyhow::anyhow!("DANMAKU_LISTEN: cannot listen on {}: {e}", config.listen)
        })?;
        let server = ServerInfo {
            pod: config.pod_name.clone(),
            slot: config.slot.as_str().to_owned(),
            version: env!("CARGO_PKG_VERSION"),
        };
        let state = AppState(Arc::new(Shared {
            auth: Auth::new(&config),
            lifecycle,
            config,
            hub,
            broker,
            metrics,
            readiness,
            telemetry,
            server,
        }));
        Ok(Self {
            listener,
            state,
            background,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains: `/readyz` fails and new handshakes
    /// are refused at once, `reconnect` hints go out spread over `DANMAKU_DRAIN_MS`, what is
    /// left is closed with 1001, and this returns within the drain time plus a few seconds.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            background,
        } = self;
        let lifecycle = state.lifecycle.clone();
        let drain = state.config.drain();
        let router = crate::http::router(state.clone());
        let stop_http = lifecycle.closing().clone().cancelled_owned();
        let mut server = tokio::spawn(
            axum::serve(listener, router)
                .with_graceful_shutdown(stop_http)
                .into_future(),
        );

        tokio::select! {
            () = shutdown => {}
            result = &mut server => {
                background.cancel();
                return match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.into()),
                    Err(e) => Err(e.into()),
                };
            }
        }

        let started = Instant::now();
        tracing::info!(
            connections = lifecycle.open_connections(),
            ?drain,
            "draining"
        );
        lifecycle.start_draining();
        // Done early if every client has already moved on.
        let _ = tokio::time::timeout(drain, lifecycle.all_connections_ended()).await;
        tracing::info!(
            connections = lifecycle.open_connections(),
            "closing the remaining connections"
        );
        lifecycle.close_all();
        if tokio::time::timeout(CLOSE_GRACE, lifecycle.all_connections_ended())
            .await
            .is_err()
        {
            tracing::warn!(
                connections = lifecycle.open_connections(),
                "some sockets did not close in time"
            );
        }
        if tokio::time::timeout(CLOSE_GRACE, &mut server)
            .await
            .is_err()
        {
            tracing::warn!("HTTP connections still open at exit");
            server.abort();
        }
        background.cancel();
        state.broker.close().await;
        state.telemetry.shutdown().await;
        tracing::info!(elapsed = ?started.elapsed(), "stopped");
        Ok(())
    }
}

/// Pending connections the kernel may queue for `accept` (it caps this at
/// `net.core.somaxconn`). A reconnect storm sends thousands of handshakes at once; with the
/// usual 128 the queue overflows and the kernel drops SYNs, which clients retry only after a
/// second.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
