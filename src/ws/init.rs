//! The `init` frame, always a connection's first: the stream's recent comments (or, on a
//! resume with `after=`, every retained comment newer than that id), its viewer count, and
//! which server answered. The recent comments come from the hub's cache of them while
//! nothing changed on the stream ([`crate::hub::Recent`]); a resume always reads history.
//!
//! A resumed `init` is followed, before anything else, by one `deleted` frame with the
//! comments deleted since the comment it resumed after was published (as far back as the
//! moderation log goes), so a client that was away drops what it still shows.
//!
//! What a connection is shown is what its [`Audience`] sees: shadowed comments only if it
//! is their author or a moderator of the stream (section 9).

use std::sync::Arc;

use super::WsState;
use super::close::{CloseReason, End};
use crate::broker::{ALL_RETAINED, BrokerError, HistoryQuery};
use crate::domain::wire::{ServerFrame, SharedFrame};
use crate::domain::{Audience, CommentId, Continuity, Epoch, Position, StreamId};
use crate::hub::Recent;

/// What a connection is sent first.
pub(super) struct Init {
    pub(super) frame: SharedFrame,
    /// The newest comment id `init` covers (the connection sends nothing older afterwards).
    pub(super) last_id: Option<CommentId>,
    /// After a resumed `init`: the deletions the client may have missed.
    pub(super) deleted: Option<SharedFrame>,
}

/// `after` (and `epoch`, if the client sent one): where a resuming client left off;
/// `audience`: who the connection is.
pub(super) async fn init_frame(
    ws: &WsState,
    stream: &StreamId,
    after: Option<CommentId>,
    epoch: Option<Epoch>,
    audience: Audience<'_>,
) -> Result<Init, End> {
    let broker = &ws.broker;
    let unavailable = |error: BrokerError| {
        tracing::warn!(%stream, %error, "could not read history for init");
        End::Close(CloseReason::TryAgainLater)
    };
    // A resume reads the epoch first: history read after it is of that epoch or newer.
    let resumed = match after {
        Some(id) => {
            let now = broker.epoch(stream).await.map_err(unavailable)?;
            let query = HistoryQuery::After {
                id,
                limit: ALL_RETAINED,
            };
            let page = broker.history(stream, query).await.map_err(unavailable)?;
            let client = Position {
                epoch,
                last: Some(id),
            };
            match client.continuity(&now, page.complete) {
                Continuity::Continues => Some((id, page.comments, now)),
                Continuity::Gap(gap) => {
                    tracing::debug!(%stream, %id, ?gap, "a resume across a gap");
                    None
                }
            }
        }
        None => None,
    };
    let mut deleted = None;
    let (recent, resumed) = match resumed {
        Some((id, comments, epoch)) => {
            let ids = broker
                .deleted_since(stream, id.ms)
                .await
                .map_err(unavailable)?;
            if !ids.is_empty() {
                deleted = Some(ServerFrame::Deleted { ids: &ids }.encode());
            }
            let settings = broker.settings(stream).await.map_err(unavailable)?;
            // Every comment after `id`: as many as this reader sees.
            let limit = comments.len();
            let mut recent = Recent::new(comments, limit, epoch, settings);
            recent.last_id = recent.last_id.or(Some(id));
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
        comments: &recent.seen_by(audience),
        viewer_count,
        resumed,
        epoch: &recent.epoch,
        settings: &recent.settings,
        server: &ws.settings.server,
    }
    .encode();
    Ok(Init {
        frame,
        last_id: recent.last_id,
        deleted,
    })
}

/// The newest comments for a fresh `init`: kept by the hub since the last change to the
/// stream, or read from history (once for every connection that asks meanwhile), with
/// enough comments that everyone sees.
async fn fresh(ws: &WsState, stream: &StreamId) -> Result<Arc<Recent>, BrokerError> {
    ws.hub
        .recent(stream, || async {
            let epoch = ws.broker.epoch(stream).await?;
            let limit = ws.settings.init_comments;
            let query = HistoryQuery::Latest { limit };
            let page = ws
                .broker
                .history_covering(stream, query, Audience::of(None))
                .await?;
            let settings = ws.broker.settings(stream).await?;
            Ok(Recent::new(page.comments, limit, epoch, settings))
        })
        .await
}
