//! The check of a viewer token: its header, the key it names, its signature and time
//! claims, then the claims danmaku reads, bounded and cleaned.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use super::{AuthError, Claims, Viewer};
use crate::domain::{User, UserId};

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;
/// Longest display name, in characters: the service API's bound for `user.name`.
const MAX_NAME_CHARS: usize = 128;

/// The configured keys. Holds secrets: no `Debug`.
#[derive(Clone)]
pub(super) struct Keys {
    /// HS256: `DANMAKU_JWT_SECRET` (or development mode's own).
    secret: Option<(DecodingKey, EncodingKey)>,
}

impl Keys {
    pub(super) fn new(secret: Option<&str>) -> Option<Self> {
        let secret = secret.map(|s| {
            (
                DecodingKey::from_secret(s.as_bytes()),
                EncodingKey::from_secret(s.as_bytes()),
            )
        });
        secret.is_some().then_some(Self { secret })
    }

    /// The viewer a token names, if its header, signature and claims pass.
    pub(super) fn decode(&self, token: &str) -> Result<Viewer, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        // RFC 7515, 4.1.11: a recipient that does not understand every extension `crit`
        // lists must refuse the token. This server understands none.
        if header.crit.is_some() {
            return Err(AuthError::CriticalHeader);
        }
        let key = match header.alg {
            Algorithm::HS256 => self.secret.as_ref().map(|(decoding, _)| decoding),
            _ => None,
        }
        .ok_or(AuthError::InvalidToken)?;
        let mut validation = Validation::new(header.alg);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(refusal)?;
        viewer_of(data.claims)
    }

    /// Signs `claims` with the HS256 secret, if there is one.
    pub(super) fn mint(&self, claims: &Claims) -> Option<String> {
        let (_, encoding) = self.secret.as_ref()?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, encoding).ok()
    }
}

fn refusal(error: jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::ExpiredSignature => AuthError::ExpiredToken,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        _ => AuthError::InvalidToken,
    }
}

/// The claims as a viewer: `sub` a user id without control characters; `name` the same
/// bounds when present (a blank one falls back to `sub`). A token outside them is refused,
/// not trimmed: the issuer has a bug worth seeing.
fn viewer_of(claims: Claims) -> Result<Viewer, AuthError> {
    let id = UserId::parse(&claims.sub)
        .ok()
        .filter(|_| !claims.sub.chars().any(char::is_control))
        .ok_or(AuthError::BadClaim("sub"))?;
    let name = match claims.name {
        Some(name) if !name.trim().is_empty() => {
            if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
                return Err(AuthError::BadClaim("name"));
            }
            name
        }
        _ => claims.sub,
    };
    Ok(Viewer {
        user: User { id, name },
        expires_at: claims.exp,
        moderates: claims.moderates,
    })
}
