//! `danmaku-bench` against a real danmaku (embedded broker, in this process, on a real port):
//! each scenario runs end to end through worker processes and writes a result whose figures
//! add up.

use std::path::{Path, PathBuf};
use std::process::Command;

use danmaku::{App, Config};
use serde_json::Value;

const SECRET: &str = "scenario-test-secret";

/// Starts danmaku on a free port; returns its WebSocket base URL.
fn start_server(runtime: &tokio::runtime::Runtime) -> String {
    runtime.block_on(async {
        let mut config = Config::defaults();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.jwt_secret = Some(SECRET.into());
        config.rate_per_sec = 1000.0;
        config.rate_burst = 1000.0;
        config.cpu_ready_threshold = 1.0;
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
