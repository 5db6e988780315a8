//! `POST /v1/streams/{id}/bans`: refuse a user's comments and handshakes on a stream, and
//! close their open sockets there.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{HttpState, json_body, stream_id};
use crate::api_error::ApiError;
use crate::auth::bearer_token;
use crate::broker::MAX_BAN;
use crate::domain::UserId;
use crate::domain::wire::ErrorCode;

#[derive(Debug, Deserialize)]
pub struct BanRequest {
    user_id: String,
    /// Absent: the longest ban, [`MAX_BAN`].
    seconds: Option<u64>,
}

pub async fn create(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let stream = stream_id(&stream)?;
    http.auth.moderator(bearer_token(&headers), &stream).await?;
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
    http.broker.ban(&stream, &user, duration).await?;
    tracing::info!(%stream, seconds = duration.as_secs(), "user banned");
    Ok(StatusCode::NO_CONTENT)
}
