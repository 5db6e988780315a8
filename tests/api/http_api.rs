//! The HTTP API of docs/protocol.md section 4 and the error bodies of section 5, over real HTTP
//! against the real app.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// The documented field order of a Comment (docs/protocol.md section 3).
const COMMENT_FIELDS: [&str; 7] = ["id", "stream_id", "kind", "user", "text", "data", "ts"];

/// A status, the raw body and the body parsed as JSON (`Null` when it is not JSON).
struct Answer {
    status: StatusCode,
    content_type: String,
    raw: String,
    json: Value,
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let raw = response.text().await.unwrap();
    let json = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        raw,
        json,
    }
}

/// Any request: `bearer` `None` sends no `Authorization` header; `body` is sent as raw JSON.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut request = app.http.request(method, app.url(path));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned());
    }
    answer(request.send().await.unwrap()).await
}

async fn post_raw(app: &TestApp, stream: &str, body: &str) -> Answer {
    send(
        app,
        Method::POST,
        &format!("/v1/streams/{stream}/comments"),
        Some(SERVICE_TOKEN),
        Some(body),
    )
    .await
}

async fn post_json(app: &TestApp, stream: &str, body: Value) -> Answer {
    answer(app.post(stream, body).await).await
}

async fn ban(app: &TestApp, stream: &str, bearer: Option<&str>, body: Value) -> Answer {
    send(
        app,
        Method::POST,
        &format!("/v1/streams/{stream}/bans"),
        bearer,
        Some(&body.to_string()),
    )
    .await
}

async fn delete_comment(app: &TestApp, stream: &str, id: &str, bearer: Option<&str>) -> Answer {
    send(
        app,
        Method::DELETE,
        &format!("/v1/streams/{stream}/comments/{id}"),
        bearer,
        None,
    )
    .await
}

async fn list(app: &TestApp, stream: &str, query: &str) -> Answer {
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    send(
        app,
        Method::GET,
        &format!("/v1/streams/{stream}/comments{q}"),
        Some(SERVICE_TOKEN),
        None,
    )
    .await
}

/// The comments of a successful `GET .../comments`.
async fn list_ok(app: &TestApp, stream: &str, query: &str) -> Vec<Value> {
    let a = list(app, stream, query).await;
    assert_eq!(a.status, 200, "GET comments?{query}: {}", a.raw);
    let keys: Vec<&String> = a.json.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["comments"], "{}", a.raw);
    a.json["comments"]
        .as_array()
        .expect("comments is an array")
        .clone()
}

async fn stats(app: &TestApp, stream: &str) -> Value {
    let (status, body) = app.get_json(&format!("/v1/streams/{stream}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Asserts the status and that the body is exactly `{"type":"error","code":code,"message":<sentence>}`,
/// in that order, served as JSON.
fn assert_error(a: &Answer, status: u16, code: &str, what: &str) {
    if let Some(problem) = error_mismatch(a, status, code, what) {
        panic!("{problem}");
    }
}

/// Like [`assert_error`] for a table of cases: every mismatch is reported at once.
fn assert_errors(results: &[(String, Answer)], status: u16, code: &str) {
    let problems: Vec<String> = results
        .iter()
        .filter_map(|(what, a)| error_mismatch(a, status, code, what))
        .collect();
    assert!(
        problems.is_empty(),
        "{} of {} cases wrong:\n{}",
        problems.len(),
        results.len(),
        problems.join("\n")
    );
}

fn error_mismatch(a: &Answer, status: u16, code: &str, what: &str) -> Option<String> {
    if a.status.as_u16() != status {
        return Some(format!(
            "{what}: status {} (expected {status}); body {}",
            a.status.as_u16(),
            a.raw
        ));
    }
    if error_body_problem(a, code) {
        return Some(format!(
            "{what}: body {} (content-type {:?}) is not the error object with code {code}",
            a.raw, a.content_type
        ));
    }
    None
}

/// Whether the body is not exactly the error object of docs/protocol.md section 5 with `code`.
fn error_body_problem(a: &Answer, code: &str) -> bool {
    let Some(object) = a.json.as_object() else {
        return true;
    };
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    !(a.content_type.starts_with("application/json")
        && keys == ["type", "code", "message"]
        && a.json["type"] == "error"
        && a.json["code"] == code
        && a.json["message"].as_str().is_some_and(|m| !m.trim().is_empty())
        // Raw order too, not only the parsed map's.
        && a.raw.starts_with(r#"{"type":"error","code":"#))
}

/// `<ms>-<seq>` as numbers.
fn parse_id(id: &Value) -> (u64, u64) {
    let s = id
        .as_str()
        .unwrap_or_else(|| panic!("id is not a string: {id}"));
    let (ms, seq) = s
        .split_once('-')
        .unwrap_or_else(|| panic!("id {s} is not <ms>-<seq>"));
    assert!(
        !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()),
        "id {s}"
    );
    assert!(
        !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()),
        "id {s}"
    );
    (ms.parse().unwrap(), seq.parse().unwrap())
}

fn ids(comments: &[Value]) -> Vec<String> {
    comments
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

fn texts(comments: &[Value]) -> Vec<String> {
    comments
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_ascending(comments: &[Value]) {
    let parsed: Vec<(u64, u64)> = comments.iter().map(|c| parse_id(&c["id"])).collect();
    assert!(
        parsed.windows(2).all(|w| w[0] < w[1]),
        "not oldest first: {parsed:?}"
    );
}

fn now_ms() -> u64 {
    danmaku::domain::now_ms()
}

/// A Comment object in the documented shape and field order.
fn assert_comment_shape(c: &Value, stream: &str, kind: &str) {
    let keys: Vec<&str> = c
        .as_object()
        .expect("a comment object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, COMMENT_FIELDS, "{c}");
    assert_eq!(c["stream_id"], stream, "{c}");
    assert_eq!(c["kind"], kind, "{c}");
    assert!(c["text"].is_string(), "{c}");
    assert!(c["ts"].is_u64(), "{c}");
    parse_id(&c["id"]);
}

fn user_comment(user: &str, text: &str) -> Value {
    json!({"kind": "user", "text": text, "user": {"id": user, "name": format!("{user}-name")}})
}

// ---------------------------------------------------------------------------------------------
// POST /v1/streams/{id}/comments
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn post_comment_answers_201_with_the_comment_in_the_documented_shape_and_order() {
    let app = spawn_app().await;
    let before = now_ms();
    let a = post_json(
        &app,
        "post-shape",
        json!({"kind": "system", "text": "welcome"}),
    )
    .await;
    let after = now_ms();
    assert_eq!(a.status, 201, "{}", a.raw);
    assert!(
        a.content_type.starts_with("application/json"),
        "{}",
        a.content_type
    );

    let top: Vec<&String> = a.json.as_object().unwrap().keys().collect();
    assert_eq!(top, ["comment"], "{}", a.raw);
    let c = &a.json["comment"];
    assert_comment_shape(c, "post-shape", "system");
    assert_eq!(c["text"], "welcome");
    assert_eq!(c["user"], Value::Null);
    assert_eq!(c["data"], Value::Null);

    // Field order in the raw bytes, not only in the parsed map.
    assert!(a.raw.starts_with(r#"{"comment":{"id":""#), "{}", a.raw);
    let positions: Vec<usize> = COMMENT_FIELDS
        .iter()
        .map(|f| {
            a.raw
                .find(&format!("\"{f}\":"))
                .unwrap_or_else(|| panic!("no {f} in {}", a.raw))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "field order {positions:?} in {}",
        a.raw
    );

    // id is <ms>-<seq>, ts the publish time in epoch ms.
    let (ms, _seq) = parse_id(&c["id"]);
    let ts = c["ts"].as_u64().unwrap();
    assert!(
        before.saturating_sub(1000) <= ts && ts <= after + 1000,
        "ts {ts} not in [{before}, {after}]"
    );
    assert!(
        before.saturating_sub(1000) <= ms && ms <= after + 1000,
        "id ms {ms} not in [{before}, {after}]"
    );

    // A second comment's id sorts after the first's as (ms, seq).
    let second = app.post_system("post-shape", "again").await;
    assert!(
        parse_id(&second["id"]) > parse_id(&c["id"]),
        "{} then {}",
        c["id"],
        second["id"]
    );
}

#[tokio::test]
async fn post_comment_accepts_every_kind() {
    let app = spawn_app().await;
    let stream = "post-kinds";

    let a = post_json(&app, stream, user_comment("u1", "hello")).await;
    assert_eq!(a.status, 201, "{}", a.raw);
    let c = &a.json["comment"];
    assert_comment_shape(c, stream, "user");
    assert_eq!(c["user"], json!({"id": "u1", "name": "u1-name"}));
    assert_eq!(c["text"], "hello");
    assert_eq!(c["data"], Value::Null, "user comments carry data null");
    assert!(a.raw.contains(r#""data":null"#), "{}", a.raw);

    for kind in ["gift", "follow", "mission", "system"] {
        let data = json!({"item": "rose", "amount": 3, "nested": {"k": [1, 2]}});
        let a = post_json(
            &app,
            stream,
            json!({"kind": kind, "text": format!("a {kind}"), "data": data}),
        )
        .await;
        assert_eq!(a.status, 201, "{kind}: {}", a.raw);
        let c = &a.json["comment"];
        assert_comment_shape(c, stream, kind);
        assert_eq!(c["data"], data, "{kind}");
        assert_eq!(c["user"], Value::Null, "{kind}");
        assert_eq!(c["text"], format!("a {kind}"));
    }

    // A system comment may also go without data (null).
    let a = post_json(
        &app,
        stream,
        json!({"kind": "gift", "text": "no data", "data": null}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.raw);
    assert_eq!(a.json["comment"]["data"], Value::Null);

    let listed = list_ok(&app, stream, "").await;
    let kinds: Vec<&str> = listed.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["user", "gift", "follow", "mission", "system", "gift"]
    );
}

#[tokio::test]
async fn a_repeated_idempotency_key_answers_200_with_the_first_comment_and_publishes_nothing() {
    let app = spawn_app().await;
    let stream = "post-idem";
    let (mut viewer, _) = app.viewer(stream).await;

    let first = post_json(&app, stream, json!({"kind": "gift", "text": "a rose", "data": {"item": "rose"}, "idempotency_key": "k-1"})).await;
    assert_eq!(first.status, 201, "{}", first.raw);

    // The same key again, even with another body: 200 and the first comment, byte for byte.
    for body in [
        json!({"kind": "gift", "text": "a rose", "data": {"item": "rose"}, "idempotency_key": "k-1"}),
        json!({"kind": "gift", "text": "two roses", "data": {"item": "rose", "amount": 2}, "idempotency_key": "k-1"}),
    ] {
        let again = post_json(&app, stream, body).await;
        assert_eq!(again.status, 200, "{}", again.raw);
        assert_eq!(again.json, first.json);
        assert_eq!(again.raw, first.raw);
    }

    let received = viewer.comments(1).await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0], first.json["comment"]);
    viewer.quiet_for(Duration::from_millis(400)).await;

    assert_eq!(stats(&app, stream).await["comment_count"], 1);
    assert_eq!(
        list_ok(&app, stream, "").await,
        vec![first.json["comment"].clone()]
    );
    assert_eq!(
        app.metric("danmaku_comments_published_total{kind=\"gift\"}")
            .await,
        1.0
    );

    // Another key publishes again; keys are per stream.
    let other = post_json(
        &app,
        stream,
        json!({"kind": "system", "text": "x", "idempotency_key": "k-2"}),
    )
    .await;
    assert_eq!(other.status, 201, "{}", other.raw);
    let elsewhere = post_json(
        &app,
        "post-idem-other",
        json!({"kind": "system", "text": "x", "idempotency_key": "k-1"}),
    )
    .await;
    assert_eq!(elsewhere.status, 201, "{}", elsewhere.raw);
}

#[tokio::test]
async fn post_comment_needs_a_service_token() {
    let app = spawn_app().await;
    let body = r#"{"kind":"system","text":"hi"}"#;
    let path = "/v1/streams/post-auth/comments";

    let a = send(&app, Method::POST, path, None, Some(body)).await;
    assert_error(&a, 401, "unauthorized", "no bearer");

    let a = send(&app, Method::POST, path, Some("not-the-token"), Some(body)).await;
    assert_error(&a, 403, "forbidden", "wrong bearer");

    // A viewer JWT is no service token, not even a moderator's.
    let jwt = app.token("mod", &["post-auth"]);
    let a = send(&app, Method::POST, path, Some(&jwt), Some(body)).await;
    assert_error(&a, 403, "forbidden", "viewer jwt");

    // Nothing was published.
    assert_eq!(stats(&app, "post-auth").await["comment_count"], 0);
    assert!(list_ok(&app, "post-auth", "").await.is_empty());
}

#[tokio::test]
async fn post_comment_refuses_invalid_comments_with_400_invalid() {
    let app = spawn_app().await;
    let stream = "post-invalid";
    let big = "x".repeat(2100);
    let cases: Vec<(&str, Value)> = vec![
        ("empty text", json!({"kind": "system", "text": ""})),
        (
            "whitespace text",
            json!({"kind": "system", "text": " \t\u{3000} "}),
        ),
        ("newline", json!({"kind": "system", "text": "a\nb"})),
        ("bell", json!({"kind": "system", "text": "bell\u{7}"})),
        ("escape", json!({"kind": "system", "text": "\u{1b}[31mred"})),
        ("nul", json!({"kind": "system", "text": "nul\u{0}"})),
        (
            "control chars in a user comment",
            json!({"kind": "user", "text": "a\rb", "user": {"id": "u1", "name": "U"}}),
        ),
        (
            "data an array",
            json!({"kind": "gift", "text": "hi", "data": [1, 2]}),
        ),
        (
            "data a string",
            json!({"kind": "gift", "text": "hi", "data": "rose"}),
        ),
        (
            "data a number",
            json!({"kind": "gift", "text": "hi", "data": 3}),
        ),
        (
            "data over 2 KiB",
            json!({"kind": "gift", "text": "hi", "data": {"blob": big}}),
        ),
        (
            "user comment without user",
            json!({"kind": "user", "text": "hi"}),
        ),
        (
            "user comment with null user",
            json!({"kind": "user", "text": "hi", "user": null}),
        ),
        (
            "user comment with data",
            json!({"kind": "user", "text": "hi", "user": {"id": "u1", "name": "U"}, "data": {"a": 1}}),
        ),
        (
            "user with empty id",
            json!({"kind": "user", "text": "hi", "user": {"id": "", "name": "U"}}),
        ),
        (
            "user with blank name",
            json!({"kind": "user", "text": "hi", "user": {"id": "u1", "name": "  "}}),
        ),
        (
            "empty idempotency key",
            json!({"kind": "system", "text": "hi", "idempotency_key": ""}),
        ),
    ];
    let mut results = Vec::new();
    for (what, body) in cases {
        results.push((what.to_owned(), post_json(&app, stream, body).await));
    }
    // Bad stream ids.
    for bad in ["a.b", &"s".repeat(65), "a%20b", "%C3%BC", "a%2Fb"] {
        results.push((
            format!("stream id {bad:?}"),
            post_raw(&app, bad, r#"{"kind":"system","text":"hi"}"#).await,
        ));
    }
    assert_errors(&results, 400, "invalid");

    // 64 characters is the longest allowed id.
    let a = post_raw(&app, &"s".repeat(64), r#"{"kind":"system","text":"hi"}"#).await;
    assert_eq!(a.status, 201, "{}", a.raw);

    // Exactly 2048 bytes of data is fine.
    let data = json!({"blob": "x".repeat(2048 - r#"{"blob":""}"#.len())});
    assert_eq!(data.to_string().len(), 2048);
    let a = post_json(
        &app,
        stream,
        json!({"kind": "gift", "text": "hi", "data": data}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.raw);

    // Nothing refused was published.
    assert_eq!(stats(&app, stream).await["comment_count"], 1);
    assert_eq!(
        app.metric("danmaku_comments_published_total{kind=\"user\"}")
            .await,
        0.0
    );
}

/// Bodies that are not JSON, or JSON of the wrong shape, are `400 invalid` like every other
/// invalid comment (docs/protocol.md sections 4 and 5).
#[tokio::test]
async fn post_comment_refuses_malformed_bodies_with_400_invalid() {
    let app = spawn_app().await;
    let stream = "post-malformed";
    let cases: Vec<(&str, String)> = vec![
        ("bad JSON", r#"{"kind":"system","text":"#.into()),
        ("not JSON at all", "hello".into()),
        ("empty body", String::new()),
        ("not an object", r#"["system","hi"]"#.into()),
        (
            "an array of every field",
            r#"["system","hi",null,null,null]"#.into(),
        ),
        (
            "unknown kind",
            json!({"kind": "shout", "text": "hi"}).to_string(),
        ),
        (
            "kind in capitals",
            json!({"kind": "SYSTEM", "text": "hi"}).to_string(),
        ),
        ("missing kind", json!({"text": "hi"}).to_string()),
        ("missing text", json!({"kind": "system"}).to_string()),
        (
            "text not a string",
            json!({"kind": "system", "text": 5}).to_string(),
        ),
        (
            "user without id",
            json!({"kind": "user", "text": "hi", "user": {"name": "U"}}).to_string(),
        ),
        (
            "idempotency key not a string",
            json!({"kind": "system", "text": "hi", "idempotency_key": 7}).to_string(),
        ),
    ];
    let mut results = Vec::new();
    for (what, body) in &cases {
        results.push((what.to_string(), post_raw(&app, stream, body).await));
    }
    assert_errors(&results, 400, "invalid");
    assert_eq!(stats(&app, stream).await["comment_count"], 0);
}

/// Requests the JSON extractor refuses before looking at the body still get the error body.
#[tokio::test]
async fn post_comment_without_json_content_type_or_too_big_gets_the_error_body() {
    let app = spawn_app().await;
    let path = "/v1/streams/post-content-type/comments";
    let a = answer(
        app.http
            .post(app.url(path))
            .bearer_auth(SERVICE_TOKEN)
            .body(r#"{"kind":"system","text":"hi"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        a.status.is_client_error(),
        "no content type: {} {}",
        a.status,
        a.raw
    );
    assert!(
        !error_body_problem(&a, "invalid"),
        "no content type: {}",
        a.raw
    );

    let huge =
        json!({"kind": "gift", "text": "hi", "data": {"blob": "x".repeat(64 * 1024)}}).to_string();
    let a = post_raw(&app, "post-content-type", &huge).await;
    assert!(
        a.status.is_client_error(),
        "64 KiB body: {} {}",
        a.status,
        a.raw
    );
    assert!(!error_body_problem(&a, "invalid"), "64 KiB body: {}", a.raw);
    assert_eq!(stats(&app, "post-content-type").await["comment_count"], 0);
}

#[tokio::test]
async fn post_comment_counts_characters_not_bytes() {
    let app = spawn_app().await;
    let stream = "post-length";

    for (what, text) in [
        ("201 ascii", "x".repeat(201)),
        ("201 kana", "あ".repeat(201)),
        ("201 emoji", "🎉".repeat(201)),
    ] {
        let a = post_json(&app, stream, json!({"kind": "system", "text": text})).await;
        assert_error(&a, 400, "too_long", what);
    }
    for (what, text) in [
        ("200 ascii", "x".repeat(200)),
        ("200 kana", "あ".repeat(200)),
        ("200 emoji", "🎉".repeat(200)),
    ] {
        let a = post_json(&app, stream, json!({"kind": "system", "text": text})).await;
        assert_eq!(a.status, 201, "{what}: {}", a.raw);
        assert_eq!(a.json["comment"]["text"], text, "{what}");
    }
    let a = post_json(&app, stream, user_comment("u1", &"字".repeat(201))).await;
    assert_error(&a, 400, "too_long", "201 chars, user comment");

    // The limit is DANMAKU_MAX_COMMENT_CHARS.
    let small = spawn_app_with(|c| c.max_comment_chars = 3).await;
    let a = post_json(&small, stream, json!({"kind": "system", "text": "abcd"})).await;
    assert_error(&a, 400, "too_long", "4 of 3");
    let a = post_json(&small, stream, json!({"kind": "system", "text": "abc"})).await;
    assert_eq!(a.status, 201, "{}", a.raw);
}

// ---------------------------------------------------------------------------------------------
// GET /v1/streams/{id}/comments
// ---------------------------------------------------------------------------------------------

async fn post_many(app: &TestApp, stream: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(app.post_system(stream, &format!("c{i}")).await);
    }
    out
}

#[tokio::test]
async fn get_comments_returns_the_newest_50_oldest_first_by_default() {
    let app = spawn_app().await;
    let stream = "get-default";
    assert!(
        list_ok(&app, stream, "").await.is_empty(),
        "an unknown stream has no comments"
    );

    let posted = post_many(&app, stream, 60).await;
    let got = list_ok(&app, stream, "").await;
    assert_eq!(got.len(), 50);
    assert_ascending(&got);
    assert_eq!(got, posted[10..]);
    assert_eq!(texts(&got).first().map(String::as_str), Some("c10"));
    assert_eq!(texts(&got).last().map(String::as_str), Some("c59"));
    for c in &got {
        assert_comment_shape(c, stream, "system");
    }
}

#[tokio::test]
async fn get_comments_limit_is_1_to_500() {
    let app = spawn_app().await;
    let stream = "get-limit";
    let posted = post_many(&app, stream, 60).await;

    for bad in ["0", "501", "x", "-1", "", "1.5", "99999999999999999999999"] {
        let a = list(&app, stream, &format!("limit={bad}")).await;
        assert_error(&a, 400, "invalid", &format!("limit={bad}"));
    }

    assert_eq!(list_ok(&app, stream, "limit=1").await, posted[59..]);
    assert_eq!(list_ok(&app, stream, "limit=7").await, posted[53..]);
    assert_eq!(list_ok(&app, stream, "limit=500").await, posted);
    assert_eq!(list_ok(&app, stream, "limit=60").await, posted);
}

#[tokio::test]
async fn get_comments_after_returns_the_oldest_limit_newer_than_the_id() {
    let app = spawn_app().await;
    let stream = "get-after";
    let posted = post_many(&app, stream, 60).await;
    let all = ids(&posted);

    let page = list_ok(&app, stream, &format!("after={}&limit=2", all[3])).await;
    assert_eq!(ids(&page), all[4..6]);

    // Without limit: the default 50, the oldest ones after the id (not the newest).
    let page = list_ok(&app, stream, &format!("after={}", all[0])).await;
    assert_eq!(ids(&page), all[1..51]);
    assert_ascending(&page);

    let page = list_ok(&app, stream, &format!("after={}&limit=500", all[0])).await;
    assert_eq!(ids(&page), all[1..]);

    // Paging forward with after = the last id seen visits every comment once.
    let mut seen = Vec::new();
    let mut cursor = "0-0".to_owned();
    loop {
        let page = list_ok(&app, stream, &format!("after={cursor}&limit=7")).await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        cursor = page.last().unwrap()["id"].as_str().unwrap().to_owned();
        seen.extend(ids(&page));
    }
    assert_eq!(seen, all);

    // The newest id: nothing newer. An id past the end: nothing either.
    assert!(
        list_ok(&app, stream, &format!("after={}", all[59]))
            .await
            .is_empty()
    );
    assert!(
        list_ok(&app, stream, "after=99999999999999-0")
            .await
            .is_empty()
    );
    // An id between two comments (not one of them) works as a position.
    let (ms, seq) = parse_id(&posted[9]["id"]);
    let page = list_ok(
        &app,
        stream,
        &format!("after={ms}-{}&limit=1", seq + 1_000_000),
    )
    .await;
    let expected: Vec<Value> = posted
        .iter()
        .filter(|c| parse_id(&c["id"]) > (ms, seq + 1_000_000))
        .take(1)
        .cloned()
        .collect();
    assert_eq!(page, expected);

    for bad in [
        "abc",
        "1",
        "1-",
        "-1",
        "1-2-3",
        "a-1",
        "",
        "1.5-0",
        "99999999999999999999999-0",
    ] {
        let a = list(&app, stream, &format!("after={bad}")).await;
        assert_error(&a, 400, "invalid", &format!("after={bad}"));
    }
}

#[tokio::test]
async fn get_comments_keeps_only_danmaku_history_len() {
    // DANMAKU_INIT_COMMENTS must not exceed DANMAKU_HISTORY_LEN (config validation).
    let app = spawn_app_with(|c| {
        c.history_len = 5;
        c.init_comments = 5;
    })
    .await;
    let stream = "get-history";
    let posted = post_many(&app, stream, 8).await;

    assert_eq!(list_ok(&app, stream, "").await, posted[3..]);
    assert_eq!(list_ok(&app, stream, "limit=500").await, posted[3..]);
    assert_eq!(list_ok(&app, stream, "limit=2").await, posted[6..]);
    let oldest = posted[0]["id"].as_str().unwrap();
    assert_eq!(
        list_ok(&app, stream, &format!("after={oldest}")).await,
        posted[3..]
    );
    // comment_count counts every comment, not only the retained ones.
    assert_eq!(stats(&app, stream).await["comment_count"], 8);
}

#[tokio::test]
async fn get_comments_needs_a_service_token_and_a_valid_stream_id() {
    let app = spawn_app().await;
    let path = "/v1/streams/get-auth/comments";
    assert_error(
        &send(&app, Method::GET, path, None, None).await,
        401,
        "unauthorized",
        "no bearer",
    );
    assert_error(
        &send(&app, Method::GET, path, Some("nope"), None).await,
        403,
        "forbidden",
        "wrong bearer",
    );
    let a = send(
        &app,
        Method::GET,
        "/v1/streams/a.b/comments",
        Some(SERVICE_TOKEN),
        None,
    )
    .await;
    assert_error(&a, 400, "invalid", "bad stream id");
    let long = format!("/v1/streams/{}/comments", "s".repeat(65));
    assert_error(
        &send(&app, Method::GET, &long, Some(SERVICE_TOKEN), None).await,
        400,
        "invalid",
        "65 chars",
    );
}

// ---------------------------------------------------------------------------------------------
// DELETE /v1/streams/{id}/comments/{comment_id}
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn delete_comment_removes_it_everywhere() {
    let app = spawn_app().await;
    let stream = "del-main";
    let (mut viewer, _) = app.viewer(stream).await;
    let doomed = app.post_system(stream, "spam").await;
    let kept = app.post_system(stream, "fine").await;
    assert_eq!(viewer.comments(2).await, vec![doomed.clone(), kept.clone()]);

    let id = doomed["id"].as_str().unwrap();
    let a = delete_comment(&app, stream, id, Some(SERVICE_TOKEN)).await;
    assert_eq!(a.status, 204, "{}", a.raw);
    assert!(a.raw.is_empty(), "204 has no body: {}", a.raw);

    let frame = viewer.next_of("deleted").await;
    assert_eq!(frame, json!({"type": "deleted", "ids": [id]}));

    assert_eq!(list_ok(&app, stream, "").await, vec![kept.clone()]);
    assert_eq!(list_ok(&app, stream, "after=0-0").await, vec![kept.clone()]);
    let (_late, init) = app.viewer(stream).await;
    assert_eq!(init["comments"], json!([kept]));
    // The comment count is of comments posted; the stream stats still answer.
    assert_eq!(stats(&app, stream).await["stream_id"], stream);

    // Gone: a second delete is 404.
    let a = delete_comment(&app, stream, id, Some(SERVICE_TOKEN)).await;
    assert_error(&a, 404, "not_found", "deleted twice");
}

#[tokio::test]
async fn delete_comment_refuses_unknown_and_malformed_ids() {
    let app = spawn_app().await;
    let stream = "del-ids";
    let c = app.post_system(stream, "x").await;
    let (ms, seq) = parse_id(&c["id"]);

    let a = delete_comment(
        &app,
        stream,
        &format!("{ms}-{}", seq + 1),
        Some(SERVICE_TOKEN),
    )
    .await;
    assert_error(&a, 404, "not_found", "unknown id");
    let a = delete_comment(&app, "del-ids-nothing-here", "1-0", Some(SERVICE_TOKEN)).await;
    assert_error(&a, 404, "not_found", "unknown stream");
    // The same id on another stream is another comment.
    let a = delete_comment(
        &app,
        "del-ids-other",
        c["id"].as_str().unwrap(),
        Some(SERVICE_TOKEN),
    )
    .await;
    assert_error(&a, 404, "not_found", "other stream");

    for bad in [
        "abc",
        "1",
        "1-",
        "-1",
        "1-2-3",
        "x-0",
        "99999999999999999999999-0",
    ] {
        let a = delete_comment(&app, stream, bad, Some(SERVICE_TOKEN)).await;
        assert_error(&a, 400, "invalid", &format!("id {bad:?}"));
    }
    let a = delete_comment(&app, "a.b", "1-0", Some(SERVICE_TOKEN)).await;
    assert_error(&a, 400, "invalid", "bad stream id");

    assert_eq!(list_ok(&app, stream, "").await, vec![c]);
}

#[tokio::test]
async fn delete_comment_accepts_a_moderator_jwt_of_that_stream_only() {
    let app = spawn_app().await;
    let stream = "del-auth";
    let a1 = app.post_system(stream, "one").await;
    let a2 = app.post_system(stream, "two").await;
    let id1 = a1["id"].as_str().unwrap();

    let a = delete_comment(&app, stream, id1, None).await;
    assert_error(&a, 401, "unauthorized", "no bearer");
    let a = delete_comment(&app, stream, id1, Some("wrong")).await;
    assert_error(&a, 403, "forbidden", "wrong bearer");
    let plain = app.token("viewer", &[]);
    let a = delete_comment(&app, stream, id1, Some(&plain)).await;
    assert_error(&a, 403, "forbidden", "jwt without mod");
    let elsewhere = app.token("other-streamer", &["del-auth-other"]);
    let a = delete_comment(&app, stream, id1, Some(&elsewhere)).await;
    assert_error(&a, 403, "forbidden", "jwt moderating another stream");
    let expired = app.token_expiring("streamer", &[stream], -120);
    let a = delete_comment(&app, stream, id1, Some(&expired)).await;
    assert!(
        a.status == 401 || a.status == 403,
        "expired moderator token: {} {}",
        a.status,
        a.raw
    );
    assert_eq!(
        list_ok(&app, stream, "").await.len(),
        2,
        "nothing deleted yet"
    );

    let moderator = app.token("streamer", &["x", stream]);
    let a = delete_comment(&app, stream, id1, Some(&moderator)).await;
    assert_eq!(a.status, 204, "{}", a.raw);
    assert_eq!(list_ok(&app, stream, "").await, vec![a2]);
}

// ---------------------------------------------------------------------------------------------
// POST /v1/streams/{id}/bans
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_ban_refuses_the_users_comments_and_handshakes() {
    let app = spawn_app().await;
    let stream = "ban-main";

    let a = ban(
        &app,
        stream,
        Some(SERVICE_TOKEN),
        json!({"user_id": "troll", "seconds": 600}),
    )
    .await;
    assert_eq!(a.status, 204, "{}", a.raw);
    assert!(a.raw.is_empty(), "{}", a.raw);

    let a = post_json(&app, stream, user_comment("troll", "hi")).await;
    assert_error(&a, 403, "banned", "banned user's comment over HTTP");
    let (status, body) = app
        .refused(
            stream,
            &format!("access_token={}", app.token("troll", &[])),
            &[],
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["code"], "banned", "{body}");
    assert!(body["message"].is_string(), "{body}");

    // Only that user, only that stream.
    let a = post_json(&app, stream, user_comment("nice", "hi")).await;
    assert_eq!(a.status, 201, "{}", a.raw);
    let a = post_json(&app, "ban-main-other", user_comment("troll", "hi")).await;
    assert_eq!(a.status, 201, "{}", a.raw);
    let (_ok, _) = app.user("ban-main-other", "troll").await;
    let (_ok, _) = app.user(stream, "nice").await;
    // Anonymous viewers are unaffected.
    let (_anon, _) = app.viewer(stream).await;

    assert_eq!(stats(&app, stream).await["comment_count"], 1);
}

#[tokio::test]
async fn bans_accept_a_moderator_jwt_of_that_stream_only() {
    let app = spawn_app().await;
    let stream = "ban-auth";
    let body = json!({"user_id": "troll"});

    assert_error(
        &ban(&app, stream, None, body.clone()).await,
        401,
        "unauthorized",
        "no bearer",
    );
    assert_error(
        &ban(&app, stream, Some("wrong"), body.clone()).await,
        403,
        "forbidden",
        "wrong bearer",
    );
    let plain = app.token("viewer", &[]);
    assert_error(
        &ban(&app, stream, Some(&plain), body.clone()).await,
        403,
        "forbidden",
        "jwt without mod",
    );
    let elsewhere = app.token("other", &["ban-auth-other"]);
    assert_error(
        &ban(&app, stream, Some(&elsewhere), body.clone()).await,
        403,
        "forbidden",
        "mod of another stream",
    );
    let a = post_json(&app, stream, user_comment("troll", "still here")).await;
    assert_eq!(a.status, 201, "not banned yet: {}", a.raw);

    // No seconds: banned (for the longest ban).
    let moderator = app.token("streamer", &[stream]);
    let a = ban(&app, stream, Some(&moderator), body).await;
    assert_eq!(a.status, 204, "{}", a.raw);
    assert_error(
        &post_json(&app, stream, user_comment("troll", "hi")).await,
        403,
        "banned",
        "after a mod's ban",
    );
}

#[tokio::test]
async fn bans_refuse_bad_seconds_and_user_ids() {
    let app = spawn_app().await;
    let stream = "ban-invalid";
    let cases: Vec<(&str, Value)> = vec![
        ("seconds 0", json!({"user_id": "u", "seconds": 0})),
        (
            "seconds over 30 days",
            json!({"user_id": "u", "seconds": 2_592_001}),
        ),
        (
            "seconds far over",
            json!({"user_id": "u", "seconds": u64::MAX}),
        ),
        ("empty user_id", json!({"user_id": ""})),
        (
            "user_id of 129 characters",
            json!({"user_id": "u".repeat(129)}),
        ),
    ];
    let mut results = Vec::new();
    for (what, body) in cases {
        results.push((
            what.to_owned(),
            ban(&app, stream, Some(SERVICE_TOKEN), body).await,
        ));
    }
    results.push((
        "bad stream id".into(),
        ban(&app, "a.b", Some(SERVICE_TOKEN), json!({"user_id": "u"})).await,
    ));
    results.push((
        "bad JSON".into(),
        send(
            &app,
            Method::POST,
            &format!("/v1/streams/{stream}/bans"),
            Some(SERVICE_TOKEN),
            Some("{"),
        )
        .await,
    ));
    assert_errors(&results, 400, "invalid");

    // Nobody got banned by a refused request.
    let a = post_json(&app, stream, user_comment("u", "hi")).await;
    assert_eq!(a.status, 201, "{}", a.raw);

    // The bounds themselves are accepted.
    for seconds in [1, 2_592_000] {
        let a = ban(
            &app,
            stream,
            Some(SERVICE_TOKEN),
            json!({"user_id": format!("u{seconds}"), "seconds": seconds}),
        )
        .await;
        assert_eq!(a.status, 204, "seconds {seconds}: {}", a.raw);
    }
}

/// Well-formed JSON of the wrong shape is `400 invalid` too.
#[tokio::test]
async fn bans_refuse_malformed_bodies_with_400_invalid() {
    let app = spawn_app().await;
    let stream = "ban-malformed";
    let cases: Vec<(&str, Value)> = vec![
        ("missing user_id", json!({"seconds": 60})),
        ("user_id a number", json!({"user_id": 7})),
        ("seconds negative", json!({"user_id": "u", "seconds": -1})),
        ("seconds a string", json!({"user_id": "u", "seconds": "60"})),
        (
            "seconds fractional",
            json!({"user_id": "u", "seconds": 1.5}),
        ),
        ("not an object", json!(["u", 60])),
    ];
    let mut results = Vec::new();
    for (what, body) in cases {
        results.push((
            what.to_owned(),
            ban(&app, stream, Some(SERVICE_TOKEN), body).await,
        ));
    }
    assert_errors(&results, 400, "invalid");
    let a = post_json(&app, stream, user_comment("u", "hi")).await;
    assert_eq!(a.status, 201, "{}", a.raw);
}

#[tokio::test]
async fn a_one_second_ban_expires() {
    let app = spawn_app().await;
    let stream = "ban-expiry";
    let a = ban(
        &app,
        stream,
        Some(SERVICE_TOKEN),
        json!({"user_id": "brief", "seconds": 1}),
    )
    .await;
    assert_eq!(a.status, 204, "{}", a.raw);
    assert_error(
        &post_json(&app, stream, user_comment("brief", "hi")).await,
        403,
        "banned",
        "during the ban",
    );

    eventually("the one-second ban to expire for comments", || async {
        let a = post_json(&app, stream, user_comment("brief", "back")).await;
        match a.status.as_u16() {
            201 => true,
            403 => {
                assert_eq!(a.json["code"], "banned", "{}", a.raw);
                false
            }
            other => panic!("unexpected {other}: {}", a.raw),
        }
    })
    .await;
    let (_ws, _) = app.user(stream, "brief").await;
    assert_eq!(stats(&app, stream).await["comment_count"], 1);
}

// ---------------------------------------------------------------------------------------------
// GET /v1/streams/{id}
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stream_stats_count_viewers_peak_and_comments() {
    let app = spawn_app().await;
    let stream = "stats-main";

    let (mut first, _) = app.viewer(stream).await;
    let (_second, _) = app.user(stream, "u2").await;
    eventually("two viewers", || async {
        stats(&app, stream).await["viewer_count"] == 2
    })
    .await;

    for i in 0..3 {
        app.post_system(stream, &format!("s{i}")).await;
    }
    let a = post_json(&app, stream, user_comment("u9", "hey")).await;
    assert_eq!(a.status, 201);

    first.ws.close(None).await.unwrap();
    eventually("one viewer after a close", || async {
        stats(&app, stream).await["viewer_count"] == 1
    })
    .await;

    let (status, body) = app.get_json(&format!("/v1/streams/{stream}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"stream_id": stream, "viewer_count": 1, "peak_viewer_count": 2, "comment_count": 4})
    );
    let a = send(
        &app,
        Method::GET,
        &format!("/v1/streams/{stream}"),
        Some(SERVICE_TOKEN),
        None,
    )
    .await;
    let keys: Vec<&str> = a
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "stream_id",
            "viewer_count",
            "peak_viewer_count",
            "comment_count"
        ],
        "{}",
        a.raw
    );
}

#[tokio::test]
async fn stream_stats_of_an_unknown_stream_are_zero_and_need_a_service_token() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/v1/streams/stats-nobody").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"stream_id": "stats-nobody", "viewer_count": 0, "peak_viewer_count": 0, "comment_count": 0})
    );

    let path = "/v1/streams/stats-nobody";
    assert_error(
        &send(&app, Method::GET, path, None, None).await,
        401,
        "unauthorized",
        "no bearer",
    );
    assert_error(
        &send(&app, Method::GET, path, Some("wrong"), None).await,
        403,
        "forbidden",
        "wrong bearer",
    );
    let jwt = app.token("streamer", &["stats-nobody"]);
    assert_error(
        &send(&app, Method::GET, path, Some(&jwt), None).await,
        403,
        "forbidden",
        "viewer jwt",
    );
    let a = send(
        &app,
        Method::GET,
        "/v1/streams/a.b",
        Some(SERVICE_TOKEN),
        None,
    )
    .await;
    assert_error(&a, 400, "invalid", "bad stream id");
}

// ---------------------------------------------------------------------------------------------
// Health, version, metrics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn livez_and_readyz_answer_200() {
    // Threshold 1.0: a busy test machine must not make the instance "not ready".
    let app = spawn_app_with(|c| c.cpu_ready_threshold = 1.0).await;
    let a = send(&app, Method::GET, "/livez", None, None).await;
    assert_eq!(a.status, 200, "{}", a.raw);

    let a = send(&app, Method::GET, "/readyz", None, None).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(a.json, json!({"ready": true}));
}

#[tokio::test]
async fn version_reports_version_slot_and_pod() {
    let app = spawn_app().await;
    let a = send(&app, Method::GET, "/version", None, None).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(
        a.json,
        json!({"version": env!("CARGO_PKG_VERSION"), "slot": "blue", "pod": "test-pod"})
    );

    let green = spawn_app_with(|c| {
        c.slot = danmaku::config::Slot::Green;
        c.pod_name = "green-pod-1".into();
    })
    .await;
    let a = send(&green, Method::GET, "/version", None, None).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(a.json["slot"], "green");
    assert_eq!(a.json["pod"], "green-pod-1");
    assert_eq!(a.json["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn metrics_expose_the_instruments_in_prometheus_text() {
    let app = spawn_app_with(|c| c.cpu_ready_threshold = 1.0).await;
    let stream = "metrics-main";

    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    for family in [
        "danmaku_ws_connections",
        "danmaku_streams_subscribed",
        "danmaku_comments_published_total",
        "danmaku_comments_delivered_total",
        "danmaku_comments_dropped_total",
        "danmaku_comments_rejected_total",
        "danmaku_comments_held_total",
        "danmaku_readiness_state_ratio",
        "danmaku_process_cpu_utilization_ratio",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no TYPE line for {family}:\n{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with(family) && !l.starts_with('#')),
            "no sample for {family}:\n{text}"
        );
    }
    // Every sample line is `name{labels} value` with a numeric value.
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        assert!(
            name.starts_with("danmaku_") || name.starts_with("target_info"),
            "{line}"
        );
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
    }
    assert_eq!(app.metric("danmaku_readiness_state_ratio").await, 1.0);
    assert_eq!(app.metric("danmaku_ws_connections").await, 0.0);

    let published = app
        .metric("danmaku_comments_published_total{kind=\"system\"}")
        .await;
    assert_eq!(published, 0.0);
    app.post_system(stream, "one").await;
    assert_eq!(
        app.metric("danmaku_comments_published_total{kind=\"system\"}")
            .await,
        1.0
    );
    app.post_system(stream, "two").await;
    assert_eq!(
        app.metric("danmaku_comments_published_total{kind=\"system\"}")
            .await,
        2.0
    );
    assert_eq!(
        app.metric("danmaku_comments_published_total{kind=\"gift\"}")
            .await,
        0.0
    );

    // A viewer: one connection, one subscribed stream, and deliveries counted.
    let (mut viewer, _) = app.viewer(stream).await;
    eventually("one connection", || async {
        app.metric("danmaku_ws_connections").await == 1.0
    })
    .await;
    eventually("one subscribed stream", || async {
        app.metric("danmaku_streams_subscribed").await == 1.0
    })
    .await;
    let delivered = app.metric("danmaku_comments_delivered_total").await;
    app.post_system(stream, "three").await;
    viewer.comments(1).await;
    eventually("the delivery to be counted", || async {
        app.metric("danmaku_comments_delivered_total").await >= delivered + 1.0
    })
    .await;

    // The SLI histograms, in seconds, with each SLO threshold as an exact bucket bound.
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (histogram, slo_bound) in [
        ("danmaku_ws_init_duration_seconds", "0.25"),
        ("danmaku_comment_delivery_duration_seconds", "0.1"),
        ("danmaku_comment_fanout_duration_seconds", "0.1"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {histogram} histogram")),
            "{histogram}:\n{text}"
        );
        assert!(
            text.contains(&format!("{histogram}_bucket{{le=\"{slo_bound}\"}}")),
            "{histogram}:\n{text}"
        );
        let count = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{histogram}_count ")))
            .unwrap_or_else(|| panic!("no {histogram}_count:\n{text}"));
        assert!(
            count.parse::<f64>().unwrap() >= 1.0,
            "{histogram}_count {count}"
        );
    }

    viewer.ws.close(None).await.unwrap();
    eventually("no connection", || async {
        app.metric("danmaku_ws_connections").await == 0.0
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Unknown paths and methods
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_paths_answer_404_with_the_error_body() {
    let app = spawn_app().await;
    for path in [
        "/nope",
        "/v1",
        "/v1/streams",
        "/v1/streams/s1/unknown",
        "/v2/streams/s1/comments",
        "/v1/streams/s1/comments/1-0/x",
    ] {
        let a = send(&app, Method::GET, path, Some(SERVICE_TOKEN), None).await;
        assert_error(&a, 404, "not_found", path);
    }
}

#[tokio::test]
async fn wrong_methods_answer_405_with_the_error_body() {
    let app = spawn_app().await;
    let cases = [
        (Method::PUT, "/v1/streams/s1/comments"),
        (Method::DELETE, "/v1/streams/s1/comments"),
        (Method::GET, "/v1/streams/s1/comments/1-0"),
        (Method::PUT, "/v1/streams/s1/bans"),
        (Method::GET, "/v1/streams/s1/bans/u1"),
        (Method::POST, "/v1/streams/s1"),
        (Method::POST, "/livez"),
        (Method::DELETE, "/readyz"),
        (Method::POST, "/version"),
        (Method::PUT, "/metrics"),
    ];
    for (method, path) in cases {
        let what = format!("{method} {path}");
        let a = send(&app, method, path, Some(SERVICE_TOKEN), None).await;
        assert_error(&a, 405, "invalid", &what);
    }
}
