//! The one integration-test binary: the real app on port 0, real WebSocket and HTTP clients.

// Helpers are `pub` for the sibling modules of this binary crate; nothing is exported.
#![allow(unreachable_pub)]

mod helpers;
mod raw;
mod redis_support;
mod tls_pki;

mod bad_input;
mod binary;
mod browser;
mod browser_media;
mod browser_toolbox;
mod http_abuse;
mod http_api;
mod identity;
mod media;
mod observability;
mod openapi;
mod otlp;
mod redis_broker;
mod redis_media;
mod redis_moderation;
mod redis_restart;
mod redis_smoke;
mod redis_tls;
mod redis_toolbox;
mod shutdown;
mod terms_file;
mod toolbox;
mod ws_compression;
mod ws_frames;
mod ws_handshake;
mod ws_limits;
mod ws_moderation;
mod ws_refresh;
mod ws_thinning;
