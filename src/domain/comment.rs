use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{CommentId, StreamId, User};

/// The comment object of the contract (`docs/protocol.md`, section 3). Serialized field
/// order is the documented one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Comment {
    pub id: CommentId,
    pub stream_id: StreamId,
    pub kind: CommentKind,
    /// `null` for a system comment about nobody.
    #[schema(required)]
    pub user: Option<User>,
    pub text: String,
    /// `null` for a viewer's comment.
    #[schema(required)]
    pub data: Option<CommentData>,
    /// Publish time (epoch ms) on the instance that accepted the comment.
    pub ts: u64,
    /// The media moment (epoch ms) its author's player showed when posting (the contract's
    /// section 10); absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_ts: Option<u64>,
    /// Posted by a moderator of the stream, so never thinned. Stored and carried between
    /// instances with the comment (`by_mod`), never sent to clients.
    #[serde(default, rename = "by_mod", skip_serializing)]
    pub by_moderator: bool,
    /// Seen only by its author and the stream's moderators: its author is shadow-banned, or
    /// it holds a term a moderator set to `shadow` (the contract's section 9). Stored and
    /// carried between instances with the comment; never in its own JSON: a moderator's
    /// frame marks it (`"shadow": true`), its author's shows it as any other.
    #[serde(default, skip_serializing)]
    pub shadow: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommentKind {
    User,
    Gift,
    Follow,
    Mission,
    System,
}

impl CommentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Gift => "gift",
            Self::Follow => "follow",
            Self::Mission => "mission",
            Self::System => "system",
        }
    }
}

/// The free JSON object of a system comment, kept in its compact serialized form so it is
/// never re-parsed on the way out. At most [`CommentData::MAX_BYTES`] serialized.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommentData(Box<RawValue>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DataError {
    #[error("data must be a JSON object")]
    NotAnObject,
    #[error("data must be at most 2048 bytes serialized")]
    TooLarge,
}

impl CommentData {
    pub const MAX_BYTES: usize = 2048;

    pub fn from_value(value: &serde_json::Value) -> Result<Self, DataError> {
        if !value.is_object() {
            return Err(DataError::NotAnObject);
        }
        let compact = serde_json::to_string(value).map_err(|_| DataError::NotAnObject)?;
        if compact.len() > Self::MAX_BYTES {
            return Err(DataError::TooLarge);
        }
        RawValue::from_string(compact)
            .map(Self)
            .map_err(|_| DataError::NotAnObject)
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for CommentData {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Wall-clock epoch milliseconds: the unit of every timestamp on the wire.
impl Comment {
    /// Where the comment sits in the stream's media: its `media_ts`, else its `ts`.
    pub fn media_time(&self) -> u64 {
        self.media_ts.unwrap_or(self.ts)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_in_the_documented_shape() {
        let c = Comment {
            id: CommentId::new(1_732_240_000_000, 0),
            stream_id: StreamId::parse("s1").unwrap(),
            kind: CommentKind::User,
            user: Some(User {
                id: crate::domain::UserId::parse("u1").unwrap(),
                name: "Alice".into(),
            }),
            text: "hello".into(),
            data: None,
            ts: 1_732_240_000_000,
            media_ts: None,
            by_moderator: false,
            shadow: false,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"id":"1732240000000-0","stream_id":"s1","kind":"user","user":{"id":"u1","name":"Alice"},"text":"hello","data":null,"ts":1732240000000}"#
        );
        let back: Comment = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn data_must_be_a_small_object() {
        assert!(CommentData::from_value(&json!({"item": "rose", "amount": 3})).is_ok());
        assert_eq!(
            CommentData::from_value(&json!([1, 2])).unwrap_err(),
            DataError::NotAnObject
        );
        assert_eq!(
            CommentData::from_value(&json!("x")).unwrap_err(),
            DataError::NotAnObject
        );
        let big = json!({ "blob": "x".repeat(2048) });
        assert_eq!(
            CommentData::from_value(&big).unwrap_err(),
            DataError::TooLarge
        );
    }
}
