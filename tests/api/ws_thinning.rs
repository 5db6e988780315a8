//! Thinning: a viewer's budget of user comments per second, `skipped`, and the priority
//! lane a socket that falls behind is moved to.

use std::time::{Duration, Instant};

use danmaku::domain::CommentKind;
use serde_json::{Value, json};

use crate::helpers::{WsClient, publish, spawn_app_with};
use crate::raw::RawClient;

/// What one viewer saw: every comment (kind, author, text) in arrival order, and the sum
/// of `skipped`.
#[derive(Default)]
struct Seen {
    ids: Vec<(u64, u64)>,
    comments: Vec<(String, String, String)>,
    skipped: u64,
}

impl Seen {
    fn take(&mut self, frame: &Value) {
        self.skipped += frame["skipped"].as_u64().unwrap_or(0);
        for c in frame["comments"].as_array().unwrap() {
            let (ms, seq) = c["id"].as_str().unwrap().split_once('-').unwrap();
            self.ids.push((ms.parse().unwrap(), seq.parse().unwrap()));
            let author = c["user"]["id"].as_str().unwrap_or("").to_owned();
            let kind = c["kind"].as_str().unwrap().to_owned();
            self.comments
                .push((kind, author, c["text"].as_str().unwrap().to_owned()));
        }
    }

    fn count(&self, kind: &str, author: Option<&str>) -> usize {
        self.comments
            .iter()
            .filter(|(k, a, _)| k == kind && author.is_none_or(|author| a == author))
            .count()
    }

    /// Comments of `kind` by `author` published as `c<i>` with `i` ≥ `from`.
    fn count_from(&self, kind: &str, author: &str, from: u64) -> usize {
        self.comments
            .iter()
            .filter(|(k, a, text)| {
                k == kind
                    && a == author
                    && text
                        .strip_prefix('c')
                        .and_then(|i| i.parse::<u64>().ok())
                        .is_some_and(|i| i >= from)
            })
            .count()
    }

    fn in_order_once(&self) -> bool {
        self.ids.windows(2).all(|w| w[0] < w[1])
    }
}

/// The comment (by index) from which the budget test measures a tier's rate.
const STEADY_FROM: u64 = 200;

/// Reads `comments` frames until the one with the comment `end`.
async fn watch(mut client: WsClient) -> Seen {
    let mut seen = Seen::default();
    loop {
        let frame = client.next_of("comments").await;
        seen.take(&frame);
        if seen
            .comments
            .last()
            .is_some_and(|(_, _, text)| text == "end")
        {
            return seen;
        }
    }
}

/// 200 comments a second for 5 s, a fifth of them system comments, with a moderator and
/// a viewer posting too: viewers at budgets "none", 30 and 5 get about their budget of
/// other users' comments, every system, moderator and own comment, in order, and
/// `skipped` accounts for every other comment exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_get_their_budget_of_user_comments_and_every_other_one() {
    let app = spawn_app_with(|c| c.viewer_max_rate = 0).await;
    let s = "thin";
    let (all, _) = app.viewer(s).await;
    let (thirty, _) = app
        .viewer_with(
            s,
            &format!("max_rate=30&access_token={}", app.token("v30", &[])),
        )
        .await;
    let (five, _) = app
        .viewer_with(
            s,
            &format!("max_rate=5&access_token={}", app.token("me", &[])),
        )
        .await;
    // The same people post from other connections: their comments are theirs all the same.
    let (mut moderator, _) = app
        .viewer_with(s, &format!("access_token={}", app.token("boss", &[s])))
        .await;
    let (mut me, _) = app.user(s, "me").await;
    let watchers = [all, thirty, five].map(|c| tokio::spawn(watch(c)));

    let mut published = 0u64;
    // A tier starts with a second's worth of credit (its first burst goes out whole): its
    // rate is measured over the steady state, from comment 200 (one second in) on.
    let mut steady = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for i in 0..1000u64 {
        tick.tick().await;
        if i == STEADY_FROM {
            steady = Instant::now();
        }
        let (kind, author) = match i % 5 {
            0 => (CommentKind::Gift, ""),
            _ => (CommentKind::User, ["ann", "bob", "cy"][i as usize % 3]),
        };
        publish(&app.state.broker, s, kind, author, &format!("c{i}")).await;
        published += 1;
        if i % 100 == 50 {
            moderator
                .send_json(json!({"type": "comment", "text": format!("mod {i}")}))
                .await;
            me.send_json(json!({"type": "comment", "text": format!("mine {i}")}))
                .await;
            published += 2;
        }
    }
    let secs = steady.elapsed().as_secs_f64();
    // A last system comment carries the `skipped` of whatever came after the last frame.
    publish(&app.state.broker, s, CommentKind::System, "", "end").await;
    published += 1;

    let mut seen = Vec::new();
    for watcher in watchers {
        seen.push(watcher.await.unwrap());
    }
    let viewers = [(None, "anonymous"), (Some(30.0), "v30"), (Some(5.0), "me")];
    for (seen, (budget, own)) in seen.iter().zip(viewers) {
        let label = format!("budget {budget:?}");
        assert!(seen.in_order_once(), "{label}: in id order, each once");
        assert_eq!(
            seen.comments.len() as u64 + seen.skipped,
            published,
            "{label}: received + skipped = published"
        );
        assert_eq!(seen.count("gift", None), 200, "{label}: every gift");
        assert_eq!(seen.count("system", None), 1, "{label}");
        assert_eq!(
            seen.count("user", Some("boss")),
            10,
            "{label}: every mod comment"
        );
        if own == "me" {
            assert_eq!(
                seen.count("user", Some("me")),
                10,
                "{label}: every own comment"
            );
        }
        let others: usize = ["ann", "bob", "cy", "me"]
            .iter()
            .filter(|a| **a != own)
            .map(|a| seen.count("user", Some(a)))
            .sum();
        match budget {
            None => {
                assert_eq!(others, 810, "{label}: everything");
                assert_eq!(seen.skipped, 0, "{label}");
            }
            Some(budget) => {
                let steady_others: usize = ["ann", "bob", "cy", "me"]
                    .iter()
                    .filter(|a| **a != own)
                    .map(|a| seen.count_from("user", a, STEADY_FROM))
                    .sum();
                let rate = steady_others as f64 / secs;
                println!(
                    "{label}: {rate:.1} user comments/s, skipped {}",
                    seen.skipped
                );
                assert!(
                    (rate - budget).abs() <= budget * 0.1,
                    "{label}: {steady_others} user comments in the last {secs:.2} s"
                );
            }
        }
    }
    // "me" at budget 5 was sent its own comments although it is the thinnest.
    assert!(
        app.metric("danmaku_comments_thinned_total{reason=\"budget\"}")
            .await
            > 0.0
    );
}

#[tokio::test]
async fn max_rate_must_be_a_positive_integer() {
    let app = spawn_app_with(|_| {}).await;
    for bad in ["0", "-1", "x", "1.5", ""] {
        let (status, body) = app
            .connect("s", &format!("max_rate={bad}"), &[])
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(status, 400, "max_rate={bad}");
        assert_eq!(body["code"], "invalid", "{body}");
    }
    // Above the server's budget is allowed (and capped).
    app.viewer_with("s", "max_rate=100000").await;
}

/// A reader on a link that takes a trickle: as its socket falls behind it is moved down to
/// the priority lane, so it keeps every gift, is told what it missed, and stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_on_a_trickle_keeps_every_gift_and_stays_connected() {
    let app = spawn_app_with(|c| c.viewer_max_rate = 0).await;
    let s = "trickle";
    let mut slow = RawClient::connect(&app, s, Some(4096)).await;
    let (fast, _) = app.viewer(s).await;
    let fast = tokio::spawn(watch(fast));

    // ~100 KB/s of chat and 10 gifts a second, for 8 s; the reader takes ~20 KB/s.
    let text = "z".repeat(190);
    let publisher = {
        let broker = app.state.broker.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            let mut published = 0u64;
            for i in 0..4000u64 {
                tick.tick().await;
                if i % 50 == 0 {
                    publish(&broker, s, CommentKind::Gift, "", &format!("gift {i}")).await;
                } else {
                    publish(&broker, s, CommentKind::User, "chat", &text).await;
                }
                published += 1;
            }
            publish(&broker, s, CommentKind::System, "", "end").await;
            published + 1
        })
    };

    let mut seen = Seen::default();
    let mut closed = None;
    let started = Instant::now();
    let mut read = 0usize;
    loop {
        // 20 KB/s while the publisher runs; then as fast as it goes.
        if !publisher.is_finished() {
            let allowed = (started.elapsed().as_secs_f64() * 20_000.0) as usize;
            if read > allowed {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        let Some(frame) = slow.read_frame().await else {
            break;
        };
        read += frame.payload.len() + 4;
        match frame.opcode {
            0x1 => {
                let frame: Value = serde_json::from_slice(&frame.payload).unwrap();
                if frame["type"] == "comments" {
                    seen.take(&frame);
                    if seen.comments.last().is_some_and(|(_, _, t)| t == "end") {
                        break;
                    }
                }
            }
            0x8 => {
                closed = frame.close_code();
                break;
            }
            _ => {}
        }
    }
    let published = publisher.await.unwrap();
    println!(
        "trickle: {} comments received, {} skipped, of {published}",
        seen.comments.len(),
        seen.skipped
    );
    assert_eq!(closed, None, "the slow reader stays connected");
    assert!(seen.in_order_once());
    assert_eq!(seen.count("gift", None), 80, "every gift");
    assert_eq!(seen.comments.len() as u64 + seen.skipped, published);
    assert!(seen.skipped > 0, "the slow reader was thinned");
    let fast = fast.await.unwrap();
    assert_eq!(
        fast.comments.len() as u64,
        published,
        "the fast reader got everything"
    );
    assert_eq!(fast.skipped, 0);
    assert!(
        app.metric("danmaku_comments_thinned_total{reason=\"slow_consumer\"}")
            .await
            > 0.0
    );
    assert_eq!(
        app.metric("danmaku_comments_dropped_total{reason=\"slow_consumer\"}")
            .await,
        0.0
    );
}
