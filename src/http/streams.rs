//! `GET /v1/streams/{id}`: viewer counts and comment count across the cluster.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::{ApiError, bearer_token, stream_id};
use crate::app::AppState;

pub(super) async fn show(
    State(app): State<AppState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    app.auth.service(bearer_token(&headers))?;
    let stream = stream_id(&stream)?;
    let stats = app.broker.stats(&stream).await?;
    Ok(Json(json!({
        "stream_id": stream,
        "viewer_count": stats.viewer_count,
        "peak_viewer_count": stats.peak_viewer_count,
        "comment_count": stats.comment_count,
    })))
}
