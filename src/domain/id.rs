use std::fmt;
use std::str::FromStr;

/// A comment id, `<ms>-<seq>`, ordered as (`ms`, `seq`) exactly like a Redis stream id.
/// Each part is at most [`CommentId::MAX_PART`]: ids travel as strings, but clients compare
/// their parts as numbers, and a larger one would not survive that (nor would Redis take
/// the exclusive range after `u64::MAX-u64::MAX`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct CommentId {
    pub ms: u64,
    pub seq: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("comment id must have the form <ms>-<seq>, each part at most 9007199254740991")]
pub struct ParseCommentIdError;

impl CommentId {
    /// The largest part: 2^53 − 1, the largest integer every JSON client reads exactly.
    pub const MAX_PART: u64 = (1 << 53) - 1;

    pub const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The id that follows `last` when a comment is accepted at `now_ms`: strictly greater
    /// than `last` even when the clock stands still or goes backwards.
    pub fn next_after(last: Option<CommentId>, now_ms: u64) -> Self {
        match last {
            Some(last) if last.ms >= now_ms => Self::new(last.ms, last.seq + 1),
            _ => Self::new(now_ms, 0),
        }
    }
}

impl FromStr for CommentId {
    type Err = ParseCommentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ms, seq) = s.split_once('-').ok_or(ParseCommentIdError)?;
        let part = |p: &str| {
            let digits = !p.is_empty() && p.len() <= 16 && p.bytes().all(|b| b.is_ascii_digit());
            digits
                .then(|| p.parse::<u64>().ok())
                .flatten()
                .filter(|&n| n <= Self::MAX_PART)
                .ok_or(ParseCommentIdError)
        };
        Ok(Self {
            ms: part(ms)?,
            seq: part(seq)?,
        })
    }
}

impl fmt::Display for CommentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl serde::Serialize for CommentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CommentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        let id: CommentId = "1732240000000-7".parse().unwrap();
        assert_eq!(id, CommentId::new(1_732_240_000_000, 7));
        assert_eq!(id.to_string(), "1732240000000-7");
    }

    #[test]
    fn refuses_malformed_ids() {
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "a-1",
            "1-b",
            "1-2-3",
            " 1-2",
            "+1-2",
            "99999999999999999999999-0",
            "18446744073709551615-18446744073709551615",
            "9007199254740992-0",
            "0-9007199254740992",
        ] {
            assert!(bad.parse::<CommentId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn takes_parts_up_to_the_largest_exact_json_integer() {
        let id: CommentId = "9007199254740991-9007199254740991".parse().unwrap();
        assert_eq!(id, CommentId::new(CommentId::MAX_PART, CommentId::MAX_PART));
        assert!("0-0".parse::<CommentId>().is_ok());
    }

    #[test]
    fn orders_by_ms_then_seq_not_as_text() {
        let a: CommentId = "9-10".parse().unwrap();
        let b: CommentId = "10-0".parse().unwrap();
        let c: CommentId = "10-2".parse().unwrap();
        assert!(a < b && b < c);
    }

    #[test]
    fn next_is_strictly_increasing_even_if_the_clock_goes_back() {
        let first = CommentId::next_after(None, 100);
        assert_eq!(first, CommentId::new(100, 0));
        let same_ms = CommentId::next_after(Some(first), 100);
        assert_eq!(same_ms, CommentId::new(100, 1));
        let clock_back = CommentId::next_after(Some(same_ms), 50);
        assert_eq!(clock_back, CommentId::new(100, 2));
        let later = CommentId::next_after(Some(clock_back), 101);
        assert_eq!(later, CommentId::new(101, 0));
    }
}
