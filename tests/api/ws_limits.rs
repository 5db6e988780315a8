//! Client errors, limits and close codes: nothing a client sends breaks anyone else.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::raw::RawClient;

async fn expect_error(client: &mut WsClient, code: &str) -> serde_json::Value {
    let error = client.next_of("error").await;
    assert_eq!(error["code"], code, "{error}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    error
}

#[tokio::test]
async fn anonymous_viewers_may_watch_but_not_post() {
    let app = spawn_app().await;
    let (mut anon, _) = app.viewer("anon").await;
    anon.send_json(json!({"type": "comment", "text": "hi", "ref": "a1"}))
        .await;
    let error = expect_error(&mut anon, "unauthorized").await;
    assert_eq!(error["ref"], "a1");
}

#[tokio::test]
async fn a_token_that_expired_after_the_handshake_may_watch_but_not_post() {
    let app = spawn_app().await;
    // Expired a second ago: inside the handshake's 5 s clock-skew leeway, past for posting.
    let token = app.token_expiring("late", &[], -1);
    let (mut late, _) = app
        .viewer_with("expiry", &format!("access_token={token}"))
        .await;
    late.send_json(json!({"type": "comment", "text": "hi"}))
        .await;
    expect_error(&mut late, "unauthorized").await;
    app.post_system("expiry", "still watching").await;
    assert_eq!(late.comments(1).await[0]["text"], "still watching");
}

#[tokio::test]
async fn invalid_comments_are_refused_with_invalid() {
    let app = spawn_app().await;
    let (mut u, _) = app.user("invalid", "u").await;
    for (frame, has_ref) in [
        (json!({"type": "comment", "text": "", "ref": "r"}), true),
        (json!({"type": "comment", "text": " \t ", "ref": "r"}), true),
        (
            json!({"type": "comment", "text": "line\nbreak", "ref": "r"}),
            true,
        ),
        (
            json!({"type": "comment", "text": "esc\u{1b}", "ref": "r"}),
            true,
        ),
        (json!({"type": "comment", "ref": "r"}), false),
        (json!({"type": "shout", "text": "x"}), false),
        (
            json!({"type": "comment", "text": "x", "ref": "r".repeat(65)}),
            false,
        ),
    ] {
        u.send_json(frame.clone()).await;
        let error = expect_error(&mut u, "invalid").await;
        if has_ref {
            assert_eq!(error["ref"], "r", "{frame}");
        }
    }
    u.send_text("{not json").await;
    expect_error(&mut u, "invalid").await;
}

#[tokio::test]
async fn text_length_counts_characters_not_bytes() {
    let app = spawn_app().await;
    let (mut u, _) = app.user("length", "u").await;
    u.send_json(json!({"type": "comment", "text": "あ".repeat(200), "ref": "ok"}))
        .await;
    assert_eq!(u.next_of("ack").await["ref"], "ok");
    u.send_json(json!({"type": "comment", "text": "a".repeat(201), "ref": "long"}))
        .await;
    let error = expect_error(&mut u, "too_long").await;
    assert_eq!(error["ref"], "long");
}

#[tokio::test]
async fn posting_too_fast_is_rate_limited_with_a_retry_hint() {
    let app = spawn_app_with(|c| {
        c.rate_per_sec = 1.0;
        c.rate_burst = 2.0;
    })
    .await;
    let (mut u, _) = app.user("rate", "fast").await;
    for i in 0..2 {
        u.send_json(json!({"type": "comment", "text": format!("m{i}")}))
            .await;
        u.next_of("ack").await;
    }
    u.send_json(json!({"type": "comment", "text": "m2", "ref": "third"}))
        .await;
    let error = expect_error(&mut u, "rate_limited").await;
    assert_eq!(error["ref"], "third");
    let retry = error["retry_after_ms"].as_u64().unwrap();
    assert!((1..=1000).contains(&retry), "retry_after_ms {retry}");
    // The same user on a second socket shares the bucket; another user has their own.
    let (mut same, _) = app.user("rate", "fast").await;
    same.send_json(json!({"type": "comment", "text": "again"}))
        .await;
    expect_error(&mut same, "rate_limited").await;
    let (mut other, _) = app.user("rate", "slow").await;
    other
        .send_json(json!({"type": "comment", "text": "mine"}))
        .await;
    other.next_of("ack").await;
    assert!(
        app.metric("danmaku_comments_rejected_total{code=\"rate_limited\"}")
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn ten_malformed_frames_are_tolerated_the_eleventh_closes_with_1008() {
    let app = spawn_app().await;
    let (mut u, _) = app.user("malformed", "u").await;
    for _ in 0..10 {
        u.send_text("nope").await;
        expect_error(&mut u, "invalid").await;
    }
    // A good frame resets the count.
    u.send_json(json!({"type": "ping"})).await;
    u.next_of("pong").await;
    for _ in 0..10 {
        u.send_text("nope").await;
        expect_error(&mut u, "invalid").await;
    }
    u.send_text("nope").await;
    assert_eq!(u.closed().await, Closed::Code(1008));
}

#[tokio::test]
async fn oversized_and_binary_frames_close_the_connection_and_no_one_else() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let app = spawn_app().await;
    let (mut bystander, _) = app.viewer("limits").await;
    let (mut big, _) = app.viewer("limits").await;
    big.send_text(&format!(
        r#"{{"type":"comment","text":"{}"}}"#,
        "x".repeat(4100)
    ))
    .await;
    assert_eq!(big.closed().await, Closed::Code(1009));
    let (mut binary, _) = app.viewer("limits").await;
    binary
        .ws
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(binary.closed().await, Closed::Code(1008));
    app.post_system("limits", "still here").await;
    assert_eq!(bystander.comments(1).await[0]["text"], "still here");
}

#[tokio::test]
async fn rfc_6455_violations_get_the_rfc_close_codes() {
    let app = spawn_app().await;
    let cases: [(&str, Vec<u8>, u16); 6] = [
        (
            "invalid UTF-8",
            RawClient::frame(true, 0, 0x1, true, &[0xff, 0xfe, 0xfd]),
            1007,
        ),
        (
            "unmasked frame",
            RawClient::frame(true, 0, 0x1, false, br#"{"type":"ping"}"#),
            1002,
        ),
        (
            "reserved bit",
            RawClient::frame(true, 0b100, 0x1, true, br#"{"type":"ping"}"#),
            1002,
        ),
        (
            "fragmented ping",
            RawClient::frame(false, 0, 0x9, true, b"x"),
            1002,
        ),
        (
            "long ping",
            RawClient::frame(true, 0, 0x9, true, &[b'x'; 126]),
            1002,
        ),
        (
            "unknown opcode",
            RawClient::frame(true, 0, 0x3, true, b"x"),
            1002,
        ),
    ];
    for (name, bytes, code) in cases {
        let mut client = RawClient::connect(&app, "rfc", None).await;
        client.send_raw(&bytes).await;
        assert_eq!(client.close_code().await, Some(code), "{name}");
    }
    let (mut ok, _) = app.viewer("rfc").await;
    ok.send_json(json!({"type": "ping"})).await;
    ok.next_of("pong").await;
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_idle_timeout_and_pong_keeps_them_open() {
    let app = spawn_app_with(|c| c.idle_timeout_ms = 400).await;
    // This client reads (so its library answers the server's pings) and stays.
    let (mut answering, _) = app.viewer("idle").await;
    // This one never answers anything.
    let mut silent = RawClient::connect(&app, "idle", None).await;
    let (code, ()) = tokio::join!(
        silent.close_code(),
        answering.quiet_for(Duration::from_millis(1200))
    );
    assert_eq!(code, Some(4000));
    answering.send_json(json!({"type": "ping"})).await;
    answering.next_of("pong").await;
}

#[tokio::test]
async fn a_slow_consumer_is_disconnected_with_4001_without_delaying_others() {
    let app = spawn_app().await;
    let (mut fast, _) = app.viewer("slow").await;
    // A reader with a tiny receive window that stops reading after init.
    let mut slow = RawClient::connect(&app, "slow", Some(4096)).await;
    let text = "x".repeat(200);
    let total = 30_000;
    for chunk in 0..total / 500 {
        for _ in 0..500 {
            publish(&app, "slow", &text).await;
        }
        // The fast viewer keeps up: it receives every comment while the slow one stalls.
        let got = fast.comments(500).await;
        assert_eq!(got.len(), 500, "chunk {chunk}");
    }
    // Now the slow reader reads: after what was buffered it learns it was cut off.
    assert_eq!(
        slow.close_code_within(Duration::from_secs(30)).await,
        Some(4001)
    );
    assert!(
        app.metric("danmaku_comments_dropped_total{reason=\"slow_consumer\"}")
            .await
            > 0.0
    );
    eventually("the slow connection to be gone", || async {
        app.metric("danmaku_ws_connections").await == 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_takes_no_writes_is_dropped_after_the_write_timeout() {
    let app = spawn_app_with(|c| c.idle_timeout_ms = 1000).await;
    let stalled = RawClient::connect(&app, "stalled", Some(4096)).await;
    let text = "y".repeat(200);
    // Paced, so the socket task writes until the socket is full and then waits in a write
    // (rather than finding itself a whole buffer behind first).
    for _ in 0..100 {
        for _ in 0..100 {
            publish(&app, "stalled", &text).await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Which comes first depends on the machine's load: the write timing out (the usual
    // case) or the socket task finding itself a whole buffer behind once a write returns.
    // Either way the socket is cut off and counted; the slow-consumer path has its own test.
    eventually("the stalled socket to be counted as dropped", || async {
        app.metric("danmaku_comments_dropped_total{reason=\"write_timeout\"}")
            .await
            + app
                .metric("danmaku_comments_dropped_total{reason=\"slow_consumer\"}")
                .await
            > 0.0
    })
    .await;
    eventually("the stalled connection to be gone", || async {
        app.metric("danmaku_ws_connections").await == 0.0
    })
    .await;
    drop(stalled.stream);
}

/// Publishes through the app's own broker: the path every comment takes, without HTTP's
/// per-request cost, so a test can outrun a socket's buffers.
async fn publish(app: &TestApp, stream: &str, text: &str) {
    use danmaku::broker::NewComment;
    use danmaku::domain::{CommentKind, CommentText, StreamId};
    app.state
        .broker
        .publish(NewComment {
            stream: StreamId::parse(stream).unwrap(),
            kind: CommentKind::System,
            by_moderator: false,
            user: None,
            text: CommentText::parse(text.into(), 200).unwrap(),
            data: None,
            media_ts: None,
            dedup: None,
            rate: None,
            by_service: true,
            roles: Vec::new(),
            route: danmaku::broker::Route::Public,
        })
        .await
        .unwrap();
}
