//! Comments held for review (the contract's section 9): `GET /v1/streams/{id}/held` lists
//! them (kept an hour, at most 1,000 per stream); `POST …/held/{held_id}/approve` publishes
//! one as a new comment (`201 {"comment"}`); `DELETE …/held/{held_id}` drops it (`204`). The
//! author's connections are told either way. A moderator of the stream or a service may do
//! each; a held id that expired or was decided already is `404`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;

use super::comments::CommentAnswer;
use super::openapi::{Forbidden, Invalid, NotFound, Unauthorized, Unavailable};
use super::{HttpState, moderated};
use crate::api_error::ApiError;
use crate::broker::BrokerError;
use crate::domain::wire::ErrorCode;
use crate::domain::{Comment, CommentId, StreamId};

/// The comments held for review, oldest first; each `id` is its held id.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeldList {
    pub held: Vec<Comment>,
}

#[utoipa::path(
    get, path = "/v1/streams/{stream_id}/held", tag = "moderation",
    params(("stream_id" = StreamId, Path, description = "The stream.")),
    responses(
        (status = 200, description = "Held comments, oldest first.", body = HeldList),
        (status = 400, response = Invalid),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("service" = []), ("viewer" = [])),
)]
pub async fn list(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<Json<HeldList>, ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let held = http.broker.held(&stream).await?;
    Ok(Json(HeldList { held }))
}

/// Publishes a held comment as a new one (a new id and `ts`); its author is told.
#[utoipa::path(
    post, path = "/v1/streams/{stream_id}/held/{held_id}/approve", tag = "moderation",
    params(
        ("stream_id" = StreamId, Path, description = "The stream."),
        ("held_id" = CommentId, Path, description = "The held comment."),
    ),
    responses(
        (status = 201, description = "Published.", body = CommentAnswer),
        (status = 400, response = Invalid),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("service" = []), ("viewer" = [])),
)]
pub async fn approve(
    State(http): State<HttpState>,
    Path((stream, held_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<CommentAnswer>), ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let held_id = held_id_of(&held_id)?;
    let comment = http
        .posting
        .approve(&stream, held_id)
        .await
        .map_err(not_held)?;
    tracing::info!(%stream, %held_id, id = %comment.id, "held comment approved");
    Ok((StatusCode::CREATED, Json(CommentAnswer { comment })))
}

/// Drops a held comment; its author is told.
#[utoipa::path(
    delete, path = "/v1/streams/{stream_id}/held/{held_id}", tag = "moderation",
    params(
        ("stream_id" = StreamId, Path, description = "The stream."),
        ("held_id" = CommentId, Path, description = "The held comment."),
    ),
    responses(
        (status = 204, description = "Dropped."),
        (status = 400, response = Invalid),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("service" = []), ("viewer" = [])),
)]
pub async fn reject(
    State(http): State<HttpState>,
    Path((stream, held_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let held_id = held_id_of(&held_id)?;
    http.posting
        .reject(&stream, held_id)
        .await
        .map_err(not_held)?;
    tracing::info!(%stream, %held_id, "held comment rejected");
    Ok(StatusCode::NO_CONTENT)
}

fn held_id_of(raw: &str) -> Result<CommentId, ApiError> {
    raw.parse()
        .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("held id: {e}")))
}

fn not_held(error: BrokerError) -> ApiError {
    match error {
        BrokerError::NotFound => ApiError::new(
            ErrorCode::NotFound,
            "no such held comment (expired, or approved or rejected already)",
        ),
        other => other.into(),
    }
}
