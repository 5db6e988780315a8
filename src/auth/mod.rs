//! Who is calling: viewer JWTs on the WebSocket and the moderation endpoints, bearer
//! service tokens on the service API. Viewer tokens are HS256 with `DANMAKU_JWT_SECRET`, or
//! signed by an identity provider whose keys come from a PEM file or a JWKS document
//! ([`jwks`]); [`keys`] checks them. Tokens are never logged.

mod jwks;
mod keys;

pub use jwks::JwksKey;

use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::config::{Config, ConfigError};
use crate::domain::{Audience, Role, StreamId, User, now_ms};
use keys::Keys;

/// The claims danmaku reads from a viewer token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub exp: u64,
    /// Stream ids this user may moderate.
    #[serde(default, rename = "mod", skip_serializing_if = "Vec::is_empty")]
    pub moderates: Vec<String>,
    /// The user's roles (at most 16 of 1 to 64 characters), for streams whose settings let
    /// only some roles post.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// A signed-in viewer, from a valid token.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: User,
    /// Token expiry, epoch seconds: after it the viewer may watch but not post.
    pub expires_at: u64,
    pub moderates: Vec<String>,
    /// The token's `roles`.
    pub roles: Vec<Role>,
    /// The identity provider's key the token was checked with, if from a JWKS.
    pub signed_with: Option<JwksKey>,
}

impl Viewer {
    pub fn token_expired(&self) -> bool {
        now_ms() / 1000 >= self.expires_at
    }

    /// The identity provider no longer publishes the key the token was signed with: it
    /// may watch, but not post until it refreshes its token.
    pub fn key_withdrawn(&self) -> bool {
        self.signed_with.as_ref().is_some_and(JwksKey::withdrawn)
    }

    pub fn moderates(&self, stream: &StreamId) -> bool {
        self.moderates.iter().any(|s| s == stream.as_str())
    }

    /// What this viewer may see of `stream`'s shadowed comments.
    pub fn audience(&self, stream: &StreamId) -> Audience<'_> {
        Audience {
            user: Some(&self.user.id),
            moderator: self.moderates(stream),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Identity {
    Anonymous,
    Viewer(Viewer),
}

impl Identity {
    /// What this identity may see of `stream`'s shadowed comments.
    pub fn audience(&self, stream: &StreamId) -> Audience<'_> {
        match self {
            Self::Anonymous => Audience::of(None),
            Self::Viewer(viewer) => viewer.audience(stream),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the token is invalid")]
    InvalidToken,
    #[error("the token has expired")]
    ExpiredToken,
    #[error("the token is not valid yet (its nbf claim is in the future)")]
    NotYetValid,
    #[error("the token's header lists critical extensions (crit) this server does not support")]
    CriticalHeader,
    #[error("the token's {0} claim must be 1 to 128 characters without control characters")]
    BadClaim(&'static str),
    #[error(
        "the token's roles claim must be at most 16 roles of 1 to 64 characters without control characters"
    )]
    BadRoles,
    #[error("the token's {0} claim is missing or not the one this server requires")]
    WrongClaim(&'static str),
    #[error("no key of this server matches the token's alg and kid")]
    NoKey,
    #[error("the Authorization header must be `Bearer <token>`")]
    NotBearer,
    #[error("access_token is empty")]
    EmptyToken,
    #[error("anonymous connections are not allowed; send a token")]
    AnonymousRefused,
    #[error("this endpoint needs a bearer token")]
    MissingBearer,
    #[error("the bearer token is not allowed here")]
    WrongBearer,
}

#[derive(Clone)]
pub struct Auth {
    jwt: Option<Keys>,
    allow_anonymous: bool,
    service_tokens: Vec<Vec<u8>>,
}

impl Auth {
    /// The configured keys (reads `DANMAKU_JWT_PUBLIC_KEY_FILE`; a JWKS is fetched by
    /// [`Auth::fetch_keys`]).
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        // Development mode without a configured secret signs its own tokens with a random
        // secret made here: valid until the process exits, never written anywhere.
        let dev_secret = (config.dev && config.jwt_secret.is_none()).then(random_secret);
        let secret = config.jwt_secret.as_deref().or(dev_secret.as_deref());
        let jwt = Keys::new(secret, &config.tokens)?;
        let service_tokens = config
            .service_tokens
            .as_ref()
            .map(|l| l.0.iter().map(|t| t.as_bytes().to_vec()).collect())
            .unwrap_or_default();
        Ok(Self {
            jwt,
            allow_anonymous: config.allow_anonymous,
            service_tokens,
        })
    }

    /// Starts keeping the JWKS document current, if one is configured, as a task of
    /// `background`: resolves once the first fetch is done or a couple of seconds passed. A
    /// provider that is down now is not fatal: the set starts empty and is fetched again
    /// (see [`jwks`]).
    pub async fn start(&self, background: &crate::background::Background) {
        if let Some(jwks) = self.jwt.as_ref().and_then(|k| k.jwks.as_ref()) {
            jwks.start(background).await;
        }
    }

    /// The identity of a WebSocket handshake, from the token of its `Authorization` header
    /// or, without one, its `access_token` parameter. A header that is not
    /// `Bearer <token>` or an empty `access_token` is refused, not taken for "no token": a
    /// client that meant to sign in must not silently become anonymous. (Without any key
    /// to check tokens with, every connection is anonymous and credentials are ignored.)
    pub async fn handshake(
        &self,
        headers: &HeaderMap,
        access_token: Option<&str>,
    ) -> Result<Identity, AuthError> {
        if self.jwt.is_none() {
            return self.viewer(None).await;
        }
        let token = match headers.get(header::AUTHORIZATION) {
            Some(_) => Some(bearer_token(headers).ok_or(AuthError::NotBearer)?),
            None => match access_token.map(str::trim) {
                Some("") => return Err(AuthError::EmptyToken),
                other => other,
            },
        };
        self.viewer(token).await
    }

    /// The identity a token gives (`None`: anonymous, if allowed).
    pub async fn viewer(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        match (&self.jwt, token) {
            (Some(jwt), Some(token)) => jwt.decode(token).await.map(Identity::Viewer),
            // Without a secret no token can be checked: every connection is anonymous.
            _ if self.allow_anonymous => Ok(Identity::Anonymous),
            _ => Err(AuthError::AnonymousRefused),
        }
    }

    /// Whether anonymous viewers may watch (`DANMAKU_ALLOW_ANONYMOUS`).
    pub fn allows_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    /// Whoever may watch a stream (and replay it): a service, a signed-in viewer, or anyone
    /// while anonymous viewers are allowed.
    pub async fn watcher(&self, bearer: Option<&str>) -> Result<(), AuthError> {
        if bearer.is_some_and(|b| self.is_service_token(b)) {
            return Ok(());
        }
        self.viewer(bearer).await.map(drop)
    }

    /// The service API: one of `DANMAKU_SERVICE_TOKENS`.
    pub fn service(&self, bearer: Option<&str>) -> Result<(), AuthError> {
        let bearer = bearer.ok_or(AuthError::MissingBearer)?;
        if self.is_service_token(bearer) {
            Ok(())
        } else {
            Err(AuthError::WrongBearer)
        }
    }

    /// Moderation: a service token, or a viewer token whose `mod` claim lists the stream.
    pub async fn moderator(
        &self,
        bearer: Option<&str>,
        stream: &StreamId,
    ) -> Result<(), AuthError> {
        let bearer = bearer.ok_or(AuthError::MissingBearer)?;
        if self.is_service_token(bearer) {
            return Ok(());
        }
        let Some(jwt) = &self.jwt else {
            return Err(AuthError::WrongBearer);
        };
        match jwt.decode(bearer).await {
            Ok(viewer) if viewer.moderates(stream) => Ok(()),
            _ => Err(AuthError::WrongBearer),
        }
    }

    /// Who reads a stream's comments over HTTP: a service (`None`) or a signed-in viewer.
    pub async fn reader(&self, bearer: Option<&str>) -> Result<Option<Viewer>, AuthError> {
        let bearer = bearer.ok_or(AuthError::MissingBearer)?;
        if self.is_service_token(bearer) {
            return Ok(None);
        }
        let Some(jwt) = &self.jwt else {
            return Err(AuthError::WrongBearer);
        };
        jwt.decode(bearer)
            .await
            .map(Some)
            .map_err(|_| AuthError::WrongBearer)
    }

    fn is_service_token(&self, bearer: &str) -> bool {
        // Check every token without stopping early, each in constant time.
        self.service_tokens.iter().fold(false, |found, t| {
            found | bool::from(t.as_slice().ct_eq(bearer.as_bytes()))
        })
    }

    /// Signs a token with the configured secret (development mode's token endpoint, tests).
    pub fn mint(&self, claims: &Claims) -> Option<String> {
        self.jwt.as_ref()?.mint(claims)
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// 32 random bytes, hex-encoded: development mode's secret when none is configured.
fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    fn auth(secret: Option<&str>, anonymous: bool) -> Auth {
        let mut c = Config::defaults();
        c.jwt_secret = secret.map(String::from);
        c.allow_anonymous = anonymous;
        c.service_tokens = Some(crate::config::List(vec!["svc-1".into(), "svc-2".into()]));
        Auth::new(&c).unwrap()
    }

    fn claims(exp_offset: i64, moderates: &[&str]) -> Claims {
        Claims {
            sub: "u1".into(),
            name: Some("Alice".into()),
            exp: (now_ms() / 1000).saturating_add_signed(exp_offset),
            moderates: moderates.iter().map(|s| s.to_string()).collect(),
            roles: Vec::new(),
        }
    }

    #[tokio::test]
    async fn valid_tokens_give_a_viewer() {
        let a = auth(Some("secret"), false);
        let token = a.mint(&claims(60, &[])).unwrap();
        let Identity::Viewer(v) = a.viewer(Some(&token)).await.unwrap() else {
            panic!("anonymous")
        };
        assert_eq!(
            v.user,
            User {
                id: UserId::parse("u1").unwrap(),
                name: "Alice".into()
            }
        );
        assert!(!v.token_expired());
    }

    #[tokio::test]
    async fn refuses_expired_forged_and_missing_tokens() {
        let a = auth(Some("secret"), false);
        let expired = a.mint(&claims(-60, &[])).unwrap();
        assert_eq!(
            a.viewer(Some(&expired)).await.unwrap_err(),
            AuthError::ExpiredToken
        );
        let forged = auth(Some("other"), false).mint(&claims(60, &[])).unwrap();
        assert_eq!(
            a.viewer(Some(&forged)).await.unwrap_err(),
            AuthError::InvalidToken
        );
        assert_eq!(
            a.viewer(Some("garbage")).await.unwrap_err(),
            AuthError::InvalidToken
        );
        assert_eq!(
            a.viewer(None).await.unwrap_err(),
            AuthError::AnonymousRefused
        );
    }

    #[tokio::test]
    async fn without_a_secret_everyone_is_anonymous() {
        assert!(matches!(
            auth(None, true).viewer(Some("anything")).await,
            Ok(Identity::Anonymous)
        ));
        assert_eq!(
            auth(None, false).viewer(None).await.unwrap_err(),
            AuthError::AnonymousRefused
        );
    }

    #[tokio::test]
    async fn dev_mode_without_a_secret_makes_one() {
        let mut c = Config::defaults();
        c.dev = true;
        let a = Auth::new(&c).unwrap();
        let token = a.mint(&claims(60, &[])).unwrap();
        assert!(matches!(
            a.viewer(Some(&token)).await,
            Ok(Identity::Viewer(_))
        ));
        let other = Auth::new(&c).unwrap().mint(&claims(60, &[])).unwrap();
        assert_eq!(
            a.viewer(Some(&other)).await.unwrap_err(),
            AuthError::InvalidToken
        );
    }

    #[tokio::test]
    async fn service_and_moderator_tokens() {
        let a = auth(Some("secret"), true);
        let s1 = StreamId::parse("s1").unwrap();
        assert_eq!(a.service(None), Err(AuthError::MissingBearer));
        assert_eq!(a.service(Some("svc-3")), Err(AuthError::WrongBearer));
        assert_eq!(a.service(Some("svc-2")), Ok(()));
        let moderator = a.mint(&claims(60, &["s1"])).unwrap();
        let viewer = a.mint(&claims(60, &["s2"])).unwrap();
        assert_eq!(a.moderator(Some(&moderator), &s1).await, Ok(()));
        assert_eq!(a.moderator(Some("svc-1"), &s1).await, Ok(()));
        assert_eq!(
            a.moderator(Some(&viewer), &s1).await,
            Err(AuthError::WrongBearer)
        );
        assert_eq!(a.service(Some(&moderator)), Err(AuthError::WrongBearer));
    }
}
