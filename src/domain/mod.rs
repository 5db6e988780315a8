//! The vocabulary of the protocol: types that can only hold valid values, and the
//! wire frames. Nothing here knows about axum, Redis or sockets.

/// Serde for a string newtype with a `parse` constructor and `as_str`: written as its
/// string, read back only through `parse`, so a value from JSON (a request body, a stored
/// comment) holds the same rules as one parsed anywhere else.
macro_rules! serde_via_parse {
    ($type:ty) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

mod audience;
mod comment;
mod id;
mod idempotency;
mod media;
mod position;
mod rate;
mod schemas;
mod settings;
mod stream_id;
mod terms;
mod text;
mod user;
pub mod wire;

pub use audience::Audience;
pub use comment::{Comment, CommentData, CommentKind, DataError, now_ms};
pub use id::{CommentId, ParseCommentIdError};
pub use idempotency::{IdempotencyKey, ParseIdempotencyKeyError};
pub use media::{
    MAX_REPLAY_WINDOW_MS, MEDIA_AHEAD_MS, MEDIA_BEHIND_MS, MediaTimeError, ReplayLimits,
    check_media_ts,
};
pub use position::{Continuity, Epoch, Gap, ParseEpochError, Position};
pub use rate::TokenBucket;
pub use settings::{
    MAX_ROLE_CHARS, MAX_ROLES, ParseRoleError, Role, SLOW_MODE_MS, SettingsError, SettingsPatch,
    StreamSettings, roles_of,
};
pub use stream_id::{ParseStreamIdError, StreamId};
pub use terms::{
    BlockedTerm, BlockedTerms, MAX_TERM_CHARS, MAX_TERMS, ParseTermError, Term, TermAction,
    TermMatcher, TooManyTerms, fold,
};
pub use text::{CommentText, TextError};
pub use user::{ParseUserIdError, User, UserId};
