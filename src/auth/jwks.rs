//! An identity provider's JWKS document (`DANMAKU_JWT_JWKS_URL`): fetched at start, kept in
//! memory, fetched again when a token names a `kid` the set does not hold, at most once per
//! [`MIN_REFRESH_INTERVAL`] (a flood of made-up `kid`s costs the provider one request per
//! interval), and kept from the last good fetch while the provider is down.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Least time between two fetches caused by unknown `kid`s.
pub(super) const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// A fetch that takes longer fails (and the last good set stays).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS document larger than this is refused (a provider's holds a few keys).
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// A key of the set, with the algorithm its JWK pins (`alg`), if any.
#[derive(Clone)]
pub(super) struct Key {
    pub(super) decoding: DecodingKey,
    pub(super) alg: Option<Algorithm>,
}

pub(super) struct Jwks {
    url: url::Url,
    client: reqwest::Client,
    /// The last good set, by `kid`. A std lock: held only to clone the `Arc` or swap it.
    keys: RwLock<Arc<HashMap<String, Key>>>,
    /// When the last fetch for an unknown `kid` started. Held across that fetch, so
    /// concurrent unknown `kid`s wait for it rather than each fetching.
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    pub(super) fn new(url: url::Url) -> Self {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .expect("the TLS backend initialises");
        Self {
            url,
            client,
            keys: RwLock::new(Arc::default()),
            last_refresh: tokio::sync::Mutex::new(None),
        }
    }

    fn get(&self, kid: &str) -> Option<Key> {
        self.keys.read().expect("not poisoned").get(kid).cloned()
    }

    /// The key of `kid`: from the set held, else from a fresh fetch if none ran within
    /// [`MIN_REFRESH_INTERVAL`].
    pub(super) async fn key(self: &Arc<Self>, kid: &str) -> Option<Key> {
        if let Some(key) = self.get(kid) {
            return Some(key);
        }
        let mut last = self.last_refresh.lock().await;
        // The fetch this one waited for may have brought it.
        if let Some(key) = self.get(kid) {
            return Some(key);
        }
        if last.is_some_and(|at| at.elapsed() < MIN_REFRESH_INTERVAL) {
            return None;
        }
        *last = Some(Instant::now());
        // In its own task: a handshake that gives up does not cancel the fetch.
        let jwks = self.clone();
        let _ = tokio::spawn(async move { jwks.refresh().await }).await;
        drop(last);
        self.get(kid)
    }

    /// Fetches the document and replaces the set; on failure the set stays as it was.
    pub(super) async fn refresh(&self) {
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "JWKS fetched");
                *self.keys.write().expect("not poisoned") = Arc::new(keys);
            }
            Err(error) => {
                let held = self.keys.read().expect("not poisoned").len();
                tracing::warn!(url = %self.url, %error, held, "JWKS fetch failed; keeping the last good keys");
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Key>, String> {
        let response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.without_url().to_string())?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err("the document is too large".into());
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err("the document is too large".into());
        }
        parse(&body)
    }
}

/// The signing keys of a JWKS document by `kid`. Keys without a `kid`, encryption keys and
/// keys of a type jsonwebtoken does not know are left out, not fatal: a provider may list
/// keys for other uses.
fn parse(body: &[u8]) -> Result<HashMap<String, Key>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let keys = document
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter(|jwk| jwk.common.public_key_use != Some(PublicKeyUse::Encryption))
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let decoding = DecodingKey::from_jwk(&jwk).ok()?;
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| Algorithm::try_from(a).ok());
            Some((kid, Key { decoding, alg }))
        })
        .collect();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_signing_keys_with_a_kid_and_skips_the_rest() {
        let doc = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA",
             "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc",
             "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "weird", "kid": "w"}
        ]});
        let keys = parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["ed"]);
        assert_eq!(keys["ed"].alg, Some(Algorithm::EdDSA));
        assert!(parse(b"{}").is_err());
    }
}
