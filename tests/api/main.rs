//! The one integration-test binary: the real app on port 0, real WebSocket and HTTP clients.

mod helpers;
mod raw;

mod binary;
mod http_api;
mod shutdown;
mod ws_frames;
mod ws_handshake;
mod ws_limits;
mod ws_moderation;
