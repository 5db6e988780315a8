//! danmaku: a realtime WebSocket comment fan-out server for live streams.
//!
//! Data flows one way: **ws → broker → hub → sockets**. A viewer's socket ([`ws`]) or a
//! service ([`http`]) hands a comment to the [`broker`], which assigns its id, appends it to
//! the stream's history and publishes it. The broker delivers what it publishes (or what
//! other instances published, with Redis) to the [`hub`], which holds the local connections
//! per stream, encodes each frame once and shares the bytes with every local socket.
//!
//! The hub asks the broker for a stream's subscription when the stream's first local
//! connection arrives and releases it after the last one has left plus a linger.
//!
//! Module map:
//! - [`config`]: typed configuration from `DANMAKU_*` variables and flags.
//! - [`domain`]: stream ids, comment ids and text, comments, the wire frames. No I/O.
//! - [`auth`]: viewer JWTs and service tokens.
//! - [`broker`]: the seam to the rest of the cluster; [`broker::memory`] is the embedded
//!   single-node broker.
//! - [`hub`]: local rooms, fan-out, the subscription manager, viewer counts, rate limits.
//! - [`ws`]: the WebSocket endpoint, the per-connection loop, the close-code table.
//! - [`http`]: the service API, health, version and metrics.
//! - [`web`]: the viewer page at `/` (HTML, CSS and JavaScript compiled in).
//! - [`lifecycle`]: draining, readiness, the connection count and the tracked socket tasks.
//! - [`metrics`]: the named counters.
//! - [`app`]: wires everything together and runs until shutdown.

pub mod app;
pub mod auth;
pub mod broker;
pub mod config;
pub mod domain;
pub mod http;
pub mod hub;
pub mod lifecycle;
pub mod metrics;
pub mod readiness;
pub mod telemetry;
pub mod web;
pub mod ws;

pub use app::App;
pub use config::Config;
