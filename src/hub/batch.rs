//! A room's comments, encoded once into the frame every socket of the room sends.

use crate::domain::wire::{ServerFrame, SharedFrame};
use crate::domain::{Comment, CommentId};

/// Comments encoded once into a `comments` frame.
#[derive(Debug)]
pub struct CommentBatch {
    pub first: CommentId,
    pub last: CommentId,
    pub frame: SharedFrame,
    pub comments: Vec<Comment>,
}

impl CommentBatch {
    pub fn new(comments: Vec<Comment>) -> Option<Self> {
        let first = comments.first()?.id;
        let last = comments.last()?.id;
        let frame = ServerFrame::Comments {
            comments: &comments,
        }
        .encode();
        Some(Self {
            first,
            last,
            frame,
            comments,
        })
    }

    /// What one socket sends of this batch, given `seen`, the newest comment id that
    /// socket was sent (updated here): the frame and how many comments it carries, or
    /// nothing when the socket has seen them all.
    pub fn frame_for(&self, seen: &mut Option<CommentId>) -> Option<(SharedFrame, usize)> {
        let frame = self.frame_after(*seen);
        if frame.is_some() {
            *seen = Some(self.last);
        }
        frame
    }

    /// The frame for a socket that has already seen everything up to `seen`, and how many
    /// comments it carries: the shared bytes when all are new, a frame of only the newer
    /// ones otherwise, or nothing.
    fn frame_after(&self, seen: Option<CommentId>) -> Option<(SharedFrame, usize)> {
        match seen {
            Some(seen) if self.last <= seen => None,
            Some(seen) if self.first <= seen => {
                let newer: Vec<Comment> = self
                    .comments
                    .iter()
                    .filter(|c| c.id > seen)
                    .cloned()
                    .collect();
                Some((
                    ServerFrame::Comments { comments: &newer }.encode(),
                    newer.len(),
                ))
            }
            _ => Some((self.frame.clone(), self.comments.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CommentKind, StreamId, User, UserId};

    fn comment(ms: u64) -> Comment {
        Comment {
            id: CommentId::new(ms, 0),
            stream_id: StreamId::parse("s").unwrap(),
            kind: CommentKind::User,
            user: Some(User {
                id: UserId::parse("u").unwrap(),
                name: "u".into(),
            }),
            text: format!("c{ms}"),
            data: None,
            ts: ms,
        }
    }

    #[test]
    fn batches_skip_what_a_socket_has_seen() {
        let batch = CommentBatch::new(vec![comment(1), comment(2), comment(3)]).unwrap();
        assert_eq!(batch.frame_after(None).unwrap(), (batch.frame.clone(), 3));
        assert_eq!(
            batch.frame_after(Some(CommentId::new(0, 5))).unwrap(),
            (batch.frame.clone(), 3)
        );
        assert!(batch.frame_after(Some(CommentId::new(3, 0))).is_none());
        let (partial, n) = batch.frame_after(Some(CommentId::new(1, 0))).unwrap();
        assert_eq!(n, 2);
        let v: serde_json::Value = serde_json::from_str(partial.as_str()).unwrap();
        let ids: Vec<&str> = v["comments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["2-0", "3-0"]);
    }

    #[test]
    fn frame_for_advances_what_the_socket_has_seen() {
        let batch = CommentBatch::new(vec![comment(1), comment(2)]).unwrap();
        let mut seen = None;
        assert_eq!(batch.frame_for(&mut seen).unwrap().1, 2);
        assert_eq!(seen, Some(CommentId::new(2, 0)));
        assert!(batch.frame_for(&mut seen).is_none(), "nothing new");
        assert_eq!(seen, Some(CommentId::new(2, 0)));
    }
}
