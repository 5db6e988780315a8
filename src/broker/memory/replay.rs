//! A stream's public comments by media time, for `GET …/replay` (the contract's section 10)
//! on the embedded broker: kept for the replay retention, at most the replay cap (the
//! oldest media time goes first), without shadowed comments; a deletion takes a comment out.

use std::collections::BTreeMap;

use crate::broker::ReplayLimits;
use crate::domain::{Comment, CommentId};

#[derive(Debug, Default)]
pub(super) struct ReplayIndex {
    /// By (media time, id): the order replay answers in.
    by_media: BTreeMap<(u64, CommentId), Comment>,
}

impl ReplayIndex {
    /// Adds a published comment (`now`: the clock, ms), dropping what the limits let go.
    pub(super) fn add(&mut self, comment: &Comment, limits: ReplayLimits, now: u64) {
        if limits.is_off() || comment.shadow {
            return;
        }
        self.by_media
            .insert((comment.media_time(), comment.id), comment.clone());
        while self.by_media.len() > limits.max_comments {
            self.by_media.pop_first();
        }
        self.forget_old(limits, now);
    }

    /// Takes a deleted comment out.
    pub(super) fn remove(&mut self, comment: &Comment) {
        self.by_media.remove(&(comment.media_time(), comment.id));
    }

    /// The comments whose media time lies in `[from, to)`, by media time then id.
    pub(super) fn window(
        &mut self,
        from: u64,
        to: u64,
        limits: ReplayLimits,
        now: u64,
    ) -> Vec<Comment> {
        self.forget_old(limits, now);
        let start = (from, CommentId::new(0, 0));
        self.by_media
            .range(start..)
            .take_while(|((media, _), _)| *media < to)
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Drops the comments whose media time is older than the retention.
    fn forget_old(&mut self, limits: ReplayLimits, now: u64) {
        let oldest = now.saturating_sub(limits.retention_ms());
        while self
            .by_media
            .first_key_value()
            .is_some_and(|((media, _), _)| *media < oldest)
        {
            self.by_media.pop_first();
        }
    }
}
