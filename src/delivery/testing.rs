//! What the tests of delivery and of the hub share: a member that records, and comments.

use std::sync::{Arc, Mutex};

use super::batch::CommentBatch;
use super::member::{Delivery, Member, RoomEvent};
use super::thinning::Samplers;
use crate::domain::{Comment, CommentId, CommentKind, StreamId, User, UserId};

/// A member that keeps what it is handed.
#[derive(Default)]
pub(crate) struct Recorder(pub(crate) Mutex<Vec<RoomEvent>>);

impl Member for Recorder {
    fn deliver(&self, event: &RoomEvent) -> Delivery {
        self.0.lock().unwrap().push(event.clone());
        match event {
            RoomEvent::Comments(batch) => Delivery::sent(batch.comments.len() as u64),
            _ => Delivery::default(),
        }
    }
}

impl Recorder {
    /// Comment ids per `comments` event, and any other event as `[0]`.
    pub(crate) fn seen(&self) -> Vec<Vec<u64>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                RoomEvent::Comments(b) => b.comments.iter().map(|c| c.id.ms).collect(),
                _ => vec![0],
            })
            .collect()
    }
}

/// A system comment of `stream`, its id and `ts` `ms`.
pub(crate) fn comment(stream: &StreamId, ms: u64) -> Comment {
    Comment {
        id: CommentId::new(ms, 0),
        stream_id: stream.clone(),
        kind: CommentKind::System,
        user: None,
        text: "t".into(),
        data: None,
        ts: ms,
        media_ts: None,
        by_moderator: false,
        shadow: false,
    }
}

/// Comments of stream `s` with these ids (as ms), of `kind`, by user `chat`, each saying
/// `text`: one room event, thinned by `samplers`.
pub(crate) fn chat(
    ids: std::ops::Range<u64>,
    kind: CommentKind,
    text: &str,
    samplers: &Arc<Samplers>,
) -> RoomEvent {
    let stream = StreamId::parse("s").unwrap();
    let comments = ids
        .map(|ms| Comment {
            id: CommentId::new(ms, 0),
            stream_id: stream.clone(),
            kind,
            user: Some(User {
                id: UserId::parse("chat").unwrap(),
                name: "chat".into(),
            }),
            text: text.to_owned(),
            data: None,
            ts: ms,
            media_ts: None,
            by_moderator: false,
            shadow: false,
        })
        .collect();
    let batch = CommentBatch::thinned_by(comments, Some(samplers.clone())).unwrap();
    RoomEvent::Comments(Arc::new(batch))
}
