//! danmaku: a realtime WebSocket comment fan-out server for live streams.
//!
//! Data flows one way: **ws/http → posting → broker → hub → delivery → sockets**. A viewer's
//! socket ([`ws`]) or a service ([`http`]) hands a comment to [`posting`], which applies the
//! rules both share and gives the validated comment to the [`broker`]; the broker assigns
//! its id, appends it to the stream's history and publishes it. The broker delivers what it
//! publishes (or what other instances published, with Redis) to the [`hub`], which holds
//! the local connections per stream and queues the event in the stream's room; the room's
//! task ([`delivery`]) encodes each frame once and writes the same bytes to every local
//! socket, each viewer's share chosen by its own state machine.
//!
//! The broker is the one owner of this instance's stream subscriptions: the hub asks it for
//! a stream once per local viewer and holds the [`broker::Subscription`] it gets back; the
//! broker subscribes on the first, unsubscribes after the last is dropped plus a linger.
//!
//! The contract these modules implement (wire frames, HTTP API, configuration, Redis layout,
//! telemetry names) is `docs/protocol.md`; "the contract's section N" in the docs here means
//! a section of it.
//!
//! Module map, each layer importing only those above it (checked by `scripts/check-modules`):
//!
//! | layer | modules | what they are |
//! |---|---|---|
//! | vocabulary | [`config`], [`domain`], [`background`], [`lifecycle`], [`deflate`] | typed settings; ids, text, comments, wire frames (no I/O); the tracked background tasks (shutdown waits for them); draining and the connection count; WebSocket compression (`permessage-deflate`: negotiation, compressing a frame once, inflating client frames) |
//! | instruments | [`metrics`], [`auth`] | the counters and SLI histograms; viewer tokens and service tokens |
//! | engine | [`delivery`] | fan-out: a room's queue and task, thinning, each viewer's state machine, the socket's outbox, and the slow-viewer policy in one table ([`delivery::policy`]) |
//! | cluster | [`broker`] | the seam to the other instances: [`broker::memory`] embedded, or Redis; publishing, history, subscriptions |
//! | this instance | [`hub`], [`posting`], [`readiness`] | the rooms by stream, fed from the broker; the posting rules and rate limits; why not ready |
//! | edges | [`api_error`], [`telemetry`] | the error answer of HTTP refusals; OTLP and `/metrics` |
//! | transports | [`ws`], [`http`], [`web`], [`serve`] | the WebSocket endpoint, protocol and connection loop; the service API and health; the page at `/`; the accept loop and the socket budget |
//! | root | [`app`] | builds and wires the parts, the route table, the drain |
//!
//! The engine imports only [`domain`], [`metrics`], [`background`] and [`deflate`]; `scripts/check-modules` also fails if
//! it imports `hub`, `ws`, `broker`, `http` or `app`, which sit above it and drive it.

pub mod api_error;
pub mod app;
pub mod auth;
pub mod background;
pub mod broker;
pub mod config;
pub mod deflate;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod hub;
pub mod lifecycle;
pub mod metrics;
pub mod posting;
pub mod readiness;
pub mod serve;
pub mod telemetry;
pub mod web;
pub mod ws;

pub use app::App;
pub use config::Config;
