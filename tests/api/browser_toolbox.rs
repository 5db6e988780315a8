//! The streamer's toolbox on the page, in Chromium: a moderator's panel (slow mode, roles,
//! the pin, the held queue with approve and reject) and actions on a comment (pin, shadow
//! ban); a viewer's pinned comment, slow-mode countdown and held-comment notices. The
//! moderator's view is kept as `target/browser-artifacts/toolbox-moderator.png` (the one in
//! `docs/images/` is a copy).

use serde_json::json;

use crate::browser::{Browser, Driver, list_has};
use crate::helpers::{SERVICE_TOKEN, TestApp, spawn_app_with};

/// Opens the page and connects as `name`, a moderator of `stream` (development mode).
async fn join_as_moderator(browser: &Browser, app: &TestApp, stream: &str, name: &str) {
    browser
        .client
        .goto(&app.url(&format!("/?stream={stream}")))
        .await
        .unwrap();
    browser.until("the page script", "window.__danmaku").await;
    browser
        .js(&format!(
            "document.getElementById('as-dev').click(); \
             document.getElementById('name').value = {}; \
             document.getElementById('moderate').checked = true; \
             document.getElementById('connect').click();",
            json!(name)
        ))
        .await;
    browser
        .until(
            "connected",
            "document.getElementById('conn-state').textContent.startsWith('connected')",
        )
        .await;
}

/// Clicks the button `css` in the list row whose text is `text`.
async fn click_in_row(browser: &Browser, text: &str, css: &str) {
    browser
        .until(
            "the row's button",
            &format!(
                "[...document.querySelectorAll('#comments li')].some(l => \
                   l.querySelector('.text')?.textContent === {} && l.querySelector({}))",
                json!(text),
                json!(css)
            ),
        )
        .await;
    browser
        .js(&format!(
            "window.confirm = () => true; \
             [...document.querySelectorAll('#comments li')] \
               .find(l => l.querySelector('.text')?.textContent === {}) \
               .querySelector({}).click();",
            json!(text),
            json!(css)
        ))
        .await;
}

fn post_error_has(text: &str) -> String {
    format!(
        "document.getElementById('post-error').textContent.includes({})",
        json!(text)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_runs_the_chat_from_the_page() {
    let app = spawn_app_with(|c| c.dev = true).await;
    let driver = Driver::start().await;
    let stream = "page-toolbox";
    let m = driver.session(1280, 1500).await;
    let v = driver.session(1280, 900).await;
    join_as_moderator(&m, &app, stream, "streamer").await;
    v.join(&app, stream, Some("viewer")).await;
    m.until(
        "the moderation panel",
        "!document.getElementById('moderation').hidden",
    )
    .await;
    assert_eq!(
        v.js("return document.getElementById('moderation').hidden;")
            .await,
        json!(true),
        "a viewer has no panel"
    );

    // A pin from the comment's row reaches the viewer above the list.
    app.post_system(stream, "Welcome! Be kind.").await;
    click_in_row(&m, "Welcome! Be kind.", "button.pin").await;
    v.until(
        "the pinned comment",
        "!document.getElementById('pinned').hidden && \
         document.getElementById('pinned-text').textContent === 'Welcome! Be kind.'",
    )
    .await;

    // A held comment: the viewer is told, the moderator approves it from the queue.
    let terms = json!({"terms": [{"term": "link", "action": "hold"}]});
    let put = app
        .http
        .put(app.url(&format!("/v1/streams/{stream}/terms")))
        .bearer_auth(SERVICE_TOKEN)
        .json(&terms)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    v.post("see my link").await;
    v.until("the held notice", &post_error_has("held for a moderator"))
        .await;
    m.until(
        "the held queue",
        "[...document.querySelectorAll('#held-list li .text')].some(e => e.textContent === 'see my link')",
    )
    .await;
    m.js("document.querySelector('#held-list li button.approve').click();")
        .await;
    v.until("the approval notice", &post_error_has("approved"))
        .await;
    v.until("the approved comment", &list_has("see my link"))
        .await;

    // A shadow ban from the row: the viewer still sees their own comment; the moderator sees
    // it marked.
    v.post("trolling now").await;
    click_in_row(&m, "trolling now", "button.shadow").await;
    m.until("done", &post_error_has("shadow-banned")).await;
    v.post("can anyone see me").await;
    v.until("the own comment", &list_has("can anyone see me"))
        .await;
    m.until(
        "the marked comment",
        "[...document.querySelectorAll('#comments li.shadow .text')].some(e => e.textContent === 'can anyone see me')",
    )
    .await;
    let lift = app
        .http
        .delete(app.url(&format!("/v1/streams/{stream}/bans/dev-viewer")))
        .bearer_auth(SERVICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(lift.status(), 204, "the ban lifted");
    v.post("another link").await;
    m.until(
        "a second held comment",
        "document.getElementById('held-count').textContent === '1'",
    )
    .await;

    // Slow mode set from the panel: the viewer's chip, then a countdown after posting.
    m.js(
        "const input = document.getElementById('slow-mode'); input.value = '30'; \
          document.getElementById('post-roles').value = ''; \
          document.getElementById('save-settings').click();",
    )
    .await;
    v.until(
        "the slow-mode chip",
        "!document.getElementById('slow-chip').hidden && \
         document.getElementById('slow').textContent === '30 s'",
    )
    .await;
    v.post("once per half minute").await;
    v.until(
        "the countdown",
        &post_error_has("Slow mode: you can post again in"),
    )
    .await;
    assert_eq!(
        v.js("return document.getElementById('send').disabled;")
            .await,
        json!(true),
        "sending waits"
    );
    m.until(
        "the viewer's last comment",
        &list_has("once per half minute"),
    )
    .await;
    let shot = m.screenshot("toolbox-moderator").await;
    v.screenshot("toolbox-viewer").await;

    // The held comment rejected: its author is told.
    m.js("document.querySelector('#held-list li button.reject').click();")
        .await;
    v.until("the rejection notice", &post_error_has("rejected"))
        .await;
    m.until(
        "an empty queue",
        "document.getElementById('held-count').textContent === '0'",
    )
    .await;

    for (name, browser) in [("moderator", &m), ("viewer", &v)] {
        let errors = browser.console_errors().await;
        assert!(errors.is_empty(), "console errors in {name}: {errors:#?}");
    }
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
    m.close().await;
    v.close().await;
}
