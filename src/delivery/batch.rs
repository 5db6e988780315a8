//! A room's comments, encoded once into the frame every socket of the room sends, and
//! once more for each thinning tier in use.
//!
//! **Shadowed comments** (a shadow-banned author's, or one holding a term set to `shadow`)
//! are in the batch but not in those frames: every other viewer is sent the batch as if they
//! had never been posted, and never counts them in `skipped`. Their author and the stream's
//! moderators (the [`Audience`] that sees them) get a frame of their own for a batch that has
//! one they see: their tier's choice of the rest, and those, marked `"shadow": true` for a
//! moderator. Batches without shadowed comments, almost all, cost nothing more.

use std::sync::{Arc, OnceLock};

use super::thinning::{Samplers, Tier};
use crate::domain::wire::{MarkedComment, ServerFrame, SharedFrame};
use crate::domain::{Audience, Comment, CommentId, CommentKind, UserId};

/// Comments encoded once into a `comments` frame.
#[derive(Debug)]
pub struct CommentBatch {
    pub first: CommentId,
    pub last: CommentId,
    /// The frame of every comment but the shadowed ones (`None` if all are).
    pub frame: Option<SharedFrame>,
    /// Every comment of the batch, shadowed ones too, in id order.
    pub comments: Vec<Comment>,
    /// The comments everyone may be sent: all but the shadowed ones.
    public: usize,
    /// Authors of the shadowed comments.
    shadow_authors: Vec<UserId>,
    /// Positions of the comments a tier may leave out: user comments by non-moderators,
    /// not shadowed.
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
        let shadow_authors: Vec<UserId> = comments
            .iter()
            .filter(|c| c.shadow)
            .filter_map(|c| c.user.as_ref().map(|u| u.id.clone()))
            .collect();
        let public = comments.iter().filter(|c| !c.shadow).count();
        let frame = match public {
            0 => None,
            n if n == comments.len() => Some(encode(&comments)),
            _ => Some(encode(
                &comments
                    .iter()
                    .filter(|c| !c.shadow)
                    .cloned()
                    .collect::<Vec<_>>(),
            )),
        };
        let thinnable: Vec<usize> = comments
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind == CommentKind::User && !c.by_moderator && !c.shadow)
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
            public,
            shadow_authors,
            thinnable,
            samplers,
            tiers,
        })
    }

    /// What a socket of `tier`, of `audience`, is sent of this batch, given `seen`, the
    /// newest comment id it was sent or told of (updated here); `None` when the socket has
    /// seen them all.
    pub fn for_socket(
        &self,
        tier: Tier,
        audience: Audience<'_>,
        seen: &mut Option<CommentId>,
    ) -> Option<Sent> {
        let before = *seen;
        if before.is_some_and(|seen| self.last <= seen) {
            return None;
        }
        *seen = Some(self.last);
        let thinned = self.thinned(tier);
        let partly_seen = before.is_some_and(|seen| self.first <= seen);
        let user = audience.user;
        let own_left_out = thinned
            .zip(user)
            .is_some_and(|(t, user)| t.left_out_authors.contains(user));
        let sees_shadowed = self.public < self.comments.len()
            && (audience.moderator || user.is_some_and(|u| self.shadow_authors.contains(u)));
        if !partly_seen && !own_left_out && !sees_shadowed {
            let n = self.public as u64;
            return Some(match thinned {
                None => Sent {
                    frame: self.frame.clone(),
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
        // The rare way: a socket that saw part of the batch (events held during `init`),
        // whose own comment its tier left out, or that sees a shadowed comment, gets a frame
        // of its own. Shadowed comments it does not see are not there for it at all.
        let mut new = 0;
        let mut sent = Vec::new();
        for (i, comment) in self.comments.iter().enumerate() {
            if before.is_some_and(|seen| comment.id <= seen) || !audience.sees(comment) {
                continue;
            }
            if comment.shadow {
                sent.push(comment);
                continue;
            }
            new += 1;
            if thinned.is_none_or(|t| t.keep[i]) || audience.owns(comment) {
                sent.push(comment);
            }
        }
        let shadowed = sent.iter().filter(|c| c.shadow).count() as u64;
        let frame = match (sent.is_empty(), audience.moderator && shadowed > 0) {
            (true, _) => None,
            (false, true) => {
                let marked: Vec<MarkedComment<'_>> =
                    sent.iter().map(|c| MarkedComment::of(c)).collect();
                Some(ServerFrame::MarkedComments { comments: &marked }.encode())
            }
            (false, false) => {
                let plain: Vec<Comment> = sent.iter().map(|c| (*c).clone()).collect();
                Some(encode(&plain))
            }
        };
        Some(Sent {
            frame,
            comments: sent.len() as u64,
            skipped: new - (sent.len() as u64 - shadowed),
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
                .filter(|(c, k)| **k && !c.shadow)
                .map(|(c, _)| c.clone())
                .collect();
            let frame = match kept.len() {
                0 => None,
                n if n == self.public => self.frame.clone(),
                _ => Some(encode(&kept)),
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

fn encode(comments: &[Comment]) -> SharedFrame {
    ServerFrame::Comments { comments }.encode()
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
            media_ts: None,
            by_moderator: false,
            shadow: false,
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
            frame: batch.frame.clone(),
            comments: 3,
            skipped: 0,
        };
        let mut seen = None;
        assert_eq!(
            batch.for_socket(Tier::UNLIMITED, Audience::default(), &mut seen),
            Some(all)
        );
        assert_eq!(seen, Some(CommentId::new(3, 0)));
        assert!(
            batch
                .for_socket(Tier::UNLIMITED, Audience::default(), &mut seen)
                .is_none()
        );
        let mut seen = Some(CommentId::new(1, 0));
        let sent = batch
            .for_socket(Tier::UNLIMITED, Audience::default(), &mut seen)
            .unwrap();
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
        let sent = batch
            .for_socket(Tier::PRIORITY, Audience::default(), &mut None)
            .unwrap();
        assert_eq!((sent.comments, sent.skipped), (2, 3));
        assert_eq!(ids(&sent.frame.unwrap()), ["2-0", "3-0"]);
        let me = UserId::parse("me").unwrap();
        let sent = batch
            .for_socket(
                Tier::PRIORITY,
                Audience {
                    user: Some(&me),
                    moderator: false,
                },
                &mut None,
            )
            .unwrap();
        assert_eq!((sent.comments, sent.skipped), (3, 2));
        assert_eq!(ids(&sent.frame.unwrap()), ["2-0", "3-0", "4-0"]);
        let all = batch
            .for_socket(Tier::UNLIMITED, Audience::default(), &mut None)
            .unwrap();
        assert_eq!((all.comments, all.skipped), (5, 0));
    }

    /// Every socket of a tier gets the same choice, encoded once.
    #[test]
    fn a_tier_chooses_once_per_batch() {
        let samplers = Arc::new(Samplers::default());
        let comments = (1..=40).map(user).collect();
        let batch = CommentBatch::thinned_by(comments, Some(samplers)).unwrap();
        let tier = Tier::at_most(10);
        let a = batch
            .for_socket(tier, Audience::default(), &mut None)
            .unwrap();
        let b = batch
            .for_socket(tier, Audience::default(), &mut None)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.comments, 10, "a fresh tier has a second's worth");
        assert_eq!(a.skipped, 30);
        let (a, b) = (a.frame.unwrap(), b.frame.unwrap());
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr(), "one encoding");
        let none = batch
            .for_socket(Tier::PRIORITY, Audience::default(), &mut None)
            .unwrap();
        assert_eq!((none.frame, none.comments, none.skipped), (None, 0, 40));
    }

    fn shadowed(ms: u64, author: &str) -> Comment {
        let mut c = comment(ms, CommentKind::User, author);
        c.shadow = true;
        c
    }

    /// The `shadow` marks of a frame's comments, in order.
    fn marks(frame: &SharedFrame) -> Vec<bool> {
        let v: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
        v["comments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.get("shadow") == Some(&serde_json::Value::Bool(true)))
            .collect()
    }

    /// A shadowed comment goes to its author (unmarked) and to moderators (marked), and for
    /// everyone else is not there at all: not sent, not counted as skipped.
    #[test]
    fn shadowed_comments_reach_their_author_and_moderators_only() {
        let batch = CommentBatch::new(vec![user(1), shadowed(2, "troll"), user(3)]).unwrap();
        let others = batch
            .for_socket(Tier::UNLIMITED, Audience::default(), &mut None)
            .unwrap();
        assert_eq!((others.comments, others.skipped), (2, 0));
        assert_eq!(ids(others.frame.as_ref().unwrap()), ["1-0", "3-0"]);
        assert_eq!(others.frame, batch.frame, "the shared frame");

        let troll = UserId::parse("troll").unwrap();
        let author = batch
            .for_socket(Tier::UNLIMITED, Audience::of(Some(&troll)), &mut None)
            .unwrap();
        let frame = author.frame.unwrap();
        assert_eq!((author.comments, author.skipped), (3, 0));
        assert_eq!(ids(&frame), ["1-0", "2-0", "3-0"]);
        assert_eq!(marks(&frame), [false, false, false], "as any other comment");

        let moderator = batch
            .for_socket(Tier::UNLIMITED, Audience::EVERYTHING, &mut None)
            .unwrap();
        let frame = moderator.frame.unwrap();
        assert_eq!((moderator.comments, moderator.skipped), (3, 0));
        assert_eq!(marks(&frame), [false, true, false]);

        let alone = CommentBatch::new(vec![shadowed(4, "troll")]).unwrap();
        let mut seen = Some(CommentId::new(3, 0));
        let nothing = alone
            .for_socket(Tier::UNLIMITED, Audience::default(), &mut seen)
            .unwrap();
        assert_eq!(
            (nothing.frame, nothing.comments, nothing.skipped),
            (None, 0, 0)
        );
        assert_eq!(
            seen,
            Some(CommentId::new(4, 0)),
            "seen, so a resume is not asked"
        );
    }

    /// Thinning chooses among the public comments only: a shadowed one is never left out for
    /// those who see it, and never in anyone's `skipped`.
    #[test]
    fn thinning_passes_over_shadowed_comments() {
        let samplers = Arc::new(Samplers::default());
        let comments = vec![user(1), shadowed(2, "troll"), user(3)];
        let batch = CommentBatch::thinned_by(comments, Some(samplers)).unwrap();
        let others = batch
            .for_socket(Tier::PRIORITY, Audience::default(), &mut None)
            .unwrap();
        assert_eq!(
            (others.frame, others.comments, others.skipped),
            (None, 0, 2)
        );
        let troll = UserId::parse("troll").unwrap();
        let author = batch
            .for_socket(Tier::PRIORITY, Audience::of(Some(&troll)), &mut None)
            .unwrap();
        assert_eq!((author.comments, author.skipped), (1, 2));
        assert_eq!(ids(&author.frame.unwrap()), ["2-0"]);
        let moderator = batch
            .for_socket(Tier::PRIORITY, Audience::EVERYTHING, &mut None)
            .unwrap();
        assert_eq!((moderator.comments, moderator.skipped), (1, 2));
        assert_eq!(marks(&moderator.frame.unwrap()), [true]);
    }
}
