//! Redis restarting empty, again and again, under two instances: no `init` is ever served
//! from before the restart, and delivery is live again on every instance right after it.
//!
//! `DANMAKU_TEST_RESTARTS` sets the number of restarts (default 5; the recorded run used 100).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::redis_broker::{instance, post_until_accepted};
use crate::redis_support::RedisStandalone;

/// An `init` that showed the stream as it was before the restart.
#[derive(Debug)]
#[allow(dead_code)] // printed
struct Stale {
    round: usize,
    pod: &'static str,
    init: Value,
    epoch_now: Option<String>,
}

/// The next comment's id, or `None` if the connection closes first (or nothing comes
/// within `within`).
async fn next_comment(client: &mut WsClient, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        let next = tokio::time::timeout_at(deadline.into(), client.ws.next()).await;
        let Ok(Some(Ok(message))) = next else {
            return None;
        };
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] == "comments" {
                return frame["comments"][0]["id"].as_str().map(str::to_owned);
            }
        }
    }
}

/// A viewer and its `init`, or `None` if the instance closed it with 1013 (try again
/// later: it could not read the stream yet), as a client would retry.
async fn init_or_retry(app: &TestApp, stream: &str) -> Option<(WsClient, Value)> {
    let mut client = app
        .connect(stream, "", &[])
        .await
        .unwrap_or_else(|(s, b)| panic!("refused {s}: {b}"));
    let first = tokio::time::timeout(WAIT, client.ws.next())
        .await
        .ok()??
        .ok()?;
    match first {
        Message::Text(text) => Some((client, serde_json::from_str(&text).unwrap())),
        Message::Close(Some(frame)) if u16::from(frame.code) == 1013 => None,
        other => panic!("expected init, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_init_is_served_from_before_a_restart() {
    let rounds: usize = std::env::var("DANMAKU_TEST_RESTARTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let mut redis = RedisStandalone::start().await;
    let url = redis.url();
    let (a, b) = (instance(&url, "pod-a").await, instance(&url, "pod-b").await);
    let apps = [("pod-a", &a), ("pod-b", &b)];
    let mut stale = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut posts = 0;
    for round in 0..rounds {
        // Each instance has a viewer (so its room keeps an `init` page) that saw a comment.
        let (mut on_a, _) = a.viewer("race").await;
        let (mut on_b, _) = b.viewer("race").await;
        let before = post_until_accepted(&a, "race", "before", &format!("before-{round}")).await;
        assert_eq!(on_a.comments(1).await[0]["id"], before.as_str());
        assert_eq!(on_b.comments(1).await[0]["id"], before.as_str());
        // A later `init` on each, so each room keeps a page that shows `before`.
        let (_, kept_a) = a.viewer("race").await;
        let (_, kept_b) = b.viewer("race").await;
        for kept in [kept_a, kept_b] {
            let newest = kept["comments"].as_array().unwrap().last().unwrap().clone();
            assert_eq!(newest["id"], before.as_str());
        }

        // Down long enough for the clients' reconnect backoff to grow (it doubles from
        // 100 ms up to 2 s), so each instance's two clients come back at different times.
        redis.stop().await;
        tokio::time::sleep(Duration::from_millis(300 * (round as u64 % 5))).await;
        redis.start_again().await;
        let restarted = Instant::now();
        for (pod, app) in apps {
            // Until a fresh viewer of this instance gets a comment posted on the other one.
            loop {
                let Some((mut viewer, init)) = init_or_retry(app, "race").await else {
                    continue;
                };
                let mut client = redis.client().await;
                let epoch_now: Option<String> = redis::cmd("GET")
                    .arg("danmaku:{race}:epoch")
                    .query_async(&mut client)
                    .await
                    .unwrap();
                let lost = init["comments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["id"] == before.as_str());
                if lost || epoch_now.as_deref() != init["epoch"].as_str() {
                    stale.push(Stale {
                        round,
                        pod,
                        init,
                        epoch_now,
                    });
                }
                posts += 1;
                let other = if pod == "pod-a" { &b } else { &a };
                let after =
                    post_until_accepted(other, "race", "after", &format!("p-{posts}")).await;
                if next_comment(&mut viewer, Duration::from_secs(1))
                    .await
                    .as_deref()
                    == Some(after.as_str())
                {
                    break;
                }
                assert!(
                    restarted.elapsed() < Duration::from_secs(30),
                    "round {round}: {pod} never delivered again"
                );
            }
        }
        slowest = slowest.max(restarted.elapsed());
    }
    println!(
        "{rounds} restarts: {} stale inits, slowest return to live delivery on both instances {slowest:?}",
        stale.len()
    );
    assert!(stale.is_empty(), "stale inits: {stale:#?}");
}
