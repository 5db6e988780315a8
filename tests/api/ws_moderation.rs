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
