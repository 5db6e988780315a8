use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A user's id: 1 to [`UserId::MAX_CHARS`] characters, not only whitespace. The same rule
/// holds wherever an id comes from: a viewer token's `sub`, a service's `user.id`, a ban's
/// `user_id`.
///
/// Cheap to clone (`Arc<str>`): it travels with every comment and every ban event.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a user id must be 1 to 128 characters, not only whitespace")]
pub struct ParseUserIdError;

impl UserId {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(s: &str) -> Result<Self, ParseUserIdError> {
        if s.trim().is_empty() || s.chars().count() > Self::MAX_CHARS {
            return Err(ParseUserIdError);
        }
        Ok(Self(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

serde_via_parse!(UserId);

/// Who wrote a comment, as it appears in the comment object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_up_to_128_characters() {
        for ok in ["u", "user-42", " padded ", &"ü".repeat(128)] {
            assert_eq!(UserId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_empty_blank_and_long_ids() {
        for bad in ["", "   ", "\u{3000}", &"u".repeat(129)] {
            assert_eq!(UserId::parse(bad), Err(ParseUserIdError), "{bad:?}");
        }
    }

    #[test]
    fn deserializing_checks_the_rule() {
        let ok: User = serde_json::from_str(r#"{"id":"u1","name":"A"}"#).unwrap();
        assert_eq!(ok.id.as_str(), "u1");
        assert!(serde_json::from_str::<User>(r#"{"id":"","name":"A"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"id":"u1","name":"A"}"#
        );
    }
}
