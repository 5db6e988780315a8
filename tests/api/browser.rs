//! The page at `/` in a real browser: Debian's headless Chromium driven through chromedriver
//! (WebDriver, with fantoccini) against the real app on 127.0.0.1. `scripts/test-browser`
//! installs both. Screenshots of every session go to `target/browser-artifacts/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::http::Method;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the page may take to show what a step expects.
const PAGE_WAIT: Duration = Duration::from_secs(15);

/// A chromedriver process on a free loopback port, killed on drop.
pub struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    pub async fn start() -> Self {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: run scripts/test-browser (as root) to install Debian's \
                 chromium and chromium-driver"
            );
        }
        // A port freed by bind(0) can be taken by someone's outgoing connection before
        // chromedriver binds it (seen beside a load test with thousands of loopback sockets):
        // chromedriver then exits, and a new port is tried.
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PAGE_WAIT;
        'spawn: loop {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts");
            let url = format!("http://127.0.0.1:{port}/");
            let mut driver = Self { child, url };
            loop {
                let ready = http
                    .get(format!("{}status", driver.url))
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success());
                if ready.is_some() {
                    return driver;
                }
                assert!(Instant::now() < deadline, "chromedriver did not answer");
                if driver.child.try_wait().unwrap().is_some() {
                    continue 'spawn;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// A new headless browser session with a fresh profile and a `width`×`height` window.
    pub async fn session(&self, width: u32, height: u32) -> Browser {
        static N: AtomicU32 = AtomicU32::new(0);
        let profile = std::env::temp_dir().join(format!(
            "danmaku-chromium-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromium session");
        Browser { client, profile }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Browser {
    pub client: Client,
    profile: PathBuf,
}

/// chromedriver's own log endpoint: the browser console since the last read.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (Method, Option<String>) {
        (Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

impl Browser {
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `expression` (JavaScript) until it is truthy; panics with `what` and the page's
    /// state after [`PAGE_WAIT`].
    pub async fn until(&self, what: &str, expression: &str) {
        let script = format!("return !!({expression});");
        let deadline = Instant::now() + PAGE_WAIT;
        while self.js(&script).await != Value::Bool(true) {
            if Instant::now() >= deadline {
                let state = self.js("return window.__danmaku.state();").await;
                let status = self
                    .js("return document.getElementById('conn-state').textContent;")
                    .await;
                panic!("timed out waiting for {what}; status {status}; page state {state}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn text_of(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn state(&self) -> Value {
        self.js("return window.__danmaku.state();").await
    }

    /// Opens the page and connects to `stream` by display name (development mode), or
    /// anonymously when `name` is `None`.
    pub async fn join(&self, app: &TestApp, stream: &str, name: Option<&str>) {
        self.client
            .goto(&app.url(&format!("/?stream={stream}")))
            .await
            .unwrap();
        self.until("the page script", "window.__danmaku").await;
        match name {
            Some(name) => {
                self.client
                    .find(Locator::Css("#as-dev"))
                    .await
                    .unwrap()
                    .click()
                    .await
                    .unwrap();
                let input = self.client.find(Locator::Css("#name")).await.unwrap();
                input.send_keys(name).await.unwrap();
            }
            None => self
                .client
                .find(Locator::Css("#as-anonymous"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap(),
        }
        self.client
            .find(Locator::Css("#connect"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.until(
            "connected",
            "document.getElementById('conn-state').textContent.startsWith('connected')",
        )
        .await;
    }

    /// Types `text` into the comment box and presses Enter.
    pub async fn post(&self, text: &str) {
        self.until(
            "the comment box",
            "!document.getElementById('text').disabled",
        )
        .await;
        let input = self.client.find(Locator::Css("#text")).await.unwrap();
        input.send_keys(&format!("{text}\u{E007}")).await.unwrap();
    }

    /// Writes a PNG of the window to `target/browser-artifacts/<name>.png`; returns the path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        path
    }

    /// Console entries at level SEVERE (errors) since the last read, plus what the page's own
    /// error collector caught (uncaught exceptions, CSP violations).
    pub async fn console_errors(&self) -> Vec<String> {
        let log = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("chromedriver's browser log");
        let mut errors: Vec<String> = log
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].to_string())
            .collect();
        let hook = self.js("return window.__danmaku.errors;").await;
        errors.extend(
            hook.as_array()
                .into_iter()
                .flatten()
                .map(|e| format!("page: {e}")),
        );
        errors
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

pub fn list_has(text: &str) -> String {
    format!(
        "[...document.querySelectorAll('#comments li .text')].some(e => e.textContent === {})",
        json!(text)
    )
}

fn overlay_has(text: &str) -> String {
    format!(
        "[...document.querySelectorAll('#stage .flyer')].some(e => e.textContent.includes({}))",
        json!(text)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_chat_see_errors_and_resume_after_a_reconnect_hint() {
    let app = spawn_app_with(|c| {
        c.dev = true;
        // The defaults a viewer meets: 1 comment a second, bursts of 5.
        c.rate_per_sec = 1.0;
        c.rate_burst = 5.0;
    })
    .await;
    let driver = Driver::start().await;
    let stream = "browser-demo";
    // A on a desktop-sized window, B on a phone-sized one.
    let a = driver.session(1280, 900).await;
    let b = driver.session(390, 844).await;

    a.join(&app, stream, Some("alice")).await;
    b.join(&app, stream, None).await;
    assert_eq!(a.text_of("#identity").await, "alice");
    assert_eq!(b.text_of("#identity").await, "anonymous");
    let server = b.text_of("#server").await;
    assert!(
        server.contains("test-pod") && server.contains("blue"),
        "{server}"
    );
    a.until(
        "two viewers",
        "document.getElementById('viewers').textContent === '2'",
    )
    .await;

    // A posts with the keyboard; B sees it in the list and flying over the stage.
    a.post("hello from alice").await;
    b.until("the comment in B's list", &list_has("hello from alice"))
        .await;
    b.until(
        "the comment in B's overlay",
        &overlay_has("hello from alice"),
    )
    .await;
    a.until("A's own comment", &list_has("hello from alice"))
        .await;
    // Chromium offers permessage-deflate on every WebSocket: both pages' sockets took it
    // (nothing went to a plain socket), and a long comment's frame went out compressed.
    let long = "a long comment to compress ".repeat(7);
    a.post(long.trim()).await;
    b.until("the long comment", &list_has(long.trim())).await;
    assert!(app.metric("danmaku_ws_frames_compressed_total").await >= 1.0);
    assert_eq!(
        app.metric(r#"danmaku_ws_written_bytes_total{compression="plain"}"#)
            .await,
        0.0
    );
    // A system comment, styled apart.
    app.post(
        stream,
        json!({"kind": "gift", "text": "sent a rose", "user": {"id": "u9", "name": "Carol"}}),
    )
    .await;
    b.until(
        "the gift, styled as a system comment",
        "document.querySelector('#comments li.system[data-kind=\"gift\"]')",
    )
    .await;

    // Anonymous B cannot post: the box says so and stays disabled.
    assert_eq!(
        b.js("return document.getElementById('text').disabled;")
            .await,
        Value::Bool(true)
    );

    // Too long is caught before sending.
    a.js(
        "const t = document.getElementById('text'); t.value = 'x'.repeat(201); \
         t.dispatchEvent(new Event('input')); \
         document.getElementById('post-form').requestSubmit();",
    )
    .await;
    a.until(
        "the too-long message",
        "document.getElementById('post-error').textContent.startsWith('Too long')",
    )
    .await;
    a.js("document.getElementById('text').value = '';").await;

    // Posting fast: the burst of 5 runs out and the page counts down from retry_after_ms.
    a.js("const t = document.getElementById('text'); \
          for (let i = 0; i < 6; i++) { t.value = 'fast ' + i; \
            document.getElementById('post-form').requestSubmit(); }")
        .await;
    a.until(
        "the rate-limit countdown",
        "/post again in \\d+\\.\\d s/.test(document.getElementById('post-error').textContent)",
    )
    .await;
    assert_eq!(
        a.js("return document.getElementById('send').disabled;")
            .await,
        Value::Bool(true),
        "Send is disabled during the countdown"
    );
    let shot_a = a.screenshot("session-a-rate-limited").await;
    a.until(
        "the countdown to end",
        "document.getElementById('post-error').textContent === ''",
    )
    .await;

    // A reconnect hint (as a draining instance sends): B lets the socket go, waits after_ms,
    // and resumes with after=; comments posted in the gap arrive exactly once.
    let before = b.state().await;
    assert_eq!(before["connects"], 1, "{before}");
    b.js("window.__danmaku.handleFrame({type: 'reconnect', after_ms: 1500});")
        .await;
    b.until(
        "the reconnect countdown",
        "document.getElementById('conn-state').textContent.includes('reconnecting in')",
    )
    .await;
    for text in ["in the gap 1", "in the gap 2"] {
        let response = app
            .post(stream, json!({"kind": "system", "text": text}))
            .await;
        assert_eq!(response.status(), 201);
    }
    b.until(
        "the resumed connection",
        "window.__danmaku.state().connects === 2 && \
         document.getElementById('conn-state').textContent.startsWith('connected (resumed)')",
    )
    .await;
    b.until("the gap's comments", &list_has("in the gap 2"))
        .await;
    let after = b.state().await;
    let last_id = before["lastId"].as_str().unwrap();
    // It resumes after the last comment it showed, in the epoch its `init` named.
    let epoch = before["epoch"].as_str().unwrap();
    assert!(
        after["lastUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("after={last_id}&epoch={epoch}")),
        "{after}"
    );
    assert_eq!(after["duplicates"], 0, "{after}");
    // B's list is exactly the stream's retained history, in order, once each.
    let (status, history) = app
        .get_json(&format!("/v1/streams/{stream}/comments?limit=500"))
        .await;
    assert_eq!(status, 200);
    let ids: Vec<Value> = history["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(after["ids"].as_array().unwrap(), &ids, "{after}");

    // A moderator's page: delete buttons on every comment; deleting reaches everyone.
    let m = driver.session(1280, 900).await;
    m.client
        .goto(&app.url(&format!("/?stream={stream}")))
        .await
        .unwrap();
    m.until("the page script", "window.__danmaku").await;
    m.js("document.getElementById('as-dev').click(); \
          document.getElementById('name').value = 'mod'; \
          document.getElementById('moderate').checked = true; \
          document.getElementById('connect').click();")
        .await;
    m.until(
        "connected",
        "document.getElementById('conn-state').textContent.startsWith('connected')",
    )
    .await;
    assert!(m.text_of("#identity").await.contains("moderator"));
    m.until(
        "delete buttons",
        "document.querySelectorAll('#comments li button.delete').length > 0",
    )
    .await;
    m.js("const li = [...document.querySelectorAll('#comments li')] \
            .find(l => l.querySelector('.text').textContent === 'in the gap 1'); \
          li.querySelector('button.delete').click();")
        .await;
    b.until(
        "the deletion at B",
        &format!("!{}", list_has("in the gap 1")),
    )
    .await;

    let shot_b = b.screenshot("session-b-viewer-phone").await;
    let shot_m = m.screenshot("session-m-moderator").await;
    let shot_a2 = a.screenshot("session-a-chat").await;

    for (name, browser) in [("A", &a), ("B", &b), ("M", &m)] {
        let errors = browser.console_errors().await;
        assert!(errors.is_empty(), "console errors in {name}: {errors:#?}");
    }
    for path in [&shot_a, &shot_b, &shot_m, &shot_a2] {
        assert!(
            std::fs::metadata(path).unwrap().len() > 1000,
            "{}",
            path.display()
        );
    }
    a.close().await;
    b.close().await;
    m.close().await;
}

/// Thinning as a viewer sees it: choosing 1 comment a second reconnects with `max_rate=1`
/// (resuming with `after=`), a burst of other people's comments arrives as a few comments and
/// "+N" markers, and the user comments listed plus the skipped total are exactly the user
/// comments published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_at_one_comment_a_second_sees_how_many_were_skipped() {
    // The server's budget is the default (30 a second); the page asks for less.
    let app = spawn_app_with(|c| c.viewer_max_rate = 30).await;
    let driver = Driver::start().await;
    let stream = "browser-thin";
    // Tall enough to show the header, the stage and the list without scrolling.
    let v = driver.session(1280, 1400).await;
    v.join(&app, stream, None).await;
    let state = v.state().await;
    assert_eq!(state["maxRate"], Value::Null, "{state}");
    assert!(
        !state["lastUrl"].as_str().unwrap().contains("max_rate"),
        "{state}"
    );
    // A comment to resume after.
    let first = app.post_system(stream, "warm-up").await;
    v.until("the warm-up comment", &list_has("warm-up")).await;

    // Choosing 1 a second reconnects at once, with max_rate=1 and after=<the last id>.
    v.client
        .find(Locator::Css("#rate"))
        .await
        .unwrap()
        .select_by_value("1")
        .await
        .unwrap();
    v.until(
        "the reconnect at 1 a second",
        "window.__danmaku.state().connects === 2 && \
         document.getElementById('conn-state').textContent.startsWith('connected (resumed)')",
    )
    .await;
    let state = v.state().await;
    assert_eq!(state["maxRate"], 1, "{state}");
    assert!(
        state["lastUrl"].as_str().unwrap().ends_with(&format!(
            "?max_rate=1&after={}&epoch={}",
            first["id"].as_str().unwrap(),
            state["epoch"].as_str().unwrap()
        )),
        "{state}"
    );
    assert_eq!(
        v.js("return location.search;").await,
        json!(format!("?stream={stream}&rate=1"))
    );

    // 60 user comments by four people within about a second, then a system comment (never
    // skipped) whose frame carries the count of whatever was skipped before it.
    let users = ["ann", "bob", "cy", "dee"];
    let mut tick = tokio::time::interval(Duration::from_millis(15));
    for i in 0..60 {
        tick.tick().await;
        let user = users[i % users.len()];
        let response = app
            .post(
                stream,
                json!({"kind": "user", "text": format!("burst {i}"),
                       "user": {"id": user, "name": format!("{user}-name")}}),
            )
            .await;
        assert_eq!(response.status(), 201);
    }
    app.post_system(stream, "end").await;
    v.until("the end of the burst", &list_has("end")).await;
    v.until(
        "a +N marker",
        "document.querySelector('#comments li.skipped')",
    )
    .await;

    let page = v
        .js("const s = window.__danmaku.state(); \
             const markers = [...document.querySelectorAll('#comments li.skipped')]; \
             return { \
               listed: document.querySelectorAll('#comments li[data-kind=\"user\"]').length, \
               skipped: s.skipped, duplicates: s.duplicates, \
               markers: markers.map(li => Number(li.dataset.skipped)), \
               shown: markers.map(li => li.querySelector('.skipped-count').textContent), \
               labels: markers.map(li => li.querySelector('.visually-hidden').textContent), \
               total: document.getElementById('skipped').textContent, \
               chipHidden: document.getElementById('skipped-chip').hidden };")
        .await;
    let listed = page["listed"].as_u64().unwrap();
    let skipped = page["skipped"].as_u64().unwrap();
    assert_eq!(listed + skipped, 60, "{page}");
    assert!(
        listed <= 10,
        "at 1 a second, a burst of 60 is mostly skipped: {page}"
    );
    let markers: Vec<u64> = page["markers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(markers.iter().sum::<u64>(), skipped, "{page}");
    for (i, n) in markers.iter().enumerate() {
        assert_eq!(page["shown"][i], json!(format!("+{n}")), "{page}");
        let plural = if *n == 1 { "" } else { "s" };
        assert_eq!(
            page["labels"][i],
            json!(format!("{n} comment{plural} skipped")),
            "{page}"
        );
    }
    assert_eq!(page["total"], json!(skipped.to_string()), "{page}");
    assert_eq!(page["chipHidden"], false, "{page}");
    assert_eq!(page["duplicates"], 0, "{page}");

    let shot = v.screenshot("session-thinned-rate-1").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
    let errors = v.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    v.close().await;
}

/// The page's side of `skipped`, fed frames directly: a marker before the frame's comments,
/// skips with nothing shown between them merged, the total in the header and in `state()`,
/// and `?rate=` preselecting the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_marks_skipped_comments_and_merges_adjacent_skips() {
    let app = spawn_app_with(|_| {}).await;
    let driver = Driver::start().await;
    let p = driver.session(1280, 900).await;
    p.client
        .goto(&app.url("/?stream=marks&rate=7"))
        .await
        .unwrap();
    p.until("the page script", "window.__danmaku").await;
    // 7 is not on the menu: a link's rate gets an entry of its own.
    assert_eq!(
        p.js("return document.getElementById('rate').value;").await,
        "7"
    );
    assert_eq!(p.state().await["maxRate"], 7);
    assert_eq!(
        p.js("return document.getElementById('skipped-chip').hidden;")
            .await,
        true
    );

    p.js("const c = (id, text) => \
            ({id, kind: 'user', user: {id: 'u', name: 'U'}, text, ts: Date.now()}); \
          const feed = window.__danmaku.handleFrame; \
          feed({type: 'comments', skipped: 1, comments: [c('1-0', 'one')]}); \
          feed({type: 'comments', comments: [c('2-0', 'two')]}); \
          feed({type: 'comments', skipped: 2, comments: []}); \
          feed({type: 'comments', skipped: 4, comments: [c('3-0', 'three')]}); \
          feed({type: 'comments', skipped: 0, comments: [c('4-0', 'four')]});")
        .await;
    let rows = p
        .js(
            "return [...document.querySelectorAll('#comments li')].map(li => \
               li.classList.contains('skipped') \
                 ? [li.querySelector('.skipped-count').textContent, \
                    li.querySelector('.visually-hidden').textContent] \
                 : li.querySelector('.text').textContent);",
        )
        .await;
    assert_eq!(
        rows,
        json!([
            ["+1", "1 comment skipped"],
            "one",
            "two",
            ["+6", "6 comments skipped"],
            "three",
            "four"
        ])
    );
    let state = p.state().await;
    assert_eq!(state["skipped"], 7, "{state}");
    assert_eq!(state["ids"], json!(["1-0", "2-0", "3-0", "4-0"]), "{state}");
    assert_eq!(p.text_of("#skipped-chip").await, "skipped 7");

    // Back to everything: no max_rate, and no rate= in the address.
    p.client
        .find(Locator::Css("#rate"))
        .await
        .unwrap()
        .select_by_value("")
        .await
        .unwrap();
    assert_eq!(p.state().await["maxRate"], Value::Null);
    assert_eq!(p.js("return location.search;").await, "?stream=marks");
    let errors = p.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    p.close().await;
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let app = spawn_app_with(|_| {}).await;
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
        ("/page/comments.js", "text/javascript; charset=utf-8"),
        ("/danmaku-client/index.js", "text/javascript; charset=utf-8"),
        (
            "/danmaku-client/errors.js",
            "text/javascript; charset=utf-8",
        ),
        ("/danmaku-client/posts.js", "text/javascript; charset=utf-8"),
        (
            "/danmaku-client/tokens.js",
            "text/javascript; charset=utf-8",
        ),
        ("/danmaku-client/wire.js", "text/javascript; charset=utf-8"),
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
    // Only the library's own modules are served from its directory.
    for path in [
        "/danmaku-client/index.d.ts",
        "/danmaku-client/..%2fapp.js",
        "/page/app.js",
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    let page = app.http.get(app.url("/")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'self'; connect-src 'self' ws: wss:"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(page.text().await.unwrap().contains(r#"content="false""#));
    // Outside development mode there is no token endpoint.
    let response = app
        .http
        .post(app.url("/dev/token"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn dev_mode_mints_short_lived_tokens_for_a_name() {
    let app = spawn_app_with(|c| {
        c.dev = true;
        // No configured secret: development mode makes its own.
        c.jwt_secret = None;
    })
    .await;
    let mint = |body: Value| {
        let http = app.http.clone();
        let url = app.url("/dev/token");
        async move { http.post(url).json(&body).send().await.unwrap() }
    };
    let response = mint(json!({"name": "alice", "stream": "s1", "moderate": true})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(body["user"], json!({"id": "dev-alice", "name": "alice"}));
    let now = danmaku::domain::now_ms() / 1000;
    let exp = body["expires_at"].as_u64().unwrap();
    assert!((now + 3500..=now + 3600).contains(&exp), "{exp}");
    // The token signs in on the WebSocket and moderates the stream it names.
    let (mut alice, init) = app
        .viewer_with("s1", &format!("access_token={token}"))
        .await;
    assert_eq!(init["type"], "init");
    alice
        .send_json(json!({"type": "comment", "text": "hi", "ref": "1"}))
        .await;
    let ack = alice.next_of("ack").await;
    let id = ack["id"].as_str().unwrap().to_owned();
    let response = app
        .http
        .delete(app.url(&format!("/v1/streams/s1/comments/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    // …and nothing else: without `moderate` the token moderates nothing.
    let plain = mint(json!({"name": "bob"}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    let response = app
        .http
        .post(app.url("/v1/streams/s1/bans"))
        .bearer_auth(plain["token"].as_str().unwrap())
        .json(&json!({"user_id": "dev-alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    for bad in [
        json!({"name": ""}),
        json!({"name": "x".repeat(33)}),
        json!({"name": "a", "moderate": true}),
    ] {
        assert_eq!(mint(bad.clone()).await.status(), 400, "{bad}");
    }
}

/// A pasted token for the same user while connected goes in-band (`refresh`): the socket
/// stays, an expired connection posts again, under the new token's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pasting_a_new_token_while_connected_refreshes_in_band() {
    let app = spawn_app().await;
    let stream = "browser-refresh";
    let (mut watcher, _) = app.viewer(stream).await;
    let driver = Driver::start().await;
    let page = driver.session(1280, 900).await;
    page.client
        .goto(&app.url(&format!("/?stream={stream}")))
        .await
        .unwrap();
    page.until("the page script", "window.__danmaku").await;
    let now = danmaku::domain::now_ms() / 1000;
    let hs256 = || jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    // Within the handshake's 5 s of leeway (made after the browser started), but expired
    // for posting.
    let old = app.sign(
        hs256(),
        json!({"sub": "paste", "name": "Old", "exp": now - 1}),
    );
    let new = app.sign(
        hs256(),
        json!({"sub": "paste", "name": "New", "exp": now + 600}),
    );
    let paste = async |token: &str| {
        page.client
            .find(Locator::Css("#as-token"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let input = page.client.find(Locator::Css("#token")).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(token).await.unwrap();
        page.client
            .find(Locator::Css("#connect"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    };
    paste(&old).await;
    page.until(
        "connected",
        "document.getElementById('conn-state').textContent.startsWith('connected')",
    )
    .await;
    page.post("too late").await;
    page.until(
        "the expiry explained",
        "document.getElementById('post-error').textContent.includes('expired')",
    )
    .await;
    let connects = page.state().await["connects"].clone();
    paste(&new).await;
    page.until(
        "the refresh answered",
        "document.getElementById('post-error').textContent.startsWith('Token refreshed')",
    )
    .await;
    assert_eq!(page.state().await["connects"], connects, "no new socket");
    assert_eq!(page.text_of("#identity").await, "New");
    page.post("back again").await;
    let comment = &watcher.comments(1).await[0];
    assert_eq!(comment["text"], "back again");
    assert_eq!(comment["user"], json!({"id": "paste", "name": "New"}));
    assert!(page.console_errors().await.is_empty());
    page.close().await;
}

/// The README's five lines ("Run it"), run as written in the console of the page (only the
/// port differs): they mint a token, connect with the client library the binary serves, print
/// comments and post; the comment is stored under the minted name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_client_lines_connect_and_post() {
    let app = spawn_app_with(|c| c.dev = true).await;
    let readme = include_str!("../../README.md");
    let start = readme
        .find("these five lines")
        .expect("the README's client lines");
    let block = readme[start..]
        .split("```js\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    assert_eq!(block.lines().count(), 5, "{block}");
    assert!(block.contains("ws://127.0.0.1:8080"), "{block}");
    let script = block.replace("ws://127.0.0.1:8080", &format!("ws://{}", app.addr));
    let driver = Driver::start().await;
    let page = driver.session(1280, 900).await;
    page.client.goto(&app.url("/")).await.unwrap();
    page.until("the page script", "window.__danmaku").await;
    // WebDriver waits for the promise an executed script returns.
    page.js(&format!(
        "return (async () => {{\n{script}\nreturn true; }})();"
    ))
    .await;
    let (status, body) = app.get_json("/v1/streams/demo/comments").await;
    assert_eq!(status, 200);
    let comments = body["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 1, "{body}");
    assert_eq!(comments[0]["text"], "hello");
    assert_eq!(comments[0]["user"]["name"], "alice");
    let errors = page.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    page.close().await;
}
