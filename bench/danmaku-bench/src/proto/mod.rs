//! The wire protocols the load generator speaks: danmaku's JSON frames, Socket.IO 5 over
//! Engine.IO 4 on a plain WebSocket (the peer in `bench/peers/socketio`), and the Pusher channels
//! protocol ([`pusher`], the Sockudo peer in `bench/peers/sockudo`).
//!
//! Only what the scenarios need is decoded: a frame's kind, its comments' `id`, `kind`, `text`
//! and `ts`, a `comments` frame's `skipped`, and an acknowledgement's `ref`, `id` or error.
//! Everything else is skipped by serde without being built. The chaos soak's clients read more,
//! as the client library does ([`ClientFrame`]). It imports nothing of the crate.

pub(crate) mod pusher;

use std::borrow::Cow;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Which server a run talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Target {
    Danmaku,
    Socketio,
    /// Pusher channels (Sockudo): viewers subscribe over the WebSocket, posters trigger over
    /// the HTTP events API.
    Pusher,
}

impl Target {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Target::Danmaku => "danmaku",
            Target::Socketio => "socketio",
            Target::Pusher => "pusher",
        }
    }

    /// The answer to a server's ping ([`Frame::Ping`]).
    pub(crate) fn pong(self) -> &'static str {
        match self {
            Target::Pusher => pusher::PONG,
            Target::Danmaku | Target::Socketio => ENGINE_IO_PONG,
        }
    }

    /// The WebSocket URL of `stream` on the instance at `base` (`ws://host:port`), asking
    /// for at most `max_rate` user comments a second when given (danmaku's `max_rate=`).
    /// `token` is danmaku's access token, and Pusher's app key (the stream is subscribed to
    /// once connected).
    pub(crate) fn url(
        self,
        base: &str,
        stream: &str,
        token: Option<&str>,
        max_rate: Option<u32>,
    ) -> String {
        let base = base.trim_end_matches('/');
        match self {
            Target::Danmaku => {
                let query: Vec<String> = max_rate
                    .map(|n| format!("max_rate={n}"))
                    .into_iter()
                    .chain(token.map(|t| format!("access_token={t}")))
                    .collect();
                if query.is_empty() {
                    format!("{base}/v1/streams/{stream}/ws")
                } else {
                    format!("{base}/v1/streams/{stream}/ws?{}", query.join("&"))
                }
            }
            Target::Socketio => format!("{base}/socket.io/?EIO=4&transport=websocket"),
            Target::Pusher => pusher::url(base, token.unwrap_or_default()),
        }
    }

    /// The text frame a client sends right after the WebSocket opens, if any: Socket.IO's
    /// CONNECT to the default namespace, carrying the stream and user in its auth payload.
    pub(crate) fn hello(self, stream: &str, user: Option<&str>) -> Option<String> {
        match self {
            Target::Danmaku | Target::Pusher => None,
            Target::Socketio => {
                let auth = match user {
                    Some(user) => serde_json::json!({ "stream": stream, "user": user }),
                    None => serde_json::json!({ "stream": stream }),
                };
                Some(format!("40{auth}"))
            }
        }
    }

    /// The text frame that posts `text` with the acknowledgement reference `reference` (not
    /// Pusher's: its posters trigger over the HTTP events API).
    pub(crate) fn post(self, text: &str, reference: &str) -> String {
        let body = serde_json::json!({ "type": "comment", "text": text, "ref": reference });
        match self {
            Target::Danmaku => body.to_string(),
            Target::Pusher => unreachable!("a Pusher poster triggers over HTTP"),
            Target::Socketio => {
                let body = serde_json::json!({ "text": text, "ref": reference });
                format!("42{}", serde_json::json!(["comment", body]))
            }
        }
    }

    /// Decodes one text frame from the server.
    pub(crate) fn decode(self, text: &str) -> Result<Frame<'_>, serde_json::Error> {
        match self {
            Target::Danmaku => {
                let mut payload: Payload<'_> = serde_json::from_str(text)?;
                let kind = payload.kind.take().unwrap_or_default();
                Ok(Frame::from_payload(&kind, payload))
            }
            Target::Socketio => decode_socketio(text),
            Target::Pusher => pusher::decode(text),
        }
    }
}

/// What a frame from the server means to a scenario.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame<'a> {
    /// The first frame of a stream (its comments are history, not deliveries).
    Init,
    /// New comments, and how many of the stream's comments the server chose not to send
    /// this connection since its previous `comments` frame or `init` (`skipped`, 0 when
    /// absent).
    Comments {
        comments: Vec<WireComment<'a>>,
        skipped: u64,
    },
    /// A post was accepted (`id`) or refused (`error`).
    Ack {
        reference: Option<Cow<'a, str>>,
        error: Option<Cow<'a, str>>,
    },
    /// A server's ping: answer with [`Target::pong`].
    Ping,
    /// Pusher's `pusher:connection_established`: subscribe now.
    Established,
    /// The Socket.IO CONNECT or the Pusher subscription was refused, or danmaku sent
    /// `reconnect`.
    Refused(String),
    /// Anything the scenarios do not look at (viewers, pong, deleted, Socket.IO's CONNECT ack).
    Other,
}

/// Engine.IO's answer to a server ping.
pub(crate) const ENGINE_IO_PONG: &str = "3";

/// The fields of a comment the scenarios read.
#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct WireComment<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// `user`, `gift`, `follow`, `mission` or `system` (absent: `user`).
    #[serde(borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub text: Cow<'a, str>,
    pub ts: u64,
}

impl WireComment<'_> {
    /// A user comment: the only kind a server may thin.
    pub(crate) fn is_user(&self) -> bool {
        self.kind.as_deref().is_none_or(|k| k == "user")
    }
}

/// The union of the payload fields of every frame kind of both protocols.
#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    comments: Vec<WireComment<'a>>,
    #[serde(default)]
    skipped: u64,
    #[serde(rename = "ref", borrow, default)]
    reference: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
}

impl<'a> Frame<'a> {
    fn from_payload(kind: &str, payload: Payload<'a>) -> Self {
        match kind {
            "init" => Frame::Init,
            "comments" => Frame::Comments {
                comments: payload.comments,
                skipped: payload.skipped,
            },
            "ack" => Frame::Ack {
                reference: payload.reference,
                error: payload.error,
            },
            "error" => Frame::Ack {
                reference: payload.reference,
                error: Some(payload.code.unwrap_or(Cow::Borrowed("error"))),
            },
            "reconnect" => Frame::Refused("reconnect".to_owned()),
            _ => Frame::Other,
        }
    }
}

/// A danmaku frame as its client library reads it (the chaos soak's viewers and posters):
/// what the scenarios' [`Frame`] leaves out, `init`'s comments, `resumed` and `epoch`, an
/// `ack`'s `id`, an `error`'s `retry_after_ms`, and `reconnect`'s `after_ms`.
#[derive(Debug, PartialEq)]
pub(crate) enum ClientFrame<'a> {
    Init {
        comments: Vec<WireComment<'a>>,
        resumed: bool,
        epoch: Option<Cow<'a, str>>,
    },
    Comments {
        comments: Vec<WireComment<'a>>,
        skipped: u64,
    },
    Ack {
        reference: Option<Cow<'a, str>>,
        id: Cow<'a, str>,
    },
    Error {
        reference: Option<Cow<'a, str>>,
        code: Cow<'a, str>,
        retry_after_ms: Option<u64>,
    },
    Reconnect {
        after_ms: u64,
    },
    /// `viewers`, `deleted`, `pong`, and whatever a later version adds.
    Other,
}

/// The fields of every danmaku frame kind a [`ClientFrame`] reads.
#[derive(Deserialize)]
struct ClientPayload<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    comments: Vec<WireComment<'a>>,
    #[serde(default)]
    skipped: u64,
    #[serde(default)]
    resumed: bool,
    #[serde(borrow, default)]
    epoch: Option<Cow<'a, str>>,
    #[serde(rename = "ref", borrow, default)]
    reference: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(default)]
    retry_after_ms: Option<u64>,
    #[serde(default)]
    after_ms: u64,
}

/// Decodes one danmaku text frame the way a client library does.
pub(crate) fn decode_client(text: &str) -> Result<ClientFrame<'_>, serde_json::Error> {
    let p: ClientPayload<'_> = serde_json::from_str(text)?;
    Ok(match p.kind.as_deref().unwrap_or_default() {
        "init" => ClientFrame::Init {
            comments: p.comments,
            resumed: p.resumed,
            epoch: p.epoch,
        },
        "comments" => ClientFrame::Comments {
            comments: p.comments,
            skipped: p.skipped,
        },
        "ack" => ClientFrame::Ack {
            reference: p.reference,
            id: p.id.unwrap_or_default(),
        },
        "error" => ClientFrame::Error {
            reference: p.reference,
            code: p.code.unwrap_or(Cow::Borrowed("error")),
            retry_after_ms: p.retry_after_ms,
        },
        "reconnect" => ClientFrame::Reconnect {
            after_ms: p.after_ms,
        },
        _ => ClientFrame::Other,
    })
}

/// Engine.IO 4 packet types are one digit: `0` open, `2` ping, `4` message. A message carries a
/// Socket.IO 5 packet: `0` CONNECT (ack), `2` EVENT `["name", payload]`, `4` CONNECT_ERROR.
fn decode_socketio(text: &str) -> Result<Frame<'_>, serde_json::Error> {
    let bytes = text.as_bytes();
    match bytes.first() {
        Some(b'2') => return Ok(Frame::Ping),
        Some(b'4') => {}
        _ => return Ok(Frame::Other),
    }
    match bytes.get(1) {
        Some(b'2') => {
            let (name, payload): (Cow<'_, str>, Payload<'_>) = serde_json::from_str(&text[2..])?;
            Ok(Frame::from_payload(&name, payload))
        }
        Some(b'4') => Ok(Frame::Refused(text[2..].to_owned())),
        _ => Ok(Frame::Other),
    }
}

/// The text of a benchmark comment: who posted it, its sequence number, and the poster's clock
/// in microseconds when it was sent (for a latency finer than `ts`'s milliseconds).
pub(crate) fn comment_text(poster: u32, seq: u32, sent_unix_us: u64) -> String {
    format!("bench {poster} {seq} {sent_unix_us}")
}

/// The blocked term set to `shadow` on every stream of a run with `--shadow-share`; a
/// shadowed comment's text is [`comment_text`]'s, then a space and this.
pub(crate) const SHADOW_TERM: &str = "bench-shadowed";

/// The `count` blocked terms a run with `--blocked-terms` puts on every stream: the shadow
/// term, then `refuse` terms no benchmark comment holds.
pub(crate) fn blocked_terms(count: u32) -> serde_json::Value {
    let terms: Vec<serde_json::Value> = (0..count)
        .map(|i| match i {
            0 => serde_json::json!({"term": SHADOW_TERM, "action": "shadow"}),
            i => serde_json::json!({"term": format!("blocked-{i:04}-term"), "action": "refuse"}),
        })
        .collect();
    serde_json::json!({ "terms": terms })
}

/// The text of the end marker of a stream: the last comment of a run on it, posted by a
/// moderator once every other comment is acknowledged. A server never thins a moderator's
/// comment, so every viewer gets it, and its frame carries the `skipped` of whatever was
/// left out after the viewer's previous frame.
pub(crate) fn end_text(stream_index: u32) -> String {
    format!("bench-end {stream_index}")
}

/// Parses [`end_text`]: the stream index.
pub(crate) fn parse_end_text(text: &str) -> Option<u32> {
    text.strip_prefix("bench-end ")?.parse().ok()
}

/// Parses [`comment_text`]; `None` for comments the benchmark did not post.
pub(crate) fn parse_comment_text(text: &str) -> Option<(u32, u32, u64)> {
    let mut parts = text.strip_prefix("bench ")?.split(' ');
    let poster = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    Some((poster, seq, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMENT: &str = r#"{"id":"1732240000000-3","stream_id":"s1","kind":"user","user":{"id":"u1","name":"A"},"text":"bench 4 7 1732240000000123","data":null,"ts":1732240000000}"#;

    #[test]
    fn decodes_danmaku_frames() {
        let t = Target::Danmaku;
        let frame = format!(r#"{{"type":"comments","comments":[{COMMENT}]}}"#);
        let Frame::Comments { comments, skipped } = t.decode(&frame).unwrap() else {
            panic!("not comments");
        };
        assert_eq!(skipped, 0, "absent means 0");
        assert_eq!(comments.len(), 1);
        assert!(comments[0].is_user());
        assert_eq!(comments[0].id, "1732240000000-3");
        assert_eq!(comments[0].ts, 1_732_240_000_000);
        assert_eq!(
            parse_comment_text(&comments[0].text),
            Some((4, 7, 1_732_240_000_000_123))
        );
        // Thinned: `skipped`, and a gift (never thinned) between two user comments.
        let gift = r#"{"id":"1732240000001-0","stream_id":"s1","kind":"gift","user":null,"text":"bench 4 1 5","data":{"n":1},"ts":1732240000001}"#;
        let frame = format!(r#"{{"type":"comments","comments":[{COMMENT},{gift}],"skipped":12}}"#);
        let Frame::Comments { comments, skipped } = t.decode(&frame).unwrap() else {
            panic!("not comments");
        };
        assert_eq!(skipped, 12);
        assert_eq!(comments.len(), 2);
        assert!(!comments[1].is_user());
        assert_eq!(comments[1].kind.as_deref(), Some("gift"));
        let init = r#"{"type":"init","stream_id":"s1","comments":[],"viewer_count":1,"resumed":false,"server":{"pod":"p","slot":"blue","version":"0.1.0"}}"#;
        assert_eq!(t.decode(init).unwrap(), Frame::Init);
        let ack = r#"{"type":"ack","ref":"c1","id":"1-0"}"#;
        assert_eq!(
            t.decode(ack).unwrap(),
            Frame::Ack {
                reference: Some("c1".into()),
                error: None
            }
        );
        let error = r#"{"type":"error","code":"rate_limited","message":"slow down","ref":"c2","retry_after_ms":10}"#;
        assert_eq!(
            t.decode(error).unwrap(),
            Frame::Ack {
                reference: Some("c2".into()),
                error: Some("rate_limited".into())
            }
        );
        assert_eq!(
            t.decode(r#"{"type":"viewers","count":3}"#).unwrap(),
            Frame::Other
        );
        assert!(t.decode("not json").is_err());
    }

    #[test]
    fn decodes_what_a_client_library_reads() {
        let init = format!(
            r#"{{"type":"init","stream_id":"s1","comments":[{COMMENT}],"viewer_count":1,"resumed":true,"epoch":"e7","server":{{"pod":"p"}}}}"#
        );
        let ClientFrame::Init {
            comments,
            resumed,
            epoch,
        } = decode_client(&init).unwrap()
        else {
            panic!("not init");
        };
        assert_eq!(
            (comments.len(), resumed, epoch.as_deref()),
            (1, true, Some("e7"))
        );
        assert_eq!(
            decode_client(r#"{"type":"ack","ref":"c1","id":"5-0"}"#).unwrap(),
            ClientFrame::Ack {
                reference: Some("c1".into()),
                id: "5-0".into()
            }
        );
        assert_eq!(
            decode_client(r#"{"type":"error","code":"unavailable","message":"m","ref":"c2"}"#)
                .unwrap(),
            ClientFrame::Error {
                reference: Some("c2".into()),
                code: "unavailable".into(),
                retry_after_ms: None
            }
        );
        assert_eq!(
            decode_client(r#"{"type":"reconnect","after_ms":250}"#).unwrap(),
            ClientFrame::Reconnect { after_ms: 250 }
        );
        assert_eq!(
            decode_client(r#"{"type":"viewers","count":2}"#).unwrap(),
            ClientFrame::Other
        );
    }

    #[test]
    fn decodes_socketio_packets() {
        let t = Target::Socketio;
        assert_eq!(t.decode("2").unwrap(), Frame::Ping);
        assert_eq!(
            t.decode(r#"0{"sid":"x","pingInterval":25000}"#).unwrap(),
            Frame::Other
        );
        assert_eq!(t.decode(r#"40{"sid":"y"}"#).unwrap(), Frame::Other);
        assert_eq!(
            t.decode(r#"44{"message":"bad_request"}"#).unwrap(),
            Frame::Refused(r#"{"message":"bad_request"}"#.to_owned())
        );
        let frame = format!(r#"42["comments",{{"comments":[{COMMENT}]}}]"#);
        let Frame::Comments { comments, .. } = t.decode(&frame).unwrap() else {
            panic!("not comments");
        };
        assert_eq!(comments[0].ts, 1_732_240_000_000);
        assert_eq!(
            t.decode(r#"42["init",{"stream_id":"s1","comments":[]}]"#)
                .unwrap(),
            Frame::Init
        );
        assert_eq!(
            t.decode(r#"42["ack",{"ref":"c1","error":"bad_text"}]"#)
                .unwrap(),
            Frame::Ack {
                reference: Some("c1".into()),
                error: Some("bad_text".into())
            }
        );
    }

    #[test]
    fn encodes_what_each_server_expects() {
        assert_eq!(
            Target::Danmaku.url("ws://127.0.0.1:8080/", "s1", Some("t"), None),
            "ws://127.0.0.1:8080/v1/streams/s1/ws?access_token=t"
        );
        assert_eq!(
            Target::Danmaku.url("ws://127.0.0.1:8080", "s1", None, Some(5)),
            "ws://127.0.0.1:8080/v1/streams/s1/ws?max_rate=5"
        );
        assert_eq!(
            Target::Danmaku.url("ws://127.0.0.1:8080", "s1", Some("t"), Some(5)),
            "ws://127.0.0.1:8080/v1/streams/s1/ws?max_rate=5&access_token=t"
        );
        assert_eq!(
            Target::Socketio.url("ws://127.0.0.1:9000", "s1", None, Some(5)),
            "ws://127.0.0.1:9000/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            Target::Socketio.hello("s1", Some("u1")).unwrap(),
            r#"40{"stream":"s1","user":"u1"}"#
        );
        let post = Target::Socketio.post("hi", "c1");
        let event: serde_json::Value =
            serde_json::from_str(post.strip_prefix("42").unwrap()).unwrap();
        assert_eq!(
            event,
            serde_json::json!(["comment", {"text": "hi", "ref": "c1"}])
        );
        let post: serde_json::Value =
            serde_json::from_str(&Target::Danmaku.post("hi", "c1")).unwrap();
        assert_eq!(post["type"], "comment");
        assert_eq!(parse_comment_text("hello"), None);
        assert_eq!(parse_comment_text(&comment_text(1, 2, 3)), Some((1, 2, 3)));
        assert_eq!(parse_end_text(&end_text(7)), Some(7));
        assert_eq!(parse_comment_text(&end_text(7)), None);
        assert_eq!(parse_end_text(&comment_text(1, 2, 3)), None);
    }
}
