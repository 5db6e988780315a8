//! `POST`, `GET` and `DELETE` on a stream's comments. `GET` takes a service token (every comment,
//! shadowed ones marked) or a viewer token (what that viewer may see: section 9).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::openapi::{Forbidden, Invalid, NotFound, NotJson, TooLarge, Unauthorized, Unavailable};
use super::{HttpState, json_body, moderated, stream_id};
use crate::api_error::ApiError;
use crate::auth::bearer_token;
use crate::broker::{HistoryQuery, Published};
use crate::domain::wire::MarkedComment;
use crate::domain::wire::{ErrorCode, encode_seen_by};
use crate::domain::{Audience, Comment, CommentId, StreamId};
use crate::posting::ServiceComment;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// One comment: `{"comment": Comment}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommentAnswer {
    pub comment: Comment,
}

/// Comments, oldest first: `{"comments": [...]}`, encoded once. A moderator's (or a
/// service's) list marks the comments only their author and moderators see.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommentList {
    #[schema(value_type = Vec<MarkedComment>)]
    pub comments: Box<RawValue>,
}

/// A service posts a system comment.
#[utoipa::path(
    post, path = "/v1/streams/{stream_id}/comments", tag = "comments",
    params(("stream_id" = StreamId, Path, description = "The stream.")),
    request_body = ServiceComment,
    responses(
        (status = 201, description = "Published to every viewer.", body = CommentAnswer),
        (status = 200, description = "The same `idempotency_key` again within 10 minutes: the \
                                      first comment; nothing is published.", body = CommentAnswer),
        (status = 400, response = Invalid),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = TooLarge),
        (status = 415, response = NotJson),
        (status = 503, response = Unavailable),
    ),
    security(("service" = [])),
)]
pub async fn create(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<CommentAnswer>), ApiError> {
    http.auth.service(bearer_token(&headers))?;
    let stream = stream_id(&stream)?;
    let comment: ServiceComment = json_body(body)?;
    match http.posting.as_service(&stream, comment).await? {
        Published::New(comment) => Ok((StatusCode::CREATED, Json(CommentAnswer { comment }))),
        Published::Duplicate(comment) | Published::Held { comment, .. } => {
            Ok((StatusCode::OK, Json(CommentAnswer { comment })))
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only comments newer than this id (the oldest `limit` of them); absent: the newest
    /// `limit` retained comments.
    #[param(value_type = Option<CommentId>)]
    after: Option<String>,
    /// 1 to 500; default 50.
    #[param(value_type = Option<u16>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// A stream's retained comments, oldest first: a service sees every one (shadowed ones
/// marked), a viewer what it may see.
#[utoipa::path(
    get, path = "/v1/streams/{stream_id}/comments", tag = "comments",
    params(("stream_id" = StreamId, Path, description = "The stream."), ListQuery),
    responses(
        (status = 200, description = "The comments, oldest first.", body = CommentList),
        (status = 400, response = Invalid),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("service" = []), ("viewer" = []), ()),
)]
pub async fn list(
    State(http): State<HttpState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<CommentList>, ApiError> {
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
    Ok(Json(CommentList { comments }))
}

/// A moderator or a service deletes a comment: every viewer gets `deleted`.
#[utoipa::path(
    delete, path = "/v1/streams/{stream_id}/comments/{comment_id}", tag = "comments",
    params(
        ("stream_id" = StreamId, Path, description = "The stream."),
        ("comment_id" = CommentId, Path, description = "The comment."),
    ),
    responses(
        (status = 204, description = "Deleted: later `init`s and lists no longer show it."),
        (status = 400, response = Invalid),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("service" = []), ("viewer" = [])),
)]
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
