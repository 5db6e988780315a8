//! The soak's part of a result (`soak` runs only): its samples of the instances and Redis, the
//! RSS growth, what the moderator did, and the verdict. Plain data, written to and read back from
//! the JSON result; it imports nothing else of the crate.

use serde::{Deserialize, Serialize};

/// One instance at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InstanceSample {
    pub name: String,
    pub rss_bytes: Option<u64>,
    pub subscribed: Option<f64>,
    pub connections: Option<f64>,
}

/// Everything at one moment (`t_s` from the start of the soak, setup included).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sample {
    pub t_s: f64,
    pub instances: Vec<InstanceSample>,
    pub redis: Vec<RedisNode>,
}

/// One instance's RSS over the soak.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Growth {
    pub name: String,
    pub baseline_t_s: f64,
    pub baseline_bytes: u64,
    pub last_t_s: f64,
    pub last_bytes: u64,
    pub max_bytes: u64,
    pub growth_pct: f64,
}

/// The soak's own result, next to the run's summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SoakReport {
    pub samples: Vec<Sample>,
    pub growth: Vec<Growth>,
    pub moderation: Moderation,
    /// The state once the load has left and the linger has passed.
    pub after: Sample,
    /// Subscriptions the instances still held then.
    pub leaked_subscriptions: u64,
    /// danmaku channels Redis still had subscribers on then.
    pub redis_channels_left: u64,
    /// Why the soak failed; empty when it passed.
    pub failures: Vec<String>,
}

/// What the moderator did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Moderation {
    pub rounds: u64,
    /// Comments deleted and then no longer listed.
    pub deleted: u64,
    /// Rounds whose stream had no comment old enough to delete.
    pub nothing_to_delete: u64,
    /// Bans listed by the other instance, whose handshake it refused with `403`.
    pub banned: u64,
    /// Bans lifted, gone from the other instance's list, the handshake accepted again.
    pub unbanned: u64,
    pub failures: u64,
    /// The first few failures, word for word.
    pub first_failures: Vec<String>,
}

/// One Redis node at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RedisNode {
    pub node: String,
    /// danmaku's sharded Pub/Sub channels with at least one subscriber on this node.
    pub shard_channels: u64,
    pub used_memory_bytes: u64,
    pub keys: u64,
}
