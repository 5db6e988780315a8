//! The seam's vocabulary: what the hub hears from the broker ([`BrokerEvent`]), what a
//! publish takes and gives ([`NewComment`], [`Published`]), moderation's records ([`Ban`],
//! [`BanMode`]), history pages, and the broker's errors. Validated types only, never raw
//! strings.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{
    Comment, CommentData, CommentId, CommentKind, CommentText, IdempotencyKey, Role, StreamId,
    StreamSettings, User, UserId,
};
/// What arrives from a subscribed stream.
#[derive(Debug, Clone)]
pub enum BrokerEvent {
    /// New comments, in id order, each newer than any delivered before on this stream.
    Comments {
        stream: StreamId,
        comments: Vec<Comment>,
    },
    /// Comments removed by moderation.
    Deleted {
        stream: StreamId,
        ids: Vec<CommentId>,
    },
    /// A user was banned from the stream: their open sockets there are closed.
    Banned { stream: StreamId, user_id: UserId },
    /// Comments were lost beyond what history can backfill: local sockets of the stream
    /// must resynchronise (they are closed with 4002 and resume with `after=`).
    Resync { stream: StreamId },
    /// The stream's delivery was interrupted and is being repaired (its subscription's
    /// connection dropped, or it may have gone deaf): what was read of its history before
    /// may be stale. What it missed follows as a backfill, or as a [`Self::Resync`].
    Interrupted { stream: StreamId },
    /// The stream's settings changed: every local viewer is told.
    Settings {
        stream: StreamId,
        settings: StreamSettings,
    },
    /// A comment was held for review (its `id` the held id): the stream's moderators are
    /// told.
    Held { stream: StreamId, comment: Comment },
    /// `user`'s held comment was approved and published as `id`.
    Released {
        stream: StreamId,
        user: UserId,
        held_id: CommentId,
        id: CommentId,
    },
    /// `user`'s held comment was rejected.
    Dropped {
        stream: StreamId,
        user: UserId,
        held_id: CommentId,
    },
}

/// Where the broker delivers events. Called synchronously; must not block or call back
/// into the broker.
pub type EventSink = Arc<dyn Fn(BrokerEvent) + Send + Sync>;

/// A comment to publish, built only from validated parts. The broker assigns `id` and `ts`.
#[derive(Debug, Clone)]
pub struct NewComment {
    pub stream: StreamId,
    pub kind: CommentKind,
    pub user: Option<User>,
    pub text: CommentText,
    pub data: Option<CommentData>,
    /// Its media time, checked against the accepting instance's clock.
    pub media_ts: Option<u64>,
    /// The author moderates the stream: the comment is never thinned.
    pub by_moderator: bool,
    /// The same key again within its time: the first comment is returned, nothing published.
    pub dedup: Option<Dedup>,
    /// The author's rate limit, for a broker that keeps it across instances (Redis: one
    /// bucket per stream and user, in the stream's slot, checked in the publish itself).
    /// The embedded broker ignores it: the instance's own limiter is the whole truth there.
    pub rate: Option<RateLimit>,
    /// Posted by a service (over the HTTP API): never slowed, never held to roles.
    pub by_service: bool,
    /// The author's roles, for a stream whose settings let only some roles post.
    pub roles: Vec<Role>,
    /// How it goes out once it passes the broker's checks (the stream's blocked terms
    /// decided it); a shadow-banned author's goes out shadowed whatever this says.
    pub route: Route,
}

/// How a comment that passes the checks goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Route {
    #[default]
    Public,
    /// Only its author and the stream's moderators receive it.
    Shadow,
    /// Not published: held for a moderator to approve or reject.
    Hold,
}

/// Comments per second and burst of a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_sec: f64,
    pub burst: f64,
}

/// What makes a publish idempotent on its stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dedup {
    /// A service's `idempotency_key`, for [`IDEMPOTENCY_TTL`].
    Service(IdempotencyKey),
    /// A viewer's `ref` on its WebSocket, per user, for [`REF_TTL`]: a resend after a lost
    /// `ack` (on any instance) is answered with the first `ack`.
    Ref { user: UserId, reference: String },
}

impl Dedup {
    pub fn ttl(&self) -> Duration {
        match self {
            Self::Service(_) => IDEMPOTENCY_TTL,
            Self::Ref { .. } => REF_TTL,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    New(Comment),
    /// The idempotency key was seen before; this is the comment it published then.
    Duplicate(Comment),
    /// Held for review (the comment's `id` is the held id), now or, for a `duplicate`, by
    /// the first post of the same key.
    Held {
        comment: Comment,
        duplicate: bool,
    },
}

/// How long an idempotency key is remembered (the contract's section 4).
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(600);

/// How long a viewer's `ref` is remembered (the contract's section 8).
pub const REF_TTL: Duration = Duration::from_secs(120);

/// A ban in force.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Ban {
    pub user_id: UserId,
    /// When it ends (epoch ms).
    pub expires_at: u64,
    pub mode: BanMode,
}

/// What a ban holds the user back from (the contract's section 9).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BanMode {
    /// Posts refused (`banned`), handshakes refused (`403`), open sockets closed (4003).
    Ban,
    /// Posts refused (`banned`); the user keeps watching.
    Mute,
    /// Posts acked as usual and seen only by the user and the stream's moderators.
    Shadow,
}

impl BanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ban => "ban",
            Self::Mute => "mute",
            Self::Shadow => "shadow",
        }
    }

    /// The mode a stored value names (`1`: a ban of an earlier version).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ban" | "1" => Some(Self::Ban),
            "mute" => Some(Self::Mute),
            "shadow" => Some(Self::Shadow),
            _ => None,
        }
    }
}

/// Held comments a stream keeps for review, and for how long (the contract's section 9):
/// past either, the oldest go (their authors are not told; a moderator who acts on one
/// gets `404`).
pub const MAX_HELD_FOR_REVIEW: usize = 1000;
pub const HELD_FOR: Duration = Duration::from_secs(3600);

/// Longest ban a moderator may give, and the length of a ban without `seconds`.
pub const MAX_BAN: Duration = Duration::from_secs(30 * 24 * 3600);

/// A `limit` larger than any retained history: "everything after the id".
pub const ALL_RETAINED: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery {
    /// The newest `limit` retained comments.
    Latest { limit: usize },
    /// The oldest `limit` retained comments newer than `id`.
    After { id: CommentId, limit: usize },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    /// Oldest first.
    pub comments: Vec<Comment>,
    /// For [`HistoryQuery::After`]: whether every comment newer than the id is still
    /// retained, so a client resuming from it misses nothing.
    pub complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamStats {
    pub viewer_count: u64,
    pub peak_viewer_count: u64,
    pub comment_count: u64,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BrokerError {
    #[error("the user is banned from this stream")]
    Banned,
    #[error("no such comment")]
    NotFound,
    #[error("the user posts too fast")]
    RateLimited { retry_after: Duration },
    #[error("the stream is in slow mode")]
    SlowMode { retry_after: Duration },
    #[error("only some roles may post on this stream")]
    RoleRequired,
    #[error("not the author of the comment")]
    Forbidden,
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// The broker could not answer (Redis out of reach, a timeout, an unexpected reply), with
/// the cause as the error's source. Not logged here: the layer that answers the client
/// logs it, once. Cheap to clone: the cause is shared.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the broker is unavailable: {cause}")]
pub struct Unavailable {
    #[source]
    cause: Arc<dyn std::error::Error + Send + Sync>,
}

impl Unavailable {
    pub fn new(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            cause: Arc::from(cause.into()),
        }
    }
}

/// Two reports are equal when they are of the same failure.
impl PartialEq for Unavailable {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cause, &other.cause)
    }
}

impl Eq for Unavailable {}
