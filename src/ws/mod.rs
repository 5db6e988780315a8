//! The WebSocket endpoint `GET /v1/streams/{stream_id}/ws` (the contract's section 2).
//!
//! - [`handshake`]: the checks before the upgrade, cheapest first (refusals are plain
//!   HTTP), then the upgrade and the connection's task.
//! - [`connection`]: one connection from its first byte to its close: join the stream,
//!   `init`, then one loop over the client's frames, the ping/idle timer, the drain
//!   signals and what the room's side asks of it. Generic over the socket, so benchmarks
//!   and tests drive the production loop over Unix socket pairs.
//! - [`init`]: the `init` frame. [`post`]: a client's `comment` frame, through the posting
//!   rules, to an `ack` or an `error`.
//! - [`codec`]: the client's frames through tungstenite, its pongs and the closing
//!   handshake, and the adapter that lets tungstenite read the socket (inflating the
//!   client's compressed frames on the way, when the handshake negotiated
//!   `permessage-deflate`: [`crate::deflate`]) and write through the connection's peer.
//!
//! What the room sends a connection, and how bytes reach its socket, is the delivery
//! engine's ([`crate::delivery`]): the connection's [`crate::delivery::Peer`] is both the
//! room's member and the one writer to the socket.
//! - [`close`]: the close codes, in one table, and how a connection's loop ends.

mod close;
mod codec;
mod connection;
mod handshake;
mod init;
mod post;
mod refresh;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Auth;
use crate::broker::Broker;
use crate::config::{Config, Origins};
use crate::domain::wire::ServerInfo;
use crate::hub::Hub;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::posting::Posting;
use crate::readiness::Readiness;

pub use close::CloseReason;
pub use codec::{MAX_CLIENT_FRAME, READ_BUFFER};
pub use connection::{Session, serve};
pub use handshake::handshake;

/// What every connection shares: one pointer per connection task.
#[derive(Clone)]
pub struct WsState(Arc<Shared>);

pub struct Shared {
    pub hub: Hub,
    pub broker: Broker,
    pub posting: Arc<Posting>,
    pub auth: Arc<Auth>,
    pub lifecycle: Arc<Lifecycle>,
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
}

/// The configuration a connection reads.
pub struct Settings {
    /// `DANMAKU_ALLOWED_ORIGINS`; `None`: any origin.
    pub allowed_origins: Option<Origins>,
    /// `DANMAKU_IDLE_TIMEOUT_MS`.
    pub idle_timeout: Duration,
    /// `DANMAKU_DRAIN_MS`: `reconnect` hints are spread over most of it.
    pub drain: Duration,
    /// Comments in a fresh `init` (`DANMAKU_INIT_COMMENTS`, at most the history kept).
    pub init_comments: usize,
    /// The `server` block of `init`.
    pub server: ServerInfo,
    /// `DANMAKU_VIEWER_MAX_RATE`: a viewer's budget of user comments per second (0: none).
    pub viewer_max_rate: u32,
    /// `DANMAKU_WS_COMPRESSION_MIN_BYTES` when `DANMAKU_WS_COMPRESSION` is on.
    pub compression: Option<usize>,
}

impl Settings {
    pub fn new(config: &Config, server: ServerInfo) -> Self {
        Self {
            allowed_origins: config.allowed_origins.clone(),
            idle_timeout: config.idle_timeout(),
            drain: config.drain(),
            init_comments: config.init_comments.min(config.history_len),
            server,
            viewer_max_rate: config.viewer_max_rate,
            compression: config.compression.min_bytes(),
        }
    }
}

impl WsState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for WsState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
