//! `POST /v1/streams/{id}/bans`: a `ban` refuses a user's comments and handshakes on a
//! stream and closes their open sockets there; a `mute` refuses their comments and lets them
//! watch; a `shadow` ban lets them post as usual, but only they and the stream's moderators
//! see what they post. `purge` also deletes their retained comments. `GET` lists the bans in
//! force with their modes; `DELETE /v1/streams/{id}/bans/{user_id}` lifts one. A moderator
//! of the stream or a service may do each.
//!
//! A ban holds back the user's own comments (`kind: user`), not a service's system comment
//! on their behalf: a gift they paid for still shows.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::openapi::{Forbidden, Invalid, NotFound, NotJson, TooLarge, Unauthorized, Unavailable};
use super::{HttpState, json_body, moderated};
use crate::api_error::ApiError;
use crate::broker::{Ban, BanMode, MAX_BAN};
use crate::domain::wire::ErrorCode;
use crate::domain::{StreamId, UserId};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BanRequest {
    #[schema(value_type = UserId)]
    user_id: String,
    /// 1 to 2,592,000 (30 days); absent: 30 days.
    #[schema(minimum = 1, maximum = 2_592_000, nullable)]
    seconds: Option<u64>,
    /// Absent: `ban`.
    #[schema(nullable)]
    mode: Option<BanMode>,
    /// Also delete every retained comment of the user.
    #[serde(default)]
    purge: bool,
}

/// Bans, mutes or shadow-bans a user on the stream.
#[utoipa::path(
    post, path = "/v1/streams/{stream_id}/bans", tag = "moderation",
    params(("stream_id" = StreamId, Path, description = "The stream.")),
    request_body = BanRequest,
    responses(
        (status = 204, description = "In force on every instance."),
        (status = 400, response = Invalid),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = TooLarge),
        (status = 415, response = NotJson),
        (status = 503, response = Unavailable),
    ),
    security(("service" = []), ("viewer" = [])),
)]
pub async fn create(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let ban: BanRequest = json_body(body)?;
    let user = UserId::parse(&ban.user_id)
        .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("user_id: {e}")))?;
    let duration = match ban.seconds {
        None => MAX_BAN,
        Some(s) if (1..=MAX_BAN.as_secs()).contains(&s) => Duration::from_secs(s),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::Invalid,
                "seconds must be between 1 and 2592000 (30 days)",
            ));
        }
    };
    let mode = ban.mode.unwrap_or(BanMode::Ban);
    http.broker
        .ban(&stream, &user, duration, mode, ban.purge)
        .await?;
    let (mode, purge) = (mode.as_str(), ban.purge);
    tracing::info!(%stream, seconds = duration.as_secs(), mode, purge, "user banned");
    Ok(StatusCode::NO_CONTENT)
}

/// The bans in force: `200 {"bans": [{"user_id", "expires_at", "mode"}]}`, soonest to end
/// first.
#[utoipa::path(
    get, path = "/v1/streams/{stream_id}/bans", tag = "moderation",
    params(("stream_id" = StreamId, Path, description = "The stream.")),
    responses(
        (status = 200, description = "The bans in force, soonest to end first.", body = BanList),
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
) -> Result<Json<BanList>, ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let bans = http.broker.bans(&stream).await?;
    Ok(Json(BanList { bans }))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BanList {
    bans: Vec<Ban>,
}

/// Lifts a ban: `204`, or `404` if the user was not banned.
#[utoipa::path(
    delete, path = "/v1/streams/{stream_id}/bans/{user_id}", tag = "moderation",
    params(
        ("stream_id" = StreamId, Path, description = "The stream."),
        ("user_id" = UserId, Path, description = "The user."),
    ),
    responses(
        (status = 204, description = "Lifted."),
        (status = 400, response = Invalid),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("service" = []), ("viewer" = [])),
)]
pub async fn remove(
    State(http): State<HttpState>,
    Path((stream, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let user = UserId::parse(&user)
        .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("user_id: {e}")))?;
    if !http.broker.unban(&stream, &user).await? {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "this user is not banned",
        ));
    }
    tracing::info!(%stream, "ban lifted");
    Ok(StatusCode::NO_CONTENT)
}
