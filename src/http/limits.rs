//! Request bodies, read before any handler sees them: within `DANMAKU_HTTP_TIMEOUT_MS`
//! (`408` when late) and within [`MAX_BODY_BYTES`] (`413`; a stream's blocked terms may
//! take [`terms::MAX_BODY_BYTES`]), each answer the contract's error object.
//!
//! A body that is too large is read on and thrown away, up to [`DRAIN_MAX_BYTES`] and
//! [`DRAIN_TIME`], before the `413` goes out: a client that writes its whole body before it
//! reads (Python's `urllib`, most simple clients) would otherwise have its socket reset
//! under it and see a broken pipe instead of the answer. A body announced larger than that
//! is refused at once, and the connection closed.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::{MAX_BODY_BYTES, terms};
use crate::api_error::ApiError;
use crate::domain::wire::ErrorCode;
use crate::serve::ConnectionSlot;

/// The most of a too-large body read and thrown away so its sender can read the `413`.
pub const DRAIN_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// The longest a too-large body is read on for that.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// How long a body may take (`DANMAKU_HTTP_TIMEOUT_MS`).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// The middleware: buffers the request body (if any) within the limits, then runs the
/// handler with it.
pub async fn read_body(
    State(BodyTimeout(timeout)): State<BodyTimeout>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    if declared.unwrap_or(0) == 0 && !chunked {
        return next.run(request).await;
    }
    if declared.is_some_and(|n| n > DRAIN_MAX_BYTES) {
        return closing(too_large(max_body_bytes(&request)));
    }
    let limit = max_body_bytes(&request);
    let (parts, mut body) = request.into_parts();
    // While the body comes, the connection may be closed to make room for others.
    let serving = Serving(parts.extensions.get::<ConnectionSlot>().cloned());
    if let Some(slot) = &serving.0 {
        slot.waiting();
    }
    let deadline = Instant::now() + timeout;
    let mut buffer = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return closing(ApiError::with_status(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorCode::Invalid,
                    "the request body did not arrive in time",
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return closing(ApiError::new(
                    ErrorCode::Invalid,
                    "the request body could not be read",
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buffer.len() + data.len() > limit {
            let read = (buffer.len() + data.len()) as u64;
            return match drain(body, read).await {
                true => too_large(limit).into_response(),
                false => closing(too_large(limit)),
            };
        }
        buffer.extend_from_slice(&data);
    }
    drop(serving);
    next.run(Request::from_parts(parts, Body::from(buffer.freeze())))
        .await
}

/// Marks the connection as serving again when the body has been read (or refused).
struct Serving(Option<ConnectionSlot>);

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(slot) = &self.0 {
            slot.serving();
        }
    }
}

/// Reads the rest of a body and throws it away, within [`DRAIN_MAX_BYTES`] (counting the
/// `read` bytes already taken) and [`DRAIN_TIME`]; whether it all arrived.
async fn drain(mut body: Body, mut read: u64) -> bool {
    let deadline = Instant::now() + DRAIN_TIME;
    while read <= DRAIN_MAX_BYTES {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) => return true,
            Ok(Some(Ok(frame))) => {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
    false
}

/// The most bytes `request`'s body may have: a stream's list of blocked terms needs more
/// than the rest.
fn max_body_bytes(request: &Request) -> usize {
    let terms = request.method() == Method::PUT && request.uri().path().ends_with("/terms");
    if terms {
        terms::MAX_BODY_BYTES
    } else {
        MAX_BODY_BYTES
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::with_status(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Invalid,
        format!("the request body is larger than {limit} bytes"),
    )
}

/// The answer, and the connection closed after it (the rest of the body was not read).
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
