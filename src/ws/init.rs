//! The `init` frame, always a connection's first: the stream's recent comments (or, on a
//! resume with `after=`, every retained comment newer than that id), its viewer count, and
//! which server answered. The recent comments come from the hub's cache of them while
//! nothing changed on the stream ([`crate::hub::Recent`]); a resume always reads history.

use std::sync::Arc;

use super::WsState;
use super::close::{CloseReason, End};
use crate::broker::{ALL_RETAINED, BrokerError, HistoryQuery};
use crate::domain::wire::{ServerFrame, SharedFrame, encode_comments};
use crate::domain::{CommentId, StreamId};
use crate::hub::Recent;

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
    let (recent, resumed) = match resumed {
        Some((id, comments)) => {
            let last_id = comments.last().map_or(id, |c| c.id);
            let recent = Recent {
                comments: encode_comments(&comments),
                last_id: Some(last_id),
            };
            (Arc::new(recent), true)
        }
        None => (fresh(ws, stream).await.map_err(unavailable)?, false),
    };
    let viewer_count = broker
        .viewer_counts(std::slice::from_ref(stream))
        .await
        .map_err(unavailable)?[0];
    ws.hub.viewers_seen(stream, viewer_count);
    let frame = ServerFrame::Init {
        stream_id: stream,
        comments: &recent.comments,
        viewer_count,
        resumed,
        server: &ws.settings.server,
    }
    .encode();
    Ok((frame, recent.last_id))
}

/// The newest comments for a fresh `init`: kept by the hub since the last change to the
/// stream, or read from history (and kept for the next connection).
async fn fresh(ws: &WsState, stream: &StreamId) -> Result<Arc<Recent>, BrokerError> {
    let changes = match ws.hub.recent(stream) {
        Ok(recent) => return Ok(recent),
        Err(changes) => changes,
    };
    let query = HistoryQuery::Latest {
        limit: ws.settings.init_comments,
    };
    let page = ws.broker.history(stream, query).await?;
    let recent = Arc::new(Recent {
        comments: encode_comments(&page.comments),
        last_id: page.comments.last().map(|c| c.id),
    });
    ws.hub.keep_recent(stream, changes, recent.clone());
    Ok(recent)
}
