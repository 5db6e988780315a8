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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::broker::memory::MemoryBroker;
    use crate::broker::{NewComment, Published, Route};
    use crate::domain::{CommentId, CommentKind, CommentText, User, UserId};
    use crate::metrics::{Latencies, Metrics};

    /// A stream of 30 comments on the embedded broker: every third (`c2`, `c5`, …) a
    /// troll's, shadowed. Returns the broker and every id, oldest first.
    async fn stream() -> (Broker, Vec<CommentId>) {
        let metrics = Arc::new(Metrics::new(Latencies::noop()));
        let memory = MemoryBroker::new(100, Duration::from_secs(1), Arc::new(|_| {}), metrics);
        let broker = Broker::Memory(Arc::new(memory));
        let mut ids = Vec::new();
        for i in 0..30 {
            let troll = i % 3 == 2;
            let author = if troll { "troll" } else { "viewer" };
            let new = NewComment {
                stream: StreamId::parse("s").unwrap(),
                kind: CommentKind::User,
                user: Some(User {
                    id: UserId::parse(author).unwrap(),
                    name: author.into(),
                }),
                text: CommentText::parse(format!("c{i}"), 200).unwrap(),
                data: None,
                media_ts: None,
                by_moderator: false,
                dedup: None,
                rate: None,
                by_service: false,
                roles: Vec::new(),
                route: if troll { Route::Shadow } else { Route::Public },
            };
            match broker.publish(new).await.unwrap() {
                Published::New(c) => ids.push(c.id),
                other => panic!("{other:?}"),
            }
        }
        (broker, ids)
    }

    fn texts(page: &HistoryPage) -> Vec<&str> {
        page.comments.iter().map(|c| c.text.as_str()).collect()
    }

    #[tokio::test]
    async fn a_page_holds_as_many_as_its_reader_sees() {
        let (broker, _) = stream().await;
        let s = StreamId::parse("s").unwrap();
        let latest = HistoryQuery::Latest { limit: 4 };
        let page = broker
            .history_seen_by(&s, latest, Audience::of(None))
            .await
            .unwrap();
        assert_eq!(texts(&page), ["c24", "c25", "c27", "c28"]);
        let troll = UserId::parse("troll").unwrap();
        let page = broker
            .history_seen_by(&s, latest, Audience::of(Some(&troll)))
            .await
            .unwrap();
        assert_eq!(texts(&page), ["c26", "c27", "c28", "c29"]);
        let page = broker
            .history_seen_by(&s, latest, Audience::EVERYTHING)
            .await
            .unwrap();
        assert!(
            page.comments.iter().any(|c| c.shadow),
            "marked for moderators"
        );
    }

    /// Paging on with `After` from each page's last id walks the whole public history:
    /// every comment once, none shadowed, no hole.
    #[tokio::test]
    async fn paging_on_misses_nothing_the_reader_sees() {
        let (broker, ids) = stream().await;
        let s = StreamId::parse("s").unwrap();
        let mut after = ids[0];
        let mut read = vec!["c0".to_owned()];
        loop {
            let query = HistoryQuery::After {
                id: after,
                limit: 3,
            };
            let page = broker
                .history_seen_by(&s, query, Audience::of(None))
                .await
                .unwrap();
            assert!(page.complete);
            let Some(last) = page.comments.last() else {
                break;
            };
            assert!(page.comments.len() == 3 || last.id == ids[28], "full pages");
            after = last.id;
            read.extend(texts(&page).into_iter().map(str::to_owned));
        }
        let public: Vec<String> = (0..30)
            .filter(|i| i % 3 != 2)
            .map(|i| format!("c{i}"))
            .collect();
        assert_eq!(read, public);
    }
}
