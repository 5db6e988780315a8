//! `/livez`, `/readyz`, `/version`, `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::HttpState;

/// 200 while the process serves; never depends on CPU or Redis.
pub async fn livez() -> impl IntoResponse {
    Json(json!({ "live": true }))
}

/// 200 when this instance should get new connections; otherwise 503 with the first reason
/// in `reason` and every reason that holds in `reasons`.
pub async fn readyz(State(http): State<HttpState>) -> impl IntoResponse {
    let reasons: Vec<&str> = http
        .readiness
        .reasons()
        .iter()
        .map(|r| r.as_str())
        .collect();
    match reasons.first() {
        None => (StatusCode::OK, Json(json!({ "ready": true }))),
        Some(first) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": first, "reasons": reasons })),
        ),
    }
}

pub async fn version(State(http): State<HttpState>) -> impl IntoResponse {
    let server = &http.server;
    Json(json!({ "version": server.version, "slot": server.slot, "pod": server.pod }))
}

pub async fn metrics(State(http): State<HttpState>) -> impl IntoResponse {
    let body = http.telemetry.render_prometheus();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
