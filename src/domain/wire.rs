//! The JSON frames of the contract (`docs/protocol.md`, sections 2 and 5), `type` first.

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Audience, Comment, CommentId, Epoch, StreamId, StreamSettings};

/// An encoded server frame: reference-counted UTF-8 bytes that a WebSocket text frame takes
/// without copying. Fan-out encodes a frame once and clones this handle (a reference-count
/// increment) for every socket. Only made from a `String`, so the bytes are always UTF-8.
///
/// It also keeps the frame's compressed forms (`permessage-deflate`), each made once, by
/// the first socket that needs it, and shared by every other.
#[derive(Clone)]
pub struct SharedFrame(Arc<Forms>);

struct Forms {
    text: Bytes,
    /// The whole text compressed; `None`: not smaller.
    deflated: OnceLock<Option<Bytes>>,
    /// The text less its closing brace compressed and left open for a tail of a socket's
    /// own; `None`: not smaller.
    open: OnceLock<Option<Bytes>>,
}

impl SharedFrame {
    pub fn as_bytes(&self) -> &Bytes {
        &self.0.text
    }

    /// The frame as text (checks the UTF-8 again: for tests and logs, not the hot path).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0.text).expect("a frame is made from a String")
    }

    /// The compressed form, made by `compress` from the text if no socket made it yet.
    pub fn deflated(&self, compress: impl FnOnce(&[u8]) -> Option<Bytes>) -> Option<&Bytes> {
        self.0
            .deflated
            .get_or_init(|| compress(&self.0.text))
            .as_ref()
    }

    /// The open compressed form, made by `compress` from the text less its last byte (a
    /// JSON object's closing brace) if no socket made it yet.
    pub fn deflated_open(&self, compress: impl FnOnce(&[u8]) -> Option<Bytes>) -> Option<&Bytes> {
        let text = &self.0.text;
        self.0
            .open
            .get_or_init(|| compress(&text[..text.len().saturating_sub(1)]))
            .as_ref()
    }
}

impl PartialEq for SharedFrame {
    fn eq(&self, other: &Self) -> bool {
        self.0.text == other.0.text
    }
}

impl Eq for SharedFrame {}

impl From<String> for SharedFrame {
    fn from(text: String) -> Self {
        Self(Arc::new(Forms {
            text: Bytes::from(text),
            deflated: OnceLock::new(),
            open: OnceLock::new(),
        }))
    }
}

impl fmt::Debug for SharedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedFrame({})", self.as_str())
    }
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Init {
        stream_id: &'a StreamId,
        /// The comments as a JSON array, encoded once (see [`encode_comments`]).
        comments: &'a RawValue,
        viewer_count: u64,
        resumed: bool,
        /// The stream's epoch (the contract's section 8).
        epoch: &'a Epoch,
        /// The stream's settings (the contract's section 9).
        settings: &'a StreamSettings,
        server: &'a ServerInfo,
    },
    Comments {
        comments: &'a [Comment],
    },
    /// A `comments` frame as a moderator of the stream sees it, shadowed comments marked.
    #[serde(rename = "comments")]
    MarkedComments {
        comments: &'a [MarkedComment<'a>],
    },
    Deleted {
        ids: &'a [CommentId],
    },
    Viewers {
        count: u64,
    },
    Ack {
        #[serde(rename = "ref")]
        reference: Option<&'a str>,
        id: CommentId,
        /// The comment is held for review: `id` is its held id.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        held: bool,
    },
    /// The stream's settings changed.
    Settings {
        settings: &'a StreamSettings,
    },
    /// To the stream's moderators: a comment held for review (its `id` the held id).
    Held {
        comment: &'a Comment,
    },
    /// To the author: the held comment `held_id` was approved and published as `id`.
    Released {
        held_id: CommentId,
        id: CommentId,
    },
    /// To the author: the held comment `held_id` was rejected.
    Dropped {
        held_id: CommentId,
    },
    Error(&'a ErrorBody),
    Reconnect {
        after_ms: u64,
    },
    Pong,
    /// The `refresh` was taken: the connection's token now expires at `exp` (epoch seconds).
    Refreshed {
        exp: u64,
    },
}

impl ServerFrame<'_> {
    pub fn encode(&self) -> SharedFrame {
        // Serializing these types cannot fail: no maps with non-string keys, no I/O.
        serde_json::to_string(self)
            .expect("server frames always serialize")
            .into()
    }
}

/// A comment as a moderator of its stream sees it: one that only its author and moderators
/// see carries `"shadow": true` (its author sees it as any other).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MarkedComment<'a> {
    #[serde(flatten)]
    pub comment: &'a Comment,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

impl<'a> MarkedComment<'a> {
    pub fn of(comment: &'a Comment) -> Self {
        Self {
            comment,
            shadow: comment.shadow,
        }
    }
}

/// Comments as the JSON array `init` carries, encoded once so it can be kept and reused.
pub fn encode_comments(comments: &[Comment]) -> Box<RawValue> {
    serde_json::value::to_raw_value(comments).expect("comments always serialize")
}

/// Of `comments`, those `audience` sees, as a JSON array: a moderator's with shadowed
/// comments marked.
pub fn encode_seen_by(comments: &[Comment], audience: Audience<'_>) -> Box<RawValue> {
    let seen = audience.filter(comments);
    let encoded = if audience.moderator {
        serde_json::value::to_raw_value(&seen.map(MarkedComment::of).collect::<Vec<_>>())
    } else {
        serde_json::value::to_raw_value(&seen.collect::<Vec<_>>())
    };
    encoded.expect("comments always serialize")
}

/// Who answered: the `server` block of `init` and the body of `/version`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServerInfo {
    pub pod: String,
    pub slot: String,
    pub version: &'static str,
}

/// The error codes of the contract (section 5).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Invalid,
    TooLong,
    Unauthorized,
    Forbidden,
    Banned,
    RateLimited,
    NotFound,
    Draining,
    Unavailable,
    Internal,
    SlowMode,
    RoleRequired,
    Blocked,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::TooLong => "too_long",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Banned => "banned",
            Self::RateLimited => "rate_limited",
            Self::NotFound => "not_found",
            Self::Draining => "draining",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::SlowMode => "slow_mode",
            Self::RoleRequired => "role_required",
            Self::Blocked => "blocked",
        }
    }
}

/// Every error body, HTTP or WebSocket: `{"type":"error","code",...}` (serialized with the
/// `type` tag by [`ServerFrame::Error`] or by [`ErrorBody::to_json`]).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            reference: None,
            retry_after_ms: None,
        }
    }

    pub fn with_ref(mut self, reference: Option<String>) -> Self {
        self.reference = reference;
        self
    }

    pub fn with_retry_after_ms(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&ServerFrame::Error(self)).expect("error bodies always serialize")
    }
}

/// Frames a client may send.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Comment {
        text: String,
        #[serde(rename = "ref")]
        reference: Option<String>,
        /// The media moment the author's player shows (the contract's section 10).
        media_ts: Option<u64>,
    },
    Ping,
    /// A new token for the connection (contract section 8).
    Refresh {
        token: String,
    },
    /// Delete a retained comment: its author's own, or any as a moderator (section 9).
    Delete {
        id: String,
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
}

impl ClientFrame {
    /// Longest `ref` a client may attach to a comment, in characters.
    pub const MAX_REF_CHARS: usize = 64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_put_type_first() {
        assert_eq!(ServerFrame::Pong.encode().as_str(), r#"{"type":"pong"}"#);
        assert_eq!(
            ServerFrame::Viewers { count: 3 }.encode().as_str(),
            r#"{"type":"viewers","count":3}"#
        );
        let err = ErrorBody::new(ErrorCode::RateLimited, "slow down")
            .with_ref(Some("r1".into()))
            .with_retry_after_ms(250);
        assert_eq!(
            err.to_json(),
            r#"{"type":"error","code":"rate_limited","message":"slow down","ref":"r1","retry_after_ms":250}"#
        );
    }

    #[test]
    fn parses_client_frames() {
        let c: ClientFrame =
            serde_json::from_str(r#"{"type":"comment","text":"hi","ref":"a"}"#).unwrap();
        assert_eq!(
            c,
            ClientFrame::Comment {
                text: "hi".into(),
                reference: Some("a".into()),
                media_ts: None,
            }
        );
        let p: ClientFrame = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        assert_eq!(p, ClientFrame::Ping);
        for bad in [
            r#"{"type":"nope"}"#,
            r#"{"text":"hi"}"#,
            r#"{"type":"comment"}"#,
            "[]",
            "{",
        ] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
        }
    }
}
