//! Moderation and idempotent posts across instances sharing a Redis Cluster.

use serde_json::{Value, json};

use crate::redis_broker::{instance, post_until_accepted};
use crate::redis_support::RedisCluster;

/// A post resent with the same `ref` to another instance (its first `ack` was lost with the
/// connection) is answered with the first id and shown once; bans are listed and lifted
/// from any instance, and a gift for a banned user still reaches viewers.
#[tokio::test]
async fn refs_and_bans_hold_across_instances() {
    let cluster = RedisCluster::start().await;
    let (a, b) = (
        instance(&cluster.url(), "pod-a").await,
        instance(&cluster.url(), "pod-b").await,
    );
    let s = "across";
    let (mut viewer, _) = a.viewer(s).await;

    let comment = json!({"type": "comment", "text": "once", "ref": "resend-1"});
    let (mut on_a, _) = a.user(s, "alice").await;
    on_a.send_json(comment.clone()).await;
    let id = on_a.next_of("ack").await["id"].clone();
    drop(on_a);
    let (mut on_b, _) = b.user(s, "alice").await;
    on_b.send_json(comment).await;
    assert_eq!(on_b.next_of("ack").await["id"], id, "the first ack again");
    let marker = b.post_system(s, "marker").await;
    let shown = viewer.comments(2).await;
    assert_eq!(
        (&shown[0]["id"], &shown[1]["id"]),
        (&id, &marker["id"]),
        "shown once"
    );

    let moderator = a.token("streamer", &[s]);
    let banned = a
        .http
        .post(a.url(&format!("/v1/streams/{s}/bans")))
        .bearer_auth(&moderator)
        .json(&json!({"user_id": "alice", "seconds": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(banned.status(), 204);
    let listed: Value = b
        .http
        .get(b.url(&format!("/v1/streams/{s}/bans")))
        .bearer_auth(&moderator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["bans"][0]["user_id"], "alice", "{listed}");
    let gift = json!({"kind": "gift", "text": "a rose", "user": {"id": "alice", "name": "A"}});
    assert_eq!(b.post(s, gift).await.status(), 201);
    assert_eq!(viewer.comments(1).await[0]["kind"], "gift");
    let token = a.token("alice", &[]);
    assert_eq!(
        a.refused(s, &format!("access_token={token}"), &[]).await.0,
        403
    );

    let lifted = b
        .http
        .delete(b.url(&format!("/v1/streams/{s}/bans/alice")))
        .bearer_auth(&moderator)
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 204);
    let (mut back, _) = a.user(s, "alice").await;
    back.send_json(json!({"type": "comment", "text": "back"}))
        .await;
    back.next_of("ack").await;
}

#[tokio::test]
async fn a_resuming_client_learns_deletions_from_redis() {
    let redis = crate::redis_support::RedisStandalone::start().await;
    let app = instance(&redis.url(), "pod-a").await;
    crate::ws_moderation::deletions_reach_a_resuming_client(&app).await;
}

/// A user with sockets on two instances gets the configured rate in total, not twice it.
#[tokio::test]
async fn a_users_rate_holds_across_instances() {
    let redis = crate::redis_support::RedisStandalone::start().await;
    let limited = |pod: &'static str| {
        let url = redis.url();
        crate::helpers::spawn_app_with(move |c| {
            c.redis_url = Some(url.parse().unwrap());
            c.pod_name = pod.into();
            c.rate_per_sec = 0.2;
            c.rate_burst = 3.0;
        })
    };
    let (a, b) = (limited("pod-a").await, limited("pod-b").await);
    let s = "rate-across";
    let (mut on_a, _) = a.user(s, "eager").await;
    let (mut on_b, _) = b.user(s, "eager").await;
    let mut answers = Vec::new();
    for i in 0..6 {
        let socket = if i % 2 == 0 { &mut on_a } else { &mut on_b };
        socket
            .send_json(json!({"type": "comment", "text": format!("c{i}")}))
            .await;
        let answer = socket.next_of(if i < 3 { "ack" } else { "error" }).await;
        answers.push(answer);
    }
    for refused in &answers[3..] {
        assert_eq!(refused["code"], "rate_limited", "{refused}");
        let wait = refused["retry_after_ms"].as_u64().unwrap();
        assert!((1..=5000).contains(&wait), "{refused}");
    }
    // Another user has a bucket of their own.
    let (mut other, _) = b.user(s, "calm").await;
    other
        .send_json(json!({"type": "comment", "text": "hi"}))
        .await;
    other.next_of("ack").await;
}

/// One master of three fails: `/readyz` stays 200 on every instance throughout (a shard's
/// failover is repaired and backfilled, not a reason to take an instance out of service):
/// on A, which watches a stream on every shard; on B, whose every stream is on the failing
/// shard; and on C, which has no viewers at all (a pod just scaled up). Streams on the other
/// shards keep flowing; the failed shard's stream loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_failover_leaves_the_fleet_ready() {
    use std::time::{Duration, Instant};

    use crate::redis_support::key_slot;

    let cluster = RedisCluster::start().await;
    let url = cluster.url();
    let (a, b) = (instance(&url, "pod-a").await, instance(&url, "pod-b").await);
    let c = instance(&url, "pod-c").await;
    // One stream per third of the slots: one per master.
    let mut streams: Vec<String> = Vec::new();
    for third in 0..3u16 {
        let name = (0..)
            .map(|i| format!("shard-{third}-{i}"))
            .find(|s| key_slot(&format!("danmaku:{{{s}}}:ch")) / 5462 == third)
            .unwrap();
        streams.push(name);
    }
    // Viewers on A of every stream, on B of the failing shard's only.
    let mut viewers = Vec::new();
    for s in &streams {
        viewers.push(a.viewer(s).await.0);
    }
    viewers.push(b.viewer(&streams[0]).await.0);
    let failing = key_slot(&format!("danmaku:{{{}}}:ch", streams[0]));
    let watch_ready = async {
        let deadline = Instant::now() + Duration::from_secs(12);
        let mut checks = 0;
        while Instant::now() < deadline {
            for (name, app) in [("A", &a), ("B", &b), ("C", &c)] {
                let status = app.http.get(app.url("/readyz")).send().await.unwrap();
                let code = status.status().as_u16();
                let body: Value = status.json().await.unwrap();
                assert_eq!(
                    code, 200,
                    "{name} not ready during one shard's failover: {body}"
                );
            }
            checks += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        checks
    };
    let failover = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.kill_master_of(failing).await;
        cluster.wait_for_failover(failing).await;
    };
    let posts = async {
        let mut accepted = vec![Vec::new(), Vec::new(), Vec::new()];
        for i in 0..40 {
            for (n, s) in streams.iter().enumerate() {
                let key = format!("{s}-{i}");
                accepted[n].push(post_until_accepted(&a, s, &key, &key).await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        accepted
    };
    let (checks, (), accepted) = tokio::join!(watch_ready, failover, posts);
    assert!(
        checks > 50,
        "readiness was checked throughout ({checks} times)"
    );
    for (i, viewer) in viewers.iter_mut().enumerate() {
        let want = &accepted[i % 3];
        let got: Vec<String> = viewer
            .comments(want.len())
            .await
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(&got, want, "viewer {i}: every comment once, in order");
    }
}
