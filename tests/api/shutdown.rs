//! Draining: SIGTERM's in-process equivalent. Readiness fails at once, new handshakes are
//! refused, every client gets a `reconnect` hint inside the drain time, the rest is closed
//! with 1001, and `run` returns before its deadline.

use std::time::{Duration, Instant};

use crate::helpers::*;

#[tokio::test]
async fn draining_sends_reconnect_hints_then_closes_and_returns_in_time() {
    let mut app = spawn_app_with(|c| c.drain_ms = 3000).await;
    let mut viewers = Vec::new();
    for _ in 0..20 {
        viewers.push(app.viewer("drain").await.0);
    }
    let started = Instant::now();
    let run = app.begin_shutdown();

    eventually("readyz to say draining", || async {
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        r.status() == 503 && r.json::<serde_json::Value>().await.unwrap()["reason"] == "draining"
    })
    .await;
    let (status, body) = app.refused("drain", "", &[]).await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "draining");

    // Every viewer reads on its own, so each arrival time is its own.
    let hints = futures_util::future::join_all(viewers.iter_mut().map(|viewer| async move {
        let hint = viewer.next_of("reconnect").await;
        (started.elapsed(), hint)
    }))
    .await;
    for (_, hint) in &hints {
        let after_ms = hint["after_ms"].as_u64().expect("after_ms");
        assert!(after_ms < 1000, "{hint}");
    }
    let mut hint_times: Vec<Duration> = hints.iter().map(|(t, _)| *t).collect();
    hint_times.sort();
    // Uniform over 90 % of 3 s: 20 hints within 300 ms of each other would be a wave.
    let spread = *hint_times.last().unwrap() - hint_times[0];
    assert!(
        spread > Duration::from_millis(300),
        "hints are spread out, not sent at once: {hint_times:?}"
    );
    assert!(
        hint_times
            .iter()
            .all(|t| *t < Duration::from_millis(3000 + 500)),
        "{hint_times:?}"
    );
    for viewer in &mut viewers {
        assert_eq!(viewer.closed().await, Closed::Code(1001));
    }
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("run returns")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(3000 + 3000),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn drain_ends_early_when_every_client_has_left() {
    let mut app = spawn_app_with(|c| c.drain_ms = 30_000).await;
    let (viewer, _) = app.viewer("drain-early").await;
    let started = Instant::now();
    let run = app.begin_shutdown();
    eventually("readyz to say draining", || async {
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 503
    })
    .await;
    drop(viewer);
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("returns early")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_idle_app_stops_at_once() {
    let app = spawn_app().await;
    let took = app.shutdown().await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

/// What the instance started in the background (rooms' tasks, periodic jobs, the Redis
/// subscriber and its jobs, the reachability prober) has ended once `run` returns: shutdown
/// waits for it rather than leaving it half-way through a Redis call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_background_tasks() {
    let redis = crate::redis_support::RedisStandalone::start().await;
    let url = redis.url();
    for app in [
        spawn_app().await,
        crate::redis_broker::instance(&url, "pod-a").await,
    ] {
        let (mut viewer, _) = app.viewer("bg").await;
        app.post_system("bg", "one").await;
        viewer.comments(1).await;
        let background = app.state.background.clone();
        assert!(background.running() > 0, "tasks run while it serves");
        drop(viewer);
        app.shutdown().await;
        assert_eq!(background.running(), 0, "every background task ended");
    }
}
