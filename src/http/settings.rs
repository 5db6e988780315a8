//! `GET` and `PATCH /v1/streams/{id}/settings` (the contract's section 9): slow mode, the
//! roles that may post, the pinned comment. A change reaches every viewer on every instance
//! as a `settings` frame. A moderator of the stream or a service may do each.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::Value;

use super::openapi::{Forbidden, Invalid, NotFound, NotJson, TooLarge, Unauthorized, Unavailable};
use super::{HttpState, moderated};
use crate::api_error::ApiError;
use crate::broker::BrokerError;
use crate::domain::wire::ErrorCode;
use crate::domain::{SettingsPatch, StreamId, StreamSettings};

/// `{"settings": S}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SettingsAnswer {
    pub settings: StreamSettings,
}

#[utoipa::path(
    get, path = "/v1/streams/{stream_id}/settings", tag = "moderation",
    params(("stream_id" = StreamId, Path, description = "The stream.")),
    responses(
        (status = 200, description = "The stream's settings.", body = SettingsAnswer),
        (status = 400, response = Invalid),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("service" = []), ("viewer" = [])),
)]
pub async fn show(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<Json<SettingsAnswer>, ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let settings = http.broker.settings(&stream).await?;
    Ok(Json(SettingsAnswer { settings }))
}

/// Any subset of the settings: `200 {"settings"}` with the whole new object; `400` naming the
/// field out of range; `404` for a pin to a comment that is not retained.
#[utoipa::path(
    patch, path = "/v1/streams/{stream_id}/settings", tag = "moderation",
    params(("stream_id" = StreamId, Path, description = "The stream.")),
    request_body = SettingsPatch,
    responses(
        (status = 200, description = "The whole new settings; every viewer gets `settings`.", body = SettingsAnswer),
        (status = 400, response = Invalid),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 415, response = NotJson),
        (status = 503, response = Unavailable),
    ),
    security(("service" = []), ("viewer" = [])),
)]
pub async fn update(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<SettingsAnswer>, ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let Json(body) = body?;
    let patch = SettingsPatch::parse(&body)
        .map_err(|e| ApiError::new(ErrorCode::Invalid, e.to_string()))?;
    let settings = match http.broker.update_settings(&stream, &patch).await {
        Err(BrokerError::NotFound) => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "pinned: no such comment is retained",
            ));
        }
        other => other?,
    };
    tracing::info!(%stream, ?settings, "settings changed");
    Ok(Json(SettingsAnswer { settings }))
}
