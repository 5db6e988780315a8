//! Where a reader is in a stream's history, and the one rule for whether reading on from
//! there misses anything.
//!
//! A stream's history lives in **epochs**: when it is lost (Redis restarted without
//! persistence, a failover to a replica that never got the tail, every key expired), the
//! stream gets a new [`Epoch`], and comment ids of the old one say nothing about the new
//! one. An epoch carries the time it was made (on the clock that stamps comment ids), so
//! even a reader that never learnt the epoch can tell that an id older than it belongs to
//! an earlier one.
//!
//! A [`Position`] is an epoch and the newest comment id read in it: what a resuming client
//! sends (`epoch=`, `after=`), and what an instance has delivered of a stream.
//! [`Position::continuity`] decides, for `init`'s resume and for a subscription's repair and
//! delivery alike, whether the history now continues it or there is a [`Gap`], and why.

use std::fmt;

use super::CommentId;

/// A stream's epoch: `<ms>.<tag>`, the time it was made (Unix ms) and 12 random hex
/// digits. Epochs made by earlier versions (12 hex digits, no time) are taken as they are:
/// any 1–64 characters of `[A-Za-z0-9._-]`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Epoch(Box<str>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an epoch is 1 to 64 letters, digits, '.', '_' or '-'")]
pub struct ParseEpochError;

impl Epoch {
    /// A new epoch made at `created_ms`.
    pub fn new(created_ms: u64) -> Self {
        Self(format!("{created_ms}.{}", Self::tag()).into())
    }

    /// 12 random hex digits: what sets epochs made in the same millisecond apart. Redis
    /// makes its epochs in a script from its own clock and this tag (`broker::redis`).
    pub fn tag() -> String {
        format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
    }

    pub fn parse(s: &str) -> Result<Self, ParseEpochError> {
        let valid = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(s.into()))
        } else {
            Err(ParseEpochError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When it was made (Unix ms), if it says.
    pub fn created_ms(&self) -> Option<u64> {
        let (ms, tag) = self.0.split_once('.')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (digits(ms) && !tag.is_empty()).then(|| ms.parse().ok())?
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({})", self.0)
    }
}

serde_via_parse!(Epoch);

/// A point in a stream's history: the epoch (unknown for a client that did not say) and
/// the newest comment read in it (`None`: none of this epoch yet). A client says what it
/// read; an instance keeps its own with [`Position::read`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    pub epoch: Option<Epoch>,
    pub last: Option<CommentId>,
}

/// Whether the history continues a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// Every comment after the position is in the history (or was deleted).
    Continues,
    Gap(Gap),
}

/// Why comments after a position cannot be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// The position is of another epoch: that history was lost.
    OtherEpoch,
    /// The position's comment is older than the current epoch: it belongs to an earlier
    /// one (a reader that did not say its epoch).
    BeforeEpoch,
    /// Comments after the position were trimmed off the history (too long ago).
    Trimmed,
}

impl Position {
    /// Notes that the comment `id` was read. It becomes `last` if it belongs to the
    /// position's epoch: a comment made before the epoch (kept in the history when a
    /// failover lost only its tail) says nothing about the epoch, and would make the
    /// position look older than it (a [`Gap::BeforeEpoch`] that is none).
    pub fn read(&mut self, id: CommentId) {
        let created = self.epoch.as_ref().and_then(Epoch::created_ms);
        if created.is_none_or(|created| id.ms >= created) {
            self.last = Some(id);
        }
    }

    /// Whether a history of epoch `current` continues this position, given whether it
    /// still `holds_all` that came after the position's comment (nothing trimmed past it).
    pub fn continuity(&self, current: &Epoch, holds_all: bool) -> Continuity {
        if self.epoch.as_ref().is_some_and(|epoch| epoch != current) {
            return Continuity::Gap(Gap::OtherEpoch);
        }
        let before = match (self.last, current.created_ms()) {
            (Some(last), Some(created)) => last.ms < created,
            _ => false,
        };
        if before {
            Continuity::Gap(Gap::BeforeEpoch)
        } else if !holds_all {
            Continuity::Gap(Gap::Trimmed)
        } else {
            Continuity::Continues
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(s: &str) -> Epoch {
        Epoch::parse(s).unwrap()
    }

    fn at(epoch: Option<&str>, ms: Option<u64>) -> Position {
        Position {
            epoch: epoch.map(self::epoch),
            last: ms.map(|ms| CommentId::new(ms, 0)),
        }
    }

    #[test]
    fn epochs_carry_their_time_and_parse_within_bounds() {
        let made = Epoch::new(1_732_240_000_000);
        assert_eq!(made.created_ms(), Some(1_732_240_000_000));
        assert_eq!(Epoch::parse(made.as_str()), Ok(made.clone()));
        assert_eq!(made.as_str().len(), 13 + 1 + 12);
        assert_ne!(Epoch::new(1), Epoch::new(1), "the tag sets them apart");
        // An earlier version's epoch: no time.
        assert_eq!(epoch("7a5d140c1d1b").created_ms(), None);
        assert_eq!(epoch("12.").created_ms(), None);
        assert_eq!(epoch("x1.ab").created_ms(), None);
        for bad in ["", "a b", "é", "a/b", &"a".repeat(65)] {
            assert_eq!(Epoch::parse(bad), Err(ParseEpochError), "{bad:?}");
        }
        assert!(Epoch::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn the_same_epoch_with_everything_after_it_continues() {
        let now = epoch("1000.abc");
        assert_eq!(
            at(Some("1000.abc"), Some(1500)).continuity(&now, true),
            Continuity::Continues
        );
        assert_eq!(
            at(None, Some(1500)).continuity(&now, true),
            Continuity::Continues
        );
        assert_eq!(at(None, None).continuity(&now, true), Continuity::Continues);
        // A comment in the millisecond the epoch was made belongs to it.
        assert_eq!(
            at(None, Some(1000)).continuity(&now, true),
            Continuity::Continues
        );
    }

    #[test]
    fn another_epoch_is_a_gap_whatever_the_history_holds() {
        let now = epoch("2000.abc");
        assert_eq!(
            at(Some("1000.abc"), Some(2500)).continuity(&now, true),
            Continuity::Gap(Gap::OtherEpoch)
        );
        assert_eq!(
            at(Some("7a5d140c1d1b"), None).continuity(&now, true),
            Continuity::Gap(Gap::OtherEpoch)
        );
    }

    /// A client that resumes without `epoch=` after a comment older than the current epoch:
    /// that comment was of an earlier history.
    #[test]
    fn an_id_older_than_the_epoch_is_a_gap_even_without_the_epoch() {
        let now = epoch("2000.abc");
        assert_eq!(
            at(None, Some(1999)).continuity(&now, true),
            Continuity::Gap(Gap::BeforeEpoch)
        );
        // An epoch that does not say when it was made cannot tell.
        let old = epoch("7a5d140c1d1b");
        assert_eq!(
            at(None, Some(1)).continuity(&old, true),
            Continuity::Continues
        );
    }

    #[test]
    fn a_position_reads_only_comments_of_its_epoch() {
        let now = epoch("2000.abc");
        let mut kept = at(Some("2000.abc"), None);
        kept.read(CommentId::new(1500, 0));
        assert_eq!(kept.last, None, "kept from an earlier epoch");
        assert_eq!(kept.continuity(&now, true), Continuity::Continues);
        kept.read(CommentId::new(2000, 3));
        assert_eq!(kept.last, Some(CommentId::new(2000, 3)));
        let mut unknown = Position::default();
        unknown.read(CommentId::new(1, 0));
        assert_eq!(unknown.last, Some(CommentId::new(1, 0)));
    }

    #[test]
    fn a_trimmed_history_is_a_gap() {
        let now = epoch("1000.abc");
        assert_eq!(
            at(Some("1000.abc"), Some(1500)).continuity(&now, false),
            Continuity::Gap(Gap::Trimmed)
        );
    }
}
