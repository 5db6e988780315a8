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

use super::{HttpState, json_body, moderated};
use crate::api_error::ApiError;
use crate::broker::{Ban, BanMode, MAX_BAN};
use crate::domain::UserId;
use crate::domain::wire::ErrorCode;

#[derive(Debug, Deserialize)]
pub struct BanRequest {
    user_id: String,
    /// Absent: the longest ban, [`MAX_BAN`].
    seconds: Option<u64>,
    /// Absent: `ban`.
    mode: Option<BanMode>,
    /// Also delete every retained comment of the user.
    #[serde(default)]
    purge: bool,
}

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
pub async fn list(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<Json<BanList>, ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let bans = http.broker.bans(&stream).await?;
    Ok(Json(BanList { bans }))
}

#[derive(Debug, serde::Serialize)]
pub struct BanList {
    bans: Vec<Ban>,
}

/// Lifts a ban: `204`, or `404` if the user was not banned.
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
