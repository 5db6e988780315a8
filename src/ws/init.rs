//! The `init` frame, always a connection's first: the stream's recent comments (or, on a
//! resume with `after=`, every retained comment newer than that id), its viewer count, and
//! which server answered.

use super::WsState;
use super::close::{CloseReason, End};
use crate::broker::{ALL_RETAINED, BrokerError, HistoryQuery};
use crate::domain::wire::{ServerFrame, SharedFrame};
use crate::domain::{CommentId, StreamId};

/// The `init` frame and the newest comment id it covers (the connection sends nothing
/// older afterwards).
pub(super) async fn init_frame(
    ws: &WsState,
    stream: &StreamId,
    after: Option<CommentId>,
) -> Result<(SharedFrame, Option<CommentId>), End> {
    let broker = &ws.broker;
    let unavailable = |error: BrokerError| {
        tracing::warn!(%stream, %error, "could not read history for init");
        End::Close(CloseReason::TryAgainLater)
    };
    let resumed = match after {
        Some(id) => {
            let query = HistoryQuery::After {
                id,
                limit: ALL_RETAINED,
            };
            let page = broker.history(stream, query).await.map_err(unavailable)?;
            page.complete.then_some((id, page.comments))
        }
        None => None,
    };
    let mut last_id = None;
    let (comments, resumed) = match resumed {
        Some((id, comments)) => {
            last_id = Some(id);
            (comments, true)
        }
        None => {
            let query = HistoryQuery::Latest {
                limit: ws.settings.init_comments,
            };
            let page = broker.history(stream, query).await.map_err(unavailable)?;
            (page.comments, false)
        }
    };
    if let Some(last) = comments.last() {
        last_id = Some(last.id);
    }
    let viewer_count = broker
        .viewer_counts(std::slice::from_ref(stream))
        .await
        .map_err(unavailable)?[0];
    ws.hub.viewers_seen(stream, viewer_count);
    let frame = ServerFrame::Init {
        stream_id: stream,
        comments: &comments,
        viewer_count,
        resumed,
        server: &ws.settings.server,
    }
    .encode();
    Ok((frame, last_id))
}
