//! Media time on the page, in Chromium: two windows on one stream, their players at delays
//! 0 s and 10 s, show the same comment at the same media moment, 10 s apart in wall time;
//! a scrub back replays the chat. Screenshots of both windows are kept as
//! `target/browser-artifacts/media-delay-{0,10}s.png` (those in `docs/images/` are copies).

use serde_json::{Value, json};

use crate::browser::{Browser, Driver, list_has};
use crate::helpers::spawn_app;

/// Opens the page at `delay` seconds behind live and connects anonymously.
async fn watch_at_delay(browser: &Browser, url: &str, delay: u32) {
    browser
        .client
        .goto(&format!("{url}&delay={delay}"))
        .await
        .unwrap();
    browser.until("the page script", "window.__danmaku").await;
    browser
        .js("document.getElementById('as-anonymous').click(); \
             document.getElementById('connect').click();")
        .await;
    browser
        .until(
            "connected",
            "document.getElementById('conn-state').textContent.startsWith('connected')",
        )
        .await;
}

/// When the page was handed comment `id` (wall ms), if it was.
async fn arrival(browser: &Browser, id: &str) -> Option<u64> {
    let state = browser.js("return window.__danmaku.state();").await;
    state["arrivals"][id].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_players_ten_seconds_apart_show_a_comment_at_the_same_media_moment() {
    let app = spawn_app().await;
    let driver = Driver::start().await;
    let stream = "page-media";
    let url = app.url(&format!("/?stream={stream}"));
    let live = driver.session(1000, 900).await;
    let behind = driver.session(1000, 900).await;
    watch_at_delay(&live, &url, 0).await;
    watch_at_delay(&behind, &url, 10).await;
    assert_eq!(
        behind
            .js("return document.getElementById('delay-out').textContent;")
            .await,
        json!("10 s")
    );

    let comment = app.post_system(stream, "GOAL!").await;
    let id = comment["id"].as_str().unwrap();
    let moment = comment["ts"].as_u64().unwrap();
    live.until("the comment, live", &list_has("GOAL!")).await;
    let shown_live = arrival(&live, id).await.unwrap();
    assert!(
        shown_live - moment < 500,
        "live: {} ms after its moment",
        shown_live - moment
    );
    assert_eq!(arrival(&behind, id).await, None, "not yet 10 s behind");
    // A moment later, so the comment is well on its way across the stage.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    live.screenshot("media-delay-0s").await;
    behind
        .until("the comment, 10 s behind", &list_has("GOAL!"))
        .await;
    let shown_behind = arrival(&behind, id).await.unwrap();
    let apart = shown_behind as i64 - shown_live as i64;
    assert!(
        (9_500..=10_500).contains(&apart),
        "{apart} ms apart in wall time"
    );
    let media = behind.js("return window.__danmaku.state().media;").await;
    assert_eq!(media["late"], json!(0), "{media}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    behind.screenshot("media-delay-10s").await;

    // Scrubbed back a minute, the delayed window replays the chat from there on its clock.
    behind
        .js(
            "const s = document.getElementById('scrub'); s.value = '-60'; \
             s.dispatchEvent(new Event('change'));",
        )
        .await;
    behind
        .until(
            "the VOD position",
            "window.__danmaku.state().media.vod === true",
        )
        .await;
    let replayed_at: Value = behind.js("return window.__danmaku.state().media;").await;
    assert!(
        replayed_at["now"].as_u64().unwrap() < moment,
        "{replayed_at}"
    );
    behind
        .until(
            "the replayed comment waiting for its moment",
            "window.__danmaku.state().media.held >= 1",
        )
        .await;
    for browser in [&live, &behind] {
        assert_eq!(browser.console_errors().await, Vec::<String>::new());
    }
    live.close().await;
    behind.close().await;
}
