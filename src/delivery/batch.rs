//! A room's comments, encoded once into the frame every socket of the room sends, and
//! once more for each thinning tier in use.

use std::sync::{Arc, OnceLock};

use super::thinning::{Samplers, Tier};
use crate::domain::wire::{ServerFrame, SharedFrame};
use crate::domain::{Comment, CommentId, CommentKind, UserId};

/// Comments encoded once into a `comments` frame.
#[derive(Debug)]
pub struct CommentBatch {
    pub first: CommentId,
    pub last: CommentId,
    pub frame: SharedFrame,
    pub comments: Vec<Comment>,
    /// Positions of the comments a tier may leave out: user comments by non-moderators.
    thinnable: Vec<usize>,
    /// The room's samplers; `None`: nothing is thinned.
    samplers: Option<Arc<Samplers>>,
    /// Each tier's choice, made by the first socket of the tier to ask.
    tiers: Box<[OnceLock<Thinned>]>,
}

/// What a tier keeps of a batch.
#[derive(Debug)]
struct Thinned {
    /// At each comment's position: whether the tier sends it.
    keep: Vec<bool>,
    /// The kept comments' frame; `None` if it keeps none.
    frame: Option<SharedFrame>,
    kept: usize,
    /// Authors of the comments left out: a viewer's own comments always go out.
    left_out_authors: Vec<UserId>,
}

/// What one socket is sent of a batch.
#[derive(Debug, PartialEq)]
pub struct Sent {
    /// The frame, if the socket is sent any comment.
    pub frame: Option<SharedFrame>,
    /// The comments in it.
    pub comments: u64,
    /// The batch's comments new to this socket that it is not sent.
    pub skipped: u64,
}

impl CommentBatch {
    /// A batch no tier thins.
    pub fn new(comments: Vec<Comment>) -> Option<Self> {
        Self::thinned_by(comments, None)
    }

    /// A batch thinned per tier by the room's `samplers`.
    pub fn thinned_by(comments: Vec<Comment>, samplers: Option<Arc<Samplers>>) -> Option<Self> {
        let first = comments.first()?.id;
        let last = comments.last()?.id;
        let frame = ServerFrame::Comments {
            comments: &comments,
        }
        .encode();
        let thinnable: Vec<usize> = comments
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind == CommentKind::User && !c.by_moderator)
            .map(|(i, _)| i)
            .collect();
        let tiers = match (&samplers, thinnable.is_empty()) {
            (Some(_), false) => (0..Tier::COUNT).map(|_| OnceLock::new()).collect(),
            _ => Box::default(),
        };
        Some(Self {
            first,
            last,
            frame,
            comments,
            thinnable,
            samplers,
            tiers,
        })
    }

    /// What a socket of `tier`, whose user is `user`, is sent of this batch, given `seen`,
    /// the newest comment id it was sent or told of (updated here); `None` when the socket
    /// has seen them all.
    pub fn for_socket(
        &self,
        tier: Tier,
        user: Option<&UserId>,
        seen: &mut Option<CommentId>,
    ) -> Option<Sent> {
        let before = *seen;
        if before.is_some_and(|seen| self.last <= seen) {
            return None;
        }
        *seen = Some(self.last);
        let thinned = self.thinned(tier);
        let partly_seen = before.is_some_and(|seen| self.first <= seen);
        let own_left_out = thinned
            .zip(user)
            .is_some_and(|(t, user)| t.left_out_authors.contains(user));
        if !partly_seen && !own_left_out {
            let n = self.comments.len() as u64;
            return Some(match thinned {
                None => Sent {
                    frame: Some(self.frame.clone()),
                    comments: n,
                    skipped: 0,
                },
                Some(t) => Sent {
                    frame: t.frame.clone(),
                    comments: t.kept as u64,
                    skipped: n - t.kept as u64,
                },
            });
        }
        // The rare way: a socket that saw part of the batch (events held during `init`), or
        // whose own comment its tier left out, gets a frame of its own.
        let mut new = 0;
        let mut sent = Vec::new();
        for (i, comment) in self.comments.iter().enumerate() {
            if before.is_some_and(|seen| comment.id <= seen) {
                continue;
            }
            new += 1;
            let own = user.is_some_and(|u| comment.user.as_ref().is_some_and(|a| &a.id == u));
            if thinned.is_none_or(|t| t.keep[i]) || own {
                sent.push(comment.clone());
            }
        }
        let frame = (!sent.is_empty()).then(|| ServerFrame::Comments { comments: &sent }.encode());
        Some(Sent {
            frame,
            comments: sent.len() as u64,
            skipped: new - sent.len() as u64,
        })
    }

    /// What `tier` keeps, chosen once per batch; `None` if it keeps everything.
    fn thinned(&self, tier: Tier) -> Option<&Thinned> {
        let samplers = self.samplers.as_ref()?;
        if self.thinnable.is_empty() || tier == Tier::UNLIMITED {
            return None;
        }
        let thinned = self.tiers[tier.index()].get_or_init(|| {
            let picked = samplers.pick(tier, self.thinnable.len());
            let mut keep = vec![true; self.comments.len()];
            let mut left_out_authors = Vec::new();
            for (&at, picked) in self.thinnable.iter().zip(picked) {
                if !picked {
                    keep[at] = false;
                    let author = self.comments[at].user.as_ref().map(|u| &u.id);
                    if let Some(author) = author.filter(|a| !left_out_authors.contains(*a)) {
                        left_out_authors.push(author.clone());
                    }
                }
            }
            let kept: Vec<Comment> = self
                .comments
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(c, _)| c.clone())
                .collect();
            let frame = match kept.len() {
                0 => None,
                n if n == self.comments.len() => Some(self.frame.clone()),
                _ => Some(ServerFrame::Comments { comments: &kept }.encode()),
            };
            Thinned {
                keep,
                frame,
                kept: kept.len(),
                left_out_authors,
            }
        });
        Some(thinned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{StreamId, User};

    fn comment(ms: u64, kind: CommentKind, author: &str) -> Comment {
        Comment {
            id: CommentId::new(ms, 0),
            stream_id: StreamId::parse("s").unwrap(),
            kind,
            user: Some(User {
                id: UserId::parse(author).unwrap(),
                name: author.into(),
            }),
            text: format!("c{ms}"),
            data: None,
            ts: ms,
            by_moderator: false,
        }
    }

    fn user(ms: u64) -> Comment {
        comment(ms, CommentKind::User, "u")
    }

    fn ids(frame: &SharedFrame) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
        v["comments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_socket_is_sent_what_it_has_not_seen() {
        let batch = CommentBatch::new(vec![user(1), user(2), user(3)]).unwrap();
        let all = Sent {
            frame: Some(batch.frame.clone()),
            comments: 3,
            skipped: 0,
        };
        let mut seen = None;
        assert_eq!(
            batch.for_socket(Tier::UNLIMITED, None, &mut seen),
            Some(all)
        );
        assert_eq!(seen, Some(CommentId::new(3, 0)));
        assert!(batch.for_socket(Tier::UNLIMITED, None, &mut seen).is_none());
        let mut seen = Some(CommentId::new(1, 0));
        let sent = batch.for_socket(Tier::UNLIMITED, None, &mut seen).unwrap();
        assert_eq!((sent.comments, sent.skipped), (2, 0));
        assert_eq!(ids(&sent.frame.unwrap()), ["2-0", "3-0"]);
    }

    /// The priority tier is sent system and moderator comments, and a viewer its own, and
    /// told how many it was not sent.
    #[test]
    fn thinning_never_leaves_out_system_moderator_or_own_comments() {
        let mut by_mod = comment(3, CommentKind::User, "m");
        by_mod.by_moderator = true;
        let comments = vec![
            user(1),
            comment(2, CommentKind::Gift, "shop"),
            by_mod,
            comment(4, CommentKind::User, "me"),
            user(5),
        ];
        let samplers = Arc::new(Samplers::default());
        let batch = CommentBatch::thinned_by(comments, Some(samplers)).unwrap();
        let sent = batch.for_socket(Tier::PRIORITY, None, &mut None).unwrap();
        assert_eq!((sent.comments, sent.skipped), (2, 3));
        assert_eq!(ids(&sent.frame.unwrap()), ["2-0", "3-0"]);
        let me = UserId::parse("me").unwrap();
        let sent = batch
            .for_socket(Tier::PRIORITY, Some(&me), &mut None)
            .unwrap();
        assert_eq!((sent.comments, sent.skipped), (3, 2));
        assert_eq!(ids(&sent.frame.unwrap()), ["2-0", "3-0", "4-0"]);
        let all = batch.for_socket(Tier::UNLIMITED, None, &mut None).unwrap();
        assert_eq!((all.comments, all.skipped), (5, 0));
    }

    /// Every socket of a tier gets the same choice, encoded once.
    #[test]
    fn a_tier_chooses_once_per_batch() {
        let samplers = Arc::new(Samplers::default());
        let comments = (1..=40).map(user).collect();
        let batch = CommentBatch::thinned_by(comments, Some(samplers)).unwrap();
        let tier = Tier::at_most(10);
        let a = batch.for_socket(tier, None, &mut None).unwrap();
        let b = batch.for_socket(tier, None, &mut None).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.comments, 10, "a fresh tier has a second's worth");
        assert_eq!(a.skipped, 30);
        let (a, b) = (a.frame.unwrap(), b.frame.unwrap());
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr(), "one encoding");
        let none = batch.for_socket(Tier::PRIORITY, None, &mut None).unwrap();
        assert_eq!((none.frame, none.comments, none.skipped), (None, 0, 40));
    }
}
