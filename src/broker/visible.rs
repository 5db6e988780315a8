//! History as one reader sees it (the contract's section 9): shadowed comments only for
//! their author and the stream's moderators. A page is read further until it holds as
//! many comments as the reader sees as it asked for (or history has no more), so a reader
//! who sees fewer than everything still gets full pages and pages on without a hole.

use super::{ALL_RETAINED, Broker, BrokerError, HistoryPage, HistoryQuery};
use crate::domain::{Audience, Comment, StreamId};

impl HistoryQuery {
    fn limit(self) -> usize {
        match self {
            Self::Latest { limit } | Self::After { limit, .. } => limit,
        }
    }

    fn with_limit(self, limit: usize) -> Self {
        match self {
            Self::Latest { .. } => Self::Latest { limit },
            Self::After { id, .. } => Self::After { id, limit },
        }
    }
}

impl Broker {
    /// `query`'s page as `audience` sees it: the comments it may not see left out, and
    /// read on until it holds `limit` that it sees (the newest for `Latest`, the oldest
    /// after the id for `After`) or history holds no more.
    pub async fn history_seen_by(
        &self,
        stream: &StreamId,
        query: HistoryQuery,
        audience: Audience<'_>,
    ) -> Result<HistoryPage, BrokerError> {
        let mut page = self.history_covering(stream, query, audience).await?;
        let seen = count_seen(&page.comments, audience);
        let extra = seen.saturating_sub(query.limit());
        page.comments.retain(|c| audience.sees(c));
        match query {
            HistoryQuery::Latest { .. } => drop(page.comments.drain(..extra)),
            HistoryQuery::After { .. } => page.comments.truncate(seen - extra),
        }
        Ok(page)
    }

    /// `query`'s page, shadowed comments and all, read until it holds `limit` comments
    /// that `audience` sees or history holds no more.
    pub async fn history_covering(
        &self,
        stream: &StreamId,
        query: HistoryQuery,
        audience: Audience<'_>,
    ) -> Result<HistoryPage, BrokerError> {
        let want = query.limit();
        let mut asked = want;
        loop {
            let page = self.history(stream, query.with_limit(asked)).await?;
            let seen = count_seen(&page.comments, audience);
            if seen >= want || page.comments.len() < asked || asked >= ALL_RETAINED {
                return Ok(page);
            }
            // Ask for at least as many more as are missing; double, so a history of many
            // hidden comments takes few reads.
            asked = (asked * 2)
                .max(page.comments.len() + want - seen)
                .min(ALL_RETAINED);
        }
    }
}

fn count_seen(comments: &[Comment], audience: Audience<'_>) -> usize {
    comments.iter().filter(|c| audience.sees(c)).count()
}
