//! Media time across two instances sharing a Redis Cluster: the scenarios of `media`, with the
//! replay index in the stream's slot (ten-minute segments, the cap and retention there).

use crate::media::*;
use crate::redis_broker::{instance, instance_with};
use crate::redis_support::RedisCluster;

#[tokio::test]
async fn media_time_and_replay_hold_across_instances() {
    let cluster = RedisCluster::start().await;
    let (a, b) = (
        instance(&cluster.url(), "pod-a").await,
        instance(&cluster.url(), "pod-b").await,
    );
    media_ts_travels_with_the_comment(&a, &b, "mdr-carried").await;
    replay_orders_by_media_time(&a, &b, "mdr-order").await;
    a_final_window_is_cacheable(&b, "mdr-cache").await;
}

#[tokio::test]
async fn the_replay_index_keeps_its_retention_and_cap_on_redis() {
    let cluster = RedisCluster::start().await;
    let a = instance_with(&cluster.url(), "pod-a", small_replay).await;
    replay_keeps_its_retention_and_cap(&a, "mdr-cap").await;
}
