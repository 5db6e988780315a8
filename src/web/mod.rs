//! The viewer page at `/`: one HTML page with its stylesheet and script, compiled into the
//! binary (`web/`), no build step, no CDN. It speaks the public contract only (the WebSocket
//! and the moderation endpoints) plus, in development mode, `POST /dev/token`.
//!
//! The page's connection code is the client library `danmaku-client` (`clients/js/src`),
//! served as ES modules under `/danmaku-client/` and imported by `/app.js`; the page's own
//! list and overlay are the module `/page/comments.js`, a moderator's panel and actions
//! `/page/moderation.js`, the simulated player (the media clock) `/page/player.js`.
//!
//! The assets are separate routes so the page's `Content-Security-Policy` can forbid inline
//! script and style: everything comes from this origin, and the page may open WebSockets to it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::api_error::ApiError;
use crate::domain::wire::ErrorCode;

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");
const FAVICON_SVG: &str = include_str!("../../web/favicon.svg");

/// The page's own modules besides `app.js`, served at `/page/<file>`.
const PAGE_MODULES: [(&str, &str); 3] = [
    ("comments.js", include_str!("../../web/comments.js")),
    ("moderation.js", include_str!("../../web/moderation.js")),
    ("player.js", include_str!("../../web/player.js")),
];

/// The client library (`clients/js`, the npm package `danmaku-client`) the page is built on,
/// served as the ES modules it is published as: `/danmaku-client/<file>`.
const CLIENT_MODULES: [(&str, &str); 7] = [
    ("index.js", include_str!("../../clients/js/src/index.js")),
    ("errors.js", include_str!("../../clients/js/src/errors.js")),
    ("media.js", include_str!("../../clients/js/src/media.js")),
    (
        "position.js",
        include_str!("../../clients/js/src/position.js"),
    ),
    ("posts.js", include_str!("../../clients/js/src/posts.js")),
    ("tokens.js", include_str!("../../clients/js/src/tokens.js")),
    ("wire.js", include_str!("../../clients/js/src/wire.js")),
];

/// The page's policy: its own script, style and images only; WebSockets to this host.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; \
     img-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The marker in `index.html` that tells the script whether development mode is on.
const DEV_MARKER: &str = r#"<meta name="danmaku-dev" content="false">"#;

/// The page as this instance serves it (made once at start).
#[derive(Clone)]
pub struct WebState {
    index: Arc<str>,
}

impl WebState {
    /// `dev`: whether the page offers development mode's token form.
    pub fn new(dev: bool) -> Self {
        let index = if dev {
            INDEX_HTML.replace(DEV_MARKER, r#"<meta name="danmaku-dev" content="true">"#)
        } else {
            INDEX_HTML.to_owned()
        };
        Self {
            index: index.into(),
        }
    }
}

/// `GET /`.
pub async fn index(State(web): State<WebState>) -> Response {
    let mut response = asset("text/html; charset=utf-8", web.index.to_string());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `GET /app.js`.
pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /danmaku-client/{file}`: a module of the client library, else `404`.
pub async fn client_module(Path(file): Path<String>) -> Response {
    module(&CLIENT_MODULES, &file)
}

fn module(modules: &[(&str, &'static str)], file: &str) -> Response {
    match modules.iter().find(|(name, _)| *name == file) {
        Some((_, source)) => asset("text/javascript; charset=utf-8", *source),
        None => ApiError::new(ErrorCode::NotFound, "no such file").into_response(),
    }
}

/// `GET /page/{file}`: one of the page's modules, else `404`.
pub async fn page_module(Path(file): Path<String>) -> Response {
    module(&PAGE_MODULES, &file)
}

/// `GET /app.css`.
pub async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// `GET /favicon.svg`.
pub async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON_SVG)
}

fn asset(content_type: &'static str, body: impl Into<String>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The assets change with the binary; always revalidate (they are small).
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
        ],
        body.into(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_the_dev_marker_and_links_its_assets() {
        assert!(INDEX_HTML.contains(DEV_MARKER));
        assert!(INDEX_HTML.contains(r#"<script type="module" src="/app.js">"#));
        assert!(APP_JS.contains(r#"from "/danmaku-client/index.js""#));
        assert!(APP_JS.contains(r#"from "/page/comments.js""#));
        // Every module the library imports is served.
        for (_, source) in CLIENT_MODULES {
            for line in source.lines().filter(|l| l.starts_with("import ")) {
                let file = line.rsplit("\"./").next().unwrap().trim_end_matches("\";");
                assert!(
                    CLIENT_MODULES.iter().any(|(name, _)| *name == file),
                    "{line}"
                );
            }
        }
        assert!(INDEX_HTML.contains(r#"href="/app.css""#));
        // No inline script or style: the policy forbids them.
        assert!(!INDEX_HTML.contains("<script>") && !INDEX_HTML.contains("style="));
    }

    #[test]
    fn development_mode_turns_the_marker_on() {
        assert!(WebState::new(true).index.contains(r#"content="true""#));
        assert!(!WebState::new(false).index.contains(r#"content="true""#));
    }
}
