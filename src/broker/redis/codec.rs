//! How comments and moderation events are stored in and carried through Redis.
//!
//! A comment is stored as its JSON body without the id (the history stream's entry id is
//! the comment id) and travels on the channel as `c <id> <body>`; a deletion as `d <id>`,
//! a ban as `b <user id>`, a new epoch as `e <epoch>`, new settings as `s <settings>`, a
//! comment held for review as `h <held id> <body>`, its approval as `r <user> <held id> <id>`
//! and its rejection as `x <user> <held id>` (a user as `<bytes>:<id>`: ids may hold spaces),
//! a stream's new viewer count across instances as `v <sum> <version>`, a liveness probe as
//! `p`. The same `<id> <body>` is what the publish script returns and
//! keeps under an idempotency key (`h <held id> <body>` for a held one).

use fred::prelude::*;

use crate::domain::{
    Comment, CommentData, CommentId, CommentKind, Epoch, StreamId, StreamSettings, User, UserId,
};

/// The comment as stored, without its id.
#[derive(serde::Serialize)]
pub(super) struct CommentBody<'a> {
    pub(super) stream_id: &'a StreamId,
    pub(super) kind: CommentKind,
    pub(super) user: Option<&'a User>,
    pub(super) text: &'a str,
    pub(super) data: Option<&'a CommentData>,
    pub(super) ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) media_ts: Option<u64>,
    #[serde(rename = "by_mod", skip_serializing_if = "std::ops::Not::not")]
    pub(super) by_moderator: bool,
    /// Seen only by its author and the stream's moderators (the publish script also marks
    /// a shadow-banned author's comment so).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) shadow: bool,
}

impl CommentBody<'_> {
    pub(super) fn encode(&self) -> String {
        serde_json::to_string(self).expect("a comment body always serializes")
    }
}

/// One message of a stream's channel.
#[derive(Debug)]
pub(super) enum Inbound {
    Comment(Comment),
    /// One comment deleted, or a user's purged, in one message.
    Deleted(Vec<CommentId>),
    Banned(UserId),
    /// The stream's history lost comments and it has a new epoch.
    Epoch(Epoch),
    Settings(StreamSettings),
    /// A comment held for review, its `id` the held id.
    Held(Comment),
    Released {
        user: UserId,
        held_id: CommentId,
        id: CommentId,
    },
    Dropped {
        user: UserId,
        held_id: CommentId,
    },
    /// The stream's blocked terms changed: read them anew.
    Terms,
    /// The stream's viewer count across instances, summed at `version` (Redis time, µs).
    Viewers {
        sum: u64,
        version: u64,
    },
}

/// `c <id> <body>`, `d <id> [<id> …]`, `b <user id>`, `e <epoch>`, `s <settings>`,
/// `h <held id> <body>`, `r <user> <held id> <id>`, `x <user> <held id>` (a user as
/// `<bytes>:<id>`), `t` (new blocked terms); `None` for probes and anything unknown.
pub(super) fn parse_message(payload: &str) -> Option<Inbound> {
    let (kind, rest) = payload.split_once(' ').unwrap_or((payload, ""));
    match kind {
        "c" => parse_entry_message(rest).map(Inbound::Comment),
        "d" => rest
            .split(' ')
            .map(|id| id.parse().ok())
            .collect::<Option<Vec<CommentId>>>()
            .map(Inbound::Deleted),
        "b" => UserId::parse(rest).ok().map(Inbound::Banned),
        "e" => Epoch::parse(rest).ok().map(Inbound::Epoch),
        "s" => serde_json::from_str(rest).ok().map(Inbound::Settings),
        "h" => parse_entry_message(rest).map(Inbound::Held),
        "t" => Some(Inbound::Terms),
        "v" => {
            let (sum, version) = rest.split_once(' ')?;
            Some(Inbound::Viewers {
                sum: sum.parse().ok()?,
                version: version.parse().ok()?,
            })
        }
        "r" => {
            let (user, rest) = split_user(rest)?;
            let (held_id, id) = rest.split_once(' ')?;
            Some(Inbound::Released {
                user,
                held_id: held_id.parse().ok()?,
                id: id.parse().ok()?,
            })
        }
        "x" => {
            let (user, held_id) = split_user(rest)?;
            Some(Inbound::Dropped {
                user,
                held_id: held_id.parse().ok()?,
            })
        }
        _ => None,
    }
}

/// A user written as `<bytes>:<id>`, and what follows it after one space.
fn split_user(text: &str) -> Option<(UserId, &str)> {
    let (len, rest) = text.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let user = rest.get(..len)?;
    let rest = rest.get(len..)?.strip_prefix(' ')?;
    Some((UserId::parse(user).ok()?, rest))
}

/// A user as `split_user` reads it.
pub(super) fn user_field(user: &UserId) -> String {
    format!("{}:{}", user.as_str().len(), user.as_str())
}

/// `<id> <body>`: the idempotency value and the payload of a `c` message.
pub(super) fn parse_entry_message(message: &str) -> Option<Comment> {
    let (id, body) = message.split_once(' ')?;
    comment_from(id, body)
}

/// An XRANGE entry: [id, [field, value, ...]] with the body in field `b`.
pub(super) fn parse_stream_entry(entry: &Value) -> Option<Comment> {
    let Value::Array(parts) = entry else {
        return None;
    };
    let id = parts.first()?.as_str()?;
    let Value::Array(fields) = parts.get(1)? else {
        return None;
    };
    let body = fields
        .chunks(2)
        .find(|kv| kv[0].as_str().as_deref() == Some("b"))?
        .get(1)?
        .as_str()?;
    comment_from(&id, &body)
}

/// A comment from its id and stored body: the body with `"id"` put first.
fn comment_from(id: &str, body: &str) -> Option<Comment> {
    let rest = body.strip_prefix('{')?;
    let json = format!("{{\"id\":\"{id}\",{rest}");
    serde_json::from_str(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_body_becomes_the_comment_with_its_id_first() {
        let stream = StreamId::parse("s").unwrap();
        let body = CommentBody {
            stream_id: &stream,
            kind: CommentKind::Gift,
            user: None,
            text: "rose",
            data: Some(&CommentData::from_value(&serde_json::json!({"n": 1})).unwrap()),
            ts: 5,
            media_ts: None,
            by_moderator: false,
            shadow: false,
        }
        .encode();
        let comment = parse_entry_message(&format!("7-1 {body}")).unwrap();
        assert_eq!(comment.id, CommentId::new(7, 1));
        assert_eq!(comment.text, "rose");
        assert_eq!(
            serde_json::to_string(&comment).unwrap(),
            r#"{"id":"7-1","stream_id":"s","kind":"gift","user":null,"text":"rose","data":{"n":1},"ts":5}"#
        );
    }

    /// A moderator's comment is stored as one (other instances must not thin it either),
    /// and clients never see the mark.
    #[test]
    fn a_moderators_comment_keeps_its_mark_between_instances() {
        let stream = StreamId::parse("s").unwrap();
        let user = User {
            id: UserId::parse("boss").unwrap(),
            name: "Boss".into(),
        };
        let body = |by_moderator| {
            CommentBody {
                stream_id: &stream,
                kind: CommentKind::User,
                user: Some(&user),
                text: "hi",
                data: None,
                ts: 5,
                media_ts: None,
                by_moderator,
                shadow: false,
            }
            .encode()
        };
        assert!(body(true).ends_with(r#","ts":5,"by_mod":true}"#));
        assert!(body(false).ends_with(r#","ts":5}"#));
        let marked = parse_entry_message(&format!("7-1 {}", body(true))).unwrap();
        assert!(marked.by_moderator);
        assert!(!serde_json::to_string(&marked).unwrap().contains("by_mod"));
        assert!(
            !parse_entry_message(&format!("7-1 {}", body(false)))
                .unwrap()
                .by_moderator
        );
    }

    #[test]
    fn parses_channel_messages() {
        assert!(
            matches!(parse_message("d 5-1"), Some(Inbound::Deleted(ids)) if ids == [CommentId::new(5, 1)])
        );
        assert!(
            matches!(parse_message("b troll"), Some(Inbound::Banned(u)) if u.as_str() == "troll")
        );
        assert!(matches!(parse_message("e k3x9"), Some(Inbound::Epoch(e)) if e.as_str() == "k3x9"));
        assert!(parse_message("e").is_none());
        assert!(parse_message("b").is_none());
        assert!(parse_message("p").is_none());
        assert!(parse_message("d nope").is_none());
        assert!(
            matches!(parse_message("d 5-1 6-0"), Some(Inbound::Deleted(ids)) if ids == [CommentId::new(5, 1), CommentId::new(6, 0)])
        );
        assert!(parse_message("d 5-1 nope").is_none());
        assert!(parse_message("x y").is_none());
        assert!(matches!(
            parse_message(r#"s {"slow_mode_ms":5000,"post_roles":["vip"],"pinned":null}"#),
            Some(Inbound::Settings(s)) if s.slow_mode_ms == 5000 && s.post_roles.len() == 1
        ));
        let user = UserId::parse("a b").unwrap();
        let released = format!("r {} 3-0 9-1", user_field(&user));
        assert!(matches!(
            parse_message(&released),
            Some(Inbound::Released { user: u, held_id, id })
                if u == user && held_id == CommentId::new(3, 0) && id == CommentId::new(9, 1)
        ));
        let dropped = format!("x {} 3-0", user_field(&user));
        assert!(matches!(
            parse_message(&dropped),
            Some(Inbound::Dropped { .. })
        ));
        assert!(parse_message("x 9:short 3-0").is_none());
        assert!(matches!(parse_message("t"), Some(Inbound::Terms)));
        assert!(matches!(
            parse_message("v 12 1796577000000123"),
            Some(Inbound::Viewers {
                sum: 12,
                version: 1796577000000123
            })
        ));
        assert!(parse_message("v 12").is_none());
        assert!(parse_message("v -1 5").is_none());
    }
}
