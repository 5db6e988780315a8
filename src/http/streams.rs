//! `GET /v1/streams/{id}`: viewer counts and comment count across the cluster.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Serialize;

use super::openapi::{Forbidden, Invalid, Unauthorized, Unavailable};
use super::{HttpState, stream_id};
use crate::api_error::ApiError;
use crate::auth::bearer_token;
use crate::domain::StreamId;

/// A stream's counts across the cluster.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamStats {
    pub stream_id: StreamId,
    pub viewer_count: u64,
    pub peak_viewer_count: u64,
    pub comment_count: u64,
}

#[utoipa::path(
    get, path = "/v1/streams/{stream_id}", tag = "streams",
    params(("stream_id" = StreamId, Path, description = "The stream.")),
    responses(
        (status = 200, description = "Viewer and comment counts.", body = StreamStats),
        (status = 400, response = Invalid),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("service" = [])),
)]
pub async fn show(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<Json<StreamStats>, ApiError> {
    http.auth.service(bearer_token(&headers))?;
    let stream = stream_id(&stream)?;
    let stats = http.broker.stats(&stream).await?;
    Ok(Json(StreamStats {
        stream_id: stream,
        viewer_count: stats.viewer_count,
        peak_viewer_count: stats.peak_viewer_count,
        comment_count: stats.comment_count,
    }))
}
