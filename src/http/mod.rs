//! The HTTP side: the service API (the contract's section 4: comments, bans, stream
//! stats; section 9: settings, blocked terms, held comments), health, version and metrics,
//! and development mode's token endpoint. One file per resource; the routes are mounted by
//! the app.

pub mod bans;
pub mod comments;
pub mod dev;
pub mod health;
pub mod held;
pub mod limits;
pub mod openapi;
pub mod replay;
pub mod settings;
pub mod streams;
pub mod terms;
pub mod trace_context;

use std::ops::Deref;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use serde_json::Value;

use crate::api_error::ApiError;
use crate::auth::Auth;
use crate::broker::Broker;
use crate::domain::StreamId;
use crate::domain::wire::{ErrorCode, ServerInfo};
use crate::posting::Posting;
use crate::readiness::Readiness;
use crate::telemetry::Telemetry;

/// Request bodies are small: 200 characters of text and at most 2 KiB of `data`.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState(Arc<Shared>);

pub struct Shared {
    pub auth: Arc<Auth>,
    pub broker: Broker,
    pub posting: Arc<Posting>,
    pub readiness: Arc<Readiness>,
    pub telemetry: Arc<Telemetry>,
    pub server: ServerInfo,
}

impl HttpState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for HttpState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

fn stream_id(raw: &str) -> Result<StreamId, ApiError> {
    StreamId::parse(raw).map_err(|e| ApiError::new(ErrorCode::Invalid, e.to_string()))
}

/// The stream `raw` names, if the request's bearer may moderate it (a service token, or a
/// viewer JWT whose `mod` lists it).
async fn moderated(
    http: &HttpState,
    raw: &str,
    headers: &axum::http::HeaderMap,
) -> Result<StreamId, ApiError> {
    let stream = stream_id(raw)?;
    http.auth
        .moderator(crate::auth::bearer_token(headers), &stream)
        .await?;
    Ok(stream)
}

/// A JSON request body that must be an object (serde would also take an array of the
/// fields in order), deserialized into `T`; an error names the field it is about.
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
    // The error names where in the body it is (`terms[2].action: unknown variant …`).
    serde_path_to_error::deserialize(value).map_err(|e| {
        let message = match e.path().to_string().as_str() {
            "." => format!("invalid body: {}", e.inner()),
            path => format!("invalid body: {path}: {}", e.inner()),
        };
        ApiError::new(ErrorCode::Invalid, message)
    })
}
