//! `GET` and `PUT /v1/streams/{id}/terms` (the contract's section 9): the stream's blocked
//! terms, each with its action. `PUT` replaces the list (at most 1,000 terms of 1 to 64
//! characters); it applies on every instance within a second. A moderator of the stream or a
//! service may do each.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{HttpState, json_body, moderated};
use crate::api_error::ApiError;
use crate::domain::wire::ErrorCode;
use crate::domain::{BlockedTerm, BlockedTerms};

/// A list body: bigger than a comment's. A thousand terms of 64 characters, each written
/// as `\u` escapes of surrogate pairs at worst (12 bytes a character), fit.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Deserialize)]
pub struct TermsRequest {
    terms: Vec<BlockedTerm>,
}

pub async fn show(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let terms = http.broker.terms(&stream).await?;
    Ok(Json(json!({ "terms": terms.as_slice() })))
}

pub async fn replace(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let request: TermsRequest = json_body(body)?;
    let terms = BlockedTerms::new(request.terms)
        .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("terms: {e}")))?;
    let count = terms.as_slice().len();
    http.broker.set_terms(&stream, terms.clone()).await?;
    tracing::info!(%stream, count, "blocked terms replaced");
    Ok(Json(json!({ "terms": terms.as_slice() })))
}
