use std::fmt;
use std::sync::Arc;

/// A stream's id: `^[A-Za-z0-9_-]{1,64}$`, as the contract (`docs/protocol.md`) requires.
///
/// Cheap to clone (`Arc<str>`): it is a key in several maps and travels with every event.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(Arc<str>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("stream id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")]
pub struct ParseStreamIdError;

impl StreamId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, ParseStreamIdError> {
        let valid = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(s.into()))
        } else {
            Err(ParseStreamIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({})", self.0)
    }
}

serde_via_parse!(StreamId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        for ok in ["a", "s1", "Live_Stream-42", &"x".repeat(64)] {
            assert_eq!(StreamId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in ["", &"x".repeat(65), "a b", "a/b", "a.b", "ü", "a{b}", "a\n"] {
            assert_eq!(StreamId::parse(bad), Err(ParseStreamIdError), "{bad:?}");
        }
    }
}
