//! The composition root: builds every part from a [`Config`], wires them together, mounts
//! the route table, binds the listener, and runs until the shutdown future resolves, then
//! drains. It imports everything; nothing in the server imports it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::DropGuard;

use crate::api_error::{self, ApiError};
use crate::auth::Auth;
use crate::background::Background;
use crate::broker::Broker;
use crate::config::Config;
use crate::domain::wire::{ErrorCode, ServerInfo};
use crate::http::{self, HttpState};
use crate::hub::Hub;
use crate::lifecycle::Lifecycle;
use crate::metrics::{Latencies, Metrics};
use crate::posting::Posting;
use crate::readiness::{self, Readiness};
use crate::serve::{self, SocketPlan};
use crate::telemetry::Telemetry;
use crate::web::{self, WebState};
use crate::ws::{self, WsState};

/// After the last `reconnect` hint: how long sockets get to close before the app returns.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Then how long the background tasks (a Redis job in flight, say) get to end.
const BACKGROUND_GRACE: Duration = Duration::from_secs(2);

/// Pending connections the kernel may queue for `accept` (it caps this at
/// `net.core.somaxconn`). A reconnect storm sends thousands of handshakes at once; with the
/// usual 128 the queue overflows and the kernel drops SYNs, which clients retry only after a
/// second.
const LISTEN_BACKLOG: u32 = 4096;

/// Every part of a running instance, for the wiring, tests and benchmarks.
#[derive(Clone)]
pub struct Parts {
    pub config: Arc<Config>,
    pub hub: Hub,
    pub broker: Broker,
    pub auth: Arc<Auth>,
    pub posting: Arc<Posting>,
    pub lifecycle: Arc<Lifecycle>,
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<Metrics>,
    pub telemetry: Arc<Telemetry>,
    pub server: ServerInfo,
    /// The instance's background tasks.
    pub background: Background,
}

impl Parts {
    /// The state of the WebSocket endpoint.
    pub fn ws_state(&self) -> WsState {
        WsState::new(ws::Shared {
            hub: self.hub.clone(),
            broker: self.broker.clone(),
            posting: self.posting.clone(),
            auth: self.auth.clone(),
            lifecycle: self.lifecycle.clone(),
            readiness: self.readiness.clone(),
            metrics: self.metrics.clone(),
            settings: ws::Settings::new(&self.config, self.server.clone()),
        })
    }

    fn http_state(&self) -> HttpState {
        HttpState::new(http::Shared {
            auth: self.auth.clone(),
            broker: self.broker.clone(),
            posting: self.posting.clone(),
            readiness: self.readiness.clone(),
            telemetry: self.telemetry.clone(),
            server: self.server.clone(),
        })
    }
}

/// The router's state: each transport's handlers take only their own part.
#[derive(Clone, FromRef)]
struct AppState {
    ws: WsState,
    http: HttpState,
    web: WebState,
}

pub struct App {
    listener: TcpListener,
    parts: Parts,
    plan: SocketPlan,
    /// Stops the background tasks (broker, pushes, sampling) when the app is dropped
    /// without being run (benchmarks); `run` stops them itself, and waits for them.
    background_guard: DropGuard,
}

impl App {
    /// Validates the configuration, builds the parts, connects the broker and binds the
    /// listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let telemetry = Arc::new(Telemetry::new(&config)?);
        let metrics = Arc::new(Metrics::new(Latencies::new(&telemetry.meter())));
        let background = Background::new();
        let hub = Hub::new(metrics.clone(), config.coalesce(), background.clone());
        let broker = Broker::connect(&config, hub.sink(), metrics.clone(), &background).await?;
        hub.start(broker.clone());
        let posting = Arc::new(Posting::new(
            &config,
            config.blocked_terms()?,
            broker.clone(),
            metrics.clone(),
        ));
        posting.start(&background);
        let plan = SocketPlan::for_this_process(config.max_connections);
        if plan.websockets + 32 > plan.sockets {
            tracing::warn!(
                ?plan,
                "the open-file limit leaves little room: raise it or lower DANMAKU_MAX_CONNECTIONS"
            );
        }
        let lifecycle = Arc::new(Lifecycle::new(plan.websockets));
        let readiness = Arc::new(Readiness::new(&config, lifecycle.clone(), broker.clone()));
        readiness::spawn_sampler(readiness.clone(), &background);
        telemetry.observe(metrics.clone(), readiness.clone());
        let listener = listen(config.listen).map_err(|e| {
            anyhow::anyhow!("DANMAKU_LISTEN: cannot listen on {}: {e}", config.listen)
        })?;
        let server = ServerInfo {
            pod: config.pod_name.clone(),
            slot: config.slot.as_str().to_owned(),
            version: env!("CARGO_PKG_VERSION"),
        };
        let auth = Arc::new(Auth::new(&config)?);
        auth.start(&background).await;
        let parts = Parts {
            auth,
            config: Arc::new(config),
            hub,
            broker,
            posting,
            lifecycle,
            readiness,
            metrics,
            telemetry,
            server,
            background: background.clone(),
        };
        let background_guard = background.drop_guard();
        Ok(Self {
            listener,
            parts,
            plan,
            background_guard,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn parts(&self) -> &Parts {
        &self.parts
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
            parts,
            plan,
            background_guard,
        } = self;
        background_guard.disarm();
        let background = parts.background.clone();
        let lifecycle = parts.lifecycle.clone();
        let drain = parts.config.drain();
        let mut server = tokio::spawn(serve::serve(
            listener,
            router(&parts),
            plan,
            lifecycle.clone(),
            parts.config.http_timeout(),
            lifecycle.closing().clone(),
        ));

        tokio::select! {
            () = shutdown => {}
            result = &mut server => {
                background.stop(BACKGROUND_GRACE).await;
                return result.map_err(Into::into);
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
        let left = background.stop(BACKGROUND_GRACE).await;
        if left > 0 {
            tracing::warn!(tasks = left, "background tasks still running at exit");
        }
        parts.broker.close().await;
        parts.telemetry.shutdown().await;
        tracing::info!(elapsed = ?started.elapsed(), "stopped");
        Ok(())
    }
}

/// The route table: every path the instance serves, and the handler of each.
fn router(parts: &Parts) -> Router {
    let mut router = Router::new()
        .route("/", get(web::index))
        .route("/app.js", get(web::app_js))
        .route("/danmaku-client/{file}", get(web::client_module))
        .route("/page/{file}", get(web::page_module))
        .route("/app.css", get(web::app_css))
        .route("/favicon.svg", get(web::favicon))
        .route("/v1/streams/{stream_id}/ws", get(ws::handshake))
        .route(
            "/v1/streams/{stream_id}/comments",
            post(http::comments::create).get(http::comments::list),
        )
        .route(
            "/v1/streams/{stream_id}/comments/{comment_id}",
            delete(http::comments::remove),
        )
        .route(
            "/v1/streams/{stream_id}/bans",
            post(http::bans::create).get(http::bans::list),
        )
        .route(
            "/v1/streams/{stream_id}/bans/{user_id}",
            delete(http::bans::remove),
        )
        .route(
            "/v1/streams/{stream_id}/settings",
            get(http::settings::show).patch(http::settings::update),
        )
        .route(
            "/v1/streams/{stream_id}/terms",
            get(http::terms::show)
                .put(http::terms::replace)
                .layer(DefaultBodyLimit::max(http::terms::MAX_BODY_BYTES)),
        )
        .route("/v1/streams/{stream_id}/held", get(http::held::list))
        .route(
            "/v1/streams/{stream_id}/held/{held_id}",
            delete(http::held::reject),
        )
        .route(
            "/v1/streams/{stream_id}/held/{held_id}/approve",
            post(http::held::approve),
        )
        .route("/v1/streams/{stream_id}/replay", get(http::replay::window))
        .route("/v1/streams/{stream_id}", get(http::streams::show))
        .route("/livez", get(http::health::livez))
        .route("/readyz", get(http::health::readyz))
        .route("/version", get(http::health::version))
        .route("/metrics", get(http::health::metrics))
        .route("/openapi.json", get(http::openapi::document));
    if parts.config.dev {
        // Development mode only: outside it the route does not exist (404).
        router = router.route("/dev/token", post(http::dev::token));
    }
    router
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::with_status(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::Invalid,
                "method not allowed here",
            )
        })
        .layer(axum::middleware::map_response(api_error::error_object))
        .layer(DefaultBodyLimit::max(http::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            http::limits::BodyTimeout(parts.config.http_timeout()),
            http::limits::read_body,
        ))
        .layer(axum::middleware::from_fn(http::trace_context::traced))
        .with_state(AppState {
            ws: parts.ws_state(),
            http: parts.http_state(),
            web: WebState::new(parts.config.dev),
        })
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
