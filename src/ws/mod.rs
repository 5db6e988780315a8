//! The WebSocket endpoint `GET /v1/streams/{stream_id}/ws` (PROTOCOL.md section 2).
//!
//! [`handshake`] refuses with plain HTTP before the upgrade; [`connection`] runs one
//! socket's loop; [`close`] is the table of close codes. This module is the only place that
//! sees tungstenite's WebSocket `Message`.

pub mod close;
mod connection;

use std::collections::HashMap;
use std::time::Instant;

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use tungstenite::protocol::WebSocketConfig;

use crate::app::AppState;
use crate::auth::Identity;
use crate::domain::wire::ErrorCode;
use crate::domain::{CommentId, StreamId};
use crate::http::{ApiError, bearer_token};
use crate::lifecycle::{AdmitError, ConnectionPermit};

/// tungstenite's defaults cost ~137 KB per idle socket (FIELD-NOTES trap 1). These fit
/// comments of 200 characters: a 512-byte read buffer that grows only for a larger frame
/// (an idle socket keeps it, so it is small; a 4 KiB client frame takes a few reads),
/// client messages and frames of at most 4 KiB, and a write buffer that collects a batch
/// of frames into one write. tungstenite's write buffer keeps the capacity of the largest
/// write, so `init` (up to the whole history) does not go through it: it is written to the
/// upgraded connection before tungstenite wraps it (see `connection::write_init`). The cap
/// fits the largest frame that does, a `comments` frame of 100 comments; a stalled socket
/// is cut off by the write timeout long before it holds that much.
pub const READ_BUFFER: usize = 512;
pub const WRITE_BUFFER: usize = 16 * 1024;
pub const MAX_WRITE_BUFFER: usize = 4 * 1024 * 1024;
pub const MAX_CLIENT_FRAME: usize = 4 * 1024;

/// The socket configuration of the constants above.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(MAX_CLIENT_FRAME))
        .max_frame_size(Some(MAX_CLIENT_FRAME))
}

/// The request's upgrade handle, cloned before axum's [`WebSocketUpgrade`] takes it.
///
/// axum's extractor still checks the handshake (and picks the refusal status), but the
/// socket task is ours: it writes the `init` frame to the upgraded connection before
/// tungstenite wraps it, so tungstenite's write buffer never grows to the size of `init`
/// (a `Vec` keeps its capacity: with 50 history comments that was ~8 KiB per idle socket).
pub struct RawUpgrade(Option<OnUpgrade>);

impl<S: Send + Sync> FromRequestParts<S> for RawUpgrade {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self(parts.extensions.get::<OnUpgrade>().cloned()))
    }
}

/// A handshake that passed every check, carried into the socket task.
struct Admitted {
    stream: StreamId,
    identity: Identity,
    after: Option<CommentId>,
    permit: ConnectionPermit,
}

pub async fn handshake(
    State(app): State<AppState>,
    Path(stream): Path<String>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    raw: RawUpgrade,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let params = match query {
        Ok(Query(params)) => params,
        Err(_) => {
            return refuse(
                &app,
                ApiError::new(ErrorCode::Invalid, "the query string is not valid"),
            );
        }
    };
    let admitted = match admit(&app, &stream, &params, &headers).await {
        Ok(admitted) => admitted,
        Err(error) => return refuse(&app, error),
    };
    let on_upgrade = match (upgrade, raw.0) {
        (Ok(_checked), Some(on_upgrade)) => on_upgrade,
        (Ok(_), None) => {
            return refuse(
                &app,
                ApiError::with_status(
                    StatusCode::UPGRADE_REQUIRED,
                    ErrorCode::Invalid,
                    "expected a WebSocket handshake",
                ),
            );
        }
        (Err(rejection), _) => {
            let status = rejection.status();
            return refuse(
                &app,
                ApiError::with_status(status, ErrorCode::Invalid, "expected a WebSocket handshake"),
            );
        }
    };
    let upgraded_at = Instant::now();
    tokio::spawn(connection::run(
        on_upgrade,
        Box::new(admitted),
        app,
        upgraded_at,
    ));
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        // HTTP/1.1: 101 with the key's signature, as axum's `on_upgrade` answers.
        Some(key) => Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, HeaderValue::from_static("upgrade"))
            .header(header::UPGRADE, HeaderValue::from_static("websocket"))
            .header(
                header::SEC_WEBSOCKET_ACCEPT,
                tungstenite::handshake::derive_accept_key(key.as_bytes()),
            )
            .body(Body::empty())
            .expect("a valid 101 response"),
        // HTTP/2 extended CONNECT (RFC 8441): a 2xx with an empty body.
        None => Response::new(Body::empty()),
    }
}

fn refuse(app: &AppState, error: ApiError) -> Response {
    app.metrics.handshake_refused();
    error.into_response()
}

/// The checks of PROTOCOL.md section 2, cheapest first.
async fn admit(
    app: &AppState,
    stream: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Admitted, ApiError> {
    if app.lifecycle.is_draining() {
        return Err(ApiError::new(
            ErrorCode::Draining,
            "this instance is draining; connect to another",
        ));
    }
    let stream =
        StreamId::parse(stream).map_err(|e| ApiError::new(ErrorCode::Invalid, e.to_string()))?;
    let after = params
        .get("after")
        .map(|a| a.parse::<CommentId>())
        .transpose()
        .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("after: {e}")))?;
    if let (Some(allowed), Some(origin)) =
        (&app.config.allowed_origins, headers.get(header::ORIGIN))
        && !origin.to_str().is_ok_and(|o| allowed.allows(o))
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this origin is not allowed",
        ));
    }
    let token = bearer_token(headers).or(params.get("access_token").map(String::as_str));
    let identity = app
        .auth
        .viewer(token)
        .map_err(|e| ApiError::new(ErrorCode::Unauthorized, e.to_string()))?;
    if let Identity::Viewer(viewer) = &identity {
        let banned = app
            .broker
            .is_banned(&stream, &viewer.user.id)
            .await
            .map_err(ApiError::from)?;
        if banned {
            return Err(ApiError::new(
                ErrorCode::Banned,
                "you are banned from this stream",
            ));
        }
    }
    if !app.readiness.admit_handshake() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "this instance is warming up after high load; connect to another",
        ));
    }
    let permit = app.lifecycle.admit().map_err(|e| match e {
        AdmitError::Draining => ApiError::new(
            ErrorCode::Draining,
            "this instance is draining; connect to another",
        ),
        AdmitError::Full => ApiError::new(
            ErrorCode::Unavailable,
            "this instance is at its connection limit",
        ),
    })?;
    Ok(Admitted {
        stream,
        identity,
        after,
        permit,
    })
}
