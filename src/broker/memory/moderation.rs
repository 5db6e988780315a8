//! What moderators change on the embedded broker: deletions (by a moderator, or by the
//! comment's author), bans of every mode with their purge, the stream's settings, its blocked
//! terms, and the comments held for review. Each hands the hub its event while the stream's
//! entry is locked, as a publish does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::MemoryBroker;
use crate::broker::{Ban, BanMode, BrokerError, BrokerEvent};
use crate::domain::{
    BlockedTerms, Comment, CommentId, MEDIA_BEHIND_MS, SettingsPatch, StreamId, StreamSettings,
    UserId, now_ms,
};

impl MemoryBroker {
    /// Removes a retained comment: any, for a moderator (`author: None`); only their own,
    /// for a viewer.
    pub(in crate::broker) fn delete(
        &self,
        stream: &StreamId,
        id: CommentId,
        author: Option<&UserId>,
    ) -> Result<(), BrokerError> {
        let now = Instant::now();
        let mut state = self.streams.get_mut(stream).ok_or(BrokerError::NotFound)?;
        self.forget_expired(&mut state, now);
        let comment = state
            .history
            .iter()
            .find(|c| c.id == id)
            .ok_or(BrokerError::NotFound)?;
        if author.is_some_and(|a| comment.user.as_ref().is_none_or(|u| &u.id != a)) {
            return Err(BrokerError::Forbidden);
        }
        let (_, unpinned) = state.remove(id).expect("found above");
        self.emit(stream, deleted(stream, vec![id]));
        if unpinned {
            self.emit(stream, settings_changed(stream, &state.settings));
        }
        Ok(())
    }

    /// A ban of `mode` until `duration` from now; with `purge`, the user's retained
    /// comments are deleted too (one `deleted` event).
    pub(in crate::broker) fn ban(
        &self,
        stream: &StreamId,
        user: &UserId,
        duration: Duration,
        mode: BanMode,
        purge: bool,
    ) {
        let now = Instant::now();
        let mut state = self.state(stream, now);
        state.bans.insert(user.clone(), (now + duration, mode));
        if purge {
            let ids: Vec<CommentId> = state
                .history
                .iter()
                .filter(|c| c.user.as_ref().is_some_and(|u| &u.id == user))
                .map(|c| c.id)
                .collect();
            let mut unpinned = false;
            for id in &ids {
                unpinned |= state.remove(*id).is_some_and(|(_, u)| u);
            }
            if !ids.is_empty() {
                self.emit(stream, deleted(stream, ids));
            }
            if unpinned {
                self.emit(stream, settings_changed(stream, &state.settings));
            }
        }
        if mode == BanMode::Ban {
            self.emit(
                stream,
                BrokerEvent::Banned {
                    stream: stream.clone(),
                    user_id: user.clone(),
                },
            );
        }
    }

    pub(in crate::broker) fn unban(&self, stream: &StreamId, user: &UserId) -> bool {
        let now = Instant::now();
        self.streams.get_mut(stream).is_some_and(|mut s| {
            self.forget_expired(&mut s, now);
            s.bans.remove(user).is_some()
        })
    }

    /// The bans in force, soonest to end first.
    pub(in crate::broker) fn bans(&self, stream: &StreamId) -> Vec<Ban> {
        let (now, now_ms) = (Instant::now(), now_ms());
        let mut bans: Vec<Ban> = self.streams.get(stream).map_or_else(Vec::new, |s| {
            s.bans
                .iter()
                .filter(|(_, (until, _))| *until > now)
                .map(|(user, (until, mode))| Ban {
                    user_id: user.clone(),
                    expires_at: now_ms + (*until - now).as_millis() as u64,
                    mode: *mode,
                })
                .collect()
        });
        bans.sort_by(|a, b| (a.expires_at, &a.user_id).cmp(&(b.expires_at, &b.user_id)));
        bans
    }

    pub(in crate::broker) fn ban_mode(&self, stream: &StreamId, user: &UserId) -> Option<BanMode> {
        let state = self.streams.get(stream)?;
        state.ban_mode(user, Instant::now())
    }

    pub(in crate::broker) fn settings(&self, stream: &StreamId) -> StreamSettings {
        self.streams
            .get(stream)
            .map_or_else(StreamSettings::default, |s| s.settings.clone())
    }

    /// Makes `patch`; a pin must name a retained comment that everyone sees (`NotFound`
    /// otherwise: a shadowed one is pinned for nobody).
    pub(in crate::broker) fn update_settings(
        &self,
        stream: &StreamId,
        patch: &SettingsPatch,
    ) -> Result<StreamSettings, BrokerError> {
        let mut state = self.state(stream, Instant::now());
        let next = patch.apply(&state.settings);
        if let Some(Some(pin)) = patch.pinned
            && !state.history.iter().any(|c| c.id == pin && !c.shadow)
        {
            return Err(BrokerError::NotFound);
        }
        if next != state.settings {
            state.settings = next.clone();
            self.emit(stream, settings_changed(stream, &next));
        }
        Ok(next)
    }

    pub(in crate::broker) fn terms(&self, stream: &StreamId) -> Arc<BlockedTerms> {
        self.streams
            .get(stream)
            .map_or_else(Arc::default, |s| s.terms.clone())
    }

    pub(in crate::broker) fn set_terms(&self, stream: &StreamId, terms: BlockedTerms) {
        self.state(stream, Instant::now()).terms = Arc::new(terms);
    }

    /// The comments held for review, oldest first.
    pub(in crate::broker) fn held(&self, stream: &StreamId) -> Vec<Comment> {
        let now = Instant::now();
        self.streams.get_mut(stream).map_or_else(Vec::new, |mut s| {
            self.forget_expired(&mut s, now);
            s.held.iter().map(|(_, c)| c.clone()).collect()
        })
    }

    /// Publishes a held comment as a new one (a new id, published now); its author is told.
    pub(in crate::broker) fn approve(
        &self,
        stream: &StreamId,
        held_id: CommentId,
    ) -> Result<Comment, BrokerError> {
        let now = Instant::now();
        let mut state = self.state(stream, now);
        let mut comment = take_held(&mut state.held, held_id).ok_or(BrokerError::NotFound)?;
        let ts = now_ms();
        // Published now, about the moment it was written, yet never more than a post may be
        // behind: a replay window final two minutes after its end stays final.
        comment.media_ts = Some(comment.media_time().max(ts.saturating_sub(MEDIA_BEHIND_MS)));
        comment.id = CommentId::next_after(state.last_id, ts);
        comment.ts = ts;
        state.append(comment.clone(), self.history_len, self.replay);
        self.emit(
            stream,
            BrokerEvent::Comments {
                stream: stream.clone(),
                comments: vec![comment.clone()],
            },
        );
        if let Some(user) = &comment.user {
            self.emit(
                stream,
                BrokerEvent::Released {
                    stream: stream.clone(),
                    user: user.id.clone(),
                    held_id,
                    id: comment.id,
                },
            );
        }
        Ok(comment)
    }

    /// Drops a held comment; its author is told.
    pub(in crate::broker) fn reject(
        &self,
        stream: &StreamId,
        held_id: CommentId,
    ) -> Result<(), BrokerError> {
        let mut state = self.state(stream, Instant::now());
        let comment = take_held(&mut state.held, held_id).ok_or(BrokerError::NotFound)?;
        if let Some(user) = comment.user {
            self.emit(
                stream,
                BrokerEvent::Dropped {
                    stream: stream.clone(),
                    user: user.id,
                    held_id,
                },
            );
        }
        Ok(())
    }
}

fn take_held(
    held: &mut std::collections::VecDeque<(Instant, Comment)>,
    id: CommentId,
) -> Option<Comment> {
    let index = held.iter().position(|(_, c)| c.id == id)?;
    held.remove(index).map(|(_, c)| c)
}

fn deleted(stream: &StreamId, ids: Vec<CommentId>) -> BrokerEvent {
    BrokerEvent::Deleted {
        stream: stream.clone(),
        ids,
    }
}

fn settings_changed(stream: &StreamId, settings: &StreamSettings) -> BrokerEvent {
    BrokerEvent::Settings {
        stream: stream.clone(),
        settings: settings.clone(),
    }
}
