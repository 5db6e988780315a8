//! The OpenAPI 3.1 document of the HTTP API, made from the handlers' own types and their
//! `#[utoipa::path]` attributes: served at `GET /openapi.json` and checked into
//! `docs/openapi.json` (a test fails when the two differ; `UPDATE_OPENAPI=1 cargo test --lib
//! openapi` rewrites it).
//! Every refusal is described with the error object; the WebSocket protocol is described by
//! `docs/asyncapi.yaml`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToResponse, ToSchema};

use super::{bans, comments, health, held, replay, settings, streams, terms};
use crate::domain::wire::{ErrorBody, ErrorCode};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "danmaku",
        description = "The HTTP API of danmaku, a WebSocket comment fan-out server for live \
                       streams: services post system comments and moderate; health, version and \
                       metrics for the platform. The WebSocket protocol (`GET \
                       /v1/streams/{stream_id}/ws`) is described by the AsyncAPI document.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        comments::create,
        comments::list,
        comments::remove,
        bans::create,
        bans::list,
        bans::remove,
        settings::show,
        settings::update,
        terms::show,
        terms::replace,
        held::list,
        held::approve,
        held::reject,
        replay::window,
        streams::show,
        health::livez,
        health::readyz,
        health::version,
        health::metrics,
        document,
    ),
    components(
        schemas(ErrorObject, ErrorBody, ErrorCode),
        responses(Invalid, Unauthorized, Forbidden, NotFound, TooLarge, NotJson, Unavailable),
    ),
    modifiers(&Bearer),
    tags(
        (name = "comments", description = "Post, read and delete a stream's comments."),
        (name = "moderation", description = "Bans, settings, blocked terms and held comments: \
                                              a service or a moderator of the stream."),
        (name = "replay", description = "The chat of a VOD by media time."),
        (name = "streams", description = "A stream's counts across the cluster."),
        (name = "operations", description = "Health, version, metrics and this document."),
    )
)]
pub struct ApiDoc;

/// The document as served and as checked in: pretty JSON with a final newline.
pub fn document_json() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document always serializes");
    json.push('\n');
    json
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document.", content_type = "application/json", body = Object)),
)]
pub async fn document() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(document_json).as_str(),
    )
}

/// The bearer: a service token (`DANMAKU_SERVICE_TOKENS`) or a viewer's JWT.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = |description: &str| {
            let mut http = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
            http.description = Some(description.to_owned());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            "service",
            scheme("One of the service tokens (`DANMAKU_SERVICE_TOKENS`)."),
        );
        components.add_security_scheme(
            "viewer",
            scheme("A viewer's JWT; for moderation, one whose `mod` claim lists the stream."),
        );
    }
}

/// The error object of every refusal: `{"type": "error", "code", "message"}`, plus `ref` or
/// `retry_after_ms` where they apply.
pub struct ErrorObject;

impl PartialSchema for ErrorObject {
    fn schema() -> RefOr<Schema> {
        let tag = ObjectBuilder::new()
            .property(
                "type",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["error"])),
            )
            .required("type");
        AllOfBuilder::new()
            .item(tag)
            .item(Ref::from_schema_name(ErrorBody::name()))
            .into()
    }
}

impl ToSchema for ErrorObject {
    fn name() -> std::borrow::Cow<'static, str> {
        "Error".into()
    }
}

/// A path segment, query parameter or body field out of range or malformed (`invalid`; a
/// comment's text over the limit is `too_long`, one with a blocked term `blocked`): the
/// message names it.
#[derive(ToResponse)]
pub struct Invalid(ErrorObject);

/// No bearer token, or one that is not valid (`unauthorized`).
#[derive(ToResponse)]
pub struct Unauthorized(ErrorObject);

/// The bearer may not do this: a wrong service token, or a viewer who does not moderate the
/// stream (`forbidden`).
#[derive(ToResponse)]
pub struct Forbidden(ErrorObject);

/// No such thing (`not_found`): the message says which.
#[derive(ToResponse)]
pub struct NotFound(ErrorObject);

/// The body is over its limit (`invalid`).
#[derive(ToResponse)]
pub struct TooLarge(ErrorObject);

/// The body is not `application/json` (`invalid`).
#[derive(ToResponse)]
pub struct NotJson(ErrorObject);

/// The broker (Redis) is unavailable, or the instance is draining (`unavailable`,
/// `draining`): try again, on another instance if draining.
#[derive(ToResponse)]
pub struct Unavailable(ErrorObject);

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

    #[test]
    fn the_checked_in_document_is_the_generated_one() {
        let generated = document_json();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(CHECKED_IN, &generated).expect("docs/openapi.json is writable");
        }
        let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json differs from the handlers' document: \
             run `UPDATE_OPENAPI=1 cargo test --lib openapi` and commit it"
        );
    }

    #[test]
    fn every_refusal_is_described_with_the_error_object() {
        let document: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        let paths = document["paths"].as_object().unwrap();
        let mut refusals = 0;
        for (path, operations) in paths {
            for (method, operation) in operations.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if !(status.starts_with('4') || status.starts_with('5'))
                        || status == "503" && path == "/readyz"
                    {
                        continue;
                    }
                    refusals += 1;
                    let reference = response["$ref"].as_str().unwrap_or_default();
                    let name = reference.rsplit('/').next().unwrap_or_default();
                    let schema = &document["components"]["responses"][name]["content"]["application/json"]
                        ["schema"];
                    assert_eq!(
                        schema["$ref"], "#/components/schemas/Error",
                        "{method} {path} {status}: {response}"
                    );
                }
            }
        }
        assert!(refusals > 50, "only {refusals} refusals described");
    }
}
