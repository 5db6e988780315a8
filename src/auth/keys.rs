//! The check of a viewer token: its header, the key its `alg` and `kid` name, its signature
//! and time claims, the required `aud`/`iss`, then the claims danmaku reads, bounded and
//! cleaned. RSA keys under [`MIN_RSA_BITS`] are never trusted (a key file with one stops
//! start-up; a JWKS drops it).

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use super::jwks::{Jwks, JwksKey, Key, MIN_RSA_BITS};
use super::{AuthError, Claims, Viewer};
use crate::config::{ConfigError, TokenSettings};
use crate::domain::{User, UserId, roles_of};

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;
/// Longest display name, in characters: the service API's bound for `user.name`.
const MAX_NAME_CHARS: usize = 128;

/// The claims as checked: those danmaku reads, and `iss` to check its shape.
#[derive(serde::Deserialize)]
struct Checked {
    #[serde(flatten)]
    claims: Claims,
    #[serde(default)]
    iss: Option<serde_json::Value>,
}

/// The configured keys. Holds secrets: no `Debug`.
#[derive(Clone)]
pub(super) struct Keys {
    /// HS256: `DANMAKU_JWT_SECRET` (or development mode's own).
    secret: Option<(DecodingKey, EncodingKey)>,
    /// `DANMAKU_JWT_PUBLIC_KEY_FILE`: RSA, EC or Ed25519.
    public: Option<DecodingKey>,
    /// `DANMAKU_JWT_JWKS_URL`.
    pub(super) jwks: Option<Arc<Jwks>>,
    audience: Option<String>,
    issuer: Option<String>,
}

impl Keys {
    /// The keys of the configuration, or `None` if it has none (every connection is then
    /// anonymous). Reads the public key file.
    pub(super) fn new(
        secret: Option<&str>,
        settings: &TokenSettings,
    ) -> Result<Option<Self>, ConfigError> {
        let secret = secret.map(|s| {
            (
                DecodingKey::from_secret(s.as_bytes()),
                EncodingKey::from_secret(s.as_bytes()),
            )
        });
        let public = match &settings.jwt_public_key_file {
            Some(path) => Some(public_key(path)?),
            None => None,
        };
        let jwks = settings
            .jwt_jwks_url
            .clone()
            .map(|u| Arc::new(Jwks::new(u, settings.jwks_min_refresh())));
        if secret.is_none() && public.is_none() && jwks.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            secret,
            public,
            jwks,
            audience: settings.jwt_audience.clone(),
            issuer: settings.jwt_issuer.clone(),
        }))
    }

    /// The viewer a token names, if its header, key, signature and claims pass.
    pub(super) async fn decode(&self, token: &str) -> Result<Viewer, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        // RFC 7515, 4.1.11: a recipient that does not understand every extension `crit`
        // lists must refuse the token. This server understands none.
        if header.crit.is_some() {
            return Err(AuthError::CriticalHeader);
        }
        let (key, jwks_key) = self.key(&header).await.ok_or(AuthError::NoKey)?;
        let mut validation = Validation::new(header.alg);
        let mut required = vec!["exp", "sub"];
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_aud = self.audience.is_some();
        if let Some(audience) = &self.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Checked>(token, &key, &validation).map_err(refusal)?;
        // RFC 7519: `iss` is one StringOrURI. jsonwebtoken also takes an array holding it.
        if self.issuer.is_some() && !data.claims.iss.as_ref().is_some_and(|i| i.is_string()) {
            return Err(AuthError::WrongClaim("iss"));
        }
        let mut viewer = viewer_of(data.claims.claims)?;
        viewer.signed_with = jwks_key;
        Ok(viewer)
    }

    /// The key for the header's `alg` and `kid`: the secret for HS256; for the public-key
    /// algorithms the JWKS key of its `kid` (which must be of the `alg`'s family, and of
    /// that `alg` if the JWK names one), else the public key file's. With a JWKS key, what
    /// to remember of it (to find out later that it was withdrawn).
    async fn key(&self, header: &Header) -> Option<(DecodingKey, Option<JwksKey>)> {
        let alg = header.alg;
        let key = match alg {
            Algorithm::HS256 => self.secret.as_ref().map(|(key, _)| (key.clone(), None)),
            Algorithm::HS384 | Algorithm::HS512 => None,
            _ => {
                let from_jwks = match (&self.jwks, &header.kid) {
                    (Some(jwks), Some(kid)) => jwks
                        .key(kid)
                        .await
                        .filter(|(k, _): &(Key, _)| k.alg.is_none_or(|a| a == alg))
                        .map(|(k, remembered)| (k.decoding, Some(remembered))),
                    _ => None,
                };
                from_jwks.or_else(|| self.public.clone().map(|k| (k, None)))
            }
        };
        key.filter(|(k, _)| k.family() == alg.family())
    }

    /// Signs `claims` with the HS256 secret, if there is one.
    pub(super) fn mint(&self, claims: &Claims) -> Option<String> {
        let (_, encoding) = self.secret.as_ref()?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, encoding).ok()
    }
}

/// The key of a PEM file: an RSA (PKCS#1 or SPKI, of at least [`MIN_RSA_BITS`]), EC or
/// Ed25519 public key.
fn public_key(path: &std::path::Path) -> Result<DecodingKey, ConfigError> {
    let variable = "DANMAKU_JWT_PUBLIC_KEY_FILE";
    let pem = std::fs::read(path).map_err(|e| ConfigError {
        variable,
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    if let Some(bits) = rsa_bits(&pem).filter(|&bits| bits < MIN_RSA_BITS) {
        return Err(ConfigError {
            variable,
            message: format!(
                "{} is an RSA key of {bits} bits; at least {MIN_RSA_BITS} are needed",
                path.display()
            ),
        });
    }
    DecodingKey::from_rsa_pem(&pem)
        .or_else(|_| DecodingKey::from_ec_pem(&pem))
        .or_else(|_| DecodingKey::from_ed_pem(&pem))
        .map_err(|_| ConfigError {
            variable,
            message: format!(
                "{} is not a PEM public key (RSA, EC or Ed25519)",
                path.display()
            ),
        })
}

/// The modulus size of an RSA public key in PEM (SPKI or PKCS#1), in bits; `None` for other
/// keys.
fn rsa_bits(pem: &[u8]) -> Option<usize> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let pem = std::str::from_utf8(pem).ok()?;
    let key = rsa::RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem))
        .ok()?;
    Some(key.n().bits())
}

fn refusal(error: jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::ExpiredSignature => AuthError::ExpiredToken,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongClaim("aud"),
        ErrorKind::InvalidIssuer => AuthError::WrongClaim("iss"),
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::WrongClaim("aud"),
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::WrongClaim("iss"),
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
    let roles = roles_of(&claims.roles).ok_or(AuthError::BadRoles)?;
    Ok(Viewer {
        user: User { id, name },
        expires_at: claims.exp,
        moderates: claims.moderates,
        roles,
        signed_with: None,
    })
}
