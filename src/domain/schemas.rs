//! The OpenAPI schemas of the domain's values that travel as strings (ids, roles, terms) or
//! as free JSON (a system comment's `data`): their serde form is written by hand
//! (`serde_via_parse!`), so their schema is too, from the same limits their parsers check.
//! The types whose serde form is derived derive their schema beside it.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

use super::{CommentData, CommentId, MAX_ROLE_CHARS, MAX_TERM_CHARS, Role, StreamId, Term, UserId};

fn string(description: &str, min: usize, max: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .min_length(Some(min))
        .max_length(Some(max))
}

fn schema(builder: ObjectBuilder) -> RefOr<Schema> {
    RefOr::T(Schema::Object(builder.build()))
}

impl PartialSchema for StreamId {
    fn schema() -> RefOr<Schema> {
        schema(
            string(
                "A stream's id: ASCII letters, digits, `_` and `-`.",
                1,
                StreamId::MAX_LEN,
            )
            .pattern(Some("^[A-Za-z0-9_-]+$"))
            .examples(["s1"]),
        )
    }
}
impl ToSchema for StreamId {}

impl PartialSchema for CommentId {
    fn schema() -> RefOr<Schema> {
        schema(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "`<ms>-<seq>`, ordered as (ms, seq); each part at most 2^53 − 1.",
                ))
                .pattern(Some("^[0-9]{1,16}-[0-9]{1,16}$"))
                .examples(["1732240000000-0"]),
        )
    }
}
impl ToSchema for CommentId {}

impl PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        schema(
            string("A user's id: not only whitespace.", 1, UserId::MAX_CHARS)
                // Some character that is not whitespace.
                .pattern(Some("\\S"))
                .examples(["u1"]),
        )
    }
}
impl ToSchema for UserId {}

impl PartialSchema for Role {
    fn schema() -> RefOr<Schema> {
        schema(string("A role: no control characters.", 1, MAX_ROLE_CHARS).examples(["subscriber"]))
    }
}
impl ToSchema for Role {}

impl PartialSchema for Term {
    fn schema() -> RefOr<Schema> {
        schema(
            string(
                "A blocked term: no control characters, not only invisible ones.",
                1,
                MAX_TERM_CHARS,
            )
            .examples(["spoiler"]),
        )
    }
}
impl ToSchema for Term {}

impl PartialSchema for CommentData {
    fn schema() -> RefOr<Schema> {
        schema(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::Object))
                .description(Some(
                    "A system comment's free JSON object (gift item, amount, …): at most \
                     2 KiB serialized.",
                )),
        )
    }
}
impl ToSchema for CommentData {}
