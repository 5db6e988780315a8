//! Comments held for review (the contract's section 9): `GET /v1/streams/{id}/held` lists
//! them (kept an hour, at most 1,000 per stream); `POST …/held/{held_id}/approve` publishes
//! one as a new comment (`201 {"comment"}`); `DELETE …/held/{held_id}` drops it (`204`). The
//! author's connections are told either way. A moderator of the stream or a service may do
//! each; a held id that expired or was decided already is `404`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{HttpState, moderated};
use crate::api_error::ApiError;
use crate::broker::BrokerError;
use crate::domain::CommentId;
use crate::domain::wire::ErrorCode;

pub async fn list(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let held = http.broker.held(&stream).await?;
    Ok(Json(json!({ "held": held })))
}

pub async fn approve(
    State(http): State<HttpState>,
    Path((stream, held_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let held_id = held_id_of(&held_id)?;
    let comment = http
        .posting
        .approve(&stream, held_id)
        .await
        .map_err(not_held)?;
    tracing::info!(%stream, %held_id, id = %comment.id, "held comment approved");
    Ok((StatusCode::CREATED, Json(json!({ "comment": comment }))))
}

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
