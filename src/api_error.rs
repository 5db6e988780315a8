//! The answer to a refused HTTP request, whichever transport refused it: the service API
//! and health endpoints (`http`) and the WebSocket handshake (`ws`, whose refusals are plain
//! HTTP before the upgrade). A status and the error body of the contract (section 5),
//! made from each layer's own error in one place. An answer that is the server's failure,
//! not the client's (the broker unavailable), keeps its cause and logs it, with its whole
//! chain, as it is written: the one place it is logged (the client sees none of it).

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
    /// What failed on the server's side, logged when the answer is written.
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::with_status(status_of(code), code, message)
    }

    pub fn with_status(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody::new(code, message),
            cause: None,
        }
    }

    /// The same answer, with the server-side failure behind it.
    pub fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Box::new(cause));
        self
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
        ErrorCode::Forbidden | ErrorCode::Banned | ErrorCode::RoleRequired => StatusCode::FORBIDDEN,
        ErrorCode::RateLimited | ErrorCode::SlowMode => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Blocked => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Draining | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.cause {
            let code = self.body.code.as_str();
            tracing::warn!(status = self.status.as_u16(), code, cause = %chain(cause.as_ref()), "answered with a server-side failure");
        }
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
            BrokerError::SlowMode { retry_after } => {
                let mut error = Self::new(ErrorCode::SlowMode, "the stream is in slow mode");
                error.body.retry_after_ms = Some(retry_after.as_millis().max(1) as u64);
                error
            }
            BrokerError::RoleRequired => Self::new(
                ErrorCode::RoleRequired,
                "only some roles may post on this stream",
            ),
            BrokerError::Forbidden => {
                Self::new(ErrorCode::Forbidden, "not the author of the comment")
            }
            BrokerError::Unavailable(cause) => Self::new(
                ErrorCode::Unavailable,
                "the broker is unavailable; try again",
            )
            .caused_by(cause),
        }
    }
}

impl From<PostError> for ApiError {
    fn from(error: PostError) -> Self {
        let answer = Self::new(error.code(), error.to_string());
        match error {
            PostError::Unavailable(cause) => answer.caused_by(cause),
            _ => answer,
        }
    }
}

/// An error and its sources, outermost first: `a: b: c`.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        // A message that already ends with its source's text says it once.
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Unavailable;

    #[test]
    fn a_broker_failure_keeps_its_cause_and_says_it_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by node 7");
        let error = BrokerError::from(Unavailable::new(io));
        let answer = ApiError::from(error.clone());
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            !answer.body.message.contains("node 7"),
            "not shown to the client"
        );
        let cause = answer.cause.as_deref().expect("kept");
        assert_eq!(chain(cause), "the broker is unavailable: refused by node 7");
        let posted = ApiError::from(PostError::Unavailable(match error {
            BrokerError::Unavailable(u) => u,
            _ => unreachable!(),
        }));
        assert_eq!(
            chain(posted.cause.as_deref().unwrap()),
            "the broker is unavailable: refused by node 7"
        );
    }
}
