//! Redis over TLS with ACL users, as managed Redis runs it: standalone and Cluster, servers
//! that speak TLS only (`--port 0`), the `default` user off, certificates made by the test
//! (`tls_pki`) and mounted into the containers. Comments flow; mutual TLS works and is
//! needed where the server asks for it; refused credentials stop start-up with a clear line
//! that never shows the password, and later refusals make `/readyz` say `broker`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use danmaku::Config;

use crate::helpers::*;
use crate::redis_broker::{cross_instance_delivery_between, failover_loses_nothing, instance_with};
use crate::redis_support::{RedisCluster, RedisStandalone, Secured, key_slot};
use crate::tls_pki::TestPki;

const USER: &str = "danmaku-app";
const PASSWORD: &str = "s3cret-app-pw";

fn secured(pki: &Arc<TestPki>, auth_clients: &'static str) -> Secured {
    Secured {
        pki: pki.clone(),
        auth_clients,
        user: USER.into(),
        password: PASSWORD.into(),
    }
}

/// The app's Redis settings: the ACL user, the password from a file (as a mounted Secret
/// would give it, trailing newline included), the test CA, and the client certificate when
/// `mutual`.
fn tls_settings(pki: &TestPki, mutual: bool) -> impl FnOnce(&mut Config) + use<> {
    let password_file = pki.path("app-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    move |c: &mut Config| {
        c.redis_username = Some(USER.into());
        c.redis_password_file = Some(password_file);
        c.redis_ca_file = Some(ca);
        if mutual {
            c.redis_cert_file = Some(cert);
            c.redis_key_file = Some(key);
        }
    }
}

async fn readyz(app: &TestApp) -> (u16, serde_json::Value) {
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Polls `/readyz` until it answers `status` (and names `reason` when not ready).
async fn wait_ready(app: &TestApp, status: u16, reason: Option<&str>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (got, body) = readyz(app).await;
        if got == status
            && reason.is_none_or(|r| body["reasons"].as_array().unwrap().contains(&r.into()))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "readyz stayed {got} {body}, wanted {status} {reason:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn tls_standalone_with_an_acl_user_carries_comments_and_readyz_says_broker_when_auth_fails() {
    let pki = Arc::new(TestPki::generate());
    let redis = RedisStandalone::start_secured(secured(&pki, "optional")).await;
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let a = instance_with(&url, "pod-a", tls_settings(&pki, false)).await;
    let b = instance_with(&url, "pod-b", tls_settings(&pki, false)).await;
    wait_ready(&a, 200, None, WAIT).await;
    cross_instance_delivery_between(&a, &b).await;

    // The password changes under the running app and its connections are cut: it cannot
    // reconnect, and says so; with the old password back it recovers.
    let mut admin = redis.client().await;
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(USER)
        .arg("resetpass")
        .arg(">rotated-elsewhere")
        .exec_async(&mut admin)
        .await
        .unwrap();
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(USER)
        .exec_async(&mut admin)
        .await
        .unwrap();
    wait_ready(&a, 503, Some("broker"), Duration::from_secs(10)).await;
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(USER)
        .arg("resetpass")
        .arg(format!(">{PASSWORD}"))
        .exec_async(&mut admin)
        .await
        .unwrap();
    wait_ready(&a, 200, None, Duration::from_secs(10)).await;
    let (mut viewer, _) = a.viewer("after-rotation").await;
    let posted = b.post_system("after-rotation", "back").await;
    assert_eq!(viewer.comments(1).await[0]["id"], posted["id"]);
}

#[tokio::test]
async fn mutual_tls_with_a_client_certificate_carries_comments() {
    let pki = Arc::new(TestPki::generate());
    let redis = RedisStandalone::start_secured(secured(&pki, "yes")).await;
    let url = redis.url();
    let a = instance_with(&url, "pod-a", tls_settings(&pki, true)).await;
    let b = instance_with(&url, "pod-b", tls_settings(&pki, true)).await;
    wait_ready(&a, 200, None, WAIT).await;
    cross_instance_delivery_between(&a, &b).await;

    // The same server refuses an app without a client certificate, and an app that trusts
    // another CA refuses the server: neither gets ready.
    let no_cert = instance_with(&url, "pod-c", tls_settings(&pki, false)).await;
    let other_ca = pki.path("other-ca.pem");
    let wrong_ca = instance_with(&url, "pod-d", move |c| {
        tls_settings(&pki, true)(c);
        c.redis_ca_file = Some(other_ca);
    })
    .await;
    for app in [&no_cert, &wrong_ca] {
        // (Readiness forgives a disconnection for its first 2 s.)
        wait_ready(app, 503, Some("broker"), WAIT).await;
        let (_, body) = readyz(app).await;
        assert_eq!(body["reason"], "broker", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_with_an_acl_user_carries_comments() {
    let pki = Arc::new(TestPki::generate());
    let cluster = RedisCluster::start_secured(secured(&pki, "optional")).await;
    let url = cluster.url();
    assert!(url.starts_with("rediss-cluster://"), "{url}");
    let a = instance_with(&url, "pod-a", tls_settings(&pki, true)).await;
    let b = instance_with(&url, "pod-b", tls_settings(&pki, true)).await;
    wait_ready(&a, 200, None, WAIT).await;
    cross_instance_delivery_between(&a, &b).await;
    // A stream on every master: each is reached over TLS by the address it announces.
    let mut masters = std::collections::BTreeSet::new();
    for i in 0.. {
        let stream = format!("s{i}");
        let slot = key_slot(&format!("danmaku:{{{stream}}}:ch"));
        if !masters.insert(cluster.master_of(slot).await) {
            continue;
        }
        let (mut viewer, _) = a.viewer(&stream).await;
        let posted = b.post_system(&stream, "hello").await;
        assert_eq!(viewer.comments(1).await[0]["id"], posted["id"], "{stream}");
        if masters.len() == 3 {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failover_over_tls_loses_and_duplicates_nothing() {
    let pki = Arc::new(TestPki::generate());
    let cluster = RedisCluster::start_secured(secured(&pki, "optional")).await;
    let url = cluster.url();
    let a = instance_with(&url, "pod-a", tls_settings(&pki, false)).await;
    let b = instance_with(&url, "pod-b", tls_settings(&pki, false)).await;
    failover_loses_nothing(&cluster, &a, &b).await;
}

#[tokio::test]
async fn a_wrong_password_stops_start_up_with_a_line_that_hides_it() {
    let pki = Arc::new(TestPki::generate());
    let redis = RedisStandalone::start_secured(secured(&pki, "optional")).await;
    let wrong = "not-the-pw-4711";
    let ca: PathBuf = pki.path("ca.pem");
    let started = Instant::now();
    let output = danmaku_command()
        .env("DANMAKU_LISTEN", "127.0.0.1:0")
        .env("DANMAKU_REDIS_URL", redis.url())
        .env("DANMAKU_REDIS_USERNAME", USER)
        .env("DANMAKU_REDIS_PASSWORD", wrong)
        .env("DANMAKU_REDIS_CA_FILE", &ca)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "it started with a wrong password");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stderr.contains(wrong) && !stdout.contains(wrong),
        "{stderr}{stdout}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("danmaku: "), "{stderr}");
    assert!(last.contains("DANMAKU_REDIS_PASSWORD"), "{stderr}");
    println!("a wrong password: {last}");

    // The same through the URL's user info, in process: the error names the setting, not
    // the password.
    let url = redis
        .url()
        .replace("rediss://", &format!("rediss://{USER}:{wrong}@"));
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.redis_url = Some(url.parse().unwrap());
    config.redis_ca_file = Some(ca);
    let error = match danmaku::App::build(config).await {
        Ok(_) => panic!("the app built with a wrong password"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("DANMAKU_REDIS_URL") && !error.contains(wrong),
        "{error}"
    );
}
