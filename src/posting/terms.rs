//! The blocked terms a viewer's comment is matched against: the stream's own list (from the
//! broker) and the instance's file (`DANMAKU_BLOCKED_TERMS_FILE`), as one matcher per
//! stream, built again only when the stream's list changed. Matching runs once per comment,
//! on the instance that accepts it, never per viewer.

use std::sync::Arc;

use dashmap::DashMap;

use crate::domain::{BlockedTerm, BlockedTerms, StreamId, TermMatcher};

/// Streams whose matcher is kept, beyond which the cache starts afresh (a matcher is built
/// again in a millisecond or so).
const MAX_KEPT: usize = 4096;

pub(super) struct Terms {
    /// The file's terms, for every stream.
    file: Arc<Vec<BlockedTerm>>,
    /// Each stream's list as last seen, and the matcher built from it and the file's.
    kept: DashMap<StreamId, (Arc<BlockedTerms>, Arc<TermMatcher>)>,
}

impl Terms {
    pub(super) fn new(file: Vec<BlockedTerm>) -> Self {
        Self {
            file: Arc::new(file),
            kept: DashMap::new(),
        }
    }

    /// The matcher for `stream`, whose own list is now `list`.
    pub(super) fn matcher(&self, stream: &StreamId, list: Arc<BlockedTerms>) -> Arc<TermMatcher> {
        if let Some(kept) = self.kept.get(stream)
            && Arc::ptr_eq(&kept.0, &list)
        {
            return kept.1.clone();
        }
        let matcher = Arc::new(TermMatcher::new(self.file.iter().chain(list.as_slice())));
        if self.kept.len() >= MAX_KEPT {
            self.kept.clear();
        }
        self.kept.insert(stream.clone(), (list, matcher.clone()));
        matcher
    }
}
