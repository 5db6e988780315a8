//! Deletes and bans as viewers experience them.

use serde_json::json;

use crate::helpers::*;

async fn ban(app: &TestApp, stream: &str, bearer: &str, body: serde_json::Value) -> u16 {
    app.http
        .post(app.url(&format!("/v1/streams/{stream}/bans")))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_moderator_deletes_a_comment_and_viewers_are_told() {
    let app = spawn_app().await;
    let (mut viewer, _) = app.viewer("mod-delete").await;
    let (mut author, _) = app.user("mod-delete", "author").await;
    author
        .send_json(json!({"type": "comment", "text": "regrettable"}))
        .await;
    let id = author.next_of("ack").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(viewer.comments(1).await[0]["id"], id.as_str());

    let streamer = app.token("streamer", &["mod-delete"]);
    let status = app
        .http
        .delete(app.url(&format!("/v1/streams/mod-delete/comments/{id}")))
        .bearer_auth(&streamer)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    assert_eq!(
        viewer.next_of("deleted").await,
        json!({"type": "deleted", "ids": [id]})
    );
    let (_late, init) = app.viewer("mod-delete").await;
    assert_eq!(init["comments"], json!([]), "later inits no longer show it");
}

#[tokio::test]
async fn a_ban_closes_the_users_sockets_on_that_stream_only() {
    let app = spawn_app().await;
    let (mut troll_here, _) = app.user("mod-ban", "troll").await;
    let (mut troll_elsewhere, _) = app.user("mod-ban-other", "troll").await;
    let (mut bystander, _) = app.user("mod-ban", "nice").await;
    let moderator = app.token("streamer", &["mod-ban"]);
    assert_eq!(
        ban(
            &app,
            "mod-ban",
            &moderator,
            json!({"user_id": "troll", "seconds": 600})
        )
        .await,
        204
    );

    let error = troll_here.next_of("error").await;
    assert_eq!(error["code"], "banned");
    assert_eq!(troll_here.closed().await, Closed::Code(4003));

    bystander
        .send_json(json!({"type": "comment", "text": "still fine"}))
        .await;
    bystander.next_of("ack").await;
    troll_elsewhere
        .send_json(json!({"type": "comment", "text": "other stream"}))
        .await;
    troll_elsewhere.next_of("ack").await;

    let refused = app
        .post(
            "mod-ban",
            json!({"kind": "user", "text": "x", "user": {"id": "troll", "name": "T"}}),
        )
        .await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.json::<serde_json::Value>().await.unwrap()["code"],
        "banned"
    );
}

#[tokio::test]
async fn only_moderators_of_the_stream_may_ban() {
    let app = spawn_app().await;
    let other_streamer = app.token("someone", &["another-stream"]);
    assert_eq!(
        ban(&app, "mod-auth", &other_streamer, json!({"user_id": "x"})).await,
        403
    );
    assert_eq!(
        ban(&app, "mod-auth", "not-a-token", json!({"user_id": "x"})).await,
        403
    );
    let status = app
        .http
        .post(app.url("/v1/streams/mod-auth/bans"))
        .json(&json!({"user_id": "x"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    assert_eq!(
        ban(&app, "mod-auth", SERVICE_TOKEN, json!({"user_id": "x"})).await,
        204
    );
}

/// A ban can be listed and lifted; a lifted user connects and posts again.
#[tokio::test]
async fn bans_are_listed_and_lifted() {
    let app = spawn_app().await;
    let s = "mod-unban";
    let moderator = app.token("streamer", &[s]);
    let list = |bearer: String| {
        let request = app
            .http
            .get(app.url(&format!("/v1/streams/{s}/bans")))
            .bearer_auth(bearer);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let unban = |user: &str| {
        let request = app
            .http
            .delete(app.url(&format!("/v1/streams/{s}/bans/{user}")))
            .bearer_auth(&moderator);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let before = danmaku::domain::now_ms();
    let short = json!({"user_id": "brief", "seconds": 60});
    assert_eq!(ban(&app, s, &moderator, short).await, 204);
    assert_eq!(
        ban(&app, s, SERVICE_TOKEN, json!({"user_id": "long"})).await,
        204
    );

    let (status, body) = list(moderator.clone()).await;
    assert_eq!(status, 200, "{body}");
    let bans = body["bans"].as_array().unwrap();
    let users: Vec<&str> = bans
        .iter()
        .map(|b| b["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["brief", "long"], "soonest to end first");
    let ends = |i: usize| bans[i]["expires_at"].as_u64().unwrap();
    assert!(
        (before + 59_000..=before + 62_000).contains(&ends(0)),
        "{body}"
    );
    assert!(ends(1) >= before + 30 * 86_400_000 - 2_000, "{body}");
    assert_eq!(
        list(SERVICE_TOKEN.into()).await.0,
        200,
        "a service may list"
    );
    assert_eq!(
        list(app.token("nobody", &[])).await.0,
        403,
        "a viewer may not"
    );

    assert_eq!(
        app.refused(s, &format!("access_token={}", app.token("brief", &[])), &[])
            .await
            .0,
        403
    );
    assert_eq!(unban("brief").await, 204);
    assert_eq!(unban("brief").await, 404, "no ban to lift");
    let (mut back, _) = app.user(s, "brief").await;
    back.send_json(json!({"type": "comment", "text": "I am back"}))
        .await;
    back.next_of("ack").await;
    let (_, body) = list(moderator.clone()).await;
    assert_eq!(body["bans"].as_array().unwrap().len(), 1, "{body}");
}

/// A ban holds back the user's own comments, not a gift a service posts on their behalf.
#[tokio::test]
async fn a_gift_for_a_banned_user_still_shows() {
    let app = spawn_app().await;
    let s = "mod-gift";
    let (mut viewer, _) = app.viewer(s).await;
    let (mut fan, _) = app.user(s, "fan").await;
    assert_eq!(
        ban(&app, s, SERVICE_TOKEN, json!({"user_id": "fan"})).await,
        204
    );
    let gift = json!({"kind": "gift", "text": "a rose", "user": {"id": "fan", "name": "Fan"},
        "data": {"item": "rose"}});
    let response = app.post(s, gift).await;
    assert_eq!(response.status(), 201);
    let shown = viewer.comments(1).await;
    assert_eq!(shown[0]["user"]["id"], "fan");
    assert_eq!(shown[0]["kind"], "gift");
    // The fan's own socket was closed by the ban; a chat comment from them is refused.
    let _ = fan.closed().await;
    let chat = json!({"kind": "user", "text": "hi", "user": {"id": "fan", "name": "Fan"}});
    assert_eq!(app.post(s, chat).await.status(), 403);
}

/// A comment resent with the same `ref` (its `ack` was lost) is published once and
/// answered with the first comment's id, from any connection of the same user; another
/// user's `ref` is theirs.
#[tokio::test]
async fn a_resent_ref_posts_once() {
    let app = spawn_app().await;
    let s = "ref-once";
    let (mut viewer, _) = app.viewer(s).await;
    let (mut first, _) = app.user(s, "alice").await;
    let (mut second, _) = app.user(s, "alice").await;
    let (mut bob, _) = app.user(s, "bob").await;
    let comment = json!({"type": "comment", "text": "hello", "ref": "r-1"});
    first.send_json(comment.clone()).await;
    let id = first.next_of("ack").await["id"].clone();
    first.send_json(comment.clone()).await;
    assert_eq!(first.next_of("ack").await["id"], id);
    second.send_json(comment.clone()).await;
    let again = second.next_of("ack").await;
    assert_eq!((&again["id"], &again["ref"]), (&id, &json!("r-1")));
    bob.send_json(comment).await;
    let bobs = bob.next_of("ack").await["id"].clone();
    assert_ne!(bobs, id);
    let shown = viewer.comments(2).await;
    assert_eq!(
        (&shown[0]["id"], &shown[1]["id"]),
        (&id, &bobs),
        "alice's once, then bob's"
    );
    viewer
        .quiet_for(std::time::Duration::from_millis(300))
        .await;
}

/// A client that was away when comments were deleted learns it first thing on resuming.
pub async fn deletions_reach_a_resuming_client(app: &TestApp) {
    let s = "mod-resume";
    let (mut viewer, _) = app.viewer(s).await;
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for text in ["one", "two", "three"] {
            ids.push(
                app.post_system(s, text).await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        ids
    };
    let last = viewer.comments(3).await[2]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(viewer);
    let moderator = app.token("streamer", &[s]);
    let delete = |id: String| {
        let request = app
            .http
            .delete(app.url(&format!("/v1/streams/{s}/comments/{id}")))
            .bearer_auth(&moderator);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(delete(ids[1].clone()).await, 204, "one the client saw");
    let later = app.post_system(s, "four").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(delete(later.clone()).await, 204, "one it never saw");
    let kept = app.post_system(s, "five").await;

    let (mut back, init) = app.viewer_with(s, &format!("after={last}")).await;
    assert_eq!(init["resumed"], true);
    assert_eq!(init["comments"].as_array().unwrap().len(), 1, "{init}");
    assert_eq!(init["comments"][0]["id"], kept["id"]);
    assert_eq!(
        back.next_json().await,
        json!({"type": "deleted", "ids": [ids[1], later]}),
        "first thing after init"
    );
    // A fresh init shows the stream as it is and needs no such frame.
    let (mut fresh, init) = app.viewer(s).await;
    assert_eq!(init["resumed"], false);
    fresh.quiet_for(std::time::Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_resuming_client_learns_what_was_deleted_while_it_was_away() {
    deletions_reach_a_resuming_client(&spawn_app().await).await;
}
