//! An identity provider's JWKS document (`DANMAKU_JWT_JWKS_URL`), kept in memory and kept
//! current:
//!
//! - **On the provider's clock.** Fetched at start, then again after the document's
//!   `Cache-Control: max-age` (5 min without one, never sooner than 1 min nor later than
//!   1 h), so a key the provider withdraws stops being trusted within that time. A failed
//!   fetch keeps the last good set and tries again sooner.
//! - **On an unknown `kid`**, at most once per [`MIN_REFRESH_INTERVAL`] (a flood of made-up
//!   `kid`s costs the provider one request per interval). A handshake waits for a fetch at
//!   most [`KEY_WAIT`]: a provider that hangs delays no handshake longer than that.
//! - **Only keys worth trusting**: signing keys with a `kid`; RSA keys of at least 2048 bits
//!   (a smaller one is dropped, and its `kid` logged).
//! - **Redirects** are followed only to the same origin (a document that moved on the
//!   provider's own host), never elsewhere.
//!
//! A token checked with a JWKS key remembers it ([`JwksKey`]): once a later fetch no longer
//! has that key, the connection may watch but not post until it refreshes its token.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::watch;

use crate::background::Background;

/// The smallest RSA key trusted, in a JWKS or a key file: 1024-bit moduli are within reach
/// of factoring, 512-bit ones are broken.
pub(super) const MIN_RSA_BITS: usize = 2048;
/// Least time between two fetches caused by unknown `kid`s.
pub(super) const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Longest a handshake (or start-up) waits for a fetch; the fetch itself goes on.
pub(super) const KEY_WAIT: Duration = Duration::from_secs(2);
/// A fetch that takes longer fails (and the last good set stays).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS document larger than this is refused (a provider's holds a few keys).
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// How long a document is kept without a `max-age`, and the longest any is kept.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
const MAX_MAX_AGE: Duration = Duration::from_secs(3600);
/// After a failed fetch, the next one comes this soon (or at the least refresh time, if
/// sooner).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// Redirects followed within the provider's own origin.
const MAX_REDIRECTS: usize = 3;

/// A key of the set, with the algorithm its JWK pins (`alg`), if any.
#[derive(Clone)]
pub(super) struct Key {
    pub(super) decoding: DecodingKey,
    pub(super) alg: Option<Algorithm>,
    /// Its RFC 7638 thumbprint: a key published again under its `kid` but changed is
    /// another key.
    thumbprint: Arc<str>,
}

pub(super) struct Jwks {
    url: url::Url,
    client: reqwest::Client,
    /// The last good set, by `kid`. A std lock: held only to clone the `Arc` or swap it.
    keys: RwLock<Arc<HashMap<String, Key>>>,
    /// Fetches started and whether one runs (held only to read or set them).
    fetching: Mutex<Fetching>,
    /// Fetches finished (good or not): what a waiter for a fetch watches.
    finished: watch::Sender<u64>,
    /// The least time a document is kept (`DANMAKU_JWKS_MIN_REFRESH_MS`, 1 min).
    min_max_age: Duration,
    /// Where its fetches run, once started.
    background: OnceLock<Background>,
}

#[derive(Default)]
struct Fetching {
    running: bool,
    /// When the last fetch caused by an unknown `kid` started.
    last_on_demand: Option<Instant>,
}

/// The JWKS key a token was checked with, to ask later whether the provider still has it.
#[derive(Clone)]
pub struct JwksKey {
    jwks: Arc<Jwks>,
    kid: Arc<str>,
    thumbprint: Arc<str>,
}

impl JwksKey {
    /// The provider's document, as last fetched, no longer has this key.
    pub fn withdrawn(&self) -> bool {
        let keys = self.jwks.keys.read().expect("not poisoned");
        keys.get(&*self.kid)
            .is_none_or(|key| key.thumbprint != self.thumbprint)
    }
}

impl fmt::Debug for JwksKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JwksKey({})", self.kid)
    }
}

impl Jwks {
    pub(super) fn new(url: url::Url, min_max_age: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(same_origin_redirects())
            .build()
            .expect("the TLS backend initialises");
        Self {
            url,
            client,
            keys: RwLock::new(Arc::default()),
            fetching: Mutex::default(),
            finished: watch::Sender::new(0),
            min_max_age,
            background: OnceLock::new(),
        }
    }

    fn get(&self, kid: &str) -> Option<Key> {
        self.keys.read().expect("not poisoned").get(kid).cloned()
    }

    /// The key of `kid` and what to remember of it: from the set held, else from a fetch
    /// (a running one, or a new one if none ran on demand within [`MIN_REFRESH_INTERVAL`]),
    /// waited for at most [`KEY_WAIT`].
    pub(super) async fn key(self: &Arc<Self>, kid: &str) -> Option<(Key, JwksKey)> {
        if let Some(key) = self.get(kid) {
            return Some(self.remembered(kid, key));
        }
        let mut finished = self.finished.subscribe();
        let wait = {
            let mut fetching = self.fetching.lock().expect("not poisoned");
            let recent = fetching
                .last_on_demand
                .is_some_and(|at| at.elapsed() < MIN_REFRESH_INTERVAL);
            if fetching.running {
                true
            } else if recent {
                false
            } else {
                fetching.last_on_demand = Some(Instant::now());
                let jwks = self.clone();
                // In its own task: a handshake that gives up does not cancel the fetch.
                let fetch = async move {
                    jwks.fetch_now().await;
                };
                match self.background.get() {
                    Some(background) => drop(background.spawn(fetch)),
                    None => drop(tokio::spawn(fetch)),
                }
                true
            }
        };
        if wait {
            let _ = tokio::time::timeout(KEY_WAIT, finished.changed()).await;
        }
        let key = self.get(kid)?;
        Some(self.remembered(kid, key))
    }

    fn remembered(self: &Arc<Self>, kid: &str, key: Key) -> (Key, JwksKey) {
        let remembered = JwksKey {
            jwks: self.clone(),
            kid: kid.into(),
            thumbprint: key.thumbprint.clone(),
        };
        (key, remembered)
    }

    /// Fetches now and again on the document's `max-age`, as a task of `background`.
    /// Resolves once the first fetch is done or [`KEY_WAIT`] passed (the fetch goes on).
    pub(super) async fn start(self: &Arc<Self>, background: &Background) {
        let mut finished = self.finished.subscribe();
        let _ = self.background.set(background.clone());
        let (jwks, watching) = (self.clone(), background.clone());
        background.spawn(async move {
            loop {
                let next = jwks.fetch_now().await;
                tokio::select! {
                    () = watching.cancelled() => return,
                    () = tokio::time::sleep(next) => {}
                }
            }
        });
        let _ = tokio::time::timeout(KEY_WAIT, finished.changed()).await;
    }

    /// Fetches the document and replaces the set (logging what changed); on failure the
    /// set stays as it was. Returns when the next scheduled fetch is due. A fetch already
    /// running is not doubled: this one then only waits for it.
    async fn fetch_now(&self) -> Duration {
        let mut finished = self.finished.subscribe();
        let already = {
            let mut fetching = self.fetching.lock().expect("not poisoned");
            std::mem::replace(&mut fetching.running, true)
        };
        if already {
            let _ = finished.changed().await;
            return self.min_max_age;
        }
        let next = match self.fetch().await {
            Ok((keys, max_age)) => {
                self.replace(keys);
                max_age
                    .unwrap_or(DEFAULT_MAX_AGE)
                    .clamp(self.min_max_age, MAX_MAX_AGE.max(self.min_max_age))
            }
            Err(error) => {
                let held = self.keys.read().expect("not poisoned").len();
                tracing::warn!(url = %self.url, %error, held, "JWKS fetch failed; keeping the last good keys");
                RETRY_AFTER_FAILURE.min(self.min_max_age)
            }
        };
        self.fetching.lock().expect("not poisoned").running = false;
        self.finished.send_modify(|n| *n += 1);
        next
    }

    fn replace(&self, keys: HashMap<String, Key>) {
        let mut held = self.keys.write().expect("not poisoned");
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        for (kid, key) in &keys {
            match held.get(kid) {
                Some(old) if old.thumbprint == key.thumbprint => {}
                Some(_) => {
                    added.push(kid.as_str());
                    removed.push(kid.as_str());
                }
                None => added.push(kid.as_str()),
            }
        }
        removed.extend(
            held.keys()
                .filter(|kid| !keys.contains_key(*kid))
                .map(String::as_str),
        );
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(url = %self.url, keys = keys.len(), ?added, ?removed, "JWKS changed");
        }
        *held = Arc::new(keys);
    }

    /// The document's signing keys and its `max-age`, if it gives one.
    async fn fetch(&self) -> Result<(HashMap<String, Key>, Option<Duration>), String> {
        let response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.without_url().to_string())?;
        if response.status().is_redirection() {
            return Err("the provider redirected to another origin; not followed".into());
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err("the document is too large".into());
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = response
            .bytes()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err("the document is too large".into());
        }
        Ok((parse(&body)?, max_age))
    }
}

/// Redirects within the first URL's origin (scheme, host and port), a few at most.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if same && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// `max-age` of a `Cache-Control` value (`no-cache` and `no-store`: none to keep it by).
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let directive = directive.trim().to_ascii_lowercase();
        match directive.as_str() {
            "no-cache" | "no-store" => Some(Duration::ZERO),
            _ => directive
                .strip_prefix("max-age=")
                .and_then(|n| n.trim_matches('"').parse().ok())
                .map(Duration::from_secs),
        }
    })
}

/// The signing keys of a JWKS document by `kid`. Keys without a `kid`, encryption keys,
/// keys of a type jsonwebtoken does not know and RSA keys under [`MIN_RSA_BITS`] are left
/// out, not fatal: a provider may list keys for other uses.
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
            if let Some(bits) = rsa_bits(&jwk).filter(|&bits| bits < MIN_RSA_BITS) {
                tracing::warn!(%kid, bits, "JWKS key dropped: an RSA key under {MIN_RSA_BITS} bits");
                return None;
            }
            let decoding = DecodingKey::from_jwk(&jwk).ok()?;
            let thumbprint = jwk.thumbprint(ThumbprintHash::SHA256).ok()?.into();
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| Algorithm::try_from(a).ok());
            Some((
                kid,
                Key {
                    decoding,
                    alg,
                    thumbprint,
                },
            ))
        })
        .collect();
    Ok(keys)
}

/// The modulus size of an RSA JWK, in bits (`None` for other keys, or one that does not
/// decode, which `DecodingKey::from_jwk` refuses anyway).
fn rsa_bits(jwk: &Jwk) -> Option<usize> {
    use base64::Engine;
    let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
        return None;
    };
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(rsa.n.trim_end_matches('='))
        .ok()?;
    let first = n.iter().position(|&b| b != 0)?;
    Some((n.len() - first) * 8 - n[first].leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    #[test]
    fn keeps_signing_keys_with_a_kid_and_skips_the_rest() {
        let doc = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA", "x": ED},
            {"kty": "OKP", "crv": "Ed25519", "x": ED},
            {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": ED},
            {"kty": "weird", "kid": "w"}
        ]});
        let keys = parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["ed"]);
        assert_eq!(keys["ed"].alg, Some(Algorithm::EdDSA));
        assert!(parse(b"{}").is_err());
    }

    /// RSA moduli of 512 and 1024 bits are dropped; 2048 is kept.
    #[test]
    fn rsa_keys_under_2048_bits_are_dropped() {
        use base64::Engine;
        let modulus = |bits: usize| {
            let mut n = vec![0xff; bits / 8];
            n[0] = 0x80 | 0x01;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n)
        };
        let keys: Vec<_> = [512, 1024, 2048]
            .map(|bits| {
                serde_json::json!({"kty": "RSA", "kid": format!("rsa-{bits}"), "alg": "RS256",
                    "n": modulus(bits), "e": "AQAB"})
            })
            .into();
        let doc = serde_json::json!({ "keys": keys });
        let keys = parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["rsa-2048"]);
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("Max-Age=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }
}
