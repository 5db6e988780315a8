//! Who may see a shadowed comment (the contract's section 9): a comment of a shadow-banned
//! author, or one holding a term set to `shadow`, is seen only by its author and the
//! stream's moderators. Everyone else is served as if it had never been posted: not in live
//! frames, `init`, a resume or `GET …/comments`, and never counted in `skipped`.

use super::{Comment, UserId};

/// A reader of a stream's comments, as far as what it may see goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Audience<'a> {
    /// The reader's user (its own shadowed comments it sees as any other).
    pub user: Option<&'a UserId>,
    /// A moderator of the stream (or a service): sees every shadowed comment, marked.
    pub moderator: bool,
}

impl<'a> Audience<'a> {
    /// Sees every comment: a moderator of the stream, or a service.
    pub const EVERYTHING: Audience<'static> = Audience {
        user: None,
        moderator: true,
    };

    /// Sees no shadowed comment but its own.
    pub fn of(user: Option<&'a UserId>) -> Self {
        Self {
            user,
            moderator: false,
        }
    }

    pub fn sees(&self, comment: &Comment) -> bool {
        !comment.shadow || self.moderator || self.owns(comment)
    }

    /// The comment is the reader's own.
    pub fn owns(&self, comment: &Comment) -> bool {
        self.user
            .is_some_and(|u| comment.user.as_ref().is_some_and(|a| &a.id == u))
    }

    /// Of `comments`, those this reader sees, in their order.
    pub fn filter<'c>(&self, comments: &'c [Comment]) -> impl Iterator<Item = &'c Comment> {
        comments.iter().filter(|c| self.sees(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CommentId, CommentKind, StreamId, User};

    fn comment(author: &str, shadow: bool) -> Comment {
        Comment {
            id: CommentId::new(1, 0),
            stream_id: StreamId::parse("s").unwrap(),
            kind: CommentKind::User,
            user: Some(User {
                id: UserId::parse(author).unwrap(),
                name: author.to_owned(),
            }),
            text: "hi".to_owned(),
            data: None,
            ts: 1,
            media_ts: None,
            by_moderator: false,
            shadow,
        }
    }

    #[test]
    fn a_shadowed_comment_is_seen_by_its_author_and_moderators_only() {
        let troll = UserId::parse("troll").unwrap();
        let other = UserId::parse("other").unwrap();
        let shadowed = comment("troll", true);
        assert!(Audience::of(Some(&troll)).sees(&shadowed), "its author");
        assert!(Audience::EVERYTHING.sees(&shadowed), "a moderator");
        let moderator = Audience {
            user: Some(&other),
            moderator: true,
        };
        assert!(moderator.sees(&shadowed), "a moderator signed in");
        assert!(
            !Audience::of(Some(&other)).sees(&shadowed),
            "another viewer"
        );
        assert!(!Audience::of(None).sees(&shadowed), "an anonymous viewer");
        let public = comment("troll", false);
        assert!(Audience::of(None).sees(&public));
    }
}
