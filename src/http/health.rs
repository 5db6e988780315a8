//! `/livez`, `/readyz`, `/version`, `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use crate::app::AppState;

/// 200 while the process serves; never depends on CPU or Redis.
pub(super) async fn livez() -> impl IntoResponse {
    Json(json!({ "live": true }))
}

/// 200 when this instance should get new connections; otherwise 503 with the first reason
/// in `reason` and every reason that holds in `reasons`.
pub(super) async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let reasons = app.not_ready_reasons();
    match reasons.first() {
        None => (StatusCode::OK, Json(json!({ "ready": true }))),
        Some(first) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": first, "reasons": reasons })),
        ),
    }
}

pub(super) async fn version(State(app): State<AppState>) -> impl IntoResponse {
    Json(json!({ "version": app.server.version, "slot": app.server.slot, "pod": app.server.pod }))
}

pub(super) async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let body = app.telemetry.render_prometheus();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
