//! `{"type":"refresh","token":…}`: a new token for the same user replaces the connection's
//! identity (name, `mod`, `exp`); anything else is `unauthorized` and changes nothing.

use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};

use crate::helpers::*;

fn now() -> u64 {
    danmaku::domain::now_ms() / 1000
}

fn token(app: &TestApp, claims: Value) -> String {
    app.sign(Header::new(Algorithm::HS256), claims)
}

/// Posts a comment and returns its `user` as the stream shows it.
async fn post(ws: &mut WsClient, text: &str) -> Value {
    ws.send_json(json!({"type": "comment", "text": text})).await;
    ws.next_of("ack").await;
    ws.comments(1).await[0]["user"].clone()
}

async fn refresh(ws: &mut WsClient, token: &str) -> Value {
    ws.send_json(json!({"type": "refresh", "token": token}))
        .await;
    loop {
        let frame = ws.next_json().await;
        if frame["type"] != "viewers" && frame["type"] != "comments" {
            return frame;
        }
    }
}

#[tokio::test]
async fn a_refresh_for_the_same_user_replaces_name_and_exp() {
    let app = spawn_app().await;
    let old = token(
        &app,
        json!({"sub": "r1", "name": "Old", "exp": now() + 600}),
    );
    let (mut ws, _) = app.viewer_with("rf", &format!("access_token={old}")).await;
    assert_eq!(post(&mut ws, "before").await["name"], "Old");
    let exp = now() + 7200;
    let new = token(&app, json!({"sub": "r1", "name": "New", "exp": exp}));
    assert_eq!(
        refresh(&mut ws, &new).await,
        json!({"type": "refreshed", "exp": exp})
    );
    assert_eq!(
        post(&mut ws, "after").await,
        json!({"id": "r1", "name": "New"})
    );
}

#[tokio::test]
async fn an_expired_connection_posts_again_after_a_refresh() {
    let app = spawn_app().await;
    // Within the handshake's 5 s of leeway, but expired for posting.
    let expired = token(&app, json!({"sub": "late", "exp": now() - 2}));
    let (mut ws, _) = app
        .viewer_with("rf-exp", &format!("access_token={expired}"))
        .await;
    ws.send_json(json!({"type": "comment", "text": "hi"})).await;
    assert_eq!(ws.next_of("error").await["code"], "unauthorized");
    let fresh = token(&app, json!({"sub": "late", "exp": now() + 600}));
    assert_eq!(refresh(&mut ws, &fresh).await["type"], "refreshed");
    assert_eq!(post(&mut ws, "back").await["id"], "late");
}

#[tokio::test]
async fn a_bad_token_or_another_user_is_refused_and_the_identity_stays() {
    let app = spawn_app().await;
    let mine = token(&app, json!({"sub": "me", "name": "Me", "exp": now() + 600}));
    let (mut ws, _) = app
        .viewer_with("rf-bad", &format!("access_token={mine}"))
        .await;
    let refusals = [
        token(
            &app,
            json!({"sub": "someone-else", "exp": now() + 600, "mod": ["rf-bad"]}),
        ),
        token(
            &app,
            json!({"sub": "me", "name": "Me2", "exp": now() - 3600}),
        ),
        token(
            &app,
            json!({"sub": "me", "name": "Me3", "exp": now() + 600, "nbf": now() + 60}),
        ),
        "garbage".to_owned(),
        String::new(),
    ];
    for bad in refusals {
        let frame = refresh(&mut ws, &bad).await;
        assert_eq!(frame["type"], "error", "{bad}: {frame}");
        assert_eq!(frame["code"], "unauthorized", "{bad}: {frame}");
    }
    assert_eq!(
        post(&mut ws, "still me").await,
        json!({"id": "me", "name": "Me"})
    );
    // Not counted as malformed frames: the connection is still open after more than 10.
    for _ in 0..12 {
        assert_eq!(refresh(&mut ws, "garbage").await["code"], "unauthorized");
    }
    post(&mut ws, "open").await;

    let (mut anonymous, _) = app.viewer("rf-bad").await;
    assert_eq!(refresh(&mut anonymous, &mine).await["code"], "unauthorized");
}

/// `mod` from the refresh applies to the next comments: a moderator's comments are never
/// thinned, so a viewer on a budget of one comment a second gets all of them.
#[tokio::test]
async fn a_refreshed_mod_claim_applies_to_the_next_comments() {
    let app = spawn_app().await;
    let (mut viewer, _) = app.viewer_with("rf-mod", "max_rate=1").await;
    let plain = token(&app, json!({"sub": "host", "exp": now() + 600}));
    let (mut host, _) = app
        .viewer_with("rf-mod", &format!("access_token={plain}"))
        .await;
    let burst = async |host: &mut WsClient, tag: &str| {
        for i in 0..5 {
            host.send_json(json!({"type": "comment", "text": format!("{tag}{i}")}))
                .await;
            host.next_of("ack").await;
        }
    };
    // Comments from the viewer's side: (user comments of `tag` received, skipped told),
    // read until the system comment that closes the burst.
    let seen = async |viewer: &mut WsClient, tag: &str| {
        let (mut received, mut skipped) = (0, 0);
        loop {
            let frame = viewer.next_of("comments").await;
            skipped += frame["skipped"].as_u64().unwrap_or(0);
            for c in frame["comments"].as_array().unwrap() {
                if c["kind"] == "system" && c["text"] == format!("end-{tag}") {
                    return (received, skipped);
                }
                if c["text"].as_str().unwrap().starts_with(tag) {
                    received += 1;
                }
            }
        }
    };
    burst(&mut host, "plain").await;
    app.post_system("rf-mod", "end-plain").await;
    let (received, skipped) = seen(&mut viewer, "plain").await;
    assert!(
        skipped > 0 && received < 5,
        "{received} received, {skipped} skipped"
    );

    let moderator = token(
        &app,
        json!({"sub": "host", "exp": now() + 600, "mod": ["rf-mod"]}),
    );
    assert_eq!(refresh(&mut host, &moderator).await["type"], "refreshed");
    burst(&mut host, "mod").await;
    app.post_system("rf-mod", "end-mod").await;
    assert_eq!(seen(&mut viewer, "mod").await, (5, 0));
}

/// A refresh that gives or takes `mod` changes what the connection is sent at once: a
/// demoted moderator no longer sees shadowed comments (nor `held` ones), a new one does.
#[tokio::test]
async fn a_refresh_that_changes_mod_changes_who_sees_shadowed_comments() {
    let app = spawn_app().await;
    let s = "refresh-mod";
    let moderator = app.token("mod", &[s]);
    let body = json!({"user_id": "troll", "mode": "shadow"});
    let status = app
        .http
        .post(app.url(&format!("/v1/streams/{s}/bans")))
        .bearer_auth(&moderator)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    let (mut troll, _) = app.user(s, "troll").await;
    let (mut watcher, _) = app
        .viewer_with(s, &format!("access_token={moderator}"))
        .await;
    let (mut promoted, _) = app.user(s, "fresh-mod").await;

    troll
        .send_json(json!({"type": "comment", "text": "hidden 1"}))
        .await;
    assert_eq!(watcher.comments(1).await[0]["shadow"], true);
    assert_eq!(
        refresh(&mut watcher, &app.token("mod", &[])).await["type"],
        "refreshed"
    );
    assert_eq!(
        refresh(&mut promoted, &app.token("fresh-mod", &[s])).await["type"],
        "refreshed"
    );
    troll
        .send_json(json!({"type": "comment", "text": "hidden 2"}))
        .await;
    let marker = app.post_system(s, "marker").await;
    assert_eq!(
        watcher.comments(1).await,
        std::slice::from_ref(&marker),
        "demoted"
    );
    let seen = promoted.comments(2).await;
    assert_eq!(
        (&seen[0]["text"], &seen[0]["shadow"], &seen[1]),
        (&json!("hidden 2"), &json!(true), &marker),
        "promoted"
    );
}
