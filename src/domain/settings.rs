//! A stream's settings (the contract's section 9): slow mode, the roles that may post, the
//! pinned comment; and a change to them, checked field by field so a refusal names the
//! field at fault.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::CommentId;

/// Slow mode's interval, when on, in milliseconds.
pub const SLOW_MODE_MS: std::ops::RangeInclusive<u32> = 1_000..=600_000;
/// Most roles one setting (or one token) names.
pub const MAX_ROLES: usize = 16;
/// Longest role, in characters.
pub const MAX_ROLE_CHARS: usize = 64;

/// A role a token's `roles` claim gives a user and `post_roles` may ask for: 1 to
/// [`MAX_ROLE_CHARS`] characters without control characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Role(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a role is 1 to {MAX_ROLE_CHARS} characters without control characters")]
pub struct ParseRoleError;

impl Role {
    pub fn parse(s: &str) -> Result<Self, ParseRoleError> {
        let chars = s.chars().count();
        if (1..=MAX_ROLE_CHARS).contains(&chars) && !s.chars().any(char::is_control) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseRoleError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

serde_via_parse!(Role);

/// A stream's settings. The default is everything off: no slow mode, anyone signed in may
/// post, nothing pinned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct StreamSettings {
    /// `0`: off; else one comment per this many milliseconds per user.
    pub slow_mode_ms: u32,
    /// Empty: any signed-in user; else a user with one of these roles (or a moderator).
    pub post_roles: Vec<Role>,
    #[schema(required)]
    pub pinned: Option<CommentId>,
}

impl StreamSettings {
    /// Whether a user with `roles` may post (moderators always may).
    pub fn lets_post(&self, roles: &[Role]) -> bool {
        self.post_roles.is_empty() || self.post_roles.iter().any(|r| roles.contains(r))
    }
}

/// A change to some of the settings (the body of `PATCH …/settings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, utoipa::ToSchema)]
pub struct SettingsPatch {
    /// `0`: off; else 1,000 to 600,000.
    #[schema(maximum = 600_000, nullable = false)]
    pub slow_mode_ms: Option<u32>,
    /// At most 16; empty: any signed-in user.
    #[schema(max_items = 16, nullable = false)]
    pub post_roles: Option<Vec<Role>>,
    /// A retained comment's id; `null` unpins.
    #[schema(nullable)]
    pub pinned: Option<Option<CommentId>>,
}

/// A refused change: the field at fault and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct SettingsError {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        field,
        message: message.into(),
    }
}

impl SettingsPatch {
    /// A change from a JSON object of any subset of the settings' fields.
    pub fn parse(body: &Value) -> Result<Self, SettingsError> {
        let Value::Object(fields) = body else {
            return Err(bad("body", "expected a JSON object of settings"));
        };
        let mut patch = Self::default();
        for (name, value) in fields {
            match name.as_str() {
                "slow_mode_ms" => patch.slow_mode_ms = Some(slow_mode(value)?),
                "post_roles" => patch.post_roles = Some(post_roles(value)?),
                "pinned" => patch.pinned = Some(pinned(value)?),
                _ => {
                    return Err(bad(
                        "body",
                        format!("unknown setting {name:?} (slow_mode_ms, post_roles, pinned)"),
                    ));
                }
            }
        }
        Ok(patch)
    }

    /// The settings with this change made.
    pub fn apply(&self, to: &StreamSettings) -> StreamSettings {
        StreamSettings {
            slow_mode_ms: self.slow_mode_ms.unwrap_or(to.slow_mode_ms),
            post_roles: self
                .post_roles
                .clone()
                .unwrap_or_else(|| to.post_roles.clone()),
            pinned: self.pinned.unwrap_or(to.pinned),
        }
    }
}

fn slow_mode(value: &Value) -> Result<u32, SettingsError> {
    let ms = value
        .as_u64()
        .and_then(|ms| u32::try_from(ms).ok())
        .filter(|ms| *ms == 0 || SLOW_MODE_MS.contains(ms));
    ms.ok_or_else(|| {
        bad(
            "slow_mode_ms",
            "0 (off) or an integer from 1000 to 600000 (milliseconds)",
        )
    })
}

fn post_roles(value: &Value) -> Result<Vec<Role>, SettingsError> {
    let field = "post_roles";
    let Value::Array(roles) = value else {
        return Err(bad(field, "expected an array of roles"));
    };
    if roles.len() > MAX_ROLES {
        return Err(bad(field, format!("at most {MAX_ROLES} roles")));
    }
    let mut parsed = Vec::with_capacity(roles.len());
    for role in roles {
        let role = role
            .as_str()
            .and_then(|r| Role::parse(r).ok())
            .ok_or_else(|| bad(field, ParseRoleError.to_string()))?;
        if !parsed.contains(&role) {
            parsed.push(role);
        }
    }
    Ok(parsed)
}

fn pinned(value: &Value) -> Result<Option<CommentId>, SettingsError> {
    match value {
        Value::Null => Ok(None),
        Value::String(id) => id
            .parse()
            .map(Some)
            .map_err(|e| bad("pinned", format!("{e}, or null"))),
        _ => Err(bad("pinned", "expected a comment id or null")),
    }
}

/// The roles of a token's `roles` claim: at most [`MAX_ROLES`], each a [`Role`].
pub fn roles_of(claim: &[String]) -> Option<Vec<Role>> {
    if claim.len() > MAX_ROLES {
        return None;
    }
    claim.iter().map(|r| Role::parse(r).ok()).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn role(r: &str) -> Role {
        Role::parse(r).unwrap()
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let now = StreamSettings {
            slow_mode_ms: 5_000,
            post_roles: vec![role("sub")],
            pinned: Some(CommentId::new(1, 0)),
        };
        let patch = SettingsPatch::parse(&json!({"slow_mode_ms": 0})).unwrap();
        let next = patch.apply(&now);
        assert_eq!(next.slow_mode_ms, 0);
        assert_eq!(next.post_roles, now.post_roles);
        assert_eq!(next.pinned, now.pinned);
        let unpin = SettingsPatch::parse(&json!({"pinned": null})).unwrap();
        assert_eq!(unpin.apply(&now).pinned, None);
        let roles = SettingsPatch::parse(&json!({"post_roles": ["vip", "sub", "vip"]})).unwrap();
        assert_eq!(roles.apply(&now).post_roles, [role("vip"), role("sub")]);
        assert_eq!(SettingsPatch::parse(&json!({})).unwrap().apply(&now), now);
    }

    #[test]
    fn a_refusal_names_the_field() {
        for (body, field) in [
            (json!({"slow_mode_ms": 999}), "slow_mode_ms"),
            (json!({"slow_mode_ms": 600_001}), "slow_mode_ms"),
            (json!({"slow_mode_ms": -1}), "slow_mode_ms"),
            (json!({"slow_mode_ms": "5000"}), "slow_mode_ms"),
            (json!({"post_roles": "vip"}), "post_roles"),
            (json!({"post_roles": [""]}), "post_roles"),
            (json!({"post_roles": ["x".repeat(65)]}), "post_roles"),
            (
                json!({"post_roles": (0..17).map(|i| i.to_string()).collect::<Vec<_>>()}),
                "post_roles",
            ),
            (json!({"pinned": "nope"}), "pinned"),
            (json!({"pinned": 5}), "pinned"),
            (json!({"slow": 1}), "body"),
            (json!([1]), "body"),
        ] {
            let error = SettingsPatch::parse(&body).unwrap_err();
            assert_eq!(error.field, field, "{body}");
        }
        assert!(SettingsPatch::parse(&json!({"slow_mode_ms": 1000})).is_ok());
        assert!(SettingsPatch::parse(&json!({"slow_mode_ms": 600_000})).is_ok());
    }

    #[test]
    fn post_roles_let_a_user_with_one_of_them_post() {
        let open = StreamSettings::default();
        assert!(open.lets_post(&[]));
        let gated = StreamSettings {
            post_roles: vec![role("sub"), role("vip")],
            ..StreamSettings::default()
        };
        assert!(gated.lets_post(&[role("vip")]));
        assert!(!gated.lets_post(&[role("fan")]));
        assert!(!gated.lets_post(&[]));
        assert_eq!(
            roles_of(&["a".into(), "b".into()]),
            Some(vec![role("a"), role("b")])
        );
        assert_eq!(roles_of(&vec!["a".into(); 17]), None);
        assert_eq!(roles_of(&["".into()]), None);
    }
}
