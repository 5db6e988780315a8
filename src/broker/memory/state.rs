//! One stream's state in the embedded broker, every part of it bounded: history by
//! `DANMAKU_HISTORY_LEN`, idempotency keys by their time, bans and slow-mode marks by theirs,
//! held comments by count and age, deletions by count and age.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::replay::ReplayIndex;
use crate::broker::{BanMode, Dedup, Published};
use crate::broker::{HELD_FOR, MAX_HELD_FOR_REVIEW};
use crate::domain::ReplayLimits;
use crate::domain::{BlockedTerms, Comment, CommentId, Epoch, StreamSettings, UserId, now_ms};

/// Deletions a stream remembers for resuming clients, and for how long.
const DELETIONS_KEPT: usize = 1000;
pub(super) const DELETIONS_FOR: Duration = Duration::from_secs(24 * 3600);

/// What a publish answered, kept under its idempotency key.
#[derive(Debug, Clone)]
pub(super) struct Posted {
    pub(super) comment: Comment,
    /// It was held for review (`comment.id` is the held id).
    pub(super) held: bool,
}

impl Posted {
    /// The answer to the same key again.
    pub(super) fn again(&self) -> Published {
        if self.held {
            Published::Held {
                comment: self.comment.clone(),
                duplicate: true,
            }
        } else {
            Published::Duplicate(self.comment.clone())
        }
    }
}

pub(super) struct StreamState {
    pub(super) history: VecDeque<Comment>,
    pub(super) last_id: Option<CommentId>,
    /// The newest id trimmed off the front of `history` by the length cap. A resume from
    /// an id older than this would miss comments.
    pub(super) trimmed_upto: Option<CommentId>,
    pub(super) comment_count: u64,
    pub(super) viewers: u64,
    pub(super) peak_viewers: u64,
    /// Bans in force: until when, and what they hold back.
    pub(super) bans: HashMap<UserId, (Instant, BanMode)>,
    /// Made with the stream's state; a stream forgotten and made again has a new one.
    pub(super) epoch: Epoch,
    /// The newest deletions (epoch ms, id), oldest first: at most [`DELETIONS_KEPT`], for a
    /// day, as the Redis moderation log keeps them.
    pub(super) deleted: VecDeque<(u64, CommentId)>,
    pub(super) idempotency: HashMap<Dedup, Posted>,
    /// Keys in insertion order with their expiry, to forget them in order: one queue per
    /// time to live (services' keys, viewers' refs), so each stays in expiry order.
    pub(super) idempotency_expiry: [VecDeque<(Instant, Dedup)>; 2],
    pub(super) settings: StreamSettings,
    /// In slow mode: when each user who posted may post again.
    pub(super) slow: HashMap<UserId, Instant>,
    pub(super) terms: Arc<BlockedTerms>,
    /// Comments held for review, oldest first, with when they were held.
    pub(super) held: VecDeque<(Instant, Comment)>,
    /// The newest held id, so held ids only grow.
    pub(super) held_last: Option<CommentId>,
    /// The public comments by media time, for replay.
    pub(super) replay: ReplayIndex,
    pub(super) touched: Instant,
}

impl StreamState {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            history: VecDeque::new(),
            last_id: None,
            trimmed_upto: None,
            comment_count: 0,
            viewers: 0,
            peak_viewers: 0,
            bans: HashMap::new(),
            // Made before any comment of it, on the clock that stamps their ids.
            epoch: Epoch::new(now_ms()),
            deleted: VecDeque::new(),
            idempotency: HashMap::new(),
            idempotency_expiry: Default::default(),
            settings: StreamSettings::default(),
            slow: HashMap::new(),
            terms: Arc::default(),
            held: VecDeque::new(),
            held_last: None,
            replay: ReplayIndex::default(),
            touched: now,
        }
    }

    /// Forgets what outlived its time: idempotency keys, bans, slow-mode marks, held
    /// comments; returns how many held comments expired.
    #[must_use]
    pub(super) fn forget_expired(&mut self, now: Instant) -> u64 {
        for queue in &mut self.idempotency_expiry {
            while let Some((expiry, _)) = queue.front() {
                if *expiry > now {
                    break;
                }
                let (_, key) = queue.pop_front().expect("front exists");
                self.idempotency.remove(&key);
            }
        }
        self.bans.retain(|_, (until, _)| *until > now);
        self.slow.retain(|_, until| *until > now);
        let mut expired = 0;
        while self
            .held
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= HELD_FOR)
        {
            self.held.pop_front();
            expired += 1;
        }
        expired
    }

    /// Remembers what a publish answered under its key.
    pub(super) fn remember(&mut self, key: Dedup, posted: Posted, now: Instant) {
        let queue = usize::from(matches!(key, Dedup::Ref { .. }));
        self.idempotency_expiry[queue].push_back((now + key.ttl(), key.clone()));
        self.idempotency.insert(key, posted);
    }

    pub(super) fn ban_mode(&self, user: &UserId, now: Instant) -> Option<BanMode> {
        self.bans
            .get(user)
            .filter(|(until, _)| *until > now)
            .map(|(_, mode)| *mode)
    }

    /// In slow mode, how long `user` must still wait; `None` (and the wait starts now) if
    /// they may post.
    pub(super) fn slow_down(&mut self, user: &UserId, now: Instant) -> Option<Duration> {
        if self.settings.slow_mode_ms == 0 {
            return None;
        }
        if let Some(until) = self.slow.get(user).filter(|until| **until > now) {
            return Some(*until - now);
        }
        let interval = Duration::from_millis(u64::from(self.settings.slow_mode_ms));
        self.slow.insert(user.clone(), now + interval);
        None
    }

    /// Appends a published comment, trimming the history to `cap`; a public one is
    /// replayable within `replay`.
    pub(super) fn append(&mut self, comment: Comment, cap: usize, replay: ReplayLimits) {
        self.replay.add(&comment, replay, comment.ts);
        self.last_id = Some(comment.id);
        self.comment_count += 1;
        self.history.push_back(comment);
        while self.history.len() > cap {
            let trimmed = self.history.pop_front().expect("longer than the cap");
            self.trimmed_upto = Some(trimmed.id);
        }
    }

    /// Takes a retained comment out of the history and logs its deletion; unpins it if it
    /// was pinned (returns whether the settings changed).
    pub(super) fn remove(&mut self, id: CommentId) -> Option<(Comment, bool)> {
        let index = self.history.binary_search_by(|c| c.id.cmp(&id)).ok()?;
        let comment = self.history.remove(index)?;
        self.replay.remove(&comment);
        let now = now_ms();
        self.deleted.push_back((now, id));
        while self.deleted.len() > DELETIONS_KEPT
            || self
                .deleted
                .front()
                .is_some_and(|(at, _)| at + DELETIONS_FOR.as_millis() as u64 <= now)
        {
            self.deleted.pop_front();
        }
        let unpinned = self.settings.pinned == Some(id);
        if unpinned {
            self.settings.pinned = None;
        }
        Some((comment, unpinned))
    }

    /// Holds `comment` for review under a new held id (the oldest held one makes room when
    /// [`MAX_HELD_FOR_REVIEW`] are held); returns it with that id, and whether one made room.
    pub(super) fn hold(&mut self, mut comment: Comment, now: Instant) -> (Comment, bool) {
        comment.id = CommentId::next_after(self.held_last, comment.ts);
        self.held_last = Some(comment.id);
        let evicted = self.held.len() >= MAX_HELD_FOR_REVIEW;
        if evicted {
            self.held.pop_front();
        }
        self.held.push_back((now, comment.clone()));
        (comment, evicted)
    }

    /// Whether the stream holds anything worth keeping while nobody watches.
    pub(super) fn holds_something(&self) -> bool {
        self.comment_count > 0
            || !self.bans.is_empty()
            || !self.idempotency.is_empty()
            || self.settings != StreamSettings::default()
            || !self.terms.as_slice().is_empty()
            || !self.held.is_empty()
    }
}
