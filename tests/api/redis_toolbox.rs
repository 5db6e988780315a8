//! The streamer's toolbox across two instances sharing a Redis Cluster: every setting, ban,
//! term and held comment is kept in the stream's slot and announced on its channel, so what
//! a moderator does on one instance holds on the other (the scenarios are `toolbox`'s).

use serde_json::json;

use crate::redis_broker::instance;
use crate::redis_support::RedisCluster;
use crate::toolbox::*;

#[tokio::test]
async fn settings_slow_mode_and_roles_hold_across_instances() {
    let cluster = RedisCluster::start().await;
    let (a, b) = (
        instance(&cluster.url(), "pod-a").await,
        instance(&cluster.url(), "pod-b").await,
    );
    settings_reach_every_instance(&a, &b, "tbr-settings").await;
    slow_mode_holds_across_instances(&a, &b, "tbr-slow").await;
    post_roles_gate_posting(&a, &b, "tbr-roles").await;
}

#[tokio::test]
async fn shadow_bans_purges_and_deletes_hold_across_instances() {
    let cluster = RedisCluster::start().await;
    let (a, b) = (
        instance(&cluster.url(), "pod-a").await,
        instance(&cluster.url(), "pod-b").await,
    );
    shadow_bans_and_mutes(&a, &b, "tbr-shadow").await;
    a_purge_deletes_in_one_frame(&a, &b, "tbr-purge").await;
    authors_delete_their_own(&a, &b, "tbr-delete").await;
}

#[tokio::test]
async fn terms_and_held_comments_hold_across_instances() {
    let cluster = RedisCluster::start().await;
    let (a, b) = (
        instance(&cluster.url(), "pod-a").await,
        instance(&cluster.url(), "pod-b").await,
    );
    blocked_terms_refuse_confusables(&a, &b, "tbr-terms").await;
    held_comments_are_approved_or_rejected(&a, &b, "tbr-held").await;
}

/// A pin is kept in Redis: an instance started after it (a restart) shows it in `init`.
#[tokio::test]
async fn a_pin_survives_a_restart_of_an_instance() {
    let cluster = RedisCluster::start().await;
    let a = instance(&cluster.url(), "pod-a").await;
    let s = "tbr-pin";
    let comment = a.post_system(s, "rules: be nice").await;
    let moderator = a.token("streamer", &[s]);
    let body = json!({"pinned": comment["id"], "slow_mode_ms": 5000});
    assert_eq!(patch_settings(&a, s, &moderator, body).await.0, 200);
    let b = instance(&cluster.url(), "pod-b").await;
    let (_, init) = b.viewer(s).await;
    assert_eq!(init["settings"]["pinned"], comment["id"], "{init}");
    a.shutdown().await;
    let restarted = instance(&cluster.url(), "pod-a").await;
    let (_, init) = restarted.viewer(s).await;
    assert_eq!(init["settings"]["pinned"], comment["id"], "{init}");
    assert_eq!(init["settings"]["slow_mode_ms"], 5000);
}

/// Every key the toolbox writes expires, and a ban that ended leaves the ban modes with it
/// (the list and the modes hold only the bans in force).
#[tokio::test]
async fn every_toolbox_key_expires() {
    let cluster = RedisCluster::start().await;
    let a = instance(&cluster.url(), "pod-a").await;
    let s = "tbr-keys";
    let moderator = a.token("streamer", &[s]);
    let pinned = a.post_system(s, "rules").await;
    let body = json!({"pinned": pinned["id"], "slow_mode_ms": 1000, "post_roles": ["sub"]});
    assert_eq!(patch_settings(&a, s, &moderator, body).await.0, 200);
    let body = json!({"slow_mode_ms": 1000, "post_roles": []});
    assert_eq!(patch_settings(&a, s, &moderator, body).await.0, 200);
    let terms = json!([{"term": "link", "action": "hold"}]);
    assert_eq!(put_terms(&a, s, &moderator, terms).await.0, 200);
    let (mut author, _) = a.user(s, "author").await;
    assert_eq!(say(&mut author, "a link").await["held"], true);
    for (user, mode) in [("brief", "shadow"), ("quiet", "mute")] {
        let body = json!({"user_id": user, "mode": mode, "seconds": 1});
        assert_eq!(ban(&a, s, &moderator, body).await, 204);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let body = json!({"user_id": "troll", "mode": "shadow", "seconds": 600});
    assert_eq!(ban(&a, s, &moderator, body).await, 204);

    let hist = format!("danmaku:{{{s}}}:hist");
    let node = cluster.master_of(cluster.key_slot(&hist).await).await;
    let mut redis = cluster.client(node.port).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("danmaku:{{{s}}}:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    for suffix in ["settings", "terms", "held", "bans", "banmodes", "ban:troll"] {
        let key = format!("danmaku:{{{s}}}:{suffix}");
        assert!(keys.contains(&key), "{key} not among {keys:?}");
    }
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} does not expire ({ttl})");
    }
    let modes: Vec<String> = redis::cmd("HKEYS")
        .arg(format!("danmaku:{{{s}}}:banmodes"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(modes, ["troll"], "the ended bans' modes are gone");
}
