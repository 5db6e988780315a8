//! `GET /v1/streams/{id}`: viewer counts and comment count across the cluster.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::{HttpState, stream_id};
use crate::api_error::ApiError;
use crate::auth::bearer_token;

pub async fn show(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    http.auth.service(bearer_token(&headers))?;
    let stream = stream_id(&stream)?;
    let stats = http.broker.stats(&stream).await?;
    Ok(Json(json!({
        "stream_id": stream,
        "viewer_count": stats.viewer_count,
        "peak_viewer_count": stats.peak_viewer_count,
        "comment_count": stats.comment_count,
    })))
}
