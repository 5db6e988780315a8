//! Several app instances sharing one real Redis (standalone and Cluster, in containers):
//! cross-instance delivery, on-demand sharded subscriptions, and no loss or duplicate
//! through slot migration, failover and restarts.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use danmaku::Config;
use danmaku::config::RedisUrl;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::redis_support::{RedisCluster, RedisStandalone, key_slot};

fn url_of(url: &str) -> RedisUrl {
    url.parse().unwrap()
}

pub async fn instance(url: &str, pod: &str) -> TestApp {
    instance_with(url, pod, |_| {}).await
}

/// An app instance on the Redis at `url`, named `pod`, with more settings from `configure`.
pub async fn instance_with(url: &str, pod: &str, configure: impl FnOnce(&mut Config)) -> TestApp {
    let redis = url_of(url);
    let pod = pod.to_owned();
    spawn_app_with(move |c| {
        c.redis_url = Some(redis);
        c.pod_name = pod;
        c.unsubscribe_linger_ms = 300;
        c.cpu_ready_threshold = 1.0;
        configure(c);
    })
    .await
}

/// Reads a viewer's socket in the background, keeping every comment with its arrival time.
struct Collector {
    seen: Arc<Mutex<Vec<(Instant, Value)>>>,
    closed: Arc<Mutex<Option<String>>>,
}

impl Collector {
    fn start(mut client: WsClient) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(None));
        let (seen2, closed2) = (seen.clone(), closed.clone());
        tokio::spawn(async move {
            while let Some(message) = client.ws.next().await {
                match message {
                    Ok(Message::Text(text)) => {
                        let frame: Value = serde_json::from_str(&text).unwrap();
                        if frame["type"] == "comments" {
                            let now = Instant::now();
                            let mut seen = seen2.lock().unwrap();
                            for c in frame["comments"].as_array().unwrap() {
                                seen.push((now, c.clone()));
                            }
                        }
                    }
                    Ok(Message::Close(frame)) => {
                        *closed2.lock().unwrap() = Some(format!("{frame:?}"));
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        *closed2.lock().unwrap() = Some(e.to_string());
                        return;
                    }
                }
            }
        });
        Self { seen, closed }
    }

    fn ids(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, c)| c["id"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn wait_for(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.seen.lock().unwrap().len() < n {
            assert!(
                self.closed.lock().unwrap().is_none(),
                "connection closed: {:?}",
                self.closed.lock().unwrap()
            );
            assert!(
                Instant::now() < deadline,
                "only {} of {n} comments arrived",
                self.seen.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every accepted id exactly once, in id order, and nothing else.
    fn assert_exactly_once_in_order(&self, accepted: &[String]) {
        let ids = self.ids();
        let parsed: Vec<(u64, u64)> = ids.iter().map(|id| parse_id(id)).collect();
        assert!(
            parsed.windows(2).all(|w| w[0] < w[1]),
            "out of order or duplicated: {ids:?}"
        );
        let expected: HashSet<&String> = accepted.iter().collect();
        let got: HashSet<&String> = ids.iter().collect();
        let lost: Vec<_> = expected.difference(&got).collect();
        let extra: Vec<_> = got.difference(&expected).collect();
        assert!(
            lost.is_empty() && extra.is_empty(),
            "lost {lost:?}, unexpected {extra:?}"
        );
    }

    /// The longest time between two consecutive arrivals.
    fn longest_gap(&self) -> Duration {
        let seen = self.seen.lock().unwrap();
        seen.windows(2)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or_default()
    }
}

fn parse_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap();
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// Posts with an idempotency key, retrying until accepted (as a service would through a
/// failover); returns the comment id.
pub async fn post_until_accepted(app: &TestApp, stream: &str, text: &str, key: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sent = app
            .http
            .post(app.url(&format!("/v1/streams/{stream}/comments")))
            .bearer_auth(SERVICE_TOKEN)
            .timeout(Duration::from_secs(5))
            .json(&json!({"kind": "system", "text": text, "idempotency_key": key}))
            .send()
            .await;
        if let Ok(response) = sent
            && response.status().is_success()
        {
            let body: Value = response.json().await.unwrap();
            return body["comment"]["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "{key} was never accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn cross_instance_delivery(url: &str) {
    let (a, b) = (instance(url, "pod-a").await, instance(url, "pod-b").await);
    cross_instance_delivery_between(&a, &b).await;
}

/// A comment posted over HTTP and one over a socket on `b` reach a viewer on `a` (whose pod
/// is `pod-a`), and a later viewer's `init` has both.
pub async fn cross_instance_delivery_between(a: &TestApp, b: &TestApp) {
    let (mut on_a, _) = a.viewer("cross").await;
    let posted = b.post_system("cross", "from b").await;
    assert_eq!(on_a.comments(1).await[0]["id"], posted["id"]);
    let (mut poster, _) = b.user("cross", "alice").await;
    poster
        .send_json(json!({"type": "comment", "text": "over the socket"}))
        .await;
    let id = poster.next_of("ack").await["id"].clone();
    assert_eq!(on_a.comments(1).await[0]["id"], id);
    let (_late, init) = a.viewer("cross").await;
    let texts: Vec<&str> = init["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["from b", "over the socket"]);
    assert_eq!(init["server"]["pod"], "pod-a");
}

#[tokio::test]
async fn standalone_comments_posted_on_one_instance_reach_viewers_on_another() {
    let redis = RedisStandalone::start().await;
    cross_instance_delivery(&redis.url()).await;
}

#[tokio::test]
async fn cluster_comments_posted_on_one_instance_reach_viewers_on_another() {
    let cluster = RedisCluster::start().await;
    cross_instance_delivery(&cluster.url()).await;
}

#[tokio::test]
async fn an_instance_holds_one_subscription_per_stream_only_while_it_has_viewers() {
    let cluster = RedisCluster::start().await;
    let url = cluster.url();
    let (a, b) = (instance(&url, "pod-a").await, instance(&url, "pod-b").await);
    let channel = "danmaku:{subs}:ch";
    let mut on_a = Vec::new();
    for _ in 0..5 {
        on_a.push(a.viewer("subs").await.0);
    }
    assert_eq!(
        cluster.shard_numsub(channel).await,
        1,
        "one subscription however many viewers"
    );
    let (on_b, _) = b.viewer("subs").await;
    assert_eq!(cluster.shard_numsub(channel).await, 2);
    drop(on_a);
    eventually_async("A to unsubscribe after its linger", || async {
        cluster.shard_numsub(channel).await == 1
    })
    .await;
    drop(on_b);
    eventually_async("no subscription left", || async {
        cluster.shard_numsub(channel).await == 0
    })
    .await;
}

#[tokio::test]
async fn rapid_connect_and_leave_cycles_leave_no_subscription_behind() {
    let cluster = RedisCluster::start().await;
    let app = instance(&cluster.url(), "pod-a").await;
    for i in 0..200 {
        let stream = format!("churn-{}", i % 20);
        let (viewer, _) = app.viewer(&stream).await;
        drop(viewer);
    }
    for i in 0..20 {
        let channel = format!("danmaku:{{churn-{i}}}:ch");
        eventually_async("every churned stream to be unsubscribed", || async {
            cluster.shard_numsub(&channel).await == 0
        })
        .await;
    }
    assert_eq!(app.metric("danmaku_streams_subscribed").await, 0.0);
}

#[tokio::test]
async fn viewer_counts_sum_across_instances() {
    let redis = RedisStandalone::start().await;
    let (a, b) = (
        instance(&redis.url(), "pod-a").await,
        instance(&redis.url(), "pod-b").await,
    );
    let (mut first, _) = a.viewer("sum").await;
    let _more_a = a.viewer("sum").await;
    let mut on_b = Vec::new();
    for _ in 0..3 {
        on_b.push(b.viewer("sum").await.0);
    }
    // The count reaches 5 on A through the pushes, once B's report is in.
    let deadline = Instant::now() + WAIT;
    loop {
        let frame = first.next_of("viewers").await;
        if frame["count"] == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "last push {frame}");
    }
    for app in [&a, &b] {
        let (status, stats) = app.get_json("/v1/streams/sum").await;
        assert_eq!(status, 200);
        assert_eq!(stats["viewer_count"], 5, "{stats}");
        assert_eq!(stats["peak_viewer_count"], 5, "{stats}");
    }
    drop(on_b);
    eventually_async("B's viewers to leave the count", || async {
        a.get_json("/v1/streams/sum").await.1["viewer_count"] == 2
    })
    .await;
    assert_eq!(
        a.get_json("/v1/streams/sum").await.1["peak_viewer_count"],
        5
    );
}

/// The next `viewers` push whose count is `count`, within `limit`.
async fn viewers_push(watcher: &mut WsClient, count: u64, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let frame = watcher.next_of("viewers").await;
        if frame["count"] == count {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "last push {frame}");
    }
}

/// An instance killed without a goodbye (SIGKILL) leaves the viewer counts within its lease
/// and a few seconds, pushed to the viewers of the other instances; its reports themselves
/// would stay in the sums for 10 minutes.
#[tokio::test]
async fn a_killed_instances_viewers_leave_the_counts_within_its_lease() {
    let redis = RedisStandalone::start().await;
    let a = instance_with(&redis.url(), "pod-a", |c| c.instance_lease_ms = 1_500).await;
    let (mut b, base) = spawn_binary(&[
        ("DANMAKU_REDIS_URL", redis.url().as_str()),
        ("DANMAKU_POD_NAME", "pod-b"),
        ("DANMAKU_INSTANCE_LEASE_MS", "1500"),
    ])
    .await;
    let (mut watcher, _) = a.viewer("lease").await;
    let on_b_url = format!("{}/v1/streams/lease/ws", base.replacen("http", "ws", 1));
    let mut on_b = Vec::new();
    for _ in 0..3 {
        on_b.push(tokio_tungstenite::connect_async(&on_b_url).await.unwrap().0);
    }
    viewers_push(&mut watcher, 4, WAIT).await;
    b.start_kill().unwrap();
    b.wait().await.unwrap();
    let took = viewers_push(&mut watcher, 1, Duration::from_secs(10)).await;
    assert_eq!(a.get_json("/v1/streams/lease").await.1["viewer_count"], 1);
    println!("B's viewers left A's count {took:?} after the kill");
}

/// Redis losing its data (here FLUSHALL) takes the viewer reports with it; the instance
/// finds its lease gone at the next renewal and reports its viewers again at once, instead
/// of at its next refresh minutes later.
#[tokio::test]
async fn viewer_reports_lost_with_redis_data_are_made_again() {
    let redis = RedisStandalone::start().await;
    let a = instance_with(&redis.url(), "pod-a", |c| c.instance_lease_ms = 1_500).await;
    let _viewers = (a.viewer("lost").await, a.viewer("lost").await);
    let mut client = redis.client().await;
    let report = |mut client: redis::aio::MultiplexedConnection| async move {
        redis::cmd("HGET")
            .arg("danmaku:{lost}:viewers")
            .arg("pod-a")
            .query_async::<Option<String>>(&mut client)
            .await
            .unwrap()
    };
    eventually_async("pod-a's report of its two viewers", || async {
        report(client.clone())
            .await
            .is_some_and(|r| r.starts_with("2:"))
    })
    .await;
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut client)
        .await
        .unwrap();
    assert_eq!(report(client.clone()).await, None);
    let lost = Instant::now();
    eventually_async("pod-a's report made again", || async {
        report(client.clone())
            .await
            .is_some_and(|r| r.starts_with("2:"))
    })
    .await;
    assert!(
        lost.elapsed() < Duration::from_secs(5),
        "{:?}",
        lost.elapsed()
    );
}

/// A handshake to a stream nobody comments on leaves nothing behind for long: once its
/// viewers have left, its viewer reports are gone and its peak expires within 30 s. And the
/// instance holds a lease in the one key of all instances.
#[tokio::test]
async fn a_made_up_streams_keys_expire_soon_after_its_viewers_leave() {
    let redis = RedisStandalone::start().await;
    let a = instance(&redis.url(), "pod-a").await;
    let (viewer, _) = a.viewer("made-up").await;
    let mut redis_client = redis.client().await;
    let pttl = |key: &'static str| {
        let mut client = redis_client.clone();
        async move {
            redis::cmd("PTTL")
                .arg(key)
                .query_async::<i64>(&mut client)
                .await
                .unwrap()
        }
    };
    eventually_async("the viewer's report", || async {
        pttl("danmaku:{made-up}:peak").await > 60_000
    })
    .await;
    drop(viewer);
    eventually_async("the empty stream's peak to expire soon", || async {
        (1..=30_000).contains(&pttl("danmaku:{made-up}:peak").await)
    })
    .await;
    assert_eq!(
        pttl("danmaku:{made-up}:viewers").await,
        -2,
        "no report left"
    );
    let lease: Option<f64> = redis::cmd("ZSCORE")
        .arg("danmaku:instances")
        .arg("pod-a")
        .query_async(&mut redis_client)
        .await
        .unwrap();
    assert!(lease.is_some(), "pod-a holds a lease");
}

#[tokio::test]
async fn moderation_on_one_instance_reaches_sockets_on_another() {
    let redis = RedisStandalone::start().await;
    let (a, b) = (
        instance(&redis.url(), "pod-a").await,
        instance(&redis.url(), "pod-b").await,
    );
    let (mut troll, _) = b.user("mod-x", "troll").await;
    let (mut watcher, _) = b.viewer("mod-x").await;
    let posted = a.post_system("mod-x", "to delete").await;
    assert_eq!(watcher.comments(1).await[0]["id"], posted["id"]);
    let id = posted["id"].as_str().unwrap();
    let status = a
        .http
        .delete(a.url(&format!("/v1/streams/mod-x/comments/{id}")))
        .bearer_auth(SERVICE_TOKEN)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    assert_eq!(watcher.next_of("deleted").await["ids"], json!([id]));
    let status = a
        .http
        .post(a.url("/v1/streams/mod-x/bans"))
        .bearer_auth(SERVICE_TOKEN)
        .json(&json!({"user_id": "troll"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    let error = loop {
        let frame = troll.next_json().await;
        if frame["type"] == "error" {
            break frame;
        }
    };
    assert_eq!(error["code"], "banned");
    assert_eq!(troll.closed().await, Closed::Code(4003));
    let (status, _) = b
        .refused(
            "mod-x",
            &format!("access_token={}", b.token("troll", &[])),
            &[],
        )
        .await;
    assert_eq!(status, 403);
    // Idempotency keys are cluster-wide too.
    let first = post_until_accepted(&a, "mod-x", "once", "k-1").await;
    let again = post_until_accepted(&b, "mod-x", "once", "k-1").await;
    assert_eq!(first, again);
}

/// `n` collecting viewers of `stream`, spread over `apps` in turn.
async fn viewers_on(apps: &[&TestApp], stream: &str, n: usize) -> Vec<Collector> {
    futures_util::future::join_all(
        (0..n)
            .map(|i| async move { Collector::start(apps[i % apps.len()].viewer(stream).await.0) }),
    )
    .await
}

/// Waits until every viewer has every accepted comment, asserts exactly once and in order,
/// and returns the longest delivery gap any of them saw.
async fn all_received_once(
    viewers: &[Collector],
    accepted: &[String],
    within: Duration,
) -> Duration {
    for viewer in viewers {
        viewer.wait_for(accepted.len(), within).await;
        viewer.assert_exactly_once_in_order(accepted);
    }
    viewers
        .iter()
        .map(Collector::longest_gap)
        .max()
        .unwrap_or_default()
}

/// Posts `n` comments through `app`, one every `every`, with idempotency keys and retries.
async fn publish_steadily(app: &TestApp, stream: &str, n: usize, every: Duration) -> Vec<String> {
    let mut accepted = Vec::new();
    for i in 0..n {
        accepted.push(
            post_until_accepted(app, stream, &format!("n{i}"), &format!("{stream}-{i}")).await,
        );
        tokio::time::sleep(every).await;
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migration_loses_and_duplicates_nothing() {
    let cluster = RedisCluster::start().await;
    let url = cluster.url();
    let (a, b) = (instance(&url, "pod-a").await, instance(&url, "pod-b").await);
    let stream = "migrating";
    let viewers = viewers_on(&[&a, &b], stream, 4).await;
    let slot = key_slot(&format!("danmaku:{{{stream}}}:ch"));
    let from = cluster.master_of(slot).await;
    let to = cluster
        .masters()
        .await
        .into_iter()
        .find(|m| *m != from)
        .unwrap()
        .port;

    let publisher = publish_steadily(&b, stream, 60, Duration::from_millis(50));
    let migration = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        cluster.migrate_slot(slot, to).await;
    };
    let (accepted, ()) = tokio::join!(publisher, migration);
    assert_eq!(cluster.master_of(slot).await.port, to, "the slot moved");
    let gap = all_received_once(&viewers, &accepted, Duration::from_secs(20)).await;
    println!(
        "slot migration: {} comments, 0 lost, 0 duplicated, longest delivery gap {gap:?}",
        accepted.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failover_loses_and_duplicates_nothing() {
    let cluster = RedisCluster::start().await;
    let url = cluster.url();
    let (a, b) = (instance(&url, "pod-a").await, instance(&url, "pod-b").await);
    failover_loses_nothing(&cluster, &a, &b).await;
}

/// Viewers on `a` and `b` of a stream whose master is killed while `b` publishes: each gets
/// every accepted comment exactly once, in order.
pub async fn failover_loses_nothing(cluster: &RedisCluster, a: &TestApp, b: &TestApp) {
    let stream = "failing";
    let viewers = viewers_on(&[a, b], stream, 4).await;
    let slot = key_slot(&format!("danmaku:{{{stream}}}:ch"));

    let publisher = publish_steadily(b, stream, 80, Duration::from_millis(50));
    let failover = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let killed = Instant::now();
        cluster.kill_master_of(slot).await;
        cluster.wait_for_failover(slot).await;
        killed.elapsed()
    };
    let (accepted, failover_took) = tokio::join!(publisher, failover);
    let gap = all_received_once(&viewers, &accepted, Duration::from_secs(30)).await;
    println!(
        "failover: {} comments accepted, 0 lost, 0 duplicated; failover took {failover_took:?}, longest delivery gap {gap:?}",
        accepted.len()
    );
}

/// Redis restarts empty (no persistence): the stream's history is lost, so its epoch
/// changes. Viewers that watched through it are told (4002); a client that was away and
/// resumes with the old epoch, or with no epoch at all, gets `resumed: false` and the new
/// epoch; the instance subscribes again and everything published from then on reaches the
/// new viewers once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_without_persistence_is_a_new_epoch() {
    let mut redis = RedisStandalone::start().await;
    let url = redis.url();
    let (a, b) = (instance(&url, "pod-a").await, instance(&url, "pod-b").await);
    let (mut watcher, init) = a.viewer("restart").await;
    let old_epoch = init["epoch"].as_str().unwrap().to_owned();
    let before = post_until_accepted(&b, "restart", "before", "r-0").await;
    assert_eq!(watcher.comments(1).await[0]["id"], before.as_str());
    let (_away, init) = b.viewer("restart").await;
    assert_eq!(
        init["epoch"],
        old_epoch.as_str(),
        "one epoch on every instance"
    );

    redis.restart().await;
    eventually_async("/readyz to recover after the restart", || async {
        a.http.get(a.url("/readyz")).send().await.unwrap().status() == 200
    })
    .await;
    assert_eq!(
        watcher.closed().await,
        Closed::Code(4002),
        "the watcher is told"
    );
    let query = format!("after={before}&epoch={old_epoch}");
    let (back, init) = a.viewer_with("restart", &query).await;
    assert_eq!(init["resumed"], false, "{init}");
    assert_ne!(init["epoch"], old_epoch.as_str());
    // A client that does not send its epoch (a v1 client): its comment is older than the
    // new epoch, so it cannot belong to it.
    let (_, init) = a.viewer_with("restart", &format!("after={before}")).await;
    assert_eq!(init["resumed"], false, "without epoch=: {init}");
    let viewer = Collector::start(back);
    let mut accepted = vec![];
    for i in 1..=20 {
        accepted.push(
            post_until_accepted(&b, "restart", &format!("after {i}"), &format!("r-{i}")).await,
        );
    }
    viewer
        .wait_for(accepted.len(), Duration::from_secs(20))
        .await;
    viewer.assert_exactly_once_in_order(&accepted);
    // An instance whose subscription missed the restart (seen about once in a dozen runs:
    // no repair, its `init` cache still the old epoch's) finds out by its probe: a quiet
    // stream is probed after 3 s and counts as deaf 2 s later, and the repair sees the new
    // epoch. Both instances then give the same `init`.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, on_b) = b.viewer("restart").await;
        let (_, on_a) = a.viewer("restart").await;
        if on_b["epoch"] == on_a["epoch"] {
            assert_eq!(on_b["comments"], on_a["comments"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B still gives {on_b} where A gives {on_a}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // B's viewer from before the restart was closed (4002) and the loop's leave at once: a
    // viewer that stays makes B hold its subscription (A holds one for `viewer`).
    let (_staying, _) = b.viewer("restart").await;
    eventually_async("A and B subscribed again (both have viewers)", || async {
        cluster_free_numsub(&redis, "danmaku:{restart}:ch").await == 2
    })
    .await;
}

/// A failover to a replica that never got the newest comments: the history loses its tail
/// while every key, the epoch too, survives. Simulated on one Redis: the tail entries go
/// behind danmaku's back (no deletion, nothing logged) and one instance's subscription
/// connection is dropped, as a failover drops it. That instance notices on its repair,
/// replaces the epoch once and publishes it; the other learns it from the channel. Every
/// watcher gets 4002, and a client that was away resumes with `resumed: false`. A comment
/// deleted by a moderator is no such loss.
#[tokio::test]
async fn a_history_that_lost_its_tail_is_a_new_epoch() {
    let redis = RedisStandalone::start().await;
    let url = redis.url();
    let (a, b) = (instance(&url, "pod-a").await, instance(&url, "pod-b").await);
    let (mut on_a, init) = a.viewer("tail").await;
    let (mut on_b, _) = b.viewer("tail").await;
    let old_epoch = init["epoch"].as_str().unwrap().to_owned();
    let mut client = redis.client().await;
    // Drops one subscription connection (one instance's), as a failover of its node would.
    let drop_one_subscription = || async {
        let mut client = redis.client().await;
        let list: String = redis::cmd("CLIENT")
            .arg(&["LIST", "TYPE", "pubsub"])
            .query_async(&mut client)
            .await
            .unwrap();
        let id = list
            .lines()
            .find_map(|l| l.strip_prefix("id=")?.split(' ').next())
            .expect("a subscription connection")
            .to_owned();
        let killed: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "ID", &id])
            .query_async(&mut client)
            .await
            .unwrap();
        assert_eq!(killed, 1);
    };

    // The controls. A repair while the history is still empty: nothing was delivered, so
    // nothing can be missing.
    drop_one_subscription().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.viewer("tail").await.1["epoch"], old_epoch.as_str());
    // The newest comment deleted by a moderator, then a repair.
    let kept = post_until_accepted(&a, "tail", "kept", "t-0").await;
    let deleted = post_until_accepted(&a, "tail", "deleted", "t-1").await;
    for watcher in [&mut on_a, &mut on_b] {
        assert_eq!(
            comment_ids(watcher, 2, &deleted).await,
            [kept.as_str(), deleted.as_str()]
        );
    }
    let status = a
        .http
        .delete(a.url(&format!("/v1/streams/tail/comments/{deleted}")))
        .bearer_auth(SERVICE_TOKEN)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    drop_one_subscription().await;
    let after_repair = post_until_accepted(&a, "tail", "after repair", "t-2").await;
    for watcher in [&mut on_a, &mut on_b] {
        // The deletion (replayed by the repair), then the comment: no 4002.
        assert_eq!(
            comment_ids(watcher, 1, &deleted).await,
            [after_repair.as_str()]
        );
    }
    assert_eq!(a.viewer("tail").await.1["epoch"], old_epoch.as_str());

    // Then the lost tail: two comments both watchers got, gone from the history.
    let lost = [
        post_until_accepted(&a, "tail", "lost 1", "t-3").await,
        post_until_accepted(&a, "tail", "lost 2", "t-4").await,
    ];
    for watcher in [&mut on_a, &mut on_b] {
        assert_eq!(comment_ids(watcher, 2, &deleted).await, lost);
    }
    let removed: i64 = redis::cmd("XDEL")
        .arg("danmaku:{tail}:hist")
        .arg(&lost[0])
        .arg(&lost[1])
        .query_async(&mut client)
        .await
        .unwrap();
    assert_eq!(removed, 2);
    drop_one_subscription().await;
    for watcher in [&mut on_a, &mut on_b] {
        assert_eq!(
            watcher.closed().await,
            Closed::Code(4002),
            "every watcher is told"
        );
    }
    let query = format!("after={after_repair}&epoch={old_epoch}");
    let (_back, init) = b.viewer_with("tail", &query).await;
    assert_eq!(init["resumed"], false, "{init}");
    let new_epoch = init["epoch"].as_str().unwrap().to_owned();
    assert_ne!(new_epoch, old_epoch);
    assert_eq!(
        a.viewer("tail").await.1["epoch"],
        new_epoch.as_str(),
        "one new epoch"
    );
    let ids: Vec<&str> = init["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [kept.as_str(), after_repair.as_str()], "{init}");
}

/// The ids of the next `n` comments, past replays of the deletion of `deleted` (a repair
/// replays the moderation it may have missed) and viewer counts.
async fn comment_ids(watcher: &mut WsClient, n: usize, deleted: &str) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < n {
        let frame = watcher.next_json().await;
        match frame["type"].as_str() {
            Some("comments") => ids.extend(
                frame["comments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["id"].as_str().unwrap().to_owned()),
            ),
            Some("deleted") => assert_eq!(frame["ids"], json!([deleted])),
            Some("viewers") => {}
            _ => panic!("expected comments, got {frame}"),
        }
    }
    ids
}

async fn cluster_free_numsub(redis: &RedisStandalone, channel: &str) -> u64 {
    let mut client = redis.client().await;
    let reply: (String, u64) = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(channel)
        .query_async(&mut client)
        .await
        .unwrap();
    reply.1
}

#[tokio::test]
async fn readiness_says_broker_while_redis_is_down() {
    let mut redis = RedisStandalone::start().await;
    let app = instance(&redis.url(), "pod-a").await;
    let (_viewer, _) = app.viewer("ready").await;
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    redis.stop().await;
    eventually_async("/readyz to say broker", || async {
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        r.status() == 503
            && r.json::<Value>().await.unwrap()["reasons"]
                .as_array()
                .unwrap()
                .contains(&json!("broker"))
    })
    .await;
    assert_eq!(
        app.http
            .get(app.url("/livez"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "liveness never depends on Redis"
    );
    redis.start_again().await;
    eventually_async("/readyz to recover", || async {
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
}

/// Measures how long 1,000 streams take to be live again after Redis restarts empty: every
/// watcher is told the history was lost (4002), and the time from the restart until a
/// comment posted to every stream has reached a viewer connected anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_resubscribe_after_a_restart() {
    let mut redis = RedisStandalone::start().await;
    let url = redis.url();
    let (a, b) = (instance(&url, "pod-a").await, instance(&url, "pod-b").await);
    let streams: Vec<String> = (0..1000).map(|i| format!("many-{i}")).collect();
    let mut watchers = Vec::new();
    for stream in &streams {
        watchers.push(a.viewer(stream).await.0);
    }
    redis.restart().await;
    let restarted = Instant::now();
    // The restart lost every stream's history (a new epoch): each watcher is told.
    let told = watchers
        .iter_mut()
        .map(|w| w.closed_within(Duration::from_secs(30)));
    for closed in futures_util::future::join_all(told).await {
        assert_eq!(closed, Closed::Code(4002));
    }
    println!(
        "1000 streams resynchronised {:?} after the Redis restart",
        restarted.elapsed()
    );
    let mut viewers = Vec::new();
    for stream in &streams {
        viewers.push(Collector::start(a.viewer(stream).await.0));
    }
    let keys: Vec<String> = streams.iter().map(|s| format!("{s}-back")).collect();
    let posts = streams
        .iter()
        .zip(&keys)
        .map(|(s, key)| post_until_accepted(&b, s, "back", key));
    let accepted = futures_util::future::join_all(posts).await;
    for (viewer, id) in viewers.iter().zip(&accepted) {
        viewer.wait_for(1, Duration::from_secs(30)).await;
        viewer.assert_exactly_once_in_order(std::slice::from_ref(id));
    }
    println!(
        "1000 streams live again {:?} after the Redis restart",
        restarted.elapsed()
    );
}

/// Like `eventually`, with a longer deadline for things that ride on Redis timers.
async fn eventually_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(25);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_while_a_subscription_is_being_moved_still_reaches_viewers() {
    let cluster = RedisCluster::start().await;
    let url = cluster.url();
    let (a, b) = (instance(&url, "pod-a").await, instance(&url, "pod-b").await);
    let stream = "moving-mod";
    let (mut viewer, _) = a.viewer(stream).await;
    let (mut troll, _) = a.user(stream, "troll").await;
    let posted = b.post_system(stream, "soon gone").await;
    assert_eq!(viewer.comments(1).await[0]["id"], posted["id"]);
    let slot = key_slot(&format!("danmaku:{{{stream}}}:ch"));
    let from = cluster.master_of(slot).await;
    let to = cluster
        .masters()
        .await
        .into_iter()
        .find(|m| *m != from)
        .unwrap()
        .port;
    cluster.migrate_slot(slot, to).await;
    // Straight after the move A's subscription is deaf until it notices; these two go to
    // the new owner and must still reach A's sockets (live or replayed from the log).
    let id = posted["id"].as_str().unwrap();
    let deleted = b
        .http
        .delete(b.url(&format!("/v1/streams/{stream}/comments/{id}")))
        .bearer_auth(SERVICE_TOKEN)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(deleted, 204);
    let banned = b
        .http
        .post(b.url(&format!("/v1/streams/{stream}/bans")))
        .bearer_auth(SERVICE_TOKEN)
        .json(&json!({"user_id": "troll"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(banned, 204);
    assert_eq!(viewer.next_of("deleted").await["ids"], json!([id]));
    assert_eq!(
        troll.closed_within(Duration::from_secs(15)).await,
        Closed::Code(4003)
    );
}

/// A viewer that follows `reconnect` hints the way a client should: it reconnects to
/// `next` with `after=<last id it saw>`, keeping what `init` carries.
fn follow_hints(
    first: WsClient,
    next: String,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<bool>) {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen2 = seen.clone();
    let handle = tokio::spawn(async move {
        let mut client = first;
        let mut moved = false;
        loop {
            let Some(Ok(message)) = client.ws.next().await else {
                return moved;
            };
            let Message::Text(text) = message else {
                continue;
            };
            let frame: Value = serde_json::from_str(&text).unwrap();
            match frame["type"].as_str() {
                Some("comments") | Some("init") => {
                    let mut seen = seen2.lock().unwrap();
                    for c in frame["comments"].as_array().unwrap() {
                        seen.push(c["id"].as_str().unwrap().to_owned());
                    }
                }
                Some("reconnect") if !moved => {
                    moved = true;
                    let after = seen2.lock().unwrap().last().cloned();
                    let query = after.map(|id| format!("?after={id}")).unwrap_or_default();
                    let url = format!("{next}{query}");
                    let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
                    client = WsClient { ws };
                }
                _ => {}
            }
        }
    });
    (seen, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_instance_hands_its_viewers_to_another_without_loss() {
    let redis = RedisStandalone::start().await;
    let url = redis.url();
    let redis_url = url_of(&url);
    let mut a = spawn_app_with(move |c| {
        c.redis_url = Some(redis_url);
        c.pod_name = "blue-a".into();
        c.drain_ms = 2000;
        c.cpu_ready_threshold = 1.0;
    })
    .await;
    let b = instance(&url, "green-b").await;
    let stream = "handover";
    let mut viewers = Vec::new();
    for _ in 0..10 {
        let (client, init) = a.viewer(stream).await;
        assert_eq!(init["server"]["pod"], "blue-a");
        viewers.push(follow_hints(client, b.ws_url(stream, "")));
    }
    let publisher = publish_steadily(&b, stream, 80, Duration::from_millis(40));
    let drain = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let run = a.begin_shutdown();
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("A exits")
            .unwrap()
            .unwrap();
        started.elapsed()
    };
    let (accepted, drained_in) = tokio::join!(publisher, drain);
    assert!(
        drained_in < Duration::from_millis(2000 + 3000),
        "A took {drained_in:?}"
    );
    for (seen, _) in &viewers {
        let deadline = Instant::now() + Duration::from_secs(15);
        while seen.lock().unwrap().len() < accepted.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ids = seen.lock().unwrap().clone();
        let parsed: Vec<(u64, u64)> = ids.iter().map(|id| parse_id(id)).collect();
        assert!(
            parsed.windows(2).all(|w| w[0] < w[1]),
            "duplicated or out of order: {ids:?}"
        );
        let got: HashSet<&String> = ids.iter().collect();
        let lost: Vec<&String> = accepted.iter().filter(|id| !got.contains(id)).collect();
        assert!(lost.is_empty(), "lost {lost:?}");
    }
    for (_, handle) in viewers {
        handle.abort();
    }
    println!(
        "drain handover: {} comments, 10 viewers moved, A exited in {drained_in:?}",
        accepted.len()
    );
}
