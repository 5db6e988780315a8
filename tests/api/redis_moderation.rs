//! Moderation and idempotent posts across instances sharing a Redis Cluster.

use serde_json::{Value, json};

use crate::redis_broker::instance;
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
            c.redis_url = Some(danmaku::config::RedisUrl::Standalone(
                url.strip_prefix("redis://").unwrap().to_owned(),
            ));
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
