//! Posting a comment: the rules both transports share, in one place.
//!
//! A viewer posts over the WebSocket ([`Posting::as_viewer`]): signed in with a token that
//! has not expired, text within the rules, within the user's rate on the stream (kept by
//! this instance with the embedded broker; by Redis, across every instance, with Redis —
//! see [`NewComment::rate`]). A service
//! posts over HTTP ([`Posting::as_service`]): any kind, a user for user comments, `data`
//! only for system comments, an optional idempotency key. Either way the comment is
//! validated once into a [`NewComment`] of validated parts, handed to the broker (which
//! keeps the stream's rules across instances: bans and mutes, post roles, slow mode), and
//! counted. A viewer's comment that is not a moderator's is first matched against the
//! blocked terms ([`terms`]): refused, or published shadowed, or held for review. Every
//! refusal is a [`PostError`], and each maps to one error code of the contract.

mod rate;
mod terms;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::auth::Identity;
use crate::background::Background;
use crate::broker::{Broker, BrokerError, Dedup, NewComment, Published, Route, Unavailable};
use crate::config::Config;
use crate::domain::wire::ErrorCode;
use crate::domain::{
    BlockedTerm, Comment, CommentData, CommentId, CommentKind, CommentText, IdempotencyKey,
    MediaTimeError, StreamId, TermAction, TextError, User, UserId, check_media_ts, now_ms,
};
use crate::metrics::{HeldOutcome, Metrics};
use rate::RateLimits;
use terms::Terms;

/// Longest display name a service may give a user, in characters.
const MAX_USER_NAME_CHARS: usize = 128;

/// Why a comment was refused. The message is for the person or service that posted it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Invalid(String),
    /// A well-formed comment whose `media_ts` lies outside the window: the author's player
    /// clock is off, not the client (it does not count towards the malformed-frame limit).
    #[error(transparent)]
    MediaTime(#[from] MediaTimeError),
    #[error("comment text is longer than {max} characters")]
    TooLong { max: usize },
    #[error("you are posting too fast")]
    RateLimited { retry_after: Duration },
    #[error("banned from this stream")]
    Banned,
    #[error("the stream is in slow mode")]
    SlowMode { retry_after: Duration },
    #[error("only some roles may post on this stream")]
    RoleRequired,
    /// The message never names the term.
    #[error("the comment contains a blocked term")]
    Blocked,
    /// The broker failed; the cause is the source, for the layer that answers to log.
    #[error("could not post right now; try again")]
    Unavailable(#[source] Unavailable),
}

impl PostError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Invalid(_) | Self::MediaTime(_) => ErrorCode::Invalid,
            Self::TooLong { .. } => ErrorCode::TooLong,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Banned => ErrorCode::Banned,
            Self::SlowMode { .. } => ErrorCode::SlowMode,
            Self::RoleRequired => ErrorCode::RoleRequired,
            Self::Blocked => ErrorCode::Blocked,
            Self::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    /// For `rate_limited` and `slow_mode`: how long until the next comment fits, at least
    /// 1 ms.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after } | Self::SlowMode { retry_after } => {
                Some(retry_after.as_millis().max(1) as u64)
            }
            _ => None,
        }
    }

    /// Whether the comment itself passed the rules (and was refused for who or when it was
    /// posted): a WebSocket counts the others as malformed frames.
    pub fn comment_was_well_formed(&self) -> bool {
        !matches!(
            self,
            Self::Unauthorized(_) | Self::Invalid(_) | Self::TooLong { .. }
        )
    }
}

/// The one mapping from text errors to error codes.
impl From<TextError> for PostError {
    fn from(error: TextError) -> Self {
        match error {
            TextError::TooLong { max } => Self::TooLong { max },
            TextError::Blank | TextError::ControlCharacters => Self::Invalid(error.to_string()),
        }
    }
}

/// A comment as a service sends it (the body of `POST /v1/streams/{id}/comments`), before
/// the rules are applied.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ServiceComment {
    pub kind: CommentKind,
    /// 1 to `DANMAKU_MAX_COMMENT_CHARS` characters (default 200; `too_long` over it), not
    /// only whitespace, no control characters.
    #[schema(min_length = 1, pattern = "\\S")]
    pub text: String,
    /// Whom the comment is about (a gift's sender); absent or `null`: nobody.
    #[schema(nullable)]
    pub user: Option<ServiceUser>,
    /// A system comment's free JSON object: at most 2 KiB serialized.
    #[schema(value_type = Option<Object>, nullable)]
    pub data: Option<Value>,
    /// The same key again within 10 minutes answers `200` with the first comment.
    #[schema(min_length = 1, max_length = 128, nullable)]
    pub idempotency_key: Option<String>,
    /// The media moment (epoch ms) the comment is about (the contract's section 10): at
    /// most 120 s behind and 2 s ahead of now.
    #[schema(nullable)]
    pub media_ts: Option<u64>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ServiceUser {
    #[schema(value_type = crate::domain::UserId)]
    pub id: String,
    /// 1 to 128 characters, not only whitespace.
    #[schema(min_length = 1, max_length = 128, pattern = "\\S")]
    pub name: String,
}

pub struct Posting {
    broker: Broker,
    rate: RateLimits,
    max_comment_chars: usize,
    terms: Terms,
    metrics: Arc<Metrics>,
}

/// A viewer's comment accepted: published as `id`, or held for review as `id` (the held
/// id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub id: CommentId,
    pub held: bool,
}

impl Posting {
    /// `file_terms`: the blocked terms of `DANMAKU_BLOCKED_TERMS_FILE`, for every stream.
    pub fn new(
        config: &Config,
        file_terms: Vec<BlockedTerm>,
        broker: Broker,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            broker,
            rate: RateLimits::new(config.rate_per_sec, config.rate_burst),
            max_comment_chars: config.max_comment_chars,
            terms: Terms::new(file_terms),
            metrics,
        }
    }

    /// Starts pruning the rate limiter's full buckets, until stopped.
    pub fn start(self: &Arc<Self>, background: &Background) {
        let posting = self.clone();
        background.every(rate::PRUNE_EVERY, move || {
            posting.rate.prune(Instant::now());
            std::future::ready(())
        });
    }

    /// A viewer's comment from its WebSocket: published (maybe shadowed), held for review,
    /// or refused. The same `reference` (the frame's `ref`) from the same user on the stream
    /// within two minutes, on any instance, publishes nothing and answers as the first.
    /// `media_ts` must lie in the window around this instance's clock.
    pub async fn as_viewer(
        &self,
        stream: &StreamId,
        identity: &Identity,
        text: String,
        media_ts: Option<u64>,
        reference: Option<&str>,
    ) -> Result<Accepted, PostError> {
        let viewer = match identity {
            Identity::Viewer(v) if v.token_expired() => {
                return Err(PostError::Unauthorized("your token has expired"));
            }
            Identity::Viewer(v) if v.key_withdrawn() => {
                return Err(PostError::Unauthorized(
                    "the key your token was signed with was withdrawn; refresh your token",
                ));
            }
            Identity::Viewer(v) => v,
            Identity::Anonymous => return Err(PostError::Unauthorized("sign in to post comments")),
        };
        let text = CommentText::parse(text, self.max_comment_chars)?;
        let media_ts = media_time(media_ts)?;
        let moderator = viewer.moderates(stream);
        // Moderators' comments are not filtered. A refusal spends a token of the rate limit
        // (this instance's) as a post does: the list cannot be probed faster than posting.
        let route = if moderator {
            Route::Public
        } else {
            match self.route(stream, &text).await {
                Err(PostError::Blocked) => {
                    if let Err(retry_after) = self.rate.check(stream, &viewer.user.id) {
                        return Err(PostError::RateLimited { retry_after });
                    }
                    return Err(PostError::Blocked);
                }
                route => route?,
            }
        };
        // With Redis the limit holds across instances, checked in the publish itself.
        let shared_rate = self.broker.limits_rates();
        if !shared_rate && let Err(retry_after) = self.rate.check(stream, &viewer.user.id) {
            return Err(PostError::RateLimited { retry_after });
        }
        let new = NewComment {
            stream: stream.clone(),
            kind: CommentKind::User,
            user: Some(viewer.user.clone()),
            text,
            data: None,
            media_ts,
            by_moderator: moderator,
            dedup: reference.map(|reference| Dedup::Ref {
                user: viewer.user.id.clone(),
                reference: reference.to_owned(),
            }),
            rate: shared_rate.then_some(self.rate.limit()),
            by_service: false,
            roles: viewer.roles.clone(),
            route,
        };
        Ok(match self.publish(new).await? {
            Published::New(c) | Published::Duplicate(c) => Accepted {
                id: c.id,
                held: false,
            },
            Published::Held { comment, .. } => Accepted {
                id: comment.id,
                held: true,
            },
        })
    }

    /// What the blocked terms (the stream's and the file's) make of `text`: refused, or how
    /// it goes out.
    async fn route(&self, stream: &StreamId, text: &CommentText) -> Result<Route, PostError> {
        let list = self.broker.terms(stream).await.map_err(|e| match e {
            BrokerError::Unavailable(cause) => PostError::Unavailable(cause),
            other => PostError::Unavailable(Unavailable::new(other.to_string())),
        })?;
        let matcher = self.terms.matcher(stream, list);
        Ok(match matcher.check(text.as_str()) {
            None => Route::Public,
            Some(TermAction::Shadow) => Route::Shadow,
            Some(TermAction::Hold) => Route::Hold,
            Some(TermAction::Refuse) => return Err(PostError::Blocked),
        })
    }

    /// A service's comment: published (or, for a repeated idempotency key, the first one
    /// it published), or refused. Never held: services are not filtered.
    pub async fn as_service(
        &self,
        stream: &StreamId,
        comment: ServiceComment,
    ) -> Result<Published, PostError> {
        let new = self.service_comment(stream, comment)?;
        match self.publish(new).await? {
            Published::Held { .. } => Err(PostError::Unavailable(Unavailable::new(
                "the broker held a service's comment",
            ))),
            published => Ok(published),
        }
    }

    fn service_comment(
        &self,
        stream: &StreamId,
        body: ServiceComment,
    ) -> Result<NewComment, PostError> {
        let invalid = |message: &str| PostError::Invalid(message.to_owned());
        let text = CommentText::parse(body.text, self.max_comment_chars)?;
        let user = match body.user {
            Some(user) => {
                let name_fits = !user.name.trim().is_empty()
                    && user.name.chars().count() <= MAX_USER_NAME_CHARS;
                match UserId::parse(&user.id) {
                    Ok(id) if name_fits => Some(User {
                        id,
                        name: user.name,
                    }),
                    _ => return Err(invalid("user.id and user.name must be 1 to 128 characters")),
                }
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
            Some(value) => {
                Some(CommentData::from_value(&value).map_err(|e| invalid(&e.to_string()))?)
            }
        };
        let idempotency_key = body
            .idempotency_key
            .map(|key| IdempotencyKey::parse(&key))
            .transpose()
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(NewComment {
            stream: stream.clone(),
            kind: body.kind,
            user,
            text,
            data,
            media_ts: media_time(body.media_ts)?,
            by_moderator: false,
            dedup: idempotency_key.map(Dedup::Service),
            rate: None,
            by_service: true,
            roles: Vec::new(),
            route: Route::Public,
        })
    }

    /// Publishes a held comment as a new one (counted as published and approved); `NotFound`
    /// if it expired or was decided already.
    pub async fn approve(
        &self,
        stream: &StreamId,
        held_id: CommentId,
    ) -> Result<Comment, BrokerError> {
        let comment = self.broker.approve(stream, held_id).await?;
        self.metrics.published(comment.kind);
        self.metrics.held(HeldOutcome::Approved, 1);
        Ok(comment)
    }

    /// Drops a held comment (counted as rejected); `NotFound` if it expired or was decided
    /// already.
    pub async fn reject(&self, stream: &StreamId, held_id: CommentId) -> Result<(), BrokerError> {
        self.broker.reject(stream, held_id).await?;
        self.metrics.held(HeldOutcome::Rejected, 1);
        Ok(())
    }

    /// Hands a validated comment to the broker and counts it if it is new.
    async fn publish(&self, new: NewComment) -> Result<Published, PostError> {
        let kind = new.kind;
        match self.broker.publish(new).await {
            Ok(published) => {
                match published {
                    Published::New(_) => self.metrics.published(kind),
                    Published::Held {
                        duplicate: false, ..
                    } => self.metrics.held(HeldOutcome::Held, 1),
                    _ => {}
                }
                Ok(published)
            }
            Err(BrokerError::Banned) => Err(PostError::Banned),
            Err(BrokerError::RateLimited { retry_after }) => {
                Err(PostError::RateLimited { retry_after })
            }
            Err(BrokerError::SlowMode { retry_after }) => Err(PostError::SlowMode { retry_after }),
            Err(BrokerError::RoleRequired) => Err(PostError::RoleRequired),
            Err(error @ (BrokerError::NotFound | BrokerError::Forbidden)) => Err(
                PostError::Unavailable(Unavailable::new(format!("a publish answered {error}"))),
            ),
            Err(BrokerError::Unavailable(cause)) => Err(PostError::Unavailable(cause)),
        }
    }
}

/// A comment's `media_ts`, if it lies in the window around this instance's clock.
fn media_time(media_ts: Option<u64>) -> Result<Option<u64>, PostError> {
    Ok(media_ts.map(|m| check_media_ts(m, now_ms())).transpose()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::HistoryQuery;
    use crate::metrics::Latencies;

    fn posting() -> Posting {
        let mut config = Config::defaults();
        config.rate_per_sec = 1.0;
        config.rate_burst = 1.0;
        let metrics = Arc::new(Metrics::new(Latencies::noop()));
        let broker = Broker::Memory(Arc::new(crate::broker::MemoryBroker::new(
            10,
            Duration::from_secs(1),
            Arc::new(|_| {}),
            metrics.clone(),
        )));
        Posting::new(&config, Vec::new(), broker, metrics)
    }

    fn service(kind: CommentKind, text: &str) -> ServiceComment {
        ServiceComment {
            kind,
            text: text.into(),
            user: None,
            data: None,
            idempotency_key: None,
            media_ts: None,
        }
    }

    #[test]
    fn text_errors_map_to_their_codes() {
        assert_eq!(PostError::from(TextError::Blank).code(), ErrorCode::Invalid);
        assert_eq!(
            PostError::from(TextError::ControlCharacters).code(),
            ErrorCode::Invalid
        );
        assert_eq!(
            PostError::from(TextError::TooLong { max: 3 }).code(),
            ErrorCode::TooLong
        );
    }

    #[tokio::test]
    async fn viewers_must_be_signed_in_and_within_their_rate() {
        let p = posting();
        let s = StreamId::parse("s").unwrap();
        let refused = p
            .as_viewer(&s, &Identity::Anonymous, "hi".into(), None, None)
            .await;
        assert_eq!(refused.unwrap_err().code(), ErrorCode::Unauthorized);
        let viewer = Identity::Viewer(crate::auth::Viewer {
            user: User {
                id: UserId::parse("u").unwrap(),
                name: "U".into(),
            },
            expires_at: u64::MAX,
            moderates: Vec::new(),
            roles: Vec::new(),
            signed_with: None,
        });
        let long = "x".repeat(201);
        let refused = p
            .as_viewer(&s, &viewer, long, None, None)
            .await
            .unwrap_err();
        assert_eq!(refused, PostError::TooLong { max: 200 });
        assert!(!refused.comment_was_well_formed());
        let accepted = p
            .as_viewer(&s, &viewer, "hi".into(), None, None)
            .await
            .unwrap();
        assert!(!accepted.held);
        let page = p
            .broker
            .history(&s, HistoryQuery::Latest { limit: 1 })
            .await;
        let comment = &page.unwrap().comments[0];
        assert_eq!((comment.id, comment.text.as_str()), (accepted.id, "hi"));
        let limited = p
            .as_viewer(&s, &viewer, "again".into(), None, None)
            .await
            .unwrap_err();
        assert_eq!(limited.code(), ErrorCode::RateLimited);
        assert!(limited.retry_after_ms().unwrap() >= 1);
        assert!(limited.comment_was_well_formed());
    }

    #[tokio::test]
    async fn service_comments_follow_the_kind_rules() {
        let p = posting();
        let s = StreamId::parse("s").unwrap();
        let no_user = p.as_service(&s, service(CommentKind::User, "hi")).await;
        assert_eq!(no_user.unwrap_err().code(), ErrorCode::Invalid);
        let mut with_data = service(CommentKind::Gift, "rose");
        with_data.data = Some(serde_json::json!({"n": 1}));
        with_data.idempotency_key = Some("k".into());
        let first = p.as_service(&s, with_data).await.unwrap();
        let mut again = service(CommentKind::Gift, "rose");
        again.idempotency_key = Some("k".into());
        match (first, p.as_service(&s, again).await.unwrap()) {
            (Published::New(a), Published::Duplicate(b)) => assert_eq!(a, b),
            other => panic!("{other:?}"),
        }
        let mut blank_name = service(CommentKind::User, "hi");
        blank_name.user = Some(ServiceUser {
            id: "u1".into(),
            name: " ".into(),
        });
        let refused = p.as_service(&s, blank_name).await.unwrap_err();
        assert_eq!(refused.code(), ErrorCode::Invalid);
        assert_eq!(
            p.metrics.published_by_kind().map(|(_, n)| n).sum::<u64>(),
            1
        );
    }
}
