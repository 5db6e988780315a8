//! `POST`, `GET` and `DELETE` on a stream's comments. `GET` takes a service token (every comment,
//! shadowed ones marked) or a viewer token (what that viewer may see: section 9).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{HttpState, json_body, moderated, stream_id};
use crate::api_error::ApiError;
use crate::auth::bearer_token;
use crate::broker::{HistoryQuery, Published};
use crate::domain::wire::{ErrorCode, encode_seen_by};
use crate::domain::{Audience, CommentId};
use crate::posting::ServiceComment;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

pub async fn create(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    http.auth.service(bearer_token(&headers))?;
    let stream = stream_id(&stream)?;
    let comment: ServiceComment = json_body(body)?;
    match http.posting.as_service(&stream, comment).await? {
        Published::New(comment) => Ok((StatusCode::CREATED, Json(json!({ "comment": comment })))),
        Published::Duplicate(comment) | Published::Held { comment, .. } => {
            Ok((StatusCode::OK, Json(json!({ "comment": comment }))))
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<String>,
}

pub async fn list(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let reader = http.auth.reader(bearer_token(&headers)).await?;
    let stream = stream_id(&stream)?;
    // A service sees everything (shadowed comments marked); a viewer what section 9 lets it.
    let audience = reader
        .as_ref()
        .map_or(Audience::EVERYTHING, |viewer| viewer.audience(&stream));
    let Query(query) = query.map_err(|e| ApiError::new(ErrorCode::Invalid, e.body_text()))?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| ApiError::new(ErrorCode::Invalid, "limit must be between 1 and 500"))?,
    };
    let history_query = match query.after.as_deref() {
        None => HistoryQuery::Latest { limit },
        Some(after) => {
            let id: CommentId = after
                .parse()
                .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("after: {e}")))?;
            HistoryQuery::After { id, limit }
        }
    };
    let page = http
        .broker
        .history_seen_by(&stream, history_query, audience)
        .await?;
    let comments = encode_seen_by(&page.comments, audience);
    Ok(Json(json!({ "comments": comments })))
}

pub async fn remove(
    State(http): State<HttpState>,
    Path((stream, comment_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let stream = moderated(&http, &stream, &headers).await?;
    let id: CommentId = comment_id
        .parse()
        .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("comment id: {e}")))?;
    http.broker.delete(&stream, id, None).await?;
    tracing::info!(%stream, %id, "comment deleted");
    Ok(StatusCode::NO_CONTENT)
}
