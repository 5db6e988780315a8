//! WebSocket compression (`permessage-deflate`, the contract's section 11), from a raw
//! client's side: what the handshake answers, frames compressed once that inflate to exactly
//! what a plain socket is sent (thinning's `skipped` tails, the priority lane, `init` and a
//! resume included), compressed client frames, and the refusals: a deflate bomb (1009), RSV1
//! without the extension (1002).

use std::time::Duration;

use danmaku::domain::CommentKind;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{Value, json};

use crate::helpers::{TestApp, publish, spawn_app, spawn_app_with};
use crate::raw::{RawClient, RawFrame};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const ANSWER: &str = "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A frame's text: inflated if it is compressed (RFC 7692 §7.2.2).
fn text(frame: &RawFrame) -> String {
    if !frame.rsv1 {
        return String::from_utf8(frame.payload.clone()).unwrap();
    }
    let mut input = frame.payload.clone();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut inflate = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    inflate
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// `text` as a client's compressed message (masked by `RawClient::frame`).
fn compressed(text: &[u8]) -> Vec<u8> {
    let mut deflate = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(text.len() + 64);
    deflate
        .compress_vec(text, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// The `101`'s head for a handshake with `extra` header lines.
async fn answer(app: &TestApp, extra: &str) -> String {
    RawClient::handshake(app, "hs", None, extra)
        .await
        .1
        .to_ascii_lowercase()
}

#[tokio::test]
async fn compression_is_negotiated_when_offered_in_a_form_frames_can_be_shared_in() {
    let app = spawn_app().await;
    assert!(answer(&app, OFFER).await.contains(ANSWER));
    let other_header =
        "Sec-WebSocket-Extensions: foo\r\nSec-WebSocket-Extensions: permessage-deflate\r\n";
    assert!(answer(&app, other_header).await.contains(ANSWER));
    assert!(!answer(&app, "").await.contains("sec-websocket-extensions"));
    let small_window =
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n";
    assert!(
        !answer(&app, small_window)
            .await
            .contains("sec-websocket-extensions")
    );

    let off = spawn_app_with(|c| {
        c.compression.ws_compression = danmaku::config::Switch::Off;
    })
    .await;
    assert!(
        !answer(&off, OFFER)
            .await
            .contains("sec-websocket-extensions")
    );
}

/// Every frame until `end` is seen in a comments frame (pings skipped).
async fn until_end(client: &mut RawClient) -> Vec<RawFrame> {
    let mut frames = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), client.read_frame())
            .await
            .expect("frames in time")
            .expect("open");
        if frame.opcode == 0x9 {
            continue;
        }
        let done = text(&frame).contains("\"text\":\"end\"");
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

/// Two viewers on one thinned stream, one compressed and one plain, see the same frames,
/// byte for byte once inflated: comments merged into frames, `skipped` tails, system
/// comments in the priority lane; and a resume's `init`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_viewers_are_sent_exactly_what_plain_ones_are() {
    let app = spawn_app_with(|c| c.coalesce_ms = 50).await;
    let broker = app.state.broker.clone();
    let history = "h".repeat(150);
    for _ in 0..3 {
        publish(&broker, "z", CommentKind::System, "", &history).await;
    }
    let path = "z?max_rate=2";
    let (mut deflated, head) = RawClient::handshake(&app, path, None, OFFER).await;
    assert!(head.to_ascii_lowercase().contains(ANSWER), "{head}");
    let (mut plain, _) = RawClient::handshake(&app, path, None, "").await;
    let init = deflated.read_frame().await.unwrap();
    assert!(init.rsv1, "a large init is compressed");
    let plain_init = plain.read_frame().await.unwrap();
    assert!(!plain_init.rsv1);
    assert_eq!(
        init_comments(&text(&init)),
        init_comments(&text(&plain_init))
    );

    for i in 0..60 {
        publish(
            &broker,
            "z",
            CommentKind::User,
            &format!("u{}", i % 7),
            &format!("{i} {}", "x".repeat(180)),
        )
        .await;
        if i % 20 == 0 {
            publish(
                &broker,
                "z",
                CommentKind::Gift,
                "",
                &format!("gift {i} {}", "g".repeat(180)),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    publish(&broker, "z", CommentKind::System, "", "end").await;
    let compressed_frames = until_end(&mut deflated).await;
    let plain_frames = until_end(&mut plain).await;
    let comments = |frames: &[RawFrame]| -> Vec<String> {
        frames
            .iter()
            .map(text)
            .filter(|t| t.contains("\"type\":\"comments\""))
            .collect()
    };
    assert_eq!(comments(&compressed_frames), comments(&plain_frames));
    assert!(
        compressed_frames
            .iter()
            .any(|f| f.rsv1 && text(f).contains("\"skipped\":")),
        "a compressed frame with a tail of its own"
    );
    assert!(
        comments(&plain_frames)
            .iter()
            .any(|t| t.contains("gift 40"))
    );
    assert!(plain_frames.iter().all(|f| !f.rsv1));
    let wire = |frames: &[RawFrame]| frames.iter().map(|f| f.payload.len()).sum::<usize>();
    assert!(
        wire(&compressed_frames) * 10 < wire(&plain_frames) * 9,
        "{} against {}",
        wire(&compressed_frames),
        wire(&plain_frames)
    );

    // A resume: compressed or not, the same comments after the same id.
    let first = init_comments(&text(&init))[0].clone();
    let resume = format!("z?after={first}");
    let (mut deflated, _) = RawClient::handshake(&app, &resume, None, OFFER).await;
    let (mut plain, _) = RawClient::handshake(&app, &resume, None, "").await;
    let (a, b) = (
        deflated.read_frame().await.unwrap(),
        plain.read_frame().await.unwrap(),
    );
    let resumed: Value = serde_json::from_str(&text(&a)).unwrap();
    assert_eq!(resumed["resumed"], true);
    assert_eq!(init_comments(&text(&a)), init_comments(&text(&b)));
    assert!(app.metric("danmaku_ws_frames_compressed_total").await >= 2.0);
}

fn init_comments(init: &str) -> Vec<String> {
    let init: Value = serde_json::from_str(init).unwrap();
    init["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A client's compressed comment is inflated and posted; a bomb closes its own connection
/// with 1009, RSV1 where compression was not negotiated with 1002, and everyone else goes on.
#[tokio::test]
async fn compressed_client_frames_are_inflated_and_bombs_are_refused() {
    let app = spawn_app().await;
    let token = app.token("poster", &[]);
    let (mut poster, _) =
        RawClient::handshake(&app, &format!("c?access_token={token}"), None, OFFER).await;
    poster.read_frame().await.unwrap();
    let comment = json!({"type": "comment", "text": "squeezed", "ref": "r1"}).to_string();
    poster
        .send_raw(&RawClient::frame(
            true,
            4,
            1,
            true,
            &compressed(comment.as_bytes()),
        ))
        .await;
    let ack = loop {
        let frame: Value =
            serde_json::from_str(&text(&poster.read_frame().await.unwrap())).unwrap();
        if frame["type"] == "ack" {
            break frame;
        }
    };
    assert_eq!(ack["ref"], "r1");

    let (mut watcher, _) = RawClient::handshake(&app, "c", None, "").await;
    watcher.read_frame().await.unwrap();
    let bomb = compressed(&vec![b'a'; 1 << 20]);
    assert!(bomb.len() < 4096);
    poster
        .send_raw(&RawClient::frame(true, 4, 1, true, &bomb))
        .await;
    assert_eq!(poster.close_code().await, Some(1009));
    assert_eq!(
        app.metric(r#"danmaku_ws_inflate_refused_total{reason="too_big"}"#)
            .await,
        1.0
    );

    let mut uncompressed = RawClient::connect(&app, "c", None).await;
    uncompressed
        .send_raw(&RawClient::frame(true, 4, 1, true, &compressed(b"{}")))
        .await;
    assert_eq!(uncompressed.close_code().await, Some(1002));

    app.post_system("c", "still here").await;
    loop {
        let frame = text(&watcher.read_frame().await.unwrap());
        if frame.contains("still here") {
            break;
        }
    }
}

/// Python's `websockets` (Debian's, which offers compression by default): a compressed and
/// a plain viewer receive the same frames, and a compressed poster's comments are taken.
#[tokio::test]
async fn python_websockets_receives_the_same_frames_compressed_or_not() {
    let app = spawn_app().await;
    let url = format!("ws://{}", app.addr);
    let token = app.token("py", &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/compression.py");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("/usr/bin/python3")
            .args([script, &url, "py", &token])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the script ends in time")
    .expect("python3 runs (scripts/test installs python3-websockets)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        seen["extensions"][0],
        json!(["PerMessageDeflate"]),
        "{seen}"
    );
    assert_eq!(seen["extensions"][1], json!([]));
    assert_eq!(seen["extensions"][2], json!(["PerMessageDeflate"]));
    let comments = |who: &str| -> Vec<Value> {
        seen[who]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["type"] == "comments")
            .cloned()
            .collect()
    };
    assert_eq!(comments("deflated"), comments("plain"));
    let texts: usize = comments("plain")
        .iter()
        .map(|f| f["comments"].as_array().unwrap().len())
        .sum();
    assert_eq!(texts, 20);
    assert!(app.metric("danmaku_ws_frames_compressed_total").await >= 1.0);
}
