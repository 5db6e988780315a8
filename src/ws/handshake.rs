//! The handshake of `GET /v1/streams/{stream_id}/ws`: the contract's checks, cheapest first,
//! each refusal a plain HTTP answer before the upgrade; then the `101` and the connection's
//! task.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Instant;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use socket2::SockRef;
use tokio::net::TcpStream;

use super::WsState;
use super::connection::{self, Session};
use crate::api_error::ApiError;
use crate::auth::Identity;
use crate::broker::BanMode;
use crate::deflate;
use crate::delivery::policy::SEND_BUFFER;
use crate::delivery::{Deflate, Tier};
use crate::domain::wire::ErrorCode;
use crate::domain::{CommentId, Epoch, StreamId};
use crate::lifecycle::AdmitError;
use crate::serve::ErrorBodies;

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

/// The handler of `GET /v1/streams/{stream_id}/ws`.
pub async fn handshake(
    State(ws): State<WsState>,
    Path(stream): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    raw: RawUpgrade,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let params = match query {
        Ok(Query(params)) => params,
        Err(_) => {
            let error = ApiError::new(ErrorCode::Invalid, "the query string is not valid");
            return refuse(&ws, error);
        }
    };
    let (stream, identity, after, epoch, budget) =
        match check(&ws, &stream, &params, &headers).await {
            Ok(checked) => checked,
            Err(error) => return refuse(&ws, error),
        };
    let permit = match ws.lifecycle.admit() {
        Ok(permit) => permit,
        Err(AdmitError::Draining) => return refuse(&ws, draining()),
        Err(AdmitError::Full) => {
            let error = ApiError::new(
                ErrorCode::Unavailable,
                "this instance is at its connection limit",
            );
            return refuse(&ws, error);
        }
    };
    // axum checked the handshake; HTTP/1.1 (the only protocol served) always has the key.
    let (on_upgrade, key) = match (upgrade, raw.0, headers.get(header::SEC_WEBSOCKET_KEY)) {
        (Ok(_checked), Some(on_upgrade), Some(key)) => (on_upgrade, key),
        (Err(rejection), _, _) => {
            let status = rejection.status();
            let error =
                ApiError::with_status(status, ErrorCode::Invalid, "expected a WebSocket handshake");
            return refuse(&ws, error);
        }
        (Ok(_), _, _) => {
            let error = ApiError::with_status(
                StatusCode::UPGRADE_REQUIRED,
                ErrorCode::Invalid,
                "expected a WebSocket handshake",
            );
            return refuse(&ws, error);
        }
    };
    let compression = compression(&ws, &headers);
    let session = Box::new(Session {
        stream,
        identity,
        after,
        epoch,
        budget,
        permit,
        upgraded_at: Instant::now(),
        deflate: compression
            .as_ref()
            .map(|&(min_bytes, _)| Deflate { min_bytes }),
    });
    tokio::spawn(upgrade_then_serve(on_upgrade, session, ws));
    // 101 with the key's signature, as axum's `on_upgrade` answers.
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, HeaderValue::from_static("upgrade"))
        .header(header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            tungstenite::handshake::derive_accept_key(key.as_bytes()),
        );
    if let Some((_, answer)) = compression {
        response = response.header(header::SEC_WEBSOCKET_EXTENSIONS, answer);
    }
    response.body(Body::empty()).expect("a valid 101 response")
}

/// When compression is on and the client offers `permessage-deflate` in a form whose frames
/// can be shared: the least frame size compressed and the handshake's answer.
fn compression(ws: &WsState, headers: &HeaderMap) -> Option<(usize, String)> {
    let min_bytes = ws.settings.compression?;
    let offers = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok());
    deflate::negotiate(offers).map(|answer| (min_bytes, answer))
}

/// Takes the TCP socket back from the upgraded connection (the room's task writes to it
/// directly), with any bytes the client sent after its handshake, and serves it.
async fn upgrade_then_serve(on_upgrade: OnUpgrade, session: Box<Session>, ws: WsState) {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => return tracing::debug!(%error, "WebSocket upgrade failed"),
    };
    match upgraded.downcast::<TokioIo<ErrorBodies<TcpStream>>>() {
        Ok(parts) => {
            // `read_buf` is a view of hyper's read buffer (8 KiB or more): copied and
            // dropped here, so that buffer is freed rather than kept per connection.
            let prefix = Bytes::copy_from_slice(&parts.read_buf);
            let socket = parts.io.into_inner().into_inner();
            drop(parts.read_buf);
            if let Err(error) = SockRef::from(&socket).set_send_buffer_size(SEND_BUFFER) {
                tracing::debug!(%error, "could not size the socket's send buffer");
            }
            connection::serve(socket, prefix, session, ws).await;
        }
        // Only if the server were served over something other than TCP.
        Err(_) => tracing::error!("an upgraded connection is not a TCP socket; dropped"),
    }
}

fn refuse(ws: &WsState, error: ApiError) -> Response {
    ws.metrics.handshake_refused();
    error.into_response()
}

fn draining() -> ApiError {
    ApiError::new(
        ErrorCode::Draining,
        "this instance is draining; connect to another",
    )
}

/// What the handshake's checks made of it.
type Checked = (StreamId, Identity, Option<CommentId>, Option<Epoch>, Tier);

/// The checks of the contract's section 2, cheapest first: the stream, its parameters and
/// the connection's identity.
async fn check(
    ws: &WsState,
    stream: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Checked, ApiError> {
    if ws.lifecycle.is_draining() {
        return Err(draining());
    }
    let stream =
        StreamId::parse(stream).map_err(|e| ApiError::new(ErrorCode::Invalid, e.to_string()))?;
    let after = params
        .get("after")
        .map(|a| a.parse::<CommentId>())
        .transpose()
        .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("after: {e}")))?;
    let max_rate = params
        .get("max_rate")
        .map(|n| n.parse::<u32>().ok().filter(|&n| n >= 1))
        .map(|n| {
            n.ok_or_else(|| {
                ApiError::new(ErrorCode::Invalid, "max_rate: expected a positive integer")
            })
        })
        .transpose()?;
    let budget = Tier::for_viewer(ws.settings.viewer_max_rate, max_rate);
    let epoch = params
        .get("epoch")
        .map(|e| Epoch::parse(e))
        .transpose()
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Invalid,
                "epoch: expected the epoch of an earlier init",
            )
        })?;
    if let (Some(allowed), Some(origin)) =
        (&ws.settings.allowed_origins, headers.get(header::ORIGIN))
        && !origin.to_str().is_ok_and(|o| allowed.allows(o))
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this origin is not allowed",
        ));
    }
    let access_token = params.get("access_token").map(String::as_str);
    let identity = ws
        .auth
        .handshake(headers, access_token)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unauthorized, e.to_string()))?;
    if let Identity::Viewer(viewer) = &identity {
        // A muted or shadow-banned user may still watch.
        let mode = ws
            .broker
            .ban_mode(&stream, &viewer.user.id)
            .await
            .map_err(ApiError::from)?;
        if mode == Some(BanMode::Ban) {
            return Err(ApiError::new(
                ErrorCode::Banned,
                "you are banned from this stream",
            ));
        }
    }
    if !ws.readiness.admit_handshake() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "this instance is warming up after high load; connect to another",
        ));
    }
    Ok((stream, identity, after, epoch, budget))
}
