//! The `danmaku` binary itself: configuration errors and SIGTERM.

use std::time::{Duration, Instant};

use crate::helpers::*;

#[tokio::test]
async fn bad_configuration_exits_non_zero_with_one_line_naming_the_variable() {
    let cases = [
        ("DANMAKU_CPU_READY_THRESHOLD", "1.5"),
        ("DANMAKU_CPU_READY_THRESHOLD", "0"),
        ("DANMAKU_REDIS_URL", "http://nope"),
        ("DANMAKU_RATE_PER_SEC", "fast"),
        ("DANMAKU_LISTEN", "everywhere"),
        ("DANMAKU_MAX_CONNECTIONS", "-1"),
        ("DANMAKU_SLOT", "purple"),
    ];
    for (variable, value) in cases {
        let output = danmaku_command()
            .env(variable, value)
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{variable}={value} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{variable}={value}: {stderr}");
        assert!(lines[0].contains(variable), "{variable}={value}: {stderr}");
    }
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let (mut child, base) = spawn_binary(&[("DANMAKU_DRAIN_MS", "1000")]).await;
    let addr = base.strip_prefix("http://").unwrap().to_owned();
    let url = format!("ws://{addr}/v1/streams/bin/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    use futures_util::StreamExt;
    let init = ws.next().await.unwrap().unwrap();
    assert!(init.to_text().unwrap().contains("\"init\""));

    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut got_hint = false;
    while let Some(Ok(message)) = tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        if message.to_text().is_ok_and(|t| t.contains("\"reconnect\"")) {
            got_hint = true;
        }
        if message.is_close() {
            break;
        }
    }
    assert!(got_hint, "a reconnect hint before the close");
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1 + 3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_load_closes_the_cpu_gate_and_it_reopens_when_the_load_stops() {
    let (mut child, base) = spawn_binary(&[
        ("DANMAKU_SERVICE_TOKENS", SERVICE_TOKEN),
        ("DANMAKU_CPU_READY_THRESHOLD", "0.2"),
        ("DANMAKU_CPU_WINDOW_MS", "2000"),
        ("DANMAKU_CPU_DWELL_MS", "1000"),
        ("DANMAKU_CPU_DWELL_JITTER_MS", "500"),
        ("DANMAKU_READY_RAMP_MS", "0"),
    ])
    .await;
    let http = reqwest::Client::new();
    let readyz = |http: reqwest::Client, base: String| async move {
        let r = http.get(format!("{base}/readyz")).send().await.unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(readyz(http.clone(), base.clone()).await.0, 200);

    // Load: viewers on one stream and a stream of comments fanned out to all of them.
    let ws_base = base.replace("http://", "ws://");
    let mut viewers = Vec::new();
    for _ in 0..200 {
        let (ws, _) = tokio_tungstenite::connect_async(format!("{ws_base}/v1/streams/load/ws"))
            .await
            .unwrap();
        viewers.push(tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut ws = ws;
            while let Some(Ok(_)) = ws.next().await {}
        }));
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let posters: Vec<_> = (0..4)
        .map(|_| {
            let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let _ = http
                        .post(format!("{base}/v1/streams/load/comments"))
                        .bearer_auth(SERVICE_TOKEN)
                        .json(&serde_json::json!({"kind": "system", "text": "x".repeat(150)}))
                        .send()
                        .await;
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = readyz(http.clone(), base.clone()).await;
        if status == 503 {
            assert!(
                body["reasons"]
                    .as_array()
                    .unwrap()
                    .contains(&serde_json::json!("cpu")),
                "{body}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "load never closed the CPU gate");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("danmaku_readiness_state_ratio{reason=\"cpu\"} 0"),
        "{metrics}"
    );

    stop.cancel();
    for p in posters {
        p.await.unwrap();
    }
    for v in viewers {
        v.abort();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz(http.clone(), base.clone()).await.0 != 200 {
        assert!(Instant::now() < deadline, "the gate never reopened");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.start_kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_even_at_trace() {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::Message;

    let service_token = "svc-marker-7f3a9c";
    let frame_secret = "frame-marker-5e21b8";
    let mut command = danmaku_command();
    command
        .env("RUST_LOG", "trace")
        .stderr(std::process::Stdio::piped());
    let (mut child, base) = spawn_command(
        command,
        &[
            ("DANMAKU_JWT_SECRET", JWT_SECRET),
            ("DANMAKU_SERVICE_TOKENS", service_token),
        ],
    )
    .await;
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = stderr.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    });
    let mut config = danmaku::Config::defaults();
    config.jwt_secret = Some(JWT_SECRET.into());
    let token = danmaku::auth::Auth::new(&config)
        .mint(&danmaku::auth::Claims {
            sub: "leaky".into(),
            name: None,
            exp: danmaku::domain::now_ms() / 1000 + 3600,
            moderates: vec![],
        })
        .unwrap();

    let url = format!(
        "{}/v1/streams/logs/ws?access_token={token}",
        base.replace("http://", "ws://")
    );
    let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut ws = WsClient { ws };
    assert_eq!(ws.next_json().await["type"], "init");
    ws.ws
        .send(Message::Text(
            serde_json::json!({"type": "refresh", "token": frame_secret})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    // Refused (`unauthorized`, or `invalid` where `refresh` is unknown): read, not logged.
    ws.next_of("error").await;
    ws.send_json(serde_json::json!({"type": "comment", "text": "hello"}))
        .await;
    ws.next_of("ack").await;
    let posted = reqwest::Client::new()
        .post(format!("{base}/v1/streams/logs/comments"))
        .bearer_auth(service_token)
        .json(&serde_json::json!({"kind": "system", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    let _ = ws.ws.close(None).await;
    while let Ok(Some(_)) = tokio::time::timeout(WAIT, ws.ws.next()).await {}

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(WAIT * 3, child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = log.await.unwrap();
    // The log was read.
    assert!(log.contains("listening"), "{log}");
    for secret in [token.as_str(), frame_secret, service_token, JWT_SECRET] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}
