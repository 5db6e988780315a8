//! Viewer tokens from an identity provider: RS256, ES256 and EdDSA keys from a JWKS
//! document (served here by a local HTTP server that counts its requests) or a PEM file,
//! key rotation, a flood of unknown `kid`s, and the required `aud`/`iss`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::*;

/// A private key made for this test run, and the public key's PEM.
struct TestKey {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    public_pem: String,
}

impl TestKey {
    fn rsa(kid: &str) -> Self {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let private = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let public_pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let encoding = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
        Self::new(Algorithm::RS256, kid, encoding, public_pem)
    }

    fn ec(kid: &str) -> Self {
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let key = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()).unwrap();
        let private = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let public_pem = key.public_key().to_public_key_pem(LineEnding::LF).unwrap();
        let encoding = EncodingKey::from_ec_pem(private.as_bytes()).unwrap();
        Self::new(Algorithm::ES256, kid, encoding, public_pem)
    }

    fn ed(kid: &str) -> Self {
        use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
        use rsa::pkcs8::LineEnding;
        let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let private = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let public_pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let encoding = EncodingKey::from_ed_pem(private.as_bytes()).unwrap();
        Self::new(Algorithm::EdDSA, kid, encoding, public_pem)
    }

    fn new(alg: Algorithm, kid: &str, encoding: EncodingKey, public_pem: String) -> Self {
        Self {
            alg,
            kid: kid.into(),
            encoding,
            public_pem,
        }
    }

    /// The public JWK, with its `kid` and `alg`.
    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        jwk
    }

    /// A token signed with this key, its header naming `kid` (or none).
    fn sign(&self, kid: Option<&str>, claims: Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(String::from);
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }

    fn token(&self, sub: &str) -> String {
        self.sign(Some(&self.kid), claims(sub))
    }
}

fn claims(sub: &str) -> Value {
    let now = danmaku::domain::now_ms() / 1000;
    json!({"sub": sub, "name": format!("{sub}-name"), "exp": now + 600})
}

/// A JWKS endpoint on 127.0.0.1: what it serves can change, it can fail, and it counts the
/// requests it answered.
#[derive(Clone)]
struct Provider {
    url: url::Url,
    keys: Arc<Mutex<JwkSet>>,
    down: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
}

impl Provider {
    async fn start(keys: &[&TestKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let provider = Self {
            url: format!("http://{}/jwks.json", listener.local_addr().unwrap())
                .parse()
                .unwrap(),
            keys: Arc::default(),
            down: Arc::default(),
            requests: Arc::default(),
        };
        provider.serve(keys);
        let app = Router::new()
            .route("/jwks.json", get(jwks))
            .with_state(provider.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        provider
    }

    fn serve(&self, keys: &[&TestKey]) {
        *self.keys.lock().unwrap() = JwkSet {
            keys: keys.iter().map(|k| k.jwk()).collect(),
        };
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    async fn app(&self, configure: impl FnOnce(&mut danmaku::Config)) -> TestApp {
        let url = self.url.clone();
        spawn_app_with(move |c| {
            c.tokens.jwt_jwks_url = Some(url);
            configure(c);
        })
        .await
    }
}

async fn jwks(State(provider): State<Provider>) -> Result<axum::Json<JwkSet>, StatusCode> {
    provider.requests.fetch_add(1, Ordering::SeqCst);
    if provider.down.load(Ordering::SeqCst) {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    Ok(axum::Json(provider.keys.lock().unwrap().clone()))
}

/// Connects with `token`, posts a comment and returns the user the comment carries.
async fn post_as(app: &TestApp, stream: &str, token: &str) -> Value {
    let (mut ws, _) = app
        .viewer_with(stream, &format!("access_token={token}"))
        .await;
    ws.send_json(json!({"type": "comment", "text": "hi"})).await;
    ws.next_of("ack").await;
    ws.comments(1).await[0]["user"].clone()
}

/// The refusal of a handshake with `token`: 401, and its message.
async fn refused(app: &TestApp, token: &str) -> String {
    let (status, body) = app
        .refused("idp", &format!("access_token={token}"), &[])
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "unauthorized", "{body}");
    body["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn rs256_and_es256_tokens_from_a_jwks_identify_viewers_beside_hs256() {
    let (rsa, ec) = (TestKey::rsa("rsa-1"), TestKey::ec("ec-1"));
    let provider = Provider::start(&[&rsa, &ec]).await;
    let app = provider.app(|_| {}).await;
    assert_eq!(post_as(&app, "idp", &rsa.token("r")).await["id"], "r");
    assert_eq!(post_as(&app, "idp", &ec.token("e")).await["name"], "e-name");
    // The shared secret still works beside them.
    assert_eq!(post_as(&app, "idp", &app.token("h", &[])).await["id"], "h");
    // A key of the wrong family for the alg, a JWK pinned to another alg, no kid: refused.
    let ec_as_rsa = rsa.sign(Some("ec-1"), claims("x"));
    assert!(refused(&app, &ec_as_rsa).await.contains("kid"));
    assert!(
        refused(&app, &rsa.sign(None, claims("x")))
            .await
            .contains("kid")
    );
    // A forged signature with a known kid.
    let forged = TestKey::rsa("rsa-1").token("x");
    refused(&app, &forged).await;
    assert_eq!(provider.requests(), 1, "known kids need no fetch");
}

#[tokio::test]
async fn an_alg_without_a_configured_key_is_refused() {
    let ec = TestKey::ec("ec-1");
    let provider = Provider::start(&[&ec]).await;
    let app = provider.app(|c| c.jwt_secret = None).await;
    let hs256 = app.sign(Header::new(Algorithm::HS256), claims("h"));
    assert!(refused(&app, &hs256).await.contains("alg"));
    post_as(&app, "idp", &ec.token("e")).await;
}

#[tokio::test]
async fn rotated_keys_are_picked_up_without_a_restart() {
    let (old, new) = (TestKey::ec("2026-11"), TestKey::ec("2026-12"));
    let provider = Provider::start(&[&old]).await;
    let app = provider.app(|_| {}).await;
    post_as(&app, "idp", &old.token("u")).await;
    provider.serve(&[&new]);
    // The unknown kid fetches the document again, and the new key is there.
    post_as(&app, "idp", &new.token("u")).await;
    assert_eq!(provider.requests(), 2);
    // The old key left the set with that fetch.
    refused(&app, &old.token("u")).await;
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_at_most_once_per_interval() {
    let known = TestKey::ec("known");
    let provider = Provider::start(&[&known]).await;
    let app = provider.app(|_| {}).await;
    assert_eq!(provider.requests(), 1, "fetched at start");
    let attacker = TestKey::ec("x");
    let handshakes = (0..40).map(|i| {
        let token = attacker.sign(Some(&format!("made-up-{i}")), claims("a"));
        let app = &app;
        async move { refused(app, &token).await }
    });
    futures_util::future::join_all(handshakes).await;
    assert_eq!(provider.requests(), 2, "one fetch for the whole flood");
    post_as(&app, "idp", &known.token("k")).await;
}

#[tokio::test]
async fn a_provider_that_is_down_leaves_the_last_good_keys_in_use() {
    let key = TestKey::rsa("k1");
    let provider = Provider::start(&[&key]).await;
    let app = provider.app(|_| {}).await;
    provider.down.store(true, Ordering::SeqCst);
    // An unknown kid makes it fetch; the fetch fails.
    refused(&app, &key.sign(Some("k2"), claims("u"))).await;
    assert_eq!(provider.requests(), 2);
    post_as(&app, "idp", &key.token("u")).await;
}

#[tokio::test]
async fn a_provider_down_at_start_is_not_fatal() {
    let key = TestKey::ec("k1");
    let provider = Provider::start(&[&key]).await;
    provider.down.store(true, Ordering::SeqCst);
    let app = provider.app(|_| {}).await;
    provider.down.store(false, Ordering::SeqCst);
    post_as(&app, "idp", &key.token("u")).await;
}

#[tokio::test]
async fn a_public_key_file_checks_tokens_without_a_kid() {
    for key in [TestKey::ed("-"), TestKey::rsa("-")] {
        let path = std::env::temp_dir().join(format!(
            "danmaku-test-{}-{}.pem",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::write(&path, &key.public_pem).unwrap();
        let file = path.clone();
        let app = spawn_app_with(move |c| c.tokens.jwt_public_key_file = Some(file)).await;
        std::fs::remove_file(&path).unwrap();
        let user = post_as(&app, "pem", &key.sign(None, claims("p"))).await;
        assert_eq!(user["id"], "p");
        // Another key of the same kind is not it.
        let other = TestKey::ed("-").sign(None, claims("p"));
        refused(&app, &other).await;
    }
}

#[tokio::test]
async fn an_unreadable_or_non_pem_public_key_file_stops_start_up_naming_the_variable() {
    let path = std::env::temp_dir().join(format!("danmaku-test-{}.pem", rand::random::<u32>()));
    std::fs::write(&path, "not a key").unwrap();
    for file in [path.clone(), path.with_extension("missing")] {
        let mut config = danmaku::Config::defaults();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.tokens.jwt_public_key_file = Some(file);
        let error = danmaku::App::build(config).await.err().expect("refused");
        assert!(
            error.to_string().starts_with("DANMAKU_JWT_PUBLIC_KEY_FILE"),
            "{error}"
        );
    }
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn aud_and_iss_are_required_when_configured() {
    let app = spawn_app_with(|c| {
        c.tokens.jwt_audience = Some("danmaku".into());
        c.tokens.jwt_issuer = Some("https://idp.example".into());
    })
    .await;
    let hs256 = || Header::new(Algorithm::HS256);
    let with = |aud: Value, iss: Value| {
        let mut claims = claims("u");
        if !aud.is_null() {
            claims["aud"] = aud;
        }
        if !iss.is_null() {
            claims["iss"] = iss;
        }
        claims
    };
    let iss = json!("https://idp.example");
    for (claims, named) in [
        (with(Value::Null, iss.clone()), "aud"),
        (with(json!("other"), iss.clone()), "aud"),
        (with(json!(["other", "more"]), iss.clone()), "aud"),
        (with(json!("danmaku"), Value::Null), "iss"),
        (with(json!("danmaku"), json!("https://evil.example")), "iss"),
    ] {
        let message = refused(&app, &app.sign(hs256(), claims.clone())).await;
        assert!(message.contains(named), "{claims}: {message}");
    }
    post_as(
        &app,
        "idp",
        &app.sign(hs256(), with(json!("danmaku"), iss.clone())),
    )
    .await;
    let both = with(json!(["danmaku", "other"]), iss);
    post_as(&app, "idp", &app.sign(hs256(), both)).await;
}

#[tokio::test]
async fn without_an_audience_setting_a_token_with_aud_is_accepted() {
    let app = spawn_app().await;
    let mut claims = claims("u");
    claims["aud"] = json!("some-app");
    post_as(
        &app,
        "idp",
        &app.sign(Header::new(Algorithm::HS256), claims),
    )
    .await;
}
