//! The WebSocket endpoint `GET /v1/streams/{stream_id}/ws` (PROTOCOL.md section 2).
//!
//! [`handshake`] refuses with plain HTTP before the upgrade; [`connection`] runs one
//! socket's loop; [`close`] is the table of close codes. This module is the only place that
//! sees axum's WebSocket `Message`.

pub mod close;
mod connection;

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::auth::Identity;
use crate::domain::wire::ErrorCode;
use crate::domain::{CommentId, StreamId};
use crate::http::{ApiError, bearer_token};
use crate::lifecycle::{AdmitError, ConnectionPermit};

/// tungstenite's defaults cost ~137 KB per idle socket (FIELD-NOTES trap 1). These fit
/// comments of 200 characters: a 1 KiB read buffer that grows only for a larger frame,
/// client messages and frames of at most 4 KiB, and a write buffer that collects a batch
/// of frames into one write. Its cap must fit the largest frame, a resumed `init` with the
/// whole history (at most 1,000 comments of at most ~3.2 KiB); a stalled socket is cut
/// off by the write timeout long before it holds that much.
pub const READ_BUFFER: usize = 1024;
pub const WRITE_BUFFER: usize = 16 * 1024;
pub const MAX_WRITE_BUFFER: usize = 4 * 1024 * 1024;
pub const MAX_CLIENT_FRAME: usize = 4 * 1024;

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
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let status = rejection.status();
            return refuse(
                &app,
                ApiError::with_status(status, ErrorCode::Invalid, "expected a WebSocket handshake"),
            );
        }
    };
    let upgraded_at = Instant::now();
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_CLIENT_FRAME)
        .max_frame_size(MAX_CLIENT_FRAME)
        .on_failed_upgrade(|error| tracing::debug!(%error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| connection::run(socket, admitted, app, upgraded_at))
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
