//! `POST`, `GET` and `DELETE` on a stream's comments.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, bearer_token, json_body, stream_id};
use crate::app::AppState;
use crate::broker::{HistoryQuery, NewComment, Published};
use crate::domain::wire::ErrorCode;
use crate::domain::{CommentData, CommentId, CommentKind, CommentText, TextError, User};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;
const MAX_USER_FIELD_CHARS: usize = 128;

#[derive(Debug, Deserialize)]
pub(super) struct CreateComment {
    kind: CommentKind,
    text: String,
    user: Option<User>,
    data: Option<Value>,
    idempotency_key: Option<String>,
}

pub(super) async fn create(
    State(app): State<AppState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    app.auth.service(bearer_token(&headers))?;
    let stream = stream_id(&stream)?;
    let body: CreateComment = json_body(body)?;
    let new = validate(&app, stream, body)?;
    let kind = new.kind;
    match app.broker.publish(new).await? {
        Published::New(comment) => {
            app.metrics.published(kind);
            Ok((StatusCode::CREATED, Json(json!({ "comment": comment }))))
        }
        Published::Duplicate(comment) => Ok((StatusCode::OK, Json(json!({ "comment": comment })))),
    }
}

fn validate(
    app: &AppState,
    stream: crate::domain::StreamId,
    body: CreateComment,
) -> Result<NewComment, ApiError> {
    let invalid = |message: &str| ApiError::new(ErrorCode::Invalid, message);
    let text =
        CommentText::parse(body.text, app.config.max_comment_chars).map_err(|e| match e {
            TextError::TooLong { .. } => ApiError::new(ErrorCode::TooLong, e.to_string()),
            _ => ApiError::new(ErrorCode::Invalid, e.to_string()),
        })?;
    let user = match body.user {
        Some(user) => {
            let fits = |s: &str| !s.trim().is_empty() && s.chars().count() <= MAX_USER_FIELD_CHARS;
            if !fits(&user.id) || !fits(&user.name) {
                return Err(invalid("user.id and user.name must be 1 to 128 characters"));
            }
            Some(user)
        }
        None if body.kind == CommentKind::User => {
            return Err(invalid("a user comment needs a user"));
        }
        None => None,
    };
    let data = match body.data {
        None | Some(Value::Null) => None,
        Some(_) if body.kind == CommentKind::User => {
            return Err(invalid("user comments carry no data"));
        }
        Some(value) => Some(CommentData::from_value(&value).map_err(|e| invalid(&e.to_string()))?),
    };
    if let Some(key) = &body.idempotency_key
        && (key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS)
    {
        return Err(invalid("idempotency_key must be 1 to 128 characters"));
    }
    Ok(NewComment {
        stream,
        kind: body.kind,
        user,
        text: text.into_string(),
        data,
        idempotency_key: body.idempotency_key,
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    after: Option<String>,
    limit: Option<String>,
}

pub(super) async fn list(
    State(app): State<AppState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    app.auth.service(bearer_token(&headers))?;
    let stream = stream_id(&stream)?;
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
    let page = app.broker.history(&stream, history_query).await?;
    Ok(Json(json!({ "comments": page.comments })))
}

pub(super) async fn remove(
    State(app): State<AppState>,
    Path((stream, comment_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let stream = stream_id(&stream)?;
    app.auth.moderator(bearer_token(&headers), &stream)?;
    let id: CommentId = comment_id
        .parse()
        .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("comment id: {e}")))?;
    app.broker.delete(&stream, id).await?;
    tracing::info!(%stream, %id, "comment deleted");
    Ok(StatusCode::NO_CONTENT)
}
