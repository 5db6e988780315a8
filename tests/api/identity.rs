//! Viewer tokens from an identity provider: RS256, ES256 and EdDSA keys from a JWKS
//! document (served here by a local HTTP server that counts its requests) or a PEM file,
//! key rotation and withdrawal, a flood of unknown `kid`s, a provider that hangs or
//! redirects, weak RSA keys, and the required `aud`/`iss`.

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
        Self::rsa_of(kid, 2048)
    }

    fn rsa_of(kid: &str, bits: usize) -> Self {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).unwrap();
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
    /// Answers nothing for a minute.
    hang: Arc<AtomicBool>,
    /// Sent as `Cache-Control: max-age=…` when set.
    max_age: Arc<Mutex<Option<u64>>>,
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
            hang: Arc::default(),
            max_age: Arc::default(),
            requests: Arc::default(),
        };
        provider.serve(keys);
        let app = Router::new()
            .route("/jwks.json", get(jwks))
            .route(
                "/moved",
                get(|| async { axum::response::Redirect::temporary("/jwks.json") }),
            )
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

async fn jwks(State(provider): State<Provider>) -> axum::response::Response {
    use axum::response::IntoResponse;
    provider.requests.fetch_add(1, Ordering::SeqCst);
    if provider.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
    if provider.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = axum::Json(provider.keys.lock().unwrap().clone());
    let max_age = *provider.max_age.lock().unwrap();
    match max_age {
        Some(s) => ([("cache-control", format!("max-age={s}"))], keys).into_response(),
        None => keys.into_response(),
    }
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

/// The provider withdraws a key without a new `kid` for it: it is fetched again on its
/// `max-age` (here 1 s, with the least refresh lowered to 0.5 s), the key stops being
/// trusted for new handshakes, and a connection signed with it may watch but not post until
/// it refreshes its token with a key the provider still has.
#[tokio::test]
async fn a_key_the_provider_withdraws_stops_being_trusted_on_its_max_age() {
    let (old, new) = (TestKey::ec("k1"), TestKey::ec("k2"));
    let provider = Provider::start(&[&old, &new]).await;
    *provider.max_age.lock().unwrap() = Some(1);
    let app = provider.app(|c| c.tokens.jwks_min_refresh_ms = 500).await;
    let (mut signed_with_old, _) = app
        .viewer_with("idp", &format!("access_token={}", old.token("u")))
        .await;
    signed_with_old
        .send_json(json!({"type": "comment", "text": "before", "ref": "r1"}))
        .await;
    signed_with_old.next_of("ack").await;
    provider.serve(&[&new]);
    eventually("the withdrawn key to be refused", || async {
        app.connect("idp", &format!("access_token={}", old.token("u")), &[])
            .await
            .is_err()
    })
    .await;
    assert!(
        provider.requests() >= 2,
        "fetched again without an unknown kid"
    );
    signed_with_old
        .send_json(json!({"type": "comment", "text": "after", "ref": "r2"}))
        .await;
    let refused = signed_with_old.next_of("error").await;
    assert_eq!(refused["code"], "unauthorized", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("refresh"),
        "{refused}"
    );
    // It still watches.
    let gift = app.post_system("idp", "a gift").await;
    while signed_with_old.comments(1).await[0]["id"] != gift["id"] {}
    // A token signed with a key the provider has makes it post again.
    signed_with_old
        .send_json(json!({"type": "refresh", "token": new.token("u")}))
        .await;
    signed_with_old.next_of("refreshed").await;
    signed_with_old
        .send_json(json!({"type": "comment", "text": "again", "ref": "r3"}))
        .await;
    signed_with_old.next_of("ack").await;
}

/// RSA keys of 512 and 1024 bits are never trusted: a JWKS drops them (the 2048-bit key
/// beside them works), a key file with one stops start-up naming the variable.
#[tokio::test]
async fn rsa_keys_under_2048_bits_are_refused() {
    let weak = [
        TestKey::rsa_of("rsa-512", 512),
        TestKey::rsa_of("rsa-1024", 1024),
    ];
    let strong = TestKey::rsa("rsa-2048");
    let provider = Provider::start(&[&weak[0], &weak[1], &strong]).await;
    let app = provider.app(|_| {}).await;
    for key in &weak {
        assert!(refused(&app, &key.token("w")).await.contains("kid"));
    }
    post_as(&app, "idp", &strong.token("s")).await;
    for key in &weak {
        let path = std::env::temp_dir().join(format!("danmaku-weak-{}.pem", rand::random::<u32>()));
        std::fs::write(&path, &key.public_pem).unwrap();
        let mut config = danmaku::Config::defaults();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.tokens.jwt_public_key_file = Some(path.clone());
        let error = danmaku::App::build(config).await.err().expect("refused");
        std::fs::remove_file(&path).unwrap();
        let error = error.to_string();
        assert!(error.starts_with("DANMAKU_JWT_PUBLIC_KEY_FILE"), "{error}");
        assert!(error.contains("2048"), "{error}");
    }
}

/// With `DANMAKU_JWT_ISSUER` set, `iss` must be that string: an array holding it is not.
#[tokio::test]
async fn iss_given_as_an_array_is_refused() {
    let app = spawn_app_with(|c| c.tokens.jwt_issuer = Some("https://idp.example".into())).await;
    let mut as_array = claims("u");
    as_array["iss"] = json!(["https://idp.example"]);
    let message = refused(&app, &app.sign(Header::new(Algorithm::HS256), as_array)).await;
    assert!(message.contains("iss"), "{message}");
    let mut as_string = claims("u");
    as_string["iss"] = json!("https://idp.example");
    post_as(
        &app,
        "idp",
        &app.sign(Header::new(Algorithm::HS256), as_string),
    )
    .await;
}

/// A JWKS URL that redirects within the provider's origin is followed; one that redirects
/// to another origin (here: another local server that would serve the key) is not.
#[tokio::test]
async fn jwks_redirects_are_followed_only_within_the_origin() {
    let key = TestKey::ec("k1");
    let provider = Provider::start(&[&key]).await;
    let mut moved = provider.url.clone();
    moved.set_path("/moved");
    let app = spawn_app_with(move |c| c.tokens.jwt_jwks_url = Some(moved)).await;
    post_as(&app, "idp", &key.token("u")).await;

    let elsewhere = Provider::start(&[&key]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirecting = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let target = elsewhere.url.to_string();
    let router = Router::new().route(
        "/jwks.json",
        get(move || async move { axum::response::Redirect::temporary(&target) }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let app =
        spawn_app_with(move |c| c.tokens.jwt_jwks_url = Some(redirecting.parse().unwrap())).await;
    assert!(refused(&app, &key.token("u")).await.contains("kid"));
    assert_eq!(elsewhere.requests(), 0, "never asked");
}

/// A provider that hangs delays start-up and a handshake by at most a couple of seconds
/// each, not by its fetch's timeout.
#[tokio::test]
async fn a_hanging_provider_delays_a_handshake_at_most_two_seconds() {
    let key = TestKey::ec("k1");
    let provider = Provider::start(&[&key]).await;
    provider.hang.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let app = provider.app(|_| {}).await;
    let start_up = started.elapsed();
    assert!(
        start_up < std::time::Duration::from_secs(3),
        "start-up took {start_up:?}"
    );
    let started = std::time::Instant::now();
    refused(&app, &key.token("u")).await;
    let handshake = started.elapsed();
    assert!(
        handshake < std::time::Duration::from_secs(3),
        "the handshake took {handshake:?}"
    );
}
