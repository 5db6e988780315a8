//! `GET /v1/streams/{id}/replay?from=<ms>&to=<ms>` (the contract's section 10): the chat of
//! a VOD, the comments whose media time lies in `[from, to)` (at most ten minutes), by media
//! time then id, without deleted or shadowed ones. Anyone who may watch may replay. A window
//! that ended more than two minutes ago is final (no comment can still be posted into it:
//! media times lie at most 120 s behind their post): its answer carries an `ETag` (of its
//! bytes) and `Cache-Control: public, max-age=3600`, and `If-None-Match` with it is `304`,
//! so a CDN can serve a VOD's chat. With replay off (`DANMAKU_REPLAY_RETENTION_S=0`): `404`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::comments::CommentList;
use super::openapi::{Invalid, NotFound, Unauthorized, Unavailable};
use super::{HttpState, stream_id};
use crate::api_error::ApiError;
use crate::auth::bearer_token;
use crate::broker::BrokerError;
use crate::domain::wire::{ErrorCode, encode_comments};
use crate::domain::{MAX_REPLAY_WINDOW_MS, MEDIA_BEHIND_MS, StreamId, now_ms};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReplayQuery {
    /// The window's start, Unix ms (inclusive).
    #[param(value_type = u64, required = true)]
    from: Option<String>,
    /// The window's end, Unix ms (exclusive): after `from`, at most 600,000 ms later.
    #[param(value_type = u64, required = true)]
    to: Option<String>,
}

/// The comments whose media time lies in `[from, to)`, by media time then id.
#[utoipa::path(
    get, path = "/v1/streams/{stream_id}/replay", tag = "replay",
    params(("stream_id" = StreamId, Path, description = "The stream."), ReplayQuery),
    responses(
        (status = 200, description = "The window's comments. A window that ended over two \
                                      minutes ago is final: cacheable for an hour, with an \
                                      `ETag`.", body = CommentList,
         headers(
             ("Cache-Control" = String, description = "`public, max-age=3600` when final, else `no-cache`."),
             ("ETag" = String, description = "Of the body, when final."),
         )),
        (status = 304, description = "Final, and `If-None-Match` named its `ETag`."),
        (status = 400, response = Invalid),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("viewer" = []), ("service" = []), ()),
)]
pub async fn window(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ReplayQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    http.auth.watcher(bearer_token(&headers)).await?;
    let stream = stream_id(&stream)?;
    let Query(query) = query.map_err(|e| ApiError::new(ErrorCode::Invalid, e.body_text()))?;
    let (from, to) = bounds(&query)?;
    let comments = http
        .broker
        .replay(&stream, from, to)
        .await
        .map_err(|e| match e {
            BrokerError::NotFound => {
                ApiError::new(ErrorCode::NotFound, "replay is off on this server")
            }
            other => other.into(),
        })?;
    let body = serde_json::to_string(&CommentList {
        comments: encode_comments(&comments),
    })
    .expect("comments always serialize");
    let mut response = if to.saturating_add(MEDIA_BEHIND_MS) < now_ms() {
        let etag = format!("\"{}\"", hex(&Sha256::digest(body.as_bytes())[..16]));
        let cached = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| {
                // A weak tag (a CDN that compressed the answer) matches too (RFC 9110).
                tags.split(',')
                    .map(|t| t.trim().trim_start_matches("W/"))
                    .any(|t| t == etag || t == "*")
            });
        let mut response = if cached {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            json_response(body)
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
        response
    } else {
        let mut response = json_response(body);
        // Still open: a comment may yet be posted into it.
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    };
    if !http.auth.allows_anonymous() {
        // Only those who may watch may replay: a shared cache must not hand it to others.
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("authorization"));
    }
    Ok(response)
}

/// `from` and `to` as milliseconds, `to` after `from` and at most ten minutes later; else
/// `400` naming the parameter.
fn bounds(query: &ReplayQuery) -> Result<(u64, u64), ApiError> {
    let ms = |name: &str, value: &Option<String>| -> Result<u64, ApiError> {
        let value = value.as_deref().ok_or_else(|| {
            ApiError::new(ErrorCode::Invalid, format!("{name} is required (Unix ms)"))
        })?;
        value.parse().map_err(|_| {
            ApiError::new(
                ErrorCode::Invalid,
                format!("{name} must be a Unix time in ms, not {value:?}"),
            )
        })
    };
    let (from, to) = (ms("from", &query.from)?, ms("to", &query.to)?);
    if to <= from {
        return Err(ApiError::new(ErrorCode::Invalid, "to must be after from"));
    }
    if to - from > MAX_REPLAY_WINDOW_MS {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "to must be at most 600000 ms after from",
        ));
    }
    Ok((from, to))
}

fn json_response(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
