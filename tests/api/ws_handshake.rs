//! Handshake refusals (plain HTTP before the upgrade) and the ways to authenticate.

use serde_json::json;

use crate::helpers::*;

fn assert_error(body: &serde_json::Value, code: &str) {
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn bad_stream_ids_and_parameters_are_400() {
    let app = spawn_app().await;
    for stream in ["a.b", "a%20b", &"x".repeat(65)] {
        let (status, body) = app.refused(stream, "", &[]).await;
        assert_eq!(status, 400, "{stream}");
        assert_error(&body, "invalid");
    }
    for query in ["after=nope", "after=1-", "after=-1"] {
        let (status, body) = app.refused("ok", query, &[]).await;
        assert_eq!(status, 400, "{query}");
        assert_error(&body, "invalid");
    }
}

#[tokio::test]
async fn a_plain_http_get_is_refused_with_an_error_body() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/v1/streams/s/ws"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    assert_error(&response.json().await.unwrap(), "invalid");
}

#[tokio::test]
async fn tokens_in_header_or_query_identify_the_user() {
    let app = spawn_app().await;
    let token = app.token("hdr", &[]);
    let mut by_header = app
        .connect("auth", "", &[("authorization", &format!("Bearer {token}"))])
        .await
        .unwrap();
    assert_eq!(by_header.next_json().await["type"], "init");
    by_header
        .send_json(json!({"type": "comment", "text": "from header"}))
        .await;
    by_header.next_of("ack").await;
    let c = &by_header.comments(1).await[0];
    assert_eq!(c["user"]["id"], "hdr");

    let (mut by_query, _) = app.user("auth", "qry").await;
    by_query
        .send_json(json!({"type": "comment", "text": "from query"}))
        .await;
    by_query.next_of("ack").await;
}

#[tokio::test]
async fn bad_and_expired_tokens_are_401() {
    let app = spawn_app().await;
    let (status, body) = app.refused("s", "access_token=garbage", &[]).await;
    assert_eq!(status, 401);
    assert_error(&body, "unauthorized");
    let expired = app.token_expiring("old", &[], -3600);
    let (status, body) = app
        .refused("s", &format!("access_token={expired}"), &[])
        .await;
    assert_eq!(status, 401);
    assert_error(&body, "unauthorized");
    let (status, _) = app
        .refused("s", "", &[("authorization", "Bearer garbage")])
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn anonymous_viewers_are_refused_when_not_allowed() {
    let app = spawn_app_with(|c| c.allow_anonymous = false).await;
    let (status, body) = app.refused("s", "", &[]).await;
    assert_eq!(status, 401);
    assert_error(&body, "unauthorized");
    app.user("s", "someone").await;
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_403_and_native_apps_pass() {
    let app = spawn_app_with(|c| {
        c.allowed_origins = Some(danmaku::config::Origins(vec![
            url::Url::parse("https://watch.example").unwrap().origin(),
        ]))
    })
    .await;
    let (status, body) = app
        .refused("s", "", &[("origin", "https://evil.example")])
        .await;
    assert_eq!(status, 403);
    assert_error(&body, "forbidden");
    let (status, _) = app
        .refused("s", "", &[("origin", "http://watch.example")])
        .await;
    assert_eq!(status, 403, "scheme must match too");
    let mut ok = app
        .connect("s", "", &[("origin", "https://watch.example")])
        .await
        .unwrap();
    assert_eq!(ok.next_json().await["type"], "init");
    let mut native = app.connect("s", "", &[]).await.unwrap();
    assert_eq!(native.next_json().await["type"], "init");
}

#[tokio::test]
async fn banned_users_are_403() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/v1/streams/ban-hs/bans"))
        .bearer_auth(SERVICE_TOKEN)
        .json(&json!({"user_id": "troll"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (status, body) = app
        .refused(
            "ban-hs",
            &format!("access_token={}", app.token("troll", &[])),
            &[],
        )
        .await;
    assert_eq!(status, 403);
    assert_error(&body, "banned");
    app.user("other-stream", "troll").await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_503_until_one_leaves() {
    let app = spawn_app_with(|c| c.max_connections = 2).await;
    let (a, _) = app.viewer("full").await;
    let (_b, _) = app.viewer("full").await;
    let (status, body) = app.refused("full", "", &[]).await;
    assert_eq!(status, 503);
    assert_error(&body, "unavailable");
    drop(a);
    eventually("a slot to free up", || async {
        app.connect("full", "", &[]).await.is_ok()
    })
    .await;
}

/// An instance at its connection cap leaves the Service (`/readyz` says `full`) and comes
/// back once 5 % below it, not with the first connection that ends.
#[tokio::test]
async fn a_full_instance_is_not_ready_until_five_percent_below_its_cap() {
    let app = spawn_app_with(|c| c.max_connections = 40).await;
    let readyz = || async {
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    let mut viewers = Vec::new();
    for _ in 0..39 {
        viewers.push(app.viewer("cap").await.0);
    }
    assert_eq!(readyz().await.0, 200, "39 of 40");
    viewers.push(app.viewer("cap").await.0);
    let (status, body) = readyz().await;
    assert_eq!((status, &body["reason"]), (503, &json!("full")), "{body}");
    viewers.pop();
    eventually("one connection to end", || async {
        app.state.lifecycle.open_connections() == 39
    })
    .await;
    assert_eq!(readyz().await.0, 503, "39 of 40: still full");
    viewers.pop();
    eventually("/readyz to come back at 38 of 40", || async {
        readyz().await.0 == 200
    })
    .await;
}

fn hs256() -> jsonwebtoken::Header {
    jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
}

fn now() -> u64 {
    danmaku::domain::now_ms() / 1000
}

/// A refusal whose message names `word` (the claim or the header at fault).
async fn refused_naming(app: &TestApp, query: &str, headers: &[(&str, &str)], word: &str) {
    let (status, body) = app.refused("s", query, headers).await;
    assert_eq!(status, 401, "{query} {headers:?}: {body}");
    assert_error(&body, "unauthorized");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(word), "{query} {headers:?}: {message}");
}

#[tokio::test]
async fn tokens_valid_only_from_later_are_401_and_cannot_moderate() {
    let app = spawn_app().await;
    let claims =
        json!({"sub": "early", "nbf": now() + 3600, "exp": now() + 7200, "mod": ["nbf-s"]});
    let token = app.sign(hs256(), claims);
    refused_naming(&app, &format!("access_token={token}"), &[], "nbf").await;
    let response = app
        .http
        .post(app.url("/v1/streams/nbf-s/bans"))
        .bearer_auth(&token)
        .json(&json!({"user_id": "someone"}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    assert_ne!(response.status(), 204);
    // A token whose nbf has passed is fine.
    let claims = json!({"sub": "now", "nbf": now() - 10, "exp": now() + 60});
    let token = app.sign(hs256(), claims);
    app.viewer_with("s", &format!("access_token={token}")).await;
}

#[tokio::test]
async fn tokens_with_critical_header_extensions_are_401() {
    let app = spawn_app().await;
    let mut header = hs256();
    header.crit = Some(vec!["x-danmaku-unknown".into()]);
    header.extras.insert("x-danmaku-unknown", true);
    let token = app.sign(header, json!({"sub": "c", "exp": now() + 60}));
    refused_naming(&app, &format!("access_token={token}"), &[], "crit").await;
}

#[tokio::test]
async fn empty_and_non_bearer_credentials_are_401_not_anonymous() {
    let app = spawn_app().await;
    refused_naming(&app, "access_token=", &[], "access_token").await;
    refused_naming(&app, "access_token=%20", &[], "access_token").await;
    for value in ["Basic dXNlcjpwYXNz", "Bearer ", "Token abc", "Bearer"] {
        refused_naming(&app, "", &[("authorization", value)], "Bearer").await;
    }
    // Without any: anonymous, as allowed by default.
    app.viewer("s").await;
}

#[tokio::test]
async fn sub_and_name_claims_are_bounded_and_free_of_control_characters() {
    let app = spawn_app().await;
    let exp = now() + 60;
    let long = "x".repeat(129);
    let cases = [
        (json!({"sub": "a\nb", "exp": exp}), "sub"),
        (json!({"sub": "bell\u{7}", "exp": exp}), "sub"),
        (json!({"sub": long, "exp": exp}), "sub"),
        (json!({"sub": "", "exp": exp}), "sub"),
        (
            json!({"sub": "ok", "name": "esc\u{1b}[31m", "exp": exp}),
            "name",
        ),
        (json!({"sub": "ok", "name": long, "exp": exp}), "name"),
    ];
    for (claims, claim) in cases {
        let token = app.sign(hs256(), claims);
        refused_naming(&app, &format!("access_token={token}"), &[], claim).await;
    }
    let name = "名".repeat(128);
    let token = app.sign(
        hs256(),
        json!({"sub": "x".repeat(128), "name": name, "exp": exp}),
    );
    let (mut ws, _) = app
        .viewer_with("bounds", &format!("access_token={token}"))
        .await;
    ws.send_json(json!({"type": "comment", "text": "hi"})).await;
    ws.next_of("ack").await;
    assert_eq!(ws.comments(1).await[0]["user"]["name"], name);
}
