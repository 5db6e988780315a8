//! Media time (the contract's section 10): `media_ts` accepted within its window, stored and
//! carried everywhere a comment goes; replay by media time, ordered, without deleted or
//! shadowed comments, within its retention and cap, cacheable once final. Each scenario takes
//! two instances: the same app on the embedded broker, two instances on Redis Cluster in
//! `redis_media`.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::toolbox::{ban, call, say};

fn now() -> u64 {
    danmaku::domain::now_ms()
}

/// Posts `text` with `media_ts` over `client` and reads the answer (`ack` or `error`).
pub async fn say_at(client: &mut WsClient, text: &str, media_ts: Value) -> Value {
    client
        .send_json(json!({"type": "comment", "text": text, "media_ts": media_ts}))
        .await;
    loop {
        let frame = client.next_json().await;
        if frame["type"] == "ack" || frame["type"] == "error" {
            return frame;
        }
    }
}

/// `GET …/replay?from&to` (anonymous): status and body.
pub async fn replay(app: &TestApp, s: &str, from: u64, to: u64) -> (u16, Value) {
    let url = app.url(&format!("/v1/streams/{s}/replay?from={from}&to={to}"));
    let response = app.http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn texts(body: &Value) -> Vec<&str> {
    body["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect()
}

/// A comment's `media_ts` reaches a viewer on the other instance, later `init`s, a resume
/// and `GET`; outside its window (or not an integer) it is refused `invalid` and published
/// nowhere.
pub async fn media_ts_travels_with_the_comment(a: &TestApp, b: &TestApp, s: &str) {
    let (mut author, _) = a.user(s, "author").await;
    let (mut viewer, _) = b.viewer(s).await;
    let first = b.post_system(s, "before").await;
    let media = now() - 8_000;
    let ack = say_at(&mut author, "goal!", json!(media)).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seen = viewer.comments(2).await;
    assert_eq!(
        (&seen[1]["text"], &seen[1]["media_ts"]),
        (&json!("goal!"), &json!(media))
    );
    assert_eq!(seen[0].get("media_ts"), None, "absent without one");
    let (_, init) = a.viewer(s).await;
    let last = init["comments"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["media_ts"], media);
    let after = first["id"].as_str().unwrap();
    let (_, resumed) = b.viewer_with(s, &format!("after={after}")).await;
    assert_eq!(resumed["comments"][0]["media_ts"], media, "{resumed}");
    let (_, listed) = b.get_json(&format!("/v1/streams/{s}/comments")).await;
    assert_eq!(listed["comments"][1]["media_ts"], media);

    for bad in [
        json!(now() - 121_000),
        json!(now() + 3_000),
        json!("soon"),
        json!(1.5),
        json!(-1),
    ] {
        let refused = say_at(&mut author, "nope", bad.clone()).await;
        assert_eq!(refused["code"], "invalid", "{bad}: {refused}");
    }
    let response = b
        .post(
            s,
            json!({"kind": "gift", "text": "x", "media_ts": now() - 500_000}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["message"].as_str().unwrap().contains("media_ts"),
        "{error}"
    );
    let gift = b
        .post(
            s,
            json!({"kind": "gift", "text": "rose", "media_ts": now() - 1_000}),
        )
        .await;
    assert_eq!(gift.status(), 201);
    let marker = b.post_system(s, "marker").await;
    let seen = viewer.comments(2).await;
    assert_eq!(seen[0]["text"], "rose", "nothing refused was published");
    assert_eq!(seen[1], marker);
}

/// Replay answers by media time then id, across delays and instances; a deleted, purged or
/// shadowed comment is not in it; bad windows are `400` naming the parameter.
pub async fn replay_orders_by_media_time(a: &TestApp, b: &TestApp, s: &str) {
    let moderator = a.token("streamer", &[s]);
    let (mut late, _) = a.user(s, "late").await;
    let (mut early, _) = b.user(s, "early").await;
    let (mut troll, _) = a.user(s, "troll").await;
    let t = now();
    assert_eq!(
        say_at(&mut late, "late 30s", json!(t - 30_000)).await["type"],
        "ack"
    );
    assert_eq!(
        say_at(&mut early, "early 10s", json!(t - 10_000)).await["type"],
        "ack"
    );
    assert_eq!(
        say_at(&mut late, "late 10s", json!(t - 10_000)).await["type"],
        "ack"
    );
    assert_eq!(say(&mut early, "no media time").await["type"], "ack");
    let doomed = say_at(&mut troll, "spoiler", json!(t - 20_000)).await;
    let purged = say_at(&mut troll, "more", json!(t - 5_000)).await;
    assert_eq!(purged["type"], "ack");
    let (status, body) = replay(b, s, t - 60_000, t + 60_000).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        texts(&body),
        [
            "late 30s",
            "spoiler",
            "early 10s",
            "late 10s",
            "more",
            "no media time"
        ]
    );

    let path = format!(
        "/v1/streams/{s}/comments/{}",
        doomed["id"].as_str().unwrap()
    );
    assert_eq!(
        call(a, reqwest::Method::DELETE, &path, &moderator, None)
            .await
            .0,
        204
    );
    let body = json!({"user_id": "troll", "mode": "shadow", "purge": true});
    assert_eq!(ban(b, s, &moderator, body).await, 204);
    let hidden = say_at(&mut troll, "shadowed", json!(t - 1_000)).await;
    assert_eq!(hidden["type"], "ack");
    let (_, body) = replay(a, s, t - 60_000, t + 60_000).await;
    assert_eq!(
        texts(&body),
        ["late 30s", "early 10s", "late 10s", "no media time"]
    );
    let (_, body) = replay(a, s, t - 10_000, t - 9_999).await;
    assert_eq!(texts(&body), ["early 10s", "late 10s"], "[from, to)");

    for (query, name) in [
        ("to=5", "from"),
        ("from=5", "to"),
        ("from=x&to=5", "from"),
        ("from=10&to=5", "to"),
        ("from=10&to=10", "to"),
        ("from=0&to=600001", "600000"),
    ] {
        let url = a.url(&format!("/v1/streams/{s}/replay?{query}"));
        let response = a.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let error: Value = response.json().await.unwrap();
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(name), "{query}: {message}");
    }
}

/// A window that ended more than two minutes ago is final: `ETag`, `Cache-Control: public`,
/// and `304` for `If-None-Match`; an open one is `no-cache`.
pub async fn a_final_window_is_cacheable(a: &TestApp, s: &str) {
    a.post_system(s, "now").await;
    let open = a
        .http
        .get(a.url(&format!(
            "/v1/streams/{s}/replay?from={}&to={}",
            now() - 1000,
            now() + 1000
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(open.headers()["cache-control"], "no-cache");
    assert!(open.headers().get("etag").is_none());
    let (from, to) = (now() - 600_000, now() - 300_000);
    let url = a.url(&format!("/v1/streams/{s}/replay?from={from}&to={to}"));
    let first = a.http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "public, max-age=3600");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let again = a
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    let other = a
        .http
        .get(&url)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}

/// A well-formed comment with a media time out of its window is refused `invalid` each time,
/// and never counts as a malformed frame: the connection stays open.
#[tokio::test]
async fn bad_media_times_do_not_close_the_connection() {
    let app = spawn_app().await;
    let (mut author, _) = app.user("md-skew", "skewed").await;
    for _ in 0..15 {
        let refused = say_at(&mut author, "my clock is off", json!(now() - 300_000)).await;
        assert_eq!(refused["code"], "invalid", "{refused}");
    }
    assert_eq!(
        say_at(&mut author, "fixed", json!(now())).await["type"],
        "ack"
    );
}

#[tokio::test]
async fn media_ts_is_carried_everywhere() {
    let app = spawn_app().await;
    media_ts_travels_with_the_comment(&app, &app, "md-carried").await;
}

#[tokio::test]
async fn replay_is_ordered_by_media_time() {
    let app = spawn_app().await;
    replay_orders_by_media_time(&app, &app, "md-order").await;
}

#[tokio::test]
async fn final_windows_are_cacheable() {
    let app = spawn_app().await;
    a_final_window_is_cacheable(&app, "md-cache").await;
}

/// On an app with `replay_max_comments = 3` and `replay_retention_s = 2`: the cap drops the
/// oldest media time first; the retention forgets what is older.
pub async fn replay_keeps_its_retention_and_cap(app: &TestApp, s: &str) {
    let (mut user, _) = app.user(s, "u").await;
    let t = now();
    for (text, ago) in [
        ("a", 1_500),
        ("b", 1_400),
        ("c", 300),
        ("d", 200),
        ("e", 100),
    ] {
        assert_eq!(say_at(&mut user, text, json!(t - ago)).await["type"], "ack");
    }
    let (_, body) = replay(app, s, t - 60_000, t + 1_000).await;
    assert_eq!(texts(&body), ["c", "d", "e"], "the cap");
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    let (_, body) = replay(app, s, t - 60_000, t + 1_000).await;
    assert_eq!(texts(&body), Vec::<&str>::new(), "past the retention");
}

/// A small replay: three comments, two seconds.
pub fn small_replay(c: &mut danmaku::Config) {
    c.replay_max_comments = 3;
    c.replay_retention_s = 2;
}

#[tokio::test]
async fn replay_keeps_retention_and_cap() {
    let app = spawn_app_with(small_replay).await;
    replay_keeps_its_retention_and_cap(&app, "md-cap").await;
    let off = spawn_app_with(|c| c.replay_retention_s = 0).await;
    assert_eq!(replay(&off, "md-cap", now() - 1_000, now()).await.0, 404);
}
