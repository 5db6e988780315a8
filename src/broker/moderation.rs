//! What moderators change, through the seam: deletions (a moderator's, or an author's own),
//! bans of every mode with their purge, a stream's settings, its blocked terms, and the
//! comments held for review (the contract's section 9). Each is one step on the stream's
//! slot with Redis, announced on its channel, so every instance's viewers hear of it.

use std::sync::Arc;
use std::time::Duration;

use super::{Ban, BanMode, Broker, BrokerError};
use crate::domain::{
    BlockedTerms, Comment, CommentId, SettingsPatch, StreamId, StreamSettings, UserId,
};

impl Broker {
    /// Removes a retained comment; every viewer is told. `author`: only if it is theirs
    /// (`Forbidden` otherwise); `None`: a moderator's, any comment.
    pub async fn delete(
        &self,
        stream: &StreamId,
        id: CommentId,
        author: Option<&UserId>,
    ) -> Result<(), BrokerError> {
        match self {
            Self::Memory(m) => m.delete(stream, id, author),
            Self::Redis(r) => Box::pin(r.delete(stream, id, author)).await,
        }
    }

    /// Bans `user` from the stream for `duration`, in `mode`; `purge` also deletes every
    /// retained comment of theirs.
    pub async fn ban(
        &self,
        stream: &StreamId,
        user: &UserId,
        duration: Duration,
        mode: BanMode,
        purge: bool,
    ) -> Result<(), BrokerError> {
        match self {
            Self::Memory(m) => {
                m.ban(stream, user, duration, mode, purge);
                Ok(())
            }
            Self::Redis(r) => Box::pin(r.ban(stream, user, duration, mode, purge)).await,
        }
    }

    /// Lifts a user's ban on a stream: `false` if there was none.
    pub async fn unban(&self, stream: &StreamId, user: &UserId) -> Result<bool, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.unban(stream, user)),
            Self::Redis(r) => Box::pin(r.unban(stream, user)).await,
        }
    }

    /// The stream's bans in force, soonest to end first.
    pub async fn bans(&self, stream: &StreamId) -> Result<Vec<Ban>, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.bans(stream)),
            Self::Redis(r) => Box::pin(r.bans(stream)).await,
        }
    }

    /// The mode of the user's ban in force on the stream, if any.
    pub async fn ban_mode(
        &self,
        stream: &StreamId,
        user: &UserId,
    ) -> Result<Option<BanMode>, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.ban_mode(stream, user)),
            Self::Redis(r) => Box::pin(r.ban_mode(stream, user)).await,
        }
    }

    pub async fn settings(&self, stream: &StreamId) -> Result<StreamSettings, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.settings(stream)),
            Self::Redis(r) => Box::pin(r.settings(stream)).await,
        }
    }

    /// Makes `patch` and tells every viewer; a pin must name a retained comment
    /// (`NotFound` otherwise). Returns the settings as they are now.
    pub async fn update_settings(
        &self,
        stream: &StreamId,
        patch: &SettingsPatch,
    ) -> Result<StreamSettings, BrokerError> {
        match self {
            Self::Memory(m) => m.update_settings(stream, patch),
            Self::Redis(r) => Box::pin(r.update_settings(stream, patch)).await,
        }
    }

    /// The stream's own blocked terms (the file's are the instance's).
    pub async fn terms(&self, stream: &StreamId) -> Result<Arc<BlockedTerms>, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.terms(stream)),
            Self::Redis(r) => Box::pin(r.terms(stream)).await,
        }
    }

    pub async fn set_terms(
        &self,
        stream: &StreamId,
        terms: BlockedTerms,
    ) -> Result<(), BrokerError> {
        match self {
            Self::Memory(m) => {
                m.set_terms(stream, terms);
                Ok(())
            }
            Self::Redis(r) => Box::pin(r.set_terms(stream, terms)).await,
        }
    }

    /// The comments held for review, oldest first (each `id` its held id).
    pub async fn held(&self, stream: &StreamId) -> Result<Vec<Comment>, BrokerError> {
        match self {
            Self::Memory(m) => Ok(m.held(stream)),
            Self::Redis(r) => Box::pin(r.held(stream)).await,
        }
    }

    /// Publishes a held comment as a new one; its author is told (`released`).
    pub async fn approve(
        &self,
        stream: &StreamId,
        held_id: CommentId,
    ) -> Result<Comment, BrokerError> {
        match self {
            Self::Memory(m) => m.approve(stream, held_id),
            Self::Redis(r) => Box::pin(r.approve(stream, held_id)).await,
        }
    }

    /// Drops a held comment; its author is told (`dropped`).
    pub async fn reject(&self, stream: &StreamId, held_id: CommentId) -> Result<(), BrokerError> {
        match self {
            Self::Memory(m) => m.reject(stream, held_id),
            Self::Redis(r) => Box::pin(r.reject(stream, held_id)).await,
        }
    }
}
