//! `danmaku-bench replay`: a VOD's chat read back (the contract's section 10). Optionally
//! seeds one stream's replay index in Redis (`seed`) with N comments spread over the last day
//! of media time, then asks an instance for random final ten-minute windows of it
//! (`GET /v1/streams/{id}/replay`) and reports latency percentiles, comments and bytes per
//! answer, and the CPU the instance and Redis spent per request (from `/proc`). It uses
//! `http`, `procfs` and `stats`.

mod seed;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rand::Rng;

use crate::http;
use crate::procfs;
use crate::stats::Latency;

/// A window of replay: ten minutes, the most one request may ask for.
const WINDOW_MS: u64 = 600_000;
/// A window is final (what the benchmark asks for) once it ended two minutes ago.
const FINAL_AFTER_MS: u64 = 120_000;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The instance, `http://<ip>:<port>`.
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "replay-bench")]
    stream: String,
    /// Seed the stream's replay index in this Redis (`redis://host:port`, standalone, the
    /// instance's) with `--comments` comments first.
    #[arg(long)]
    seed_redis: Option<String>,
    #[arg(long, default_value_t = 1_000_000)]
    comments: u64,
    /// The media time the comments (and the windows asked for) spread over, back from now.
    #[arg(long, default_value_t = 86_400_000)]
    span_ms: u64,
    #[arg(long, default_value_t = 300)]
    requests: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// The instance's process, for its CPU per request.
    #[arg(long)]
    pid: Option<u32>,
    /// Redis's process, for its CPU per request.
    #[arg(long)]
    redis_pid: Option<u32>,
    /// Write the figures as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What the measured requests cost.
#[derive(Debug, serde::Serialize)]
struct Figures {
    requests: u32,
    concurrency: u32,
    comments_seeded: u64,
    latency_ms: crate::result::Percentiles,
    comments_per_answer: f64,
    bytes_per_answer: f64,
    requests_per_s: f64,
    server_cpu_ms_per_request: Option<f64>,
    redis_cpu_ms_per_request: Option<f64>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let now = now_ms();
    let seeded = match &args.seed_redis {
        Some(redis) => {
            let started = Instant::now();
            let from = now - args.span_ms;
            runtime.block_on(seed::seed(
                redis,
                &args.stream,
                args.comments,
                from,
                now - FINAL_AFTER_MS,
            ))?;
            eprintln!(
                "seeded {} comments over {} h of media time in {:.1} s",
                args.comments,
                args.span_ms / 3_600_000,
                started.elapsed().as_secs_f64()
            );
            args.comments
        }
        None => 0,
    };
    let figures = runtime.block_on(measure(&args, seeded))?;
    println!("{}", serde_json::to_string_pretty(&figures)?);
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&figures)?)
            .with_context(|| format!("write {}", out.display()))?;
    }
    Ok(())
}

async fn measure(args: &Args, seeded: u64) -> anyhow::Result<Figures> {
    if args.requests == 0 || args.concurrency == 0 {
        bail!("--requests and --concurrency must be at least 1");
    }
    if args.span_ms <= 2 * WINDOW_MS + FINAL_AFTER_MS {
        bail!("--span-ms must be more than 1320000 (two windows and the two final minutes)");
    }
    let cpu = |pid: Option<u32>| pid.and_then(|p| procfs::cpu_time(&p.to_string()));
    let (server_before, redis_before) = (cpu(args.pid), cpu(args.redis_pid));
    let started = Instant::now();
    let left = Arc::new(AtomicU32::new(args.requests));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (left, url, stream, span) = (
            left.clone(),
            args.url.clone(),
            args.stream.clone(),
            args.span_ms,
        );
        tasks.push(tokio::spawn(async move {
            asker(left, &url, &stream, span).await
        }));
    }
    let mut latency = Latency::default();
    let (mut comments, mut bytes) = (0u64, 0u64);
    for task in tasks {
        let (l, c, b) = task.await??;
        latency.merge(&l.buckets());
        comments += c;
        bytes += b;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_request = |before: Option<Duration>, pid: Option<u32>| {
        Some((cpu(pid)? - before?).as_secs_f64() * 1000.0 / f64::from(args.requests))
    };
    Ok(Figures {
        requests: args.requests,
        concurrency: args.concurrency,
        comments_seeded: seeded,
        latency_ms: latency.percentiles().context("no request answered")?,
        comments_per_answer: comments as f64 / f64::from(args.requests),
        bytes_per_answer: bytes as f64 / f64::from(args.requests),
        requests_per_s: f64::from(args.requests) / elapsed,
        server_cpu_ms_per_request: per_request(server_before, args.pid),
        redis_cpu_ms_per_request: per_request(redis_before, args.redis_pid),
    })
}

/// Asks for random final windows until the requests are spent: its latencies, comments and
/// bytes.
async fn asker(
    left: Arc<AtomicU32>,
    url: &str,
    stream: &str,
    span_ms: u64,
) -> anyhow::Result<(Latency, u64, u64)> {
    let mut client = http::Client::new(url, std::net::Ipv4Addr::LOCALHOST)?;
    let mut latency = Latency::default();
    let (mut comments, mut bytes) = (0u64, 0u64);
    while left
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        let now = now_ms();
        let latest = now - FINAL_AFTER_MS - WINDOW_MS;
        let from =
            rand::rng().random_range(latest - (span_ms - WINDOW_MS - FINAL_AFTER_MS)..latest);
        let path = format!(
            "/v1/streams/{stream}/replay?from={from}&to={}",
            from + WINDOW_MS
        );
        let asked = Instant::now();
        let response = client.request("GET", &path, None, None).await?;
        latency.record_us(asked.elapsed().as_micros() as i64);
        if response.status != 200 {
            bail!(
                "{path}: {} {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        let body: serde_json::Value = serde_json::from_slice(&response.body)?;
        comments += body["comments"].as_array().map_or(0, |c| c.len() as u64);
        bytes += response.body.len() as u64;
    }
    Ok((latency, comments, bytes))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
