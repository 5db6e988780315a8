//! The Pusher channels protocol (version 7), as Sockudo speaks it (the peer in
//! `bench/peers/sockudo`): a viewer's WebSocket and a poster's signed HTTP trigger.
//!
//! A viewer connects to `/app/<key>?protocol=7&…`, waits for `pusher:connection_established`,
//! sends `pusher:subscribe` for the public channel named after the stream, and takes
//! `pusher_internal:subscription_succeeded` for its `init` (a subscription carries no history).
//! The server pings with `pusher:ping`; the client answers `pusher:pong`. A comment is an event
//! named `comment` whose `data` is a JSON string, `{id, kind, text, ts}`: Pusher assigns no id
//! and no timestamp, so the poster stamps both ([`comment_data`]).
//!
//! A poster triggers through the HTTP events API, `POST /apps/<app_id>/events`, signed as
//! Pusher's REST API asks ([`signed_query`]); the 200 answer is the acknowledgement.

use std::borrow::Cow;
use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::Deserialize;
use sha2::Sha256;

use super::{Frame, WireComment};

/// The answer to a `pusher:ping`.
pub(crate) const PONG: &str = r#"{"event":"pusher:pong","data":{}}"#;

/// The name of the event a comment is.
pub(crate) const COMMENT_EVENT: &str = "comment";

/// A Pusher app as the server's configuration holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct App {
    pub id: String,
    pub key: String,
    pub secret: String,
}

impl App {
    /// Parses `<id>:<key>:<secret>`.
    pub(crate) fn parse(spec: &str) -> anyhow::Result<App> {
        let mut parts = spec.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(key), Some(secret))
                if !id.is_empty() && !key.is_empty() && !secret.is_empty() =>
            {
                Ok(App {
                    id: id.to_owned(),
                    key: key.to_owned(),
                    secret: secret.to_owned(),
                })
            }
            _ => anyhow::bail!("a Pusher app is given as <id>:<key>:<secret>, got {spec:?}"),
        }
    }

    /// The path of the events API.
    pub(crate) fn events_path(&self) -> String {
        format!("/apps/{}/events", self.id)
    }
}

/// The WebSocket URL of the app whose key is `key` on the instance at `base`.
pub(crate) fn url(base: &str, key: &str) -> String {
    let base = base.trim_end_matches('/');
    format!("{base}/app/{key}?protocol=7&client=danmaku-bench&version=1")
}

/// The frame that subscribes to the public channel `channel`.
pub(crate) fn subscribe(channel: &str) -> String {
    serde_json::json!({ "event": "pusher:subscribe", "data": { "channel": channel } }).to_string()
}

/// The `data` of a comment event: a JSON string of the fields the tally reads.
pub(crate) fn comment_data(id: &str, text: &str, ts_ms: u64) -> String {
    serde_json::json!({ "id": id, "kind": "user", "text": text, "ts": ts_ms }).to_string()
}

/// The body of a trigger of the event `name` with `data` (already a JSON string) on `channel`.
pub(crate) fn event_body(name: &str, channel: &str, data: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "name": name, "channel": channel, "data": data }))
        .expect("JSON serializes")
}

/// The query string of a signed request to `path` with `body`, made at `timestamp` (Unix
/// seconds): `auth_key`, `auth_timestamp`, `auth_version=1.0`, `body_md5` (in that order,
/// which is the sorted one) and `auth_signature`, the HMAC-SHA256 (hex) with the app's secret
/// of `POST\n<path>\n<those four>`.
pub(crate) fn signed_query(
    app: &App,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: u64,
) -> String {
    let query = format!(
        "auth_key={}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={}",
        app.key,
        hex(&Md5::digest(body))
    );
    let mut mac =
        Hmac::<Sha256>::new_from_slice(app.secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{method}\n{path}\n{query}").as_bytes());
    format!(
        "{query}&auth_signature={}",
        hex(&mac.finalize().into_bytes())
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A frame from the server: every event carries its name, most a channel, and `data` (a JSON
/// string, or an object in a few of the server's own events).
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

/// A comment's fields, read from an event's `data` string.
#[derive(Deserialize)]
struct Comment {
    id: String,
    #[serde(default)]
    kind: Option<String>,
    text: String,
    ts: u64,
}

/// Decodes one text frame from a Sockudo instance.
pub(super) fn decode(text: &str) -> Result<Frame<'static>, serde_json::Error> {
    let event: Event<'_> = serde_json::from_str(text)?;
    Ok(match event.event.as_ref() {
        "pusher:connection_established" => Frame::Established,
        "pusher_internal:subscription_succeeded" => Frame::Init,
        "pusher:ping" => Frame::Ping,
        "pusher:error" | "pusher:subscription_error" => Frame::Refused(format!(
            "{}: {}",
            event.event,
            data_text(event.data.as_ref())
        )),
        COMMENT_EVENT => {
            let data = data_text(event.data.as_ref());
            let c: Comment = serde_json::from_str(&data)?;
            Frame::Comments {
                comments: vec![WireComment {
                    id: Cow::Owned(c.id),
                    kind: c.kind.map(Cow::Owned),
                    text: Cow::Owned(c.text),
                    ts: c.ts,
                }],
                skipped: 0,
            }
        }
        _ => Frame::Other,
    })
}

/// An event's `data` as text: the string itself, or the JSON of an object.
fn data_text(data: Option<&serde_json::Value>) -> String {
    match data {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{comment_text, parse_comment_text};

    /// Pusher's worked example of a signed request (its REST API documentation).
    #[test]
    fn signs_as_pusher_s_worked_example() {
        let app = App {
            id: "3".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
        };
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let query = signed_query(&app, "POST", &app.events_path(), body, 1_353_088_179);
        assert_eq!(
            query,
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0\
             &body_md5=ec365a775a4cd0599faeb73354201b6f\
             &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn parses_an_app_and_refuses_a_short_one() {
        assert_eq!(
            App::parse("app:key:se:cret").unwrap(),
            App {
                id: "app".into(),
                key: "key".into(),
                secret: "se:cret".into()
            }
        );
        assert!(App::parse("app:key").is_err());
        assert!(App::parse("app::secret").is_err());
    }

    #[test]
    fn decodes_what_a_viewer_reads() {
        let established = r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#;
        assert_eq!(decode(established).unwrap(), Frame::Established);
        let ok =
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"b1-0","data":"{}"}"#;
        assert_eq!(decode(ok).unwrap(), Frame::Init);
        assert_eq!(
            decode(r#"{"event":"pusher:ping","data":{}}"#).unwrap(),
            Frame::Ping
        );
        let error = r#"{"event":"pusher:error","data":{"code":4001,"message":"App not found"}}"#;
        let Frame::Refused(why) = decode(error).unwrap() else {
            panic!("not refused");
        };
        assert!(why.contains("4001"), "{why}");
        assert_eq!(
            decode(r#"{"event":"pusher_internal:member_added","channel":"c","data":"{}"}"#)
                .unwrap(),
            Frame::Other
        );
        assert!(decode("not json").is_err());

        // A comment as a poster triggers it, as the server relays it.
        let data = comment_data(
            "1732240000000-7",
            &comment_text(4, 7, 1_000),
            1_732_240_000_000,
        );
        let relayed = serde_json::json!({"event": "comment", "channel": "b1-0", "data": data});
        let Frame::Comments { comments, skipped } = decode(&relayed.to_string()).unwrap() else {
            panic!("not comments");
        };
        assert_eq!(skipped, 0);
        assert_eq!(comments.len(), 1);
        assert_eq!(comments[0].id, "1732240000000-7");
        assert!(comments[0].is_user());
        assert_eq!(comments[0].ts, 1_732_240_000_000);
        assert_eq!(parse_comment_text(&comments[0].text), Some((4, 7, 1_000)));
        // A comment whose data is not a comment is an error, not a silent skip.
        assert!(decode(r#"{"event":"comment","channel":"c","data":"{}"}"#).is_err());
    }

    #[test]
    fn encodes_what_the_server_expects() {
        assert_eq!(
            url("ws://127.0.0.1:8251/", "k"),
            "ws://127.0.0.1:8251/app/k?protocol=7&client=danmaku-bench&version=1"
        );
        let sub: serde_json::Value = serde_json::from_str(&subscribe("b1-0")).unwrap();
        assert_eq!(
            sub,
            serde_json::json!({"event": "pusher:subscribe", "data": {"channel": "b1-0"}})
        );
        let body: serde_json::Value =
            serde_json::from_slice(&event_body(COMMENT_EVENT, "b1-0", r#"{"a":1}"#)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"name": "comment", "channel": "b1-0", "data": "{\"a\":1}"})
        );
        let pong: serde_json::Value = serde_json::from_str(PONG).unwrap();
        assert_eq!(pong["event"], "pusher:pong");
    }
}
