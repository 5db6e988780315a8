//! A stream's public comments by media time, for `GET …/replay` (the contract's section 10)
//! on the embedded broker: kept for the replay retention, at most the replay cap (the
//! oldest media time goes first), without shadowed comments; a deletion takes a comment out.

use std::collections::BTreeMap;

use crate::domain::ReplayLimits;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CommentKind, StreamId};

    fn comment(id_ms: u64, media: Option<u64>, shadow: bool) -> Comment {
        Comment {
            id: CommentId::new(id_ms, 0),
            stream_id: StreamId::parse("s").unwrap(),
            kind: CommentKind::System,
            user: None,
            text: format!("c{id_ms}"),
            data: None,
            ts: id_ms,
            media_ts: media,
            by_moderator: false,
            shadow,
        }
    }

    fn texts(comments: &[Comment]) -> Vec<&str> {
        comments.iter().map(|c| c.text.as_str()).collect()
    }

    #[test]
    fn a_window_is_by_media_time_then_id_without_shadowed_or_removed_ones() {
        let limits = ReplayLimits {
            retention_s: 3600,
            max_comments: 10,
        };
        let mut index = ReplayIndex::default();
        let now = 1_000_000;
        for c in [
            comment(1_000, Some(900), false),
            comment(1_001, None, false),
            comment(1_002, Some(900), false),
            comment(1_003, Some(950), true),
            comment(1_004, Some(800), false),
        ] {
            index.add(&c, limits, now);
        }
        assert_eq!(
            texts(&index.window(0, 2_000, limits, now)),
            ["c1004", "c1000", "c1002", "c1001"]
        );
        assert_eq!(
            texts(&index.window(900, 1_001, limits, now)),
            ["c1000", "c1002"]
        );
        index.remove(&comment(1_000, Some(900), false));
        assert_eq!(texts(&index.window(900, 901, limits, now)), ["c1002"]);
    }

    #[test]
    fn the_cap_drops_the_oldest_media_time_and_the_retention_what_is_older() {
        let limits = ReplayLimits {
            retention_s: 10,
            max_comments: 2,
        };
        let mut index = ReplayIndex::default();
        for (id, media) in [(1, 50_000), (2, 40_000), (3, 60_000)] {
            index.add(&comment(id, Some(media), false), limits, 60_000);
        }
        assert_eq!(
            texts(&index.window(0, 100_000, limits, 60_000)),
            ["c1", "c3"]
        );
        assert_eq!(texts(&index.window(0, 100_000, limits, 65_000)), ["c3"]);
        let off = ReplayLimits {
            retention_s: 0,
            max_comments: 2,
        };
        index.add(&comment(4, Some(61_000), false), off, 61_000);
        assert_eq!(texts(&index.window(0, 100_000, limits, 65_000)), ["c3"]);
    }
}
