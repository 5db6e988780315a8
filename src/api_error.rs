//! The answer to a refused HTTP request, whichever transport refused it: the service API
//! and health endpoints (`http`) and the WebSocket handshake (`ws`, whose refusals are plain
//! HTTP before the upgrade). A status and the error body of the contract (section 5),
//! made from each layer's own error in one place.

use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;
use crate::broker::BrokerError;
use crate::domain::wire::{ErrorBody, ErrorCode};
use crate::posting::PostError;

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

/// Every refusal carries the error object, also those made outside our handlers: axum's own
/// extractor rejections (a path segment that is not UTF-8 once percent-decoded, say) answer
/// in plain text. Such an answer keeps its status and gets the error object with its text
/// as the message. Mounted on the whole router.
pub async fn error_object(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("refused").to_owned(),
        text => text.to_owned(),
    };
    ApiError::with_status(status, code_of(status), message).into_response()
}

/// The error code of a status that no handler of ours chose.
fn code_of(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::Invalid,
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
            BrokerError::RateLimited { retry_after } => {
                let mut error = Self::new(ErrorCode::RateLimited, "posting too fast");
                error.body.retry_after_ms = Some(retry_after.as_millis() as u64);
                error
            }
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

impl From<PostError> for ApiError {
    fn from(error: PostError) -> Self {
        Self::new(error.code(), error.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::WrongBearer => Self::new(ErrorCode::Forbidden, error.to_string()),
            _ => Self::new(ErrorCode::Unauthorized, error.to_string()),
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
