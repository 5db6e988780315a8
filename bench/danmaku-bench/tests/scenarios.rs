//! `danmaku-bench` against a real danmaku (embedded broker, in this process, on a real port):
//! each scenario runs end to end through worker processes and writes a result whose figures
//! add up.

use std::path::{Path, PathBuf};
use std::process::Command;

use danmaku::{App, Config};
use serde_json::Value;

const SECRET: &str = "scenario-test-secret-of-32-bytes";
const SERVICE_TOKEN: &str = "scenario-test-service";

/// Starts danmaku on a free port; returns its WebSocket base URL.
fn start_server(runtime: &tokio::runtime::Runtime) -> String {
    start_server_with(runtime, |_| {})
}

/// Starts danmaku on a free port with the test's settings changed by `change`; returns its
/// WebSocket base URL.
fn start_server_with(
    runtime: &tokio::runtime::Runtime,
    change: impl FnOnce(&mut Config),
) -> String {
    runtime.block_on(async {
        let mut config = Config::defaults();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.jwt_secret = Some(SECRET.into());
        config.service_tokens = Some(danmaku::config::List(vec![SERVICE_TOKEN.into()]));
        config.rate_per_sec = 1000.0;
        config.rate_burst = 1000.0;
        config.cpu_ready_threshold = 1.0;
        change(&mut config);
        let app = App::build(config).await.expect("the app builds");
        let addr = app.local_addr();
        tokio::spawn(app.run(std::future::pending()));
        format!("ws://{addr}")
    })
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("danmaku-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs one scenario and returns its JSON result.
fn bench(out: &Path, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_danmaku-bench"))
        .args(args)
        .args(["--pid", &format!("server={}", std::process::id())])
        .args(["--workers", "2", "--sources", "2", "--jwt-secret", SECRET])
        .arg("--out-dir")
        .arg(out)
        .output()
        .expect("danmaku-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "danmaku-bench failed:\n{stdout}\n{stderr}"
    );
    let json = std::fs::read_dir(out)
        .expect("results written")
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a JSON result");
    let html = std::fs::read_to_string(json.with_extension("html")).expect("an HTML report");
    assert!(html.contains("<svg"), "the report has plots");
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

#[test]
fn fanout_counts_every_delivery_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = start_server(&runtime);
    let out = out_dir("fanout");
    let result = bench(
        &out,
        &[
            "fanout",
            "--url",
            &url,
            "--viewers",
            "30",
            "--streams",
            "3",
            "--posters",
            "3",
            "--rate",
            "30",
            "--duration",
            "2",
            "--settle",
            "1",
            "--history",
            "5",
        ],
    );
    let s = &result["summary"];
    let accepted = s["accepted_comments"].as_u64().unwrap();
    assert!(
        accepted >= 30,
        "about 60 comments posted, {accepted} accepted"
    );
    assert_eq!(s["rejected_comments"], 0);
    assert_eq!(
        s["sent_comments"].as_u64().unwrap(),
        accepted,
        "every post acknowledged"
    );
    assert_eq!(s["losses"], 0, "{s}");
    assert_eq!(s["duplicates"], 0);
    assert_eq!(s["order_violations"], 0);
    assert_eq!(s["disconnects"], 0);
    assert_eq!(s["connect_errors"], 0);
    // Each poster's comments reach exactly the viewers of its stream.
    let deliveries = s["deliveries"].as_u64().unwrap();
    assert!(
        deliveries > accepted,
        "{deliveries} deliveries of {accepted} comments"
    );
    assert_eq!(s["latency_ms"]["count"].as_u64().unwrap(), deliveries);
    assert!(!result["timeline"].as_array().unwrap().is_empty());
    assert!(!result["latency_cdf"].as_array().unwrap().is_empty());
    assert!(result["tool"]["frames"].as_u64().unwrap() >= s["frames"].as_u64().unwrap());
    assert!(s["server_cpu_s"].as_f64().unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(out);
}

/// Viewers that offer `permessage-deflate` (`--deflate`) of a server that compresses every
/// frame it can: the compressed frames (`init` with its history too) read inflated, every
/// comment once and in order, and fewer bytes on the wire per delivery than plain viewers of
/// the same server read; the posters' lead-in is in the books but not in the measures.
#[test]
fn fanout_with_deflate_reads_compressed_frames_and_counts_wire_bytes() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = start_server_with(&runtime, |config| {
        config.compression.ws_compression_min_bytes = 0;
    });
    let mut per_delivery = Vec::new();
    for deflate in [false, true] {
        let out = out_dir(if deflate { "deflate" } else { "deflate-plain" });
        let mut args = vec![
            "fanout",
            "--url",
            &url,
            "--viewers",
            "20",
            "--streams",
            "1",
            "--posters",
            "2",
            "--rate",
            "40",
            "--duration",
            "2",
            "--settle",
            "1",
            "--history",
            "20",
            "--lead-in",
            "1",
        ];
        if deflate {
            args.push("--deflate");
        }
        let result = bench(&out, &args);
        let s = &result["summary"];
        assert_eq!(result["params"]["deflate"], deflate);
        assert_eq!(s["losses"], 0, "{s}");
        assert_eq!(s["duplicates"], 0);
        assert_eq!(s["order_violations"], 0);
        assert_eq!(s["disconnects"], 0);
        assert_eq!(s["connect_errors"], 0);
        let accepted = s["accepted_comments"].as_u64().unwrap();
        let deliveries = s["deliveries"].as_u64().unwrap();
        assert!(
            deliveries < accepted * 20,
            "the lead-in's comments are not measured: {deliveries} of {accepted} × 20"
        );
        let wire = s["wire_bytes"].as_u64().unwrap();
        let each = s["wire_bytes_per_delivery"].as_f64().unwrap();
        assert!((each - wire as f64 / deliveries as f64).abs() < 1e-6);
        per_delivery.push(each);
        let _ = std::fs::remove_dir_all(out);
    }
    eprintln!("wire bytes per delivery, plain and compressed: {per_delivery:?}");
    assert!(
        per_delivery[1] < per_delivery[0] * 0.9,
        "compressed viewers read fewer bytes per delivery: {per_delivery:?}"
    );
}

/// Viewers on a budget (`max_rate=5`) of a stream posted to at 80 user and 20 system comments
/// a second: whether the server thins (and says so in `skipped`) or not, every viewer's
/// received + skipped equals what was published after its `init`, each system comment reaches
/// every viewer, nothing comes twice or out of order.
#[test]
fn fanout_on_a_budget_accounts_for_every_comment() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = start_server(&runtime);
    let out = out_dir("budget");
    let result = bench(
        &out,
        &[
            "fanout",
            "--url",
            &url,
            "--viewers",
            "20",
            "--streams",
            "1",
            "--posters",
            "4",
            "--rate",
            "100",
            "--max-rate",
            "5",
            "--system-share",
            "0.2",
            "--service-token",
            SERVICE_TOKEN,
            "--duration",
            "3",
            "--settle",
            "1",
            "--history",
            "3",
        ],
    );
    let s = &result["summary"];
    assert_eq!(result["params"]["max_rate"], 5);
    assert_eq!(s["rejected_comments"], 0, "{s}");
    assert_eq!(s["system_rejected_comments"], 0, "{s}");
    let user = s["accepted_comments"].as_u64().unwrap();
    let system = s["system_accepted_comments"].as_u64().unwrap();
    assert_eq!(s["sent_comments"].as_u64().unwrap(), user);
    assert_eq!(s["system_sent_comments"].as_u64().unwrap(), system);
    assert!(
        user >= 100 && system >= 25,
        "{user} user and {system} system comments"
    );
    // The books: received + skipped = published, per viewer.
    assert_eq!(s["losses"], 0, "{s}");
    assert_eq!(s["excess"], 0, "{s}");
    assert_eq!(s["duplicates"], 0, "{s}");
    assert_eq!(s["order_violations"], 0, "{s}");
    assert_eq!(s["disconnects"], 0, "{s}");
    assert_eq!(s["connect_errors"], 0, "{s}");
    assert_eq!(s["system_losses"], 0, "{s}");
    assert_eq!(s["system_received_pct"].as_f64(), Some(100.0), "{s}");
    assert_eq!(s["system_deliveries"].as_u64().unwrap(), 20 * system);
    let deliveries = s["deliveries"].as_u64().unwrap();
    let skipped = s["skipped"].as_u64().unwrap();
    // Every comment published went to each viewer or was told of (the end marker aside).
    assert_eq!(deliveries + skipped, 20 * (user + system), "{s}");
    let per_viewer = &s["user_per_viewer_per_s"];
    let (min, mean, max) = (
        per_viewer["min"].as_f64().unwrap(),
        per_viewer["mean"].as_f64().unwrap(),
        per_viewer["max"].as_f64().unwrap(),
    );
    assert!(min > 0.0 && min <= mean && mean <= max, "{per_viewer}");
    if skipped > 0 {
        // A thinning server: about the budget (5/s plus a burst), far below the 80/s posted.
        assert!(max < 20.0, "{per_viewer}");
    }
    assert!(s["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(s["server_cpu_ms_per_1k_deliveries"].as_f64().unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(out);
}

/// With 1,000 blocked terms on the stream and a fifth of the comments holding its shadow
/// term: every post is acknowledged, the shadowed ones reach no viewer (none shows as
/// excess), the rest every viewer, and the books still balance.
#[test]
fn fanout_with_blocked_terms_keeps_shadowed_comments_from_viewers() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = start_server(&runtime);
    let out = out_dir("moderated");
    let result = bench(
        &out,
        &[
            "fanout",
            "--url",
            &url,
            "--viewers",
            "20",
            "--streams",
            "1",
            "--posters",
            "4",
            "--rate",
            "40",
            "--blocked-terms",
            "1000",
            "--shadow-share",
            "0.2",
            "--service-token",
            SERVICE_TOKEN,
            "--duration",
            "3",
            "--settle",
            "1",
        ],
    );
    let s = &result["summary"];
    assert_eq!(result["params"]["blocked_terms"], 1000);
    let accepted = s["accepted_comments"].as_u64().unwrap();
    let shadowed = s["shadowed_comments"].as_u64().unwrap();
    assert_eq!(s["rejected_comments"], 0, "{s}");
    assert_eq!(s["sent_comments"].as_u64().unwrap(), accepted);
    assert!(
        shadowed >= accepted / 10 && shadowed <= accepted / 3,
        "{shadowed} of {accepted} shadowed"
    );
    assert_eq!(s["losses"], 0, "{s}");
    assert_eq!(s["excess"], 0, "a viewer received a shadowed comment: {s}");
    assert_eq!(s["duplicates"], 0, "{s}");
    assert_eq!(s["order_violations"], 0, "{s}");
    assert_eq!(
        s["deliveries"].as_u64().unwrap(),
        20 * (accepted - shadowed),
        "{s}"
    );
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn storm_reconnects_every_client_and_idle_measures_memory() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = start_server(&runtime);
    let out = out_dir("storm");
    let result = bench(
        &out,
        &[
            "storm",
            "--url",
            &url,
            "--connections",
            "200",
            "--streams",
            "4",
            "--settle",
            "0.5",
        ],
    );
    let s = &result["summary"];
    assert_eq!(s["connect_errors"], 0, "{s}");
    assert_eq!(
        s["init_latency_ms"]["count"], 200,
        "every client came back once"
    );
    assert!(s["upgrades_per_s"].as_f64().unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(&out);

    let out = out_dir("idle");
    let result = bench(
        &out,
        &[
            "idle",
            "--url",
            &url,
            "--connections",
            "300",
            "--streams",
            "5",
            "--duration",
            "1",
        ],
    );
    let s = &result["summary"];
    assert_eq!(s["connections"], 300, "{s}");
    assert!(s["rss_per_connection_bytes"].is_number());
    let _ = std::fs::remove_dir_all(out);
}

/// A short soak: viewers, posters, churn and the moderator together. Every comment arrives once
/// and in order, every deletion and ban holds through the instance, the samples show the load,
/// and once everyone has left the instance holds no subscription.
#[test]
fn soak_moderates_samples_and_finds_no_leak() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = start_server(&runtime);
    let out = out_dir("soak");
    let result = bench(
        &out,
        &[
            "soak",
            "--url",
            &url,
            "--service-token",
            SERVICE_TOKEN,
            "--viewers",
            "20",
            "--streams",
            "2",
            "--posters",
            "2",
            "--rate",
            "10",
            "--system-share",
            "0.2",
            "--churn-slots",
            "6",
            "--hold-min-ms",
            "100",
            "--hold-max-ms",
            "400",
            "--history",
            "5",
            "--duration",
            "8",
            "--settle",
            "1",
            "--sample-every",
            "1",
            "--growth-after",
            "3",
            // A few seconds of a test process are no measure of growth (the soak itself is).
            "--max-growth-pct",
            "1000",
            "--moderate-every",
            "0.5",
        ],
    );
    assert_eq!(result["scenario"], "soak");
    let s = &result["summary"];
    assert_eq!(s["losses"], 0, "{s}");
    assert_eq!(s["system_losses"], 0, "{s}");
    assert_eq!(s["duplicates"], 0);
    assert_eq!(s["order_violations"], 0);
    assert!(s["deliveries"].as_u64().unwrap() > 0, "{s}");
    assert!(s["cycles_per_s"].as_f64().unwrap() > 0.0, "churn ran: {s}");

    let soak = &result["soak"];
    assert_eq!(soak["failures"].as_array().unwrap().len(), 0, "{soak}");
    let m = &soak["moderation"];
    assert_eq!(m["failures"], 0, "{m}");
    assert!(m["deleted"].as_u64().unwrap() >= 1, "{m}");
    assert!(m["banned"].as_u64().unwrap() >= 3, "{m}");
    assert_eq!(m["unbanned"], m["banned"], "{m}");
    let samples = soak["samples"].as_array().unwrap();
    assert!(samples.len() >= 6, "{} samples", samples.len());
    let loaded = samples.iter().any(|sample| {
        let i = &sample["instances"][0];
        i["subscribed"].as_f64() == Some(2.0) && i["connections"].as_f64().unwrap_or(0.0) >= 20.0
    });
    assert!(
        loaded,
        "a sample saw both streams subscribed and the viewers: {samples:?}"
    );
    assert!(
        samples
            .iter()
            .all(|s| s["instances"][0]["rss_bytes"].as_u64().unwrap() > 0)
    );
    assert_eq!(soak["growth"].as_array().unwrap().len(), 1);
    assert_eq!(soak["leaked_subscriptions"], 0);
    assert_eq!(soak["after"]["instances"][0]["subscribed"], 0.0);
    let _ = std::fs::remove_dir_all(out);
}

/// Runs danmaku-bench with `args` expecting it to refuse them; returns its stderr.
fn refused(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_danmaku-bench"))
        .args(args)
        .output()
        .expect("danmaku-bench runs");
    assert!(!output.status.success(), "accepted: {args:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_pusher_run_refuses_what_it_cannot_measure_before_connecting() {
    // No server listens there: each is refused before a connection is tried.
    let url = ["--url", "ws://127.0.0.1:9", "--no-write"];
    let fanout = |more: &[&str]| {
        let mut args = vec![
            "fanout",
            "--target",
            "pusher",
            "--viewers",
            "2",
            "--streams",
            "1",
        ];
        args.extend(url);
        args.extend(more);
        refused(&args)
    };
    let deflate = fanout(&["--deflate"]);
    assert!(
        deflate.contains("--deflate is not measured against a Pusher server"),
        "{deflate}"
    );
    let app = fanout(&["--pusher-app", "only-an-id"]);
    assert!(app.contains("<id>:<key>:<secret>"), "{app}");
    let budget = fanout(&["--max-rate", "5"]);
    assert!(budget.contains("--max-rate"), "{budget}");
}
