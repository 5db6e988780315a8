//! The Redis layout of the contract (section 6): one hash tag per stream, so its channel and
//! every key of it live in one cluster slot (and one Lua script may touch them all); beside
//! them one key of all instances' leases.

use crate::broker::Dedup;
use crate::domain::StreamId;

/// `danmaku:{<id>}:<suffix>`.
pub(super) fn key(stream: &StreamId, suffix: &str) -> String {
    format!("danmaku:{{{stream}}}:{suffix}")
}

/// The instances' leases (instance → lease end, ms), for the viewer counts: the one key
/// that belongs to no stream.
pub(super) const INSTANCES: &str = "danmaku:instances";

/// The sharded Pub/Sub channel.
pub(super) fn channel(stream: &StreamId) -> String {
    key(stream, "ch")
}

/// The stream id of a channel name, if it is one of ours.
pub(super) fn stream_of_channel(channel: &str) -> Option<StreamId> {
    let inner = channel.strip_prefix("danmaku:{")?.strip_suffix("}:ch")?;
    StreamId::parse(inner).ok()
}

/// The keys of one stream.
pub(super) struct StreamKeys {
    /// A Redis Stream of the retained comments; entry id = comment id.
    pub(super) hist: String,
    pub(super) channel: String,
    /// Comments ever accepted.
    pub(super) count: String,
    /// The newest id trimmed off the history by the length cap.
    pub(super) trimmed: String,
    /// Hash of instance → "<local viewers>:<expires at ms>".
    pub(super) viewers: String,
    pub(super) peak: String,
    /// Sorted set of recent moderation messages (`d <id>`, `b <user>`) by time.
    pub(super) moderation: String,
    /// Sorted set of the users banned from the stream, by when their ban ends (ms).
    pub(super) bans: String,
    /// The stream's epoch: made with its first key, gone only when its keys are lost.
    pub(super) epoch: String,
    /// Hash of the ban modes in force: user → `ban`, `mute` or `shadow`.
    pub(super) ban_modes: String,
    /// Hash of the stream's settings: `slow` (ms), `roles` (a JSON array), `pinned` (an id).
    pub(super) settings: String,
    /// The stream's blocked terms, as a JSON list.
    pub(super) terms: String,
    /// A Redis Stream of the comments held for review; entry id = held id.
    pub(super) held: String,
    /// The replay index's segments (sorted set of segment numbers), their comment counts
    /// (hash), and the count of all (the segments are `<replay prefix><segment>`).
    pub(super) replay_segs: String,
    pub(super) replay_counts: String,
    pub(super) replay_total: String,
}

impl StreamKeys {
    pub(super) fn new(stream: &StreamId) -> Self {
        Self {
            hist: key(stream, "hist"),
            channel: channel(stream),
            count: key(stream, "count"),
            trimmed: key(stream, "trimmed"),
            viewers: key(stream, "viewers"),
            peak: key(stream, "peak"),
            moderation: key(stream, "modlog"),
            bans: key(stream, "bans"),
            epoch: key(stream, "epoch"),
            ban_modes: key(stream, "banmodes"),
            settings: key(stream, "settings"),
            terms: key(stream, "terms"),
            held: key(stream, "held"),
            replay_segs: key(stream, "replay-segs"),
            replay_counts: key(stream, "replay-counts"),
            replay_total: key(stream, "replay-n"),
        }
    }

    /// The prefix of the replay index's segments: `<prefix><segment number>` is a sorted set
    /// of the comments whose media time lies in that ten minutes.
    pub(super) fn replay_prefix(stream: &StreamId) -> String {
        key(stream, "replay:")
    }

    pub(super) fn idempotency(stream: &StreamId, idempotency_key: &str) -> String {
        key(stream, &format!("idem:{idempotency_key}"))
    }

    /// The key remembering a publish: `idem:<key>` for a service's idempotency key,
    /// `ref:<length of the user id>:<user id>:<ref>` for a viewer's `ref` (the length keeps
    /// user ids with colons apart).
    pub(super) fn dedup(stream: &StreamId, dedup: &Dedup) -> String {
        match dedup {
            Dedup::Service(k) => Self::idempotency(stream, k.as_str()),
            Dedup::Ref { user, reference } => {
                let user = user.as_str();
                key(stream, &format!("ref:{}:{user}:{reference}", user.len()))
            }
        }
    }

    /// A user's comment-rate token bucket on the stream.
    pub(super) fn rate(stream: &StreamId, user_id: &str) -> String {
        key(stream, &format!("rate:{user_id}"))
    }

    pub(super) fn ban(stream: &StreamId, user_id: &str) -> String {
        key(stream, &format!("ban:{user_id}"))
    }

    /// A user's slow-mode mark on the stream: set for the interval after each comment.
    pub(super) fn slow(stream: &StreamId, user_id: &str) -> String {
        key(stream, &format!("slow:{}:{user_id}", user_id.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_stream_shares_its_hash_tag() {
        let s = StreamId::parse("live-42").unwrap();
        let keys = StreamKeys::new(&s);
        for k in [
            &keys.hist,
            &keys.channel,
            &keys.count,
            &keys.trimmed,
            &keys.viewers,
            &keys.peak,
            &keys.moderation,
            &keys.bans,
            &keys.epoch,
            &keys.ban_modes,
            &keys.settings,
            &keys.terms,
            &keys.held,
        ] {
            assert!(k.starts_with("danmaku:{live-42}:"), "{k}");
        }
        assert_eq!(StreamKeys::ban(&s, "u1"), "danmaku:{live-42}:ban:u1");
        assert_eq!(stream_of_channel(&keys.channel), Some(s));
        assert_eq!(stream_of_channel("other:{x}:ch"), None);
    }
}
