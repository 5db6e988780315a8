use std::fmt;

/// A service's idempotency key for a comment: 1 to [`IdempotencyKey::MAX_CHARS`]
/// characters. The same key on the same stream within ten minutes publishes once.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("idempotency_key must be 1 to 128 characters")]
pub struct ParseIdempotencyKeyError;

impl IdempotencyKey {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(s: &str) -> Result<Self, ParseIdempotencyKeyError> {
        if s.is_empty() || s.chars().count() > Self::MAX_CHARS {
            return Err(ParseIdempotencyKeyError);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", self.0)
    }
}

serde_via_parse!(IdempotencyKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_to_128_characters() {
        assert!(IdempotencyKey::parse("k").is_ok());
        assert!(IdempotencyKey::parse(&"é".repeat(128)).is_ok());
        assert_eq!(IdempotencyKey::parse(""), Err(ParseIdempotencyKeyError));
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(129)),
            Err(ParseIdempotencyKeyError)
        );
    }
}
