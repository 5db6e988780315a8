//! `POST /dev/token` (development mode only): a short-lived viewer token for a chosen display
//! name, so the page at `/` gives a newcomer a working chat without an identity provider.
//! The route is not mounted at all outside development mode (`404`).

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{HttpState, json_body, stream_id};
use crate::api_error::ApiError;
use crate::auth::Claims;
use crate::domain::now_ms;
use crate::domain::wire::ErrorCode;

/// How long a development token lives.
const DEV_TOKEN_SECS: u64 = 3600;
/// Longest display name, in characters.
const MAX_NAME_CHARS: usize = 32;

#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    name: String,
    /// With `moderate: true`, the token's `mod` claim lists this stream.
    stream: Option<String>,
    #[serde(default)]
    moderate: bool,
}

pub async fn token(
    State(http): State<HttpState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let request: TokenRequest = json_body(body)?;
    let name = request.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "name must be 1 to 32 characters without control characters",
        ));
    }
    let moderates = match (request.moderate, request.stream.as_deref()) {
        (false, _) => Vec::new(),
        (true, Some(stream)) => vec![stream_id(stream)?.as_str().to_owned()],
        (true, None) => {
            return Err(ApiError::new(
                ErrorCode::Invalid,
                "moderate needs the stream to moderate",
            ));
        }
    };
    let exp = now_ms() / 1000 + DEV_TOKEN_SECS;
    let claims = Claims {
        sub: format!("dev-{name}"),
        name: Some(name.to_owned()),
        exp,
        moderates,
        roles: Vec::new(),
    };
    // Development mode always has a secret: a random one when none is configured (auth.rs).
    let token = http
        .auth
        .mint(&claims)
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "no JWT secret to sign tokens with"))?;
    tracing::info!(sub = %claims.sub, moderator = !claims.moderates.is_empty(), "dev token minted");
    Ok(Json(json!({
        "token": token,
        "expires_at": exp,
        "user": {"id": claims.sub, "name": claims.name},
        "mod": claims.moderates,
    })))
}
