//! Every server frame of docs/protocol.md section 2, in the order a client sees them.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn init_is_the_first_frame_with_server_identity() {
    let app = spawn_app().await;
    let (_viewer, init) = app.viewer("init-shape").await;
    assert_eq!(init["stream_id"], "init-shape");
    assert_eq!(init["comments"], json!([]));
    assert_eq!(init["viewer_count"], 1);
    assert_eq!(init["resumed"], false);
    assert_eq!(init["server"]["pod"], "test-pod");
    assert_eq!(init["server"]["slot"], "blue");
    assert_eq!(init["server"]["version"], env!("CARGO_PKG_VERSION"));
    let keys: Vec<&String> = init.as_object().unwrap().keys().collect();
    assert_eq!(keys[0], "type", "type comes first");
}

#[tokio::test]
async fn init_carries_the_newest_comments_oldest_first() {
    let app = spawn_app_with(|c| c.init_comments = 3).await;
    for i in 0..5 {
        app.post_system("init-history", &format!("c{i}")).await;
    }
    let (_viewer, init) = app.viewer("init-history").await;
    let texts: Vec<&str> = init["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["c2", "c3", "c4"]);
}

/// Fresh `init`s come from a page the hub keeps while nothing changes on the stream; each
/// one still shows the stream as it is when it is sent.
#[tokio::test]
async fn every_init_shows_the_stream_as_it_is_now() {
    let app = spawn_app().await;
    let stream = "init-fresh";
    let (_first, init) = app.viewer(stream).await;
    assert_eq!(init["comments"], json!([]));
    let a = app.post_system(stream, "a").await;
    let (_second, init) = app.viewer(stream).await;
    assert_eq!(init["comments"], json!([a]));
    let (_third, init) = app.viewer(stream).await;
    assert_eq!(init["comments"], json!([a]), "the same page again");
    let b = app.post_system(stream, "b").await;
    let (_fourth, init) = app.viewer(stream).await;
    assert_eq!(init["comments"], json!([a, b]));
    let id = a["id"].as_str().unwrap();
    let deleted = app
        .http
        .delete(app.url(&format!("/v1/streams/{stream}/comments/{id}")))
        .bearer_auth(SERVICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (_fifth, init) = app.viewer(stream).await;
    assert_eq!(
        init["comments"],
        json!([b]),
        "not the page from before the deletion"
    );
    let (_resumed, init) = app.viewer_with(stream, &format!("after={id}")).await;
    assert_eq!(init["resumed"], true);
    assert_eq!(
        init["comments"],
        json!([b]),
        "a resume reads what it asked for"
    );
}

#[tokio::test]
async fn a_posted_comment_is_acked_and_reaches_every_viewer_including_the_poster() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("fanout", "alice").await;
    let (mut watcher, _) = app.viewer("fanout").await;
    alice
        .send_json(json!({"type": "comment", "text": "hello 世界", "ref": "r-1"}))
        .await;
    let ack = alice.next_of("ack").await;
    assert_eq!(ack["ref"], "r-1");
    let id = ack["id"].as_str().unwrap().to_owned();
    for client in [&mut alice, &mut watcher] {
        let comments = client.comments(1).await;
        let c = &comments[0];
        assert_eq!(c["id"], id.as_str());
        assert_eq!(c["stream_id"], "fanout");
        assert_eq!(c["kind"], "user");
        assert_eq!(c["user"], json!({"id": "alice", "name": "alice-name"}));
        assert_eq!(c["text"], "hello 世界");
        assert_eq!(c["data"], json!(null));
        let ts = c["ts"].as_u64().unwrap();
        assert!(ts.abs_diff(danmaku::domain::now_ms()) < 5_000, "ts {ts}");
        let id_ms: u64 = id.split('-').next().unwrap().parse().unwrap();
        assert!(
            id_ms >= ts,
            "the id's time is the publish time or later ({id} vs {ts})"
        );
    }
}

#[tokio::test]
async fn system_comments_from_services_reach_viewers_with_their_data() {
    let app = spawn_app().await;
    let (mut viewer, _) = app.viewer("gifts").await;
    let response = app
        .post("gifts", json!({"kind": "gift", "text": "sent a rose", "user": {"id": "u9", "name": "Nine"}, "data": {"item": "rose", "amount": 3}}))
        .await;
    assert_eq!(response.status(), 201);
    let c = &viewer.comments(1).await[0];
    assert_eq!(c["kind"], "gift");
    assert_eq!(c["data"], json!({"item": "rose", "amount": 3}));
    assert_eq!(c["user"]["id"], "u9");
}

#[tokio::test]
async fn comment_ids_increase_in_delivery_order() {
    let app = spawn_app().await;
    let (mut viewer, _) = app.viewer("order").await;
    for i in 0..50 {
        app.post_system("order", &format!("n{i}")).await;
    }
    let comments = viewer.comments(50).await;
    let ids: Vec<(u64, u64)> = comments
        .iter()
        .map(|c| {
            let (ms, seq) = c["id"].as_str().unwrap().split_once('-').unwrap();
            (ms.parse().unwrap(), seq.parse().unwrap())
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let texts: Vec<String> = comments
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, (0..50).map(|i| format!("n{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn ping_frames_get_pong() {
    let app = spawn_app().await;
    let (mut viewer, _) = app.viewer("ping").await;
    viewer.send_json(json!({"type": "ping"})).await;
    assert_eq!(viewer.next_of("pong").await, json!({"type": "pong"}));
}

#[tokio::test]
async fn websocket_pings_are_answered() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let app = spawn_app().await;
    let (mut viewer, _) = app.viewer("ws-ping").await;
    viewer
        .ws
        .send(Message::Ping(b"hi".to_vec().into()))
        .await
        .unwrap();
    loop {
        let message = tokio::time::timeout(WAIT, viewer.ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Pong(payload) = message {
            assert_eq!(&payload[..], b"hi");
            break;
        }
    }
}

#[tokio::test]
async fn viewer_counts_are_pushed_when_they_change_at_most_once_a_second() {
    let app = spawn_app().await;
    let (mut first, init) = app.viewer("counts").await;
    assert_eq!(init["viewer_count"], 1);
    let (_second, init) = app.viewer("counts").await;
    assert_eq!(init["viewer_count"], 2);
    let push = first.next_json().await;
    assert_eq!(push, json!({"type": "viewers", "count": 2}));
    let (third, _) = app.viewer("counts").await;
    let (fourth, _) = app.viewer("counts").await;
    drop(third);
    drop(fourth);
    // Two joins and two leaves inside one push period may net to no change; whatever is
    // pushed next, pushes are a second apart and only carry changes.
    let (_fifth, _) = app.viewer("counts").await;
    let started = std::time::Instant::now();
    let push = first.next_json().await;
    assert_eq!(push["type"], "viewers");
    assert_ne!(push["count"], 2, "a push carries a change");
    assert!(started.elapsed() <= Duration::from_millis(2100));
    first.quiet_for(Duration::from_millis(1200)).await;
}

#[tokio::test]
async fn resume_with_after_carries_everything_newer_and_says_resumed() {
    let app = spawn_app_with(|c| {
        c.init_comments = 2;
        c.history_len = 10;
    })
    .await;
    let first = app.post_system("resume", "one").await;
    for text in ["two", "three", "four", "five"] {
        app.post_system("resume", text).await;
    }
    let (_v, init) = app
        .viewer_with(
            "resume",
            &format!("after={}", first["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(init["resumed"], true);
    let texts: Vec<&str> = init["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["two", "three", "four", "five"],
        "all newer, not just DANMAKU_INIT_COMMENTS"
    );
}

#[tokio::test]
async fn resume_from_beyond_the_history_is_not_resumed() {
    let app = spawn_app_with(|c| {
        c.init_comments = 2;
        c.history_len = 3;
    })
    .await;
    let first = app.post_system("resume-old", "one").await;
    for text in ["two", "three", "four", "five"] {
        app.post_system("resume-old", text).await;
    }
    let (_v, init) = app
        .viewer_with(
            "resume-old",
            &format!("after={}", first["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(init["resumed"], false);
    let texts: Vec<&str> = init["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["four", "five"]);
}

#[tokio::test]
async fn a_resumed_client_never_gets_a_comment_twice() {
    let app = spawn_app().await;
    let c1 = app.post_system("resume-dedup", "one").await;
    let c2 = app.post_system("resume-dedup", "two").await;
    let (mut v, init) = app
        .viewer_with(
            "resume-dedup",
            &format!("after={}", c1["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(init["comments"].as_array().unwrap().len(), 1);
    assert_eq!(init["comments"][0]["id"], c2["id"]);
    let c3 = app.post_system("resume-dedup", "three").await;
    let next = v.comments(1).await;
    assert_eq!(next[0]["id"], c3["id"]);
}

/// `init` carries the stream's epoch, the same for every connection; a resume that names
/// another epoch is not one.
#[tokio::test]
async fn a_resume_names_its_epoch_and_another_epoch_is_not_resumed() {
    let app = spawn_app().await;
    let s = "epoch";
    let (_first, init) = app.viewer(s).await;
    let epoch = init["epoch"].as_str().unwrap().to_owned();
    assert!(!epoch.is_empty());
    let id = app.post_system(s, "one").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post_system(s, "two").await;
    let (_again, init) = app.viewer(s).await;
    assert_eq!(init["epoch"], epoch.as_str());
    let (_same, init) = app
        .viewer_with(s, &format!("after={id}&epoch={epoch}"))
        .await;
    assert_eq!(
        (&init["resumed"], init["comments"].as_array().unwrap().len()),
        (&json!(true), 1)
    );
    let (_other, init) = app
        .viewer_with(s, &format!("after={id}&epoch=0123abcd"))
        .await;
    assert_eq!(init["resumed"], false, "another epoch: {init}");
    assert_eq!(
        init["comments"].as_array().unwrap().len(),
        2,
        "the newest comments"
    );
    assert_eq!(init["epoch"], epoch.as_str());
    let (status, _) = app.refused(s, "after=1-0&epoch=", &[]).await;
    assert_eq!(status, 400);
}
