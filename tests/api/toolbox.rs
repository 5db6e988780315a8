//! The streamer's toolbox (the contract's section 9) as viewers, moderators and services
//! meet it: settings with slow mode, roles and a pin; bans, mutes and shadow bans with purge;
//! deleting one's own comment; blocked terms (confusables too) with refuse, shadow and hold
//! for review. Each scenario takes two instances, `a` and `b`: on the embedded broker both are
//! the same app; on Redis Cluster (`redis_toolbox`) they are two instances, so everything
//! that must hold cluster-wide is tried across them.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// An HTTP call with a bearer: its status and JSON body.
pub async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    bearer: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(bearer);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn patch_settings(app: &TestApp, s: &str, bearer: &str, body: Value) -> (u16, Value) {
    let path = format!("/v1/streams/{s}/settings");
    call(app, reqwest::Method::PATCH, &path, bearer, Some(body)).await
}

pub async fn ban(app: &TestApp, s: &str, bearer: &str, body: Value) -> u16 {
    let path = format!("/v1/streams/{s}/bans");
    call(app, reqwest::Method::POST, &path, bearer, Some(body))
        .await
        .0
}

pub async fn put_terms(app: &TestApp, s: &str, bearer: &str, terms: Value) -> (u16, Value) {
    let path = format!("/v1/streams/{s}/terms");
    let body = json!({ "terms": terms });
    call(app, reqwest::Method::PUT, &path, bearer, Some(body)).await
}

/// `GET /v1/streams/{s}/comments` with `bearer`: the comments.
pub async fn history(app: &TestApp, s: &str, bearer: &str) -> Vec<Value> {
    let path = format!("/v1/streams/{s}/comments");
    let (status, body) = call(app, reqwest::Method::GET, &path, bearer, None).await;
    assert_eq!(status, 200, "{body}");
    body["comments"].as_array().unwrap().clone()
}

/// A viewer token for `sub` with `roles`.
pub fn token_with_roles(app: &TestApp, sub: &str, roles: &[&str]) -> String {
    let exp = danmaku::domain::now_ms() / 1000 + 3600;
    let claims = json!({"sub": sub, "name": sub, "exp": exp, "roles": roles});
    app.sign(jsonwebtoken::Header::default(), claims)
}

/// Connects with `token` and reads `init`.
pub async fn with_token(app: &TestApp, s: &str, token: &str) -> (WsClient, Value) {
    app.viewer_with(s, &format!("access_token={token}")).await
}

/// Posts `text` over `client` and reads the answer: an `ack` or an `error`.
pub async fn say(client: &mut WsClient, text: &str) -> Value {
    client
        .send_json(json!({"type": "comment", "text": text}))
        .await;
    loop {
        let frame = client.next_json().await;
        if frame["type"] == "ack" || frame["type"] == "error" {
            return frame;
        }
    }
}

/// Posts `text` until the answer satisfies `done`: a change made on another instance may
/// take up to a second to apply on this one.
pub async fn say_until(client: &mut WsClient, text: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let answer = say(client, text).await;
        if done(&answer) {
            return answer;
        }
        assert!(std::time::Instant::now() < deadline, "still {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ids of `comments`.
fn ids(comments: &[Value]) -> Vec<&str> {
    comments.iter().map(|c| c["id"].as_str().unwrap()).collect()
}

/// Settings: read and changed by a moderator on one instance, pushed to viewers on the
/// other within a second and carried by later `init`s there; bad values `400` naming the
/// field, a pin to an unknown comment `404`, a non-moderator `403`; a pinned comment deleted
/// unpins.
pub async fn settings_reach_every_instance(a: &TestApp, b: &TestApp, s: &str) {
    let moderator = a.token("streamer", &[s]);
    let (mut viewer, init) = b.viewer(s).await;
    let off = json!({"slow_mode_ms": 0, "post_roles": [], "pinned": null});
    assert_eq!(init["settings"], off, "{init}");
    let comment = b.post_system(s, "pin me").await;
    viewer.comments(1).await;

    let started = std::time::Instant::now();
    let (status, body) = patch_settings(
        a,
        s,
        &moderator,
        json!({"slow_mode_ms": 3000, "pinned": comment["id"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let settings = json!({"slow_mode_ms": 3000, "post_roles": [], "pinned": comment["id"]});
    assert_eq!(body["settings"], settings);
    let pushed = viewer.next_of("settings").await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "pushed within a second"
    );
    assert_eq!(pushed, json!({"type": "settings", "settings": settings}));
    let (_, later) = b.viewer(s).await;
    assert_eq!(later["settings"], settings, "a later init carries them");
    let path = format!("/v1/streams/{s}/settings");
    let (status, got) = call(b, reqwest::Method::GET, &path, &moderator, None).await;
    assert_eq!((status, &got["settings"]), (200, &settings));

    for (bad, field) in [
        (json!({"slow_mode_ms": 500}), "slow_mode_ms"),
        (json!({"slow_mode_ms": 600_001}), "slow_mode_ms"),
        (json!({"post_roles": vec!["x"; 17]}), "post_roles"),
        (json!({"post_roles": ["y".repeat(65)]}), "post_roles"),
        (json!({"pinned": "not-an-id"}), "pinned"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let (status, error) = patch_settings(a, s, &moderator, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(field), "{bad}: {message}");
    }
    let (status, error) = patch_settings(a, s, &moderator, json!({"pinned": "1-0"})).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("not_found")));
    let viewer_token = a.token("nobody", &[]);
    let (status, _) = patch_settings(a, s, &viewer_token, json!({"slow_mode_ms": 0})).await;
    assert_eq!(status, 403, "a viewer who does not moderate the stream");
    let (_, unchanged) = call(b, reqwest::Method::GET, &path, &moderator, None).await;
    assert_eq!(unchanged["settings"], settings, "bad input changed nothing");

    let id = comment["id"].as_str().unwrap();
    let path = format!("/v1/streams/{s}/comments/{id}");
    let (status, _) = call(a, reqwest::Method::DELETE, &path, &moderator, None).await;
    assert_eq!(status, 204);
    assert_eq!(viewer.next_of("deleted").await["ids"], json!([id]));
    let unpinned = viewer.next_of("settings").await;
    assert_eq!(unpinned["settings"]["pinned"], Value::Null, "{unpinned}");
}

/// Slow mode holds one user to one comment per interval across instances; moderators and
/// services are never slowed.
pub async fn slow_mode_holds_across_instances(a: &TestApp, b: &TestApp, s: &str) {
    let moderator = a.token("streamer", &[s]);
    let (status, _) = patch_settings(a, s, &moderator, json!({"slow_mode_ms": 2000})).await;
    assert_eq!(status, 200);
    let (mut on_a, init) = a.user(s, "alice").await;
    assert_eq!(init["settings"]["slow_mode_ms"], 2000);
    let (mut on_b, _) = b.user(s, "alice").await;
    assert_eq!(say(&mut on_a, "first").await["type"], "ack");
    let refused = say(&mut on_b, "second, elsewhere").await;
    assert_eq!(refused["code"], "slow_mode", "{refused}");
    let wait = refused["retry_after_ms"].as_u64().unwrap();
    assert!((1..=2000).contains(&wait), "{refused}");
    let (mut bob, _) = b.user(s, "bob").await;
    assert_eq!(say(&mut bob, "another user").await["type"], "ack");

    let (mut streamer, _) = with_token(b, s, &moderator).await;
    for text in ["mod 1", "mod 2", "mod 3"] {
        assert_eq!(say(&mut streamer, text).await["type"], "ack", "moderators");
    }
    for text in ["gift 1", "gift 2"] {
        b.post_system(s, text).await;
    }
    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    assert_eq!(say(&mut on_b, "after the wait").await["type"], "ack");
}

/// Only the roles the settings name may post (or a moderator); an empty list lets everyone.
pub async fn post_roles_gate_posting(a: &TestApp, b: &TestApp, s: &str) {
    let moderator = a.token("streamer", &[s]);
    let body = json!({"post_roles": ["subscriber", "vip"]});
    assert_eq!(patch_settings(a, s, &moderator, body).await.0, 200);
    let (mut plain, _) = b.user(s, "plain").await;
    let refused = say(&mut plain, "hello").await;
    assert_eq!(refused["code"], "role_required", "{refused}");
    let vip = token_with_roles(b, "vippy", &["vip"]);
    let (mut vip, _) = with_token(b, s, &vip).await;
    assert_eq!(say(&mut vip, "hello").await["type"], "ack");
    let (mut streamer, _) = with_token(b, s, &moderator).await;
    assert_eq!(say(&mut streamer, "hello").await["type"], "ack");
    assert_eq!(
        patch_settings(a, s, &moderator, json!({"post_roles": []}))
            .await
            .0,
        200
    );
    say_until(&mut plain, "now", |answer| answer["type"] == "ack").await;
}

/// A shadow-banned user's comments reach their own connections and moderators (marked),
/// nobody else, in live frames, `init`, a resume or `GET`; a mute refuses posts but lets the
/// user watch; a timeout ends by itself.
pub async fn shadow_bans_and_mutes(a: &TestApp, b: &TestApp, s: &str) {
    let moderator = a.token("streamer", &[s]);
    let before = b.post_system(s, "before").await;
    let (mut troll_a, _) = a.user(s, "troll").await;
    let (mut troll_b, _) = b.user(s, "troll").await;
    let (mut bystander, _) = b.user(s, "nice").await;
    let (mut watcher, _) = with_token(b, s, &moderator).await;
    let body = json!({"user_id": "troll", "mode": "shadow", "seconds": 600});
    assert_eq!(ban(a, s, &moderator, body).await, 204);

    let ack = say(&mut troll_a, "you cannot see me").await;
    assert_eq!(ack["type"], "ack", "acked as usual: {ack}");
    let hidden = ack["id"].as_str().unwrap().to_owned();
    let marker = b.post_system(s, "marker").await;
    let own = troll_b.comments(2).await;
    assert_eq!(ids(&own), [hidden.as_str(), marker["id"].as_str().unwrap()]);
    assert_eq!(
        own[0].get("shadow"),
        None,
        "the author sees it as any other"
    );
    let seen = watcher.comments(2).await;
    assert_eq!(seen[0]["id"], hidden.as_str());
    assert_eq!(seen[0]["shadow"], true, "a moderator sees it marked");
    let frame = bystander.next_of("comments").await;
    assert_eq!(frame["comments"], json!([marker]), "nobody else: {frame}");
    assert_eq!(frame.get("skipped"), None, "nor counted in skipped");
    let pin = json!({ "pinned": hidden });
    let (status, _) = patch_settings(b, s, &moderator, pin).await;
    assert_eq!(status, 404, "a shadowed comment is pinned for nobody");

    let (_, init) = b.user(s, "nice").await;
    assert!(
        !ids(init["comments"].as_array().unwrap()).contains(&hidden.as_str()),
        "{init}"
    );
    let (_, init) = b.user(s, "troll").await;
    assert!(ids(init["comments"].as_array().unwrap()).contains(&hidden.as_str()));
    let (_, init) = with_token(b, s, &moderator).await;
    let marked = init["comments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == hidden.as_str());
    assert_eq!(marked.unwrap()["shadow"], true, "{init}");
    let resume = format!(
        "access_token={}&after={}&epoch={}",
        b.token("nice", &[]),
        before["id"].as_str().unwrap(),
        init["epoch"].as_str().unwrap()
    );
    let (_, resumed) = b.viewer_with(s, &resume).await;
    assert_eq!(resumed["resumed"], true);
    assert_eq!(
        resumed["comments"],
        json!([marker]),
        "a resume leaves it out"
    );
    let as_viewer = history(b, s, &b.token("nice", &[])).await;
    assert!(
        !ids(&as_viewer).contains(&hidden.as_str()),
        "GET with a viewer token"
    );
    let as_author = history(b, s, &b.token("troll", &[])).await;
    assert!(
        ids(&as_author).contains(&hidden.as_str()),
        "GET as its author"
    );
    let as_service = history(b, s, SERVICE_TOKEN).await;
    let marked = as_service
        .iter()
        .find(|c| c["id"] == hidden.as_str())
        .unwrap();
    assert_eq!(marked["shadow"], true, "GET with a service token: marked");

    // A mute, for a second: refused while it lasts, watching and connecting all along.
    let body = json!({"user_id": "troll", "mode": "mute", "seconds": 1});
    assert_eq!(ban(a, s, &moderator, body).await, 204);
    let (status, bans) = call(
        a,
        reqwest::Method::GET,
        &format!("/v1/streams/{s}/bans"),
        &moderator,
        None,
    )
    .await;
    assert_eq!(
        (status, &bans["bans"][0]["mode"]),
        (200, &json!("mute")),
        "{bans}"
    );
    let refused = say(&mut troll_b, "muted?").await;
    assert_eq!(refused["code"], "banned", "{refused}");
    let (mut again, _) = a.user(s, "troll").await;
    say_until(&mut again, "back", |answer| answer["type"] == "ack").await;
}

/// A ban with `purge` deletes every retained comment of the user in one `deleted` frame.
pub async fn a_purge_deletes_in_one_frame(a: &TestApp, b: &TestApp, s: &str) {
    let moderator = a.token("streamer", &[s]);
    let (mut spammer, _) = a.user(s, "spammer").await;
    let (mut viewer, _) = b.viewer(s).await;
    let mut spam = Vec::new();
    for text in ["buy", "cheap", "now"] {
        spam.push(say(&mut spammer, text).await["id"].clone());
    }
    let kept = b.post_system(s, "kept").await;
    viewer.comments(4).await;
    let body = json!({"user_id": "spammer", "seconds": 60, "purge": true, "mode": "mute"});
    assert_eq!(ban(a, s, &moderator, body).await, 204);
    let deleted = viewer.next_of("deleted").await;
    assert_eq!(deleted, json!({"type": "deleted", "ids": spam}));
    assert_eq!(history(b, s, SERVICE_TOKEN).await, [kept]);
}

/// The author deletes their own comment over the WebSocket (every viewer is told); anyone
/// else's is `forbidden`, an unknown id `not_found`, an anonymous connection `unauthorized`;
/// a moderator deletes any.
pub async fn authors_delete_their_own(a: &TestApp, b: &TestApp, s: &str) {
    let (mut author, _) = a.user(s, "author").await;
    let (mut other, _) = b.user(s, "other").await;
    let (mut anonymous, _) = b.viewer(s).await;
    let id = say(&mut author, "oops").await["id"].clone();
    let kept = say(&mut author, "fine").await["id"].clone();
    anonymous.comments(2).await;

    other
        .send_json(json!({"type": "delete", "id": id, "ref": "d1"}))
        .await;
    let error = other.next_of("error").await;
    assert_eq!(
        (&error["code"], &error["ref"]),
        (&json!("forbidden"), &json!("d1"))
    );
    anonymous
        .send_json(json!({"type": "delete", "id": id}))
        .await;
    assert_eq!(anonymous.next_of("error").await["code"], "unauthorized");
    author
        .send_json(json!({"type": "delete", "id": "1-0"}))
        .await;
    assert_eq!(author.next_of("error").await["code"], "not_found");
    author
        .send_json(json!({"type": "delete", "id": "nope"}))
        .await;
    assert_eq!(author.next_of("error").await["code"], "invalid");

    author
        .send_json(json!({"type": "delete", "id": id, "ref": "mine"}))
        .await;
    assert_eq!(
        author.next_of("ack").await,
        json!({"type": "ack", "ref": "mine", "id": id})
    );
    assert_eq!(anonymous.next_of("deleted").await["ids"], json!([id]));
    let moderator = a.token("streamer", &[s]);
    let (mut streamer, _) = with_token(b, s, &moderator).await;
    streamer
        .send_json(json!({"type": "delete", "id": kept}))
        .await;
    assert_eq!(streamer.next_of("ack").await["id"], kept);
    assert_eq!(anonymous.next_of("deleted").await["ids"], json!([kept]));
}

/// Blocked terms match after NFKC, case folding and removal of invisible characters;
/// `refuse` never echoes the term; moderators and services are not filtered; bad lists
/// are `400` and change nothing.
pub async fn blocked_terms_refuse_confusables(a: &TestApp, b: &TestApp, s: &str) {
    let moderator = a.token("streamer", &[s]);
    let terms =
        json!([{"term": "bad", "action": "refuse"}, {"term": "spoiler", "action": "shadow"}]);
    let (status, body) = put_terms(a, s, &moderator, terms.clone()).await;
    assert_eq!((status, &body["terms"]), (200, &terms), "{body}");
    let path = format!("/v1/streams/{s}/terms");
    let (_, listed) = call(b, reqwest::Method::GET, &path, &moderator, None).await;
    assert_eq!(listed["terms"], terms);

    let (mut user, _) = b.user(s, "user").await;
    say_until(&mut user, "so bad", |answer| answer["type"] == "error").await;
    for text in ["ＢＡＤ!", "b\u{200b}ad", "BaD", "B\u{feff}A\u{2060}D"] {
        let refused = say(&mut user, text).await;
        assert_eq!(refused["code"], "blocked", "{text:?}: {refused}");
        assert!(
            !refused["message"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("bad")
        );
    }
    assert_eq!(say(&mut user, "good").await["type"], "ack");
    let (mut streamer, _) = with_token(b, s, &moderator).await;
    assert_eq!(
        say(&mut streamer, "bad, said the moderator").await["type"],
        "ack"
    );
    b.post_system(s, "a bad gift").await;

    let (mut viewer, _) = b.viewer(s).await;
    let shadowed = say(&mut user, "the SPOILER is").await;
    assert_eq!(shadowed["type"], "ack", "{shadowed}");
    let marker = b.post_system(s, "marker").await;
    assert_eq!(
        viewer.comments(1).await,
        [marker],
        "a shadow term: nobody else sees it"
    );

    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"term": format!("t{i}"), "action": "refuse"}))
        .collect();
    for bad in [
        json!(too_many),
        json!([{"term": "x".repeat(65), "action": "refuse"}]),
        json!([{"term": "", "action": "refuse"}]),
        json!([{"term": "\u{200b}", "action": "refuse"}]),
        json!([{"term": "ok", "action": "delete"}]),
    ] {
        let (status, error) = put_terms(a, s, &moderator, bad).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (400, Some("invalid")),
            "{error}"
        );
    }
    let bad = json!([{"term": "ok", "action": "refuse"}, {"term": "x", "action": "delete"}]);
    let (_, error) = put_terms(a, s, &moderator, bad).await;
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("terms[1].action"),
        "names the field: {message}"
    );
    let (_, unchanged) = call(b, reqwest::Method::GET, &path, &moderator, None).await;
    assert_eq!(unchanged["terms"], terms, "bad lists changed nothing");
    let viewer_token = a.token("nobody", &[]);
    assert_eq!(put_terms(a, s, &viewer_token, json!([])).await.0, 403);
}

/// A held comment reaches moderators (`held`) and `GET …/held`, not viewers; approve
/// publishes it with a new id and tells its author (`released`), reject drops it (`dropped`);
/// a decided held id is `404`.
pub async fn held_comments_are_approved_or_rejected(a: &TestApp, b: &TestApp, s: &str) {
    let moderator = a.token("streamer", &[s]);
    let terms = json!([{"term": "link", "action": "hold"}]);
    assert_eq!(put_terms(a, s, &moderator, terms).await.0, 200);
    let (mut streamer, _) = with_token(b, s, &moderator).await;
    let (mut viewer, _) = b.viewer(s).await;
    let (mut author, _) = a.user(s, "linker").await;
    let (mut author_elsewhere, _) = b.user(s, "linker").await;

    // The list was put on the author's instance: it applies there at once.
    let acked = say(&mut author, "a link here").await;
    assert_eq!(acked["held"], true, "{acked}");
    let held_id = acked["id"].clone();
    let held = streamer.next_of("held").await;
    assert_eq!(
        (&held["comment"]["id"], &held["comment"]["text"]),
        (&held_id, &json!("a link here"))
    );
    let path = format!("/v1/streams/{s}/held");
    let (status, listed) = call(a, reqwest::Method::GET, &path, &moderator, None).await;
    assert_eq!(status, 200);
    assert!(
        listed["held"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == held_id),
        "{listed}"
    );

    let approve = format!("/v1/streams/{s}/held/{}/approve", held_id.as_str().unwrap());
    let (status, approved) = call(b, reqwest::Method::POST, &approve, &moderator, None).await;
    assert_eq!(status, 201, "{approved}");
    let id = approved["comment"]["id"].clone();
    assert_ne!(id, held_id, "a new id");
    let released = author_elsewhere.next_of("released").await;
    assert_eq!(
        released,
        json!({"type": "released", "held_id": held_id, "id": id})
    );
    let shown = viewer.comments(1).await;
    assert_eq!(
        (&shown[0]["id"], &shown[0]["text"]),
        (&id, &json!("a link here"))
    );
    let (status, _) = call(b, reqwest::Method::POST, &approve, &moderator, None).await;
    assert_eq!(status, 404, "decided already");

    let second = say(&mut author, "another link").await;
    assert_eq!(second["held"], true);
    let held_id = second["id"].as_str().unwrap();
    let reject = format!("/v1/streams/{s}/held/{held_id}");
    let (status, _) = call(a, reqwest::Method::DELETE, &reject, &moderator, None).await;
    assert_eq!(status, 204);
    let dropped = author_elsewhere.next_of("dropped").await;
    assert_eq!(dropped, json!({"type": "dropped", "held_id": held_id}));
    let (status, _) = call(a, reqwest::Method::DELETE, &reject, &moderator, None).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        a,
        reqwest::Method::GET,
        &path,
        &a.token("nobody", &[]),
        None,
    )
    .await;
    assert_eq!(status, 403, "only moderators see the queue");

    // Counted where each happened: both held on the author's instance, the approval on b,
    // the rejection on a (one instance on the embedded broker: all there).
    let held = |outcome: &str| format!("danmaku_comments_held_total{{outcome=\"{outcome}\"}}");
    assert_eq!(a.metric(&held("held")).await, 2.0);
    assert_eq!(b.metric(&held("approved")).await, 1.0);
    assert_eq!(a.metric(&held("rejected")).await, 1.0);
}

#[tokio::test]
async fn settings_reach_every_viewer() {
    let app = spawn_app().await;
    settings_reach_every_instance(&app, &app, "tb-settings").await;
}

#[tokio::test]
async fn slow_mode_gives_one_comment_per_interval() {
    let app = spawn_app().await;
    slow_mode_holds_across_instances(&app, &app, "tb-slow").await;
}

#[tokio::test]
async fn only_the_named_roles_post() {
    let app = spawn_app().await;
    post_roles_gate_posting(&app, &app, "tb-roles").await;
}

#[tokio::test]
async fn shadow_bans_are_seen_by_author_and_moderators_only() {
    let app = spawn_app().await;
    shadow_bans_and_mutes(&app, &app, "tb-shadow").await;
}

#[tokio::test]
async fn purge_deletes_a_users_comments_at_once() {
    let app = spawn_app().await;
    a_purge_deletes_in_one_frame(&app, &app, "tb-purge").await;
}

#[tokio::test]
async fn an_author_deletes_their_own_comment() {
    let app = spawn_app().await;
    authors_delete_their_own(&app, &app, "tb-delete").await;
}

#[tokio::test]
async fn blocked_terms_match_confusables() {
    let app = spawn_app().await;
    blocked_terms_refuse_confusables(&app, &app, "tb-terms").await;
}

#[tokio::test]
async fn held_comments_wait_for_a_moderator() {
    let app = spawn_app().await;
    held_comments_are_approved_or_rejected(&app, &app, "tb-held").await;
}
