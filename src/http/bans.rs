//! `POST /v1/streams/{id}/bans`: refuse a user's comments and handshakes on a stream, and
//! close their open sockets there.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{ApiError, bearer_token, json_body, stream_id};
use crate::app::AppState;
use crate::broker::MAX_BAN;
use crate::domain::wire::ErrorCode;

#[derive(Debug, Deserialize)]
pub(super) struct BanRequest {
    user_id: String,
    /// Absent: the longest ban, [`MAX_BAN`].
    seconds: Option<u64>,
}

pub(super) async fn create(
    State(app): State<AppState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let stream = stream_id(&stream)?;
    app.auth.moderator(bearer_token(&headers), &stream)?;
    let ban: BanRequest = json_body(body)?;
    if ban.user_id.is_empty() || ban.user_id.chars().count() > 128 {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "user_id must be 1 to 128 characters",
        ));
    }
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
    app.broker.ban(&stream, &ban.user_id, duration).await?;
    tracing::info!(%stream, seconds = duration.as_secs(), "user banned");
    Ok(StatusCode::NO_CONTENT)
}
