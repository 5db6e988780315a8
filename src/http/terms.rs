//! `GET` and `PUT /v1/streams/{id}/terms` (the contract's section 9): the stream's blocked
//! terms, each with its action. `PUT` replaces the list (at most 1,000 terms of 1 to 64
//! characters); it applies on every instance within a second. A moderator of the stream or a
//! service may do each.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::openapi::{Forbidden, Invalid, NotJson, TooLarge, Unauthorized, Unavailable};
use super::{HttpState, json_body, moderated};
use crate::api_error::ApiError;
use crate::domain::wire::ErrorCode;
use crate::domain::{BlockedTerm, BlockedTerms, StreamId};

/// A list body: bigger than a comment's. A thousand terms of 64 characters, each written
/// as `\u` escapes of surrogate pairs at worst (12 bytes a character), fit.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The stream's blocked terms: `{"terms": [{"term", "action"}]}`, as the body of `PUT`
/// and as its answer.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct TermsList {
    /// At most 1,000.
    #[schema(max_items = 1000)]
    terms: Vec<BlockedTerm>,
}

#[utoipa::path(
    get, path = "/v1/streams/{stream_id}/terms", tag = "moderation",
    params(("stream_id" = StreamId, Path, description = "The stream.")),
    responses(
        (status = 200, description = "The stream's blocked terms.", body = TermsList),
        (status = 400, response = Invalid),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("service" = []), ("viewer" = [])),
)]
pub async fn show(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<Json<TermsList>, ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let terms = http.broker.terms(&stream).await?;
    Ok(Json(TermsList {
        terms: terms.as_slice().to_vec(),
    }))
}

/// Replaces the list; it applies on every instance within a second.
#[utoipa::path(
    put, path = "/v1/streams/{stream_id}/terms", tag = "moderation",
    params(("stream_id" = StreamId, Path, description = "The stream.")),
    request_body = TermsList,
    responses(
        (status = 200, description = "The new list.", body = TermsList),
        (status = 400, response = Invalid),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = TooLarge),
        (status = 415, response = NotJson),
        (status = 503, response = Unavailable),
    ),
    security(("service" = []), ("viewer" = [])),
)]
pub async fn replace(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<TermsList>, ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let request: TermsList = json_body(body)?;
    let terms = BlockedTerms::new(request.terms)
        .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("terms: {e}")))?;
    let count = terms.as_slice().len();
    http.broker.set_terms(&stream, terms.clone()).await?;
    tracing::info!(%stream, count, "blocked terms replaced");
    Ok(Json(TermsList {
        terms: terms.as_slice().to_vec(),
    }))
}
