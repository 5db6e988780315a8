//! `/livez`, `/readyz`, `/version`, `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;

use super::HttpState;
use crate::domain::wire::ServerInfo;
use crate::readiness::NotReady;

/// `{"live": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Live {
    pub live: bool,
}

/// Whether this instance should get new connections; when not, the first reason in `reason`
/// and every reason that holds in `reasons`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<NotReady>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<NotReady>,
}

/// 200 while the process serves; never depends on CPU or Redis.
#[utoipa::path(
    get, path = "/livez", tag = "operations",
    responses((status = 200, description = "The process serves.", body = Live)),
)]
pub async fn livez() -> impl IntoResponse {
    Json(Live { live: true })
}

/// 200 when this instance should get new connections; otherwise 503 with the first reason
/// in `reason` and every reason that holds in `reasons`.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready: `{\"ready\": true}`.", body = Ready),
        (status = 503, description = "Not ready (CPU high, draining, the broker unreachable, \
                                      full): `{\"ready\": false, \"reason\", \"reasons\"}`.", body = Ready),
    ),
)]
pub async fn readyz(State(http): State<HttpState>) -> impl IntoResponse {
    let reasons = http.readiness.reasons();
    let status = match reasons.is_empty() {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    let ready = Ready {
        ready: reasons.is_empty(),
        reason: reasons.first().copied(),
        reasons,
    };
    (status, Json(ready))
}

/// Which build answers, in which slot (blue or green) and pod.
#[utoipa::path(
    get, path = "/version", tag = "operations",
    responses((status = 200, description = "The build, slot and pod.", body = ServerInfo)),
)]
pub async fn version(State(http): State<HttpState>) -> impl IntoResponse {
    Json(http.server.clone())
}

/// The instruments exported over OTLP, in Prometheus's text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition.", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)),
)]
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
