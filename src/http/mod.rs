//! The HTTP side: the service API (PROTOCOL.md section 4), health, version and metrics, and
//! the one error type every HTTP answer uses.

mod bans;
mod comments;
mod dev;
mod health;
mod streams;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::Value;

use crate::app::AppState;
use crate::auth::AuthError;
use crate::broker::BrokerError;
use crate::domain::StreamId;
use crate::domain::wire::{ErrorBody, ErrorCode};

/// Request bodies are small: 200 characters of text and at most 2 KiB of `data`.
const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn router(state: AppState) -> Router {
    let mut router = Router::new().merge(crate::web::router());
    if state.config.dev {
        // Development mode only: outside it the route does not exist (404).
        router = router.route("/dev/token", post(dev::token));
    }
    router
        .route("/v1/streams/{stream_id}/ws", get(crate::ws::handshake))
        .route(
            "/v1/streams/{stream_id}/comments",
            post(comments::create).get(comments::list),
        )
        .route(
            "/v1/streams/{stream_id}/comments/{comment_id}",
            delete(comments::remove),
        )
        .route("/v1/streams/{stream_id}/bans", post(bans::create))
        .route("/v1/streams/{stream_id}", get(streams::show))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/version", get(health::version))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::with_status(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::Invalid,
                "method not allowed here",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// An HTTP error answer: a status and the error body of PROTOCOL.md section 5.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::with_status(status_of(code), code, message)
    }

    pub fn with_status(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody::new(code, message),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Invalid | ErrorCode::TooLong => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden | ErrorCode::Banned => StatusCode::FORBIDDEN,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Draining | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body.to_json(),
        )
            .into_response()
    }
}

impl From<BrokerError> for ApiError {
    fn from(error: BrokerError) -> Self {
        match error {
            BrokerError::Banned => {
                Self::new(ErrorCode::Banned, "the user is banned from this stream")
            }
            BrokerError::NotFound => Self::new(ErrorCode::NotFound, "no such comment"),
            BrokerError::Unavailable(detail) => {
                tracing::warn!(%detail, "broker unavailable");
                Self::new(
                    ErrorCode::Unavailable,
                    "the broker is unavailable; try again",
                )
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::MissingBearer | AuthError::AnonymousRefused => {
                Self::new(ErrorCode::Unauthorized, error.to_string())
            }
            AuthError::InvalidToken | AuthError::ExpiredToken => {
                Self::new(ErrorCode::Unauthorized, error.to_string())
            }
            AuthError::WrongBearer => Self::new(ErrorCode::Forbidden, error.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match rejection.status() {
            s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => s,
            // A body of the wrong shape is as invalid as broken JSON: 400, not axum's 422.
            _ => StatusCode::BAD_REQUEST,
        };
        Self::with_status(status, ErrorCode::Invalid, rejection.body_text())
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn stream_id(raw: &str) -> Result<StreamId, ApiError> {
    StreamId::parse(raw).map_err(|e| ApiError::new(ErrorCode::Invalid, e.to_string()))
}

/// A JSON request body that must be an object (serde would also take an array of the
/// fields in order), deserialized into `T`.
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Json<Value>, JsonRejection>,
) -> Result<T, ApiError> {
    let Json(value) = body?;
    if !value.is_object() {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("invalid body: {e}")))
}
