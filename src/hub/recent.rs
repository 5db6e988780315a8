//! A room's cache of its stream's newest comments for fresh `init` frames: read and encoded
//! once, then reused until the next comment, deletion or resync reaches the room. A
//! reconnect storm costs a handshake and a write per client, not a history read each.
//!
//! Connections that find no valid page share one read: the first starts it, the rest wait
//! for it (one read per stream per change, not one per connection that arrived before the
//! first read finished). Sharing is safe because a connection asks only after its seat in
//! the room is taken: a comment the shared read missed reaches the room after that, so the
//! connection gets it live, and one the read and the room both carry is dropped by the
//! connection as at or before `init`'s newest id.
//!
//! A page holds shadowed comments too (section 9), and enough comments that everyone sees:
//! readers who see none of the shadowed ones (almost all) share its one encoding; a
//! shadowed comment's author and the stream's moderators get theirs encoded for them.

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;
use tokio::sync::OnceCell;

use crate::domain::wire::encode_seen_by;
use crate::domain::{Audience, Comment, CommentId, Epoch, StreamSettings};

/// A stream's newest comments, encoded once for every fresh `init` until the next comment
/// or deletion. Kept only while the stream has local connections (only then does this
/// instance see every change to it).
#[derive(Debug)]
pub struct Recent {
    /// The comments read, oldest first, shadowed ones too: at least the newest `limit`
    /// that everyone sees, unless history holds fewer.
    comments: Vec<Comment>,
    /// The newest `limit` comments everyone sees, as `init`'s JSON array.
    public: Box<RawValue>,
    limit: usize,
    /// The newest comment read (the connection sends nothing older afterwards).
    pub last_id: Option<CommentId>,
    /// The stream's epoch when they were read.
    pub epoch: Epoch,
    /// The stream's settings when they were read.
    pub settings: StreamSettings,
}

impl Recent {
    /// `comments` (oldest first) as `init` shows the newest `limit` of them to each reader.
    pub fn new(
        comments: Vec<Comment>,
        limit: usize,
        epoch: Epoch,
        settings: StreamSettings,
    ) -> Self {
        let public = newest(&comments, Audience::of(None), limit);
        Self {
            public: encode_seen_by(public, Audience::of(None)),
            last_id: comments.last().map(|c| c.id),
            comments,
            limit,
            epoch,
            settings,
        }
    }

    /// What `audience` is shown, as a JSON array: everyone's (encoded once) unless it sees
    /// a shadowed comment among them (its author, a moderator), then its own.
    pub fn seen_by(&self, audience: Audience<'_>) -> Cow<'_, RawValue> {
        let sees_more = self.comments.iter().any(|c| c.shadow && audience.sees(c));
        if !sees_more {
            return Cow::Borrowed(&self.public);
        }
        let seen = newest(&self.comments, audience, self.limit);
        Cow::Owned(encode_seen_by(seen, audience))
    }
}

/// The tail of `comments` that holds the newest `limit` that `audience` sees (with any it
/// does not see among them: [`encode_seen_by`] leaves those out).
fn newest<'c>(comments: &'c [Comment], audience: Audience<'_>, limit: usize) -> &'c [Comment] {
    if limit == 0 {
        return &[];
    }
    let mut seen = 0;
    let start = comments
        .iter()
        .rposition(|c| {
            seen += usize::from(audience.sees(c));
            seen == limit
        })
        .unwrap_or(0);
    &comments[start..]
}

/// One page read (or being read) per change count.
type Page = Arc<OnceCell<Arc<Recent>>>;

#[derive(Default)]
pub(super) struct RecentCache {
    /// Bumped by every comment, deletion or resync dispatched to the room: a page read for
    /// an older count may be stale.
    changes: AtomicU64,
    /// The page for the change count it was asked for at.
    page: Mutex<Option<(u64, Page)>>,
}

impl RecentCache {
    /// Marks the kept page stale.
    pub(super) fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// The kept page, or `read`'s (shared with every caller that asks before it is done
    /// and before the stream changes). A failed read is not kept: the next caller reads.
    pub(super) async fn get_or_read<F, Fut, E>(&self, read: F) -> Result<Arc<Recent>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Recent, E>>,
    {
        let page = self.current();
        page.get_or_try_init(|| async { read().await.map(Arc::new) })
            .await
            .cloned()
    }

    fn current(&self) -> Page {
        let mut kept = self.page.lock().expect("not poisoned");
        let changes = self.changes.load(Ordering::Acquire);
        match &*kept {
            Some((at, page)) if *at == changes => page.clone(),
            _ => {
                let page = Page::default();
                *kept = Some((changes, page.clone()));
                page
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    fn page(last: u64) -> Recent {
        let mut recent = Recent::new(Vec::new(), 10, Epoch::new(1), StreamSettings::default());
        recent.last_id = Some(CommentId::new(last, 0));
        recent
    }

    /// A read that counts itself and answers `page(last)` after a moment.
    async fn counted(reads: &AtomicUsize, last: u64) -> Result<Recent, ()> {
        reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(page(last))
    }

    fn last(recent: &Result<Arc<Recent>, ()>) -> Option<CommentId> {
        recent.as_ref().unwrap().last_id
    }

    #[tokio::test(start_paused = true)]
    async fn callers_that_ask_together_share_one_read() {
        let cache = RecentCache::default();
        let reads = AtomicUsize::new(0);
        let asks = (0..50).map(|_| cache.get_or_read(|| counted(&reads, 1)));
        let pages = futures_util::future::join_all(asks).await;
        assert_eq!(reads.load(Ordering::SeqCst), 1, "one read for 50 callers");
        assert!(pages.iter().all(|p| last(p) == Some(CommentId::new(1, 0))));
        let again = cache.get_or_read(|| counted(&reads, 9)).await;
        assert_eq!(last(&again), Some(CommentId::new(1, 0)), "kept");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_makes_the_next_caller_read_again() {
        let cache = RecentCache::default();
        let reads = AtomicUsize::new(0);
        let first = cache.get_or_read(|| counted(&reads, 1)).await;
        assert_eq!(last(&first), Some(CommentId::new(1, 0)));
        cache.changed();
        let second = cache.get_or_read(|| counted(&reads, 2)).await;
        assert_eq!(last(&second), Some(CommentId::new(2, 0)));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    /// A caller that asks after a change does not wait for (or take) a read started
    /// before it: that read may have missed the change.
    #[tokio::test(start_paused = true)]
    async fn a_read_started_before_a_change_serves_only_those_who_asked_before_it() {
        let cache = RecentCache::default();
        let reads = AtomicUsize::new(0);
        let before = cache.get_or_read(|| counted(&reads, 1));
        tokio::pin!(before);
        // Start the read, then change the stream while it runs.
        assert!(futures_util::poll!(before.as_mut()).is_pending());
        cache.changed();
        let after = cache.get_or_read(|| counted(&reads, 2));
        let (before, after) = tokio::join!(before, after);
        assert_eq!(last(&before), Some(CommentId::new(1, 0)));
        assert_eq!(last(&after), Some(CommentId::new(2, 0)));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_is_not_kept() {
        let cache = RecentCache::default();
        let failed: Result<Arc<Recent>, &str> = cache.get_or_read(|| async { Err("down") }).await;
        assert_eq!(failed.unwrap_err(), "down");
        let read = cache
            .get_or_read(|| async { Ok::<_, &str>(page(3)) })
            .await
            .unwrap();
        assert_eq!(read.last_id, Some(CommentId::new(3, 0)));
    }

    fn comment(ms: u64, author: &str, shadow: bool) -> Comment {
        Comment {
            id: CommentId::new(ms, 0),
            stream_id: crate::domain::StreamId::parse("s").unwrap(),
            kind: crate::domain::CommentKind::User,
            user: Some(crate::domain::User {
                id: crate::domain::UserId::parse(author).unwrap(),
                name: author.into(),
            }),
            text: format!("c{ms}"),
            data: None,
            ts: ms,
            media_ts: None,
            by_moderator: false,
            shadow,
        }
    }

    /// (id, marked shadow) of each comment of an `init` array.
    fn shown(json: &RawValue) -> Vec<(String, bool)> {
        let comments: Vec<serde_json::Value> = serde_json::from_str(json.get()).unwrap();
        comments
            .iter()
            .map(|c| (c["id"].as_str().unwrap().to_owned(), c["shadow"] == true))
            .collect()
    }

    /// `init` shows each reader the newest `limit` comments it sees: everyone the shared
    /// encoding without the shadowed one; its author and moderators their own.
    #[test]
    fn each_reader_is_shown_the_newest_it_sees() {
        let comments = vec![
            comment(1, "a", false),
            comment(2, "a", false),
            comment(3, "troll", true),
            comment(4, "a", false),
        ];
        let recent = Recent::new(comments, 2, Epoch::new(1), StreamSettings::default());
        let everyone = recent.seen_by(Audience::of(None));
        assert!(matches!(everyone, Cow::Borrowed(_)), "the shared encoding");
        let plain = |ids: &[&str]| -> Vec<(String, bool)> {
            ids.iter().map(|id| ((*id).to_owned(), false)).collect()
        };
        assert_eq!(shown(&everyone), plain(&["2-0", "4-0"]));
        let troll = crate::domain::UserId::parse("troll").unwrap();
        let author = recent.seen_by(Audience::of(Some(&troll)));
        assert_eq!(shown(&author), plain(&["3-0", "4-0"]));
        let moderator = recent.seen_by(Audience::EVERYTHING);
        assert_eq!(
            shown(&moderator),
            [("3-0".to_owned(), true), ("4-0".to_owned(), false)]
        );
    }
}
