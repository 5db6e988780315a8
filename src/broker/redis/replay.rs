//! Replay by media time on Redis (the contract's section 10): the index the publish,
//! approve, delete and purge scripts keep ([`scripts`](super::scripts), `replay.rs`), and its
//! reads. A window spans at most ten minutes, so it touches at most two segments: one
//! script call.

use super::client::run;
use super::codec::parse_entry_message;
use super::keys::StreamKeys;
use super::{RedisBroker, scripts};
use crate::broker::BrokerError;
use crate::domain::{Comment, StreamId, now_ms};

impl RedisBroker {
    /// The replay index's keys, as the publish and approve scripts take them after their
    /// own: segments, counts, total.
    pub(super) fn replay_keys(stream: &StreamId) -> [String; 3] {
        let keys = StreamKeys::new(stream);
        [keys.replay_segs, keys.replay_counts, keys.replay_total]
    }

    /// The replay arguments of the publish and approve scripts: the comment's media time,
    /// the cap, the retention in ms (`0`: off) and the segments' prefix.
    pub(super) fn replay_args(&self, stream: &StreamId, media: u64) -> [String; 4] {
        let keep = if self.replay.is_off() {
            0
        } else {
            self.replay.retention_ms()
        };
        [
            media.to_string(),
            self.replay.max_comments.to_string(),
            keep.to_string(),
            StreamKeys::replay_prefix(stream),
        ]
    }

    /// The public comments whose media time lies in `[from, to)` (at most ten minutes), by
    /// media time then id; `NotFound` with replay off.
    pub(in crate::broker) async fn replay(
        &self,
        stream: &StreamId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Comment>, BrokerError> {
        if self.replay.is_off() {
            return Err(BrokerError::NotFound);
        }
        let oldest = now_ms().saturating_sub(self.replay.retention_ms());
        let from = from.max(oldest);
        if from >= to {
            return Ok(Vec::new());
        }
        let prefix = StreamKeys::replay_prefix(stream);
        let first = from / scripts::SEGMENT_MS;
        let last = (to - 1) / scripts::SEGMENT_MS;
        let segments = (first..=last).map(|s| format!("{prefix}{s}")).collect();
        let members: Vec<String> = run(
            &self.client,
            &scripts::REPLAY,
            segments,
            vec![from.to_string(), to.to_string()],
        )
        .await?;
        let mut comments: Vec<Comment> = members
            .iter()
            .filter_map(|m| parse_entry_message(m))
            .collect();
        comments.sort_by_key(|c| (c.media_time(), c.id));
        Ok(comments)
    }
}
