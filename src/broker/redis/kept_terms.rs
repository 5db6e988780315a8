//! Each stream's blocked terms as this instance last read them, and when. Shared by the
//! broker, which reads a stream's list at most once per [`TERMS_FOR`] (a viewer's every
//! comment is matched against it, and a list of a thousand terms is too much to read each
//! time), and the subscription owner, which forgets a stream's list when its channel
//! announces a new one. Bounded: past [`MAX_KEPT`] streams all are forgotten.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::domain::{BlockedTerms, StreamId};

/// How long an instance uses a stream's blocked terms before it reads them again: a change
/// applies on every instance within this, at once where its announcement is heard.
pub(super) const TERMS_FOR: Duration = Duration::from_secs(1);

/// Streams whose terms an instance keeps at most.
const MAX_KEPT: usize = 4096;

#[derive(Clone, Default)]
pub(super) struct KeptTerms(Arc<DashMap<StreamId, (Instant, Arc<BlockedTerms>)>>);

impl KeptTerms {
    /// The stream's list, if it was read less than [`TERMS_FOR`] ago.
    pub(super) fn fresh(&self, stream: &StreamId) -> Option<Arc<BlockedTerms>> {
        self.0
            .get(stream)
            .filter(|kept| kept.0.elapsed() < TERMS_FOR)
            .map(|kept| kept.1.clone())
    }

    /// Keeps the list just read; returns the one to use: the kept one if its content did not
    /// change (so the matcher built from it is kept too).
    pub(super) fn keep(&self, stream: &StreamId, terms: BlockedTerms) -> Arc<BlockedTerms> {
        let terms = match self.0.get(stream) {
            Some(kept) if *kept.1 == terms => kept.1.clone(),
            _ => Arc::new(terms),
        };
        if self.0.len() >= MAX_KEPT {
            self.0.clear();
        }
        self.0
            .insert(stream.clone(), (Instant::now(), terms.clone()));
        terms
    }

    /// Forgets the stream's list: the next comment reads it anew.
    pub(super) fn forget(&self, stream: &StreamId) {
        self.0.remove(stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_kept_a_second_and_unchanged_content_keeps_its_arc() {
        let kept = KeptTerms::default();
        let s = StreamId::parse("s").unwrap();
        assert!(kept.fresh(&s).is_none());
        let first = kept.keep(&s, BlockedTerms::default());
        assert!(Arc::ptr_eq(&kept.fresh(&s).unwrap(), &first));
        let again = kept.keep(&s, BlockedTerms::default());
        assert!(Arc::ptr_eq(&again, &first), "same content, same list");
        kept.forget(&s);
        assert!(kept.fresh(&s).is_none());
    }
}
