//! The settings of identity-provider tokens (`docs/protocol.md`, section 8): public keys
//! besides `DANMAKU_JWT_SECRET`, and the `aud`/`iss` every token must carry when set.

use std::path::PathBuf;

use super::{ConfigError, bad};

#[derive(Debug, Clone, clap::Args)]
pub struct TokenSettings {
    /// PEM public key (RSA, EC or Ed25519) for viewer tokens (RS*, PS*, ES*, EdDSA).
    #[arg(
        long,
        env = "DANMAKU_JWT_PUBLIC_KEY_FILE",
        value_name = "DANMAKU_JWT_PUBLIC_KEY_FILE"
    )]
    pub jwt_public_key_file: Option<PathBuf>,

    /// JWKS document (http or https) with the viewer-token keys, selected by `kid`.
    #[arg(long, env = "DANMAKU_JWT_JWKS_URL", value_name = "DANMAKU_JWT_JWKS_URL",
          value_parser = parse_jwks_url)]
    pub jwt_jwks_url: Option<url::Url>,

    /// Required `aud` of every viewer token, when set.
    #[arg(
        long,
        env = "DANMAKU_JWT_AUDIENCE",
        value_name = "DANMAKU_JWT_AUDIENCE"
    )]
    pub jwt_audience: Option<String>,

    /// Required `iss` of every viewer token, when set.
    #[arg(long, env = "DANMAKU_JWT_ISSUER", value_name = "DANMAKU_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Advanced: the least time a JWKS document is kept before it is fetched again, whatever
    /// its `max-age` says.
    #[arg(
        long,
        env = "DANMAKU_JWKS_MIN_REFRESH_MS",
        value_name = "DANMAKU_JWKS_MIN_REFRESH_MS",
        default_value_t = 60_000,
        hide = true
    )]
    pub jwks_min_refresh_ms: u64,
}

impl TokenSettings {
    /// `DANMAKU_JWKS_MIN_REFRESH_MS`.
    pub fn jwks_min_refresh(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.jwks_min_refresh_ms)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_audience.as_deref().is_some_and(str::is_empty) {
            return Err(bad("DANMAKU_JWT_AUDIENCE", "must not be empty when set"));
        }
        if self.jwt_issuer.as_deref().is_some_and(str::is_empty) {
            return Err(bad("DANMAKU_JWT_ISSUER", "must not be empty when set"));
        }
        Ok(())
    }
}

fn parse_jwks_url(s: &str) -> Result<url::Url, String> {
    match url::Url::parse(s) {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            Err("credentials in the URL are not supported (they would reach logs)".into())
        }
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(u),
        _ => Err(format!("'{s}' is not an http(s) URL")),
    }
}
