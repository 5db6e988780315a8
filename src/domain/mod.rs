//! The vocabulary of the protocol: types that can only hold valid values, and the
//! wire frames. Nothing here knows about axum, Redis or sockets.

mod comment;
mod id;
mod rate;
mod stream_id;
mod text;
pub mod wire;

pub use comment::{Comment, CommentData, CommentKind, User, now_ms};
pub use id::{CommentId, ParseCommentIdError};
pub use rate::TokenBucket;
pub use stream_id::{ParseStreamIdError, StreamId};
pub use text::{CommentText, TextError};
