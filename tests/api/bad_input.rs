//! Bad input found by a black-box probe of the hardened build: each gets the error object of
//! the contract and a `4xx`, on both brokers alike, and nothing else breaks.

use serde_json::Value;

use crate::helpers::*;
use crate::http_abuse::assert_error_body;
use crate::redis_broker::instance;
use crate::redis_support::RedisStandalone;

/// An `after` id whose parts do not fit (`u64::MAX-u64::MAX`, or past 2^53 − 1, the largest
/// integer a JSON client reads exactly) is `400` on the WebSocket and on `GET …/comments`.
async fn out_of_range_ids_are_400(app: &TestApp) {
    let _ = app.post_system("range", "one").await;
    for after in [
        "18446744073709551615-18446744073709551615",
        "9007199254740992-0",
        "0-9007199254740992",
    ] {
        let (status, body) = app.refused("range", &format!("after={after}"), &[]).await;
        assert_eq!(status, 400, "ws after={after}: {body}");
        assert_error_body(&body, "invalid");
        let (status, body) = app
            .get_json(&format!("/v1/streams/range/comments?after={after}"))
            .await;
        assert_eq!(status, 400, "GET after={after}: {body}");
        assert_error_body(&body, "invalid");
    }
    // The largest id that fits is a valid resume point, with nothing after it.
    let (_viewer, init) = app
        .viewer_with("range", "after=9007199254740991-9007199254740991")
        .await;
    assert_eq!(init["comments"], Value::Array(vec![]), "{init}");
}

#[tokio::test]
async fn an_after_id_out_of_range_is_400_on_the_embedded_broker() {
    out_of_range_ids_are_400(&spawn_app().await).await;
}

#[tokio::test]
async fn an_after_id_out_of_range_is_400_on_redis() {
    let redis = RedisStandalone::start().await;
    out_of_range_ids_are_400(&instance(&redis.url(), "pod-a").await).await;
}

/// A path segment that is not UTF-8 once percent-decoded, on every route with one, and a file
/// the page or the client library does not have: the error object, not plain text or an
/// empty body.
#[tokio::test]
async fn every_refusal_carries_the_error_object() {
    let app = spawn_app().await;
    let get = |path: String| {
        let request = app.http.get(app.url(&path)).bearer_auth(SERVICE_TOKEN);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let kind = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            (
                status,
                kind,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for path in [
        "/v1/streams/%FF/comments",
        "/v1/streams/%FF",
        "/v1/streams/%FF/bans",
        "/v1/streams/%FF/ws",
    ] {
        let (status, kind, body) = get(path.to_owned()).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(kind, "application/json", "{path}");
        assert_error_body(&body, "invalid");
    }
    for path in [
        "/danmaku-client/nope.js",
        "/page/nope.js",
        "/danmaku-client/%FF",
    ] {
        let (status, kind, body) = get(path.to_owned()).await;
        assert!(status == 404 || status == 400, "{path}: {status} {body}");
        assert_eq!(kind, "application/json", "{path}");
        assert_error_body(
            &body,
            if status == 404 {
                "not_found"
            } else {
                "invalid"
            },
        );
    }
    // What is there is still served as it was.
    let (status, kind, _) = get("/danmaku-client/index.js".to_owned()).await;
    assert_eq!(
        (status, kind.as_str()),
        (200, "text/javascript; charset=utf-8")
    );
}
