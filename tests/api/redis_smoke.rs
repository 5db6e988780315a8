//! The Redis harness itself: sharded Pub/Sub on a standalone server and on a cluster, a
//! restart, a live slot migration and a master failover, all on 127.0.0.1.

use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::redis_support::{REDIS_WAIT, RedisCluster, RedisStandalone, key_slot, tag_for_slot};

const CHANNEL: &str = "danmaku:{s1}:ch";

/// The next push of `kind`, skipping others; panics after [`REDIS_WAIT`].
async fn next_push(rx: &mut UnboundedReceiver<PushInfo>, kind: PushKind) -> Vec<Value> {
    let deadline = Instant::now() + REDIS_WAIT;
    loop {
        let push = tokio::time::timeout_at(deadline.into(), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind} push in time"))
            .expect("the push channel is open");
        if push.kind == kind {
            return push.data;
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

/// Polls `check` until it holds or [`REDIS_WAIT`] passes.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + REDIS_WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn redis_key_slot_matches_known_values() {
    // From the Redis Cluster specification and redis-cli.
    assert_eq!(key_slot("123456789"), 12739);
    assert_eq!(key_slot("foo"), 12182);
    assert_eq!(
        key_slot("{user1000}.following"),
        key_slot("{user1000}.followers")
    );
    assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
    assert_ne!(
        key_slot("foo{}{bar}"),
        key_slot("bar"),
        "an empty tag hashes the whole key"
    );
    assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
    assert_eq!(key_slot("danmaku:{s1}:ch"), key_slot("s1"));
    for slot in [0, 1, 5460, 5461, 16383] {
        assert_eq!(key_slot(&format!("k:{{{}}}", tag_for_slot(slot))), slot);
    }
}

#[tokio::test]
async fn redis_standalone_sharded_pubsub_round_trip_and_restart() {
    let started = Instant::now();
    let mut redis = RedisStandalone::start().await;
    println!("standalone redis up in {:?}", started.elapsed());
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));

    for round in ["before", "after"] {
        let (mut sub, mut pushes) = redis.client_resp3().await;
        redis::cmd("SSUBSCRIBE")
            .arg(CHANNEL)
            .exec_async(&mut sub)
            .await
            .unwrap();
        let confirm = next_push(&mut pushes, PushKind::SSubscribe).await;
        assert_eq!(text(&confirm[0]), CHANNEL);
        assert_eq!(redis.shard_numsub(CHANNEL).await, 1);

        let mut publisher = redis.client().await;
        let receivers: i64 = redis::cmd("SPUBLISH")
            .arg(CHANNEL)
            .arg(format!("hello {round}"))
            .query_async(&mut publisher)
            .await
            .unwrap();
        assert_eq!(receivers, 1);
        let message = next_push(&mut pushes, PushKind::SMessage).await;
        assert_eq!(text(&message[0]), CHANNEL);
        assert_eq!(text(&message[1]), format!("hello {round}"));

        if round == "before" {
            redis::cmd("SET")
                .arg("k")
                .arg("v")
                .exec_async(&mut publisher)
                .await
                .unwrap();
            let restarted = Instant::now();
            redis.restart().await;
            println!("standalone redis restarted in {:?}", restarted.elapsed());
            // The old connection is gone with the old process, and nothing was persisted.
            let mut fresh = redis.client().await;
            let size: i64 = redis::cmd("DBSIZE").query_async(&mut fresh).await.unwrap();
            assert_eq!(size, 0, "a restart comes back empty");
            assert_eq!(redis.shard_numsub(CHANNEL).await, 0);
        }
    }
}

#[tokio::test]
async fn redis_cluster_sharded_pubsub_and_live_slot_migration() {
    let started = Instant::now();
    let cluster = RedisCluster::start().await;
    println!(
        "redis cluster (3 masters + 3 replicas) up in {:?}",
        started.elapsed()
    );
    let url = cluster.url();
    assert!(url.starts_with("redis-cluster://127.0.0.1:"), "{url}");
    assert_eq!(url.matches("127.0.0.1:").count(), 3, "{url}");

    // The local CRC16 agrees with the server.
    for key in [
        CHANNEL,
        "123456789",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "danmaku:{x}:history",
    ] {
        assert_eq!(cluster.key_slot(key).await, key_slot(key), "{key}");
    }
    let slot = key_slot(CHANNEL);

    // A sharded subscriber through the cluster client reaches the slot's master.
    let (mut sub, mut pushes) = cluster.cluster_client_resp3().await;
    sub.ssubscribe(CHANNEL).await.unwrap();
    until("the subscription to show up", || async {
        cluster.shard_numsub(CHANNEL).await == 1
    })
    .await;
    let mut publisher = cluster.cluster_client().await;
    let receivers: i64 = redis::cmd("SPUBLISH")
        .arg(CHANNEL)
        .arg("one")
        .query_async(&mut publisher)
        .await
        .unwrap();
    assert_eq!(receivers, 1);
    let message = next_push(&mut pushes, PushKind::SMessage).await;
    assert_eq!(text(&message[1]), "one");

    // A key in the same slot moves with it.
    let key = "danmaku:{s1}:history";
    redis::cmd("SET")
        .arg(key)
        .arg("kept")
        .exec_async(&mut publisher)
        .await
        .unwrap();

    let from = cluster.master_of(slot).await;
    let to = cluster
        .masters()
        .await
        .into_iter()
        .find(|m| *m != from)
        .unwrap();
    let migrated = Instant::now();
    assert_eq!(cluster.migrate_slot(slot, to).await, from);
    println!("slot {slot} migrated in {:?}", migrated.elapsed());
    assert_eq!(cluster.master_of(slot).await, to, "the slot moved");

    let mut on_target = cluster.client(to.port).await;
    let value: Option<String> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut on_target)
        .await
        .unwrap();
    assert_eq!(
        value.as_deref(),
        Some("kept"),
        "the key moved with its slot"
    );
    let mut on_source = cluster.client(from.port).await;
    let moved = redis::cmd("GET")
        .arg(key)
        .query_async::<Option<String>>(&mut on_source)
        .await
        .unwrap_err();
    let moved = moved.to_string();
    assert!(moved.to_lowercase().starts_with("moved"), "{moved}");
    assert!(
        moved.ends_with(&format!("127.0.0.1:{}", to.port)),
        "{moved}"
    );

    // Redis drops sharded subscribers of a slot its node no longer serves, and tells them so
    // on the still-open connection with a bare `sunsubscribe` push (seen on 7.0.15, even
    // after a planned `CLUSTER FAILOVER`).
    let dropped = next_push(&mut pushes, PushKind::SUnsubscribe).await;
    assert_eq!(text(&dropped[0]), CHANNEL);

    // A new subscription lands on the new master and publishing still works.
    let (mut sub2, mut pushes2) = cluster.cluster_client_resp3().await;
    sub2.ssubscribe(CHANNEL).await.unwrap();
    let mut new_master = cluster.client(to.port).await;
    until("the new subscription on the new master", || {
        let mut conn = new_master.clone();
        async move {
            let (_, n): (String, u64) = redis::cmd("PUBSUB")
                .arg("SHARDNUMSUB")
                .arg(CHANNEL)
                .query_async(&mut conn)
                .await
                .unwrap();
            n >= 1
        }
    })
    .await;
    let _: i64 = redis::cmd("SPUBLISH")
        .arg(CHANNEL)
        .arg("two")
        .query_async(&mut publisher)
        .await
        .unwrap();
    let message = next_push(&mut pushes2, PushKind::SMessage).await;
    assert_eq!(text(&message[1]), "two");
    let _: String = redis::cmd("PING")
        .query_async(&mut new_master)
        .await
        .unwrap();
}

#[tokio::test]
async fn redis_cluster_master_failover_leaves_a_working_cluster() {
    let cluster = RedisCluster::start().await;
    let slot = key_slot(CHANNEL);
    let mut conn = cluster.cluster_client().await;
    redis::cmd("SET")
        .arg("danmaku:{s1}:k")
        .arg("before")
        .exec_async(&mut conn)
        .await
        .unwrap();

    let killed_at = Instant::now();
    let killed = cluster.kill_master_of(slot).await;
    let new_master = cluster.wait_for_failover(slot).await;
    println!(
        "failover of slot {slot}: {} -> {} in {:?}",
        killed.port,
        new_master.port,
        killed_at.elapsed()
    );
    assert_ne!(new_master, killed);
    assert!(!cluster.url().contains(&format!(":{}", killed.port)));

    // A write in the slot succeeds on the promoted replica, straight and through a fresh
    // cluster client built from the (updated) seed list.
    let mut direct = cluster.client(new_master.port).await;
    redis::cmd("SET")
        .arg("danmaku:{s1}:k")
        .arg("after")
        .exec_async(&mut direct)
        .await
        .unwrap();
    let mut fresh = cluster.cluster_client().await;
    redis::cmd("SET")
        .arg("danmaku:{s1}:k2")
        .arg("after")
        .exec_async(&mut fresh)
        .await
        .unwrap();
    let value: String = redis::cmd("GET")
        .arg("danmaku:{s1}:k")
        .query_async(&mut fresh)
        .await
        .unwrap();
    assert_eq!(value, "after");
    // The client from before the failover finds the new master too.
    until("the old cluster client to write again", || {
        let mut conn = conn.clone();
        async move {
            redis::cmd("SET")
                .arg("danmaku:{s1}:k3")
                .arg("x")
                .exec_async(&mut conn)
                .await
                .is_ok()
        }
    })
    .await;
}
