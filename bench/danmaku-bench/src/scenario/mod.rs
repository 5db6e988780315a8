//! A scenario command from start to end: the options every scenario takes, its layout (see
//! [`layout`]), the soak's watch beside the load, the run and its tally, and the result, printed
//! and written as JSON and HTML. The composition of the phases: it uses `plan`, `run`, `tally`,
//! `soak`, `console` and `report`, and nothing below it uses it.

mod layout;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;

use crate::ipc::Scenario;
use crate::plan::Layout;
use crate::proto::Target;
use crate::result::RunResult;
use crate::run::Timing;
use crate::sampling::{Instance, Sampled};
use crate::{console, procfs, report, run, soak, tally};

pub(crate) use layout::Shape;

/// Options every scenario takes.
#[derive(Args, Clone)]
pub(crate) struct Common {
    /// Which protocol to speak.
    #[arg(long, value_enum, default_value = "danmaku")]
    pub target: Target,
    /// Instances to drive, `ws://<ip>:<port>` (repeat or comma-separate).
    #[arg(long = "url", required = true, value_delimiter = ',')]
    pub urls: Vec<String>,
    /// Server processes to sample for CPU and RSS, `name=pid` or `pid` (repeatable).
    #[arg(long = "pid", value_delimiter = ',')]
    pub pids: Vec<String>,
    /// Other processes to sample and plot but not count as the server (Redis), `name=pid`.
    #[arg(long = "other-pid", value_delimiter = ',')]
    pub other_pids: Vec<String>,
    /// Worker processes (default: two, or one per 15,000 connections).
    #[arg(long)]
    pub workers: Option<u32>,
    /// Source addresses 127.0.0.1 .. 127.0.0.N to spread connections over.
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// Handshakes in flight at once, per worker.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Seconds of the measured phase.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds viewers keep reading after posting stops.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Seconds the posters post before the measured phase starts (fanout): a danmaku room
    /// counts as hot, and coalesces, only once it has seen about a second of its rate. What
    /// arrives meanwhile is in the per-viewer books (losses) but not in the measures.
    #[arg(long, default_value_t = 0.0)]
    pub lead_in: f64,
    /// Viewers arrive in random order across streams, each at the next instance in turn (a
    /// load balancer's round robin), so a stream with few viewers is on fewer instances than
    /// it has viewers. Default: a stream's viewers arrive together, each at the next
    /// instance, so every stream is on as many instances as it has viewers (up to all).
    #[arg(long)]
    pub shuffled_arrival: bool,
    /// Comments posted to every stream before viewers connect (they arrive in `init`).
    #[arg(long, default_value_t = 0)]
    pub history: u32,
    /// Zipf exponent of stream popularity.
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Name of the run in tables and plots (default: the target).
    #[arg(long)]
    pub label: Option<String>,
    /// Name of the case, pairing a danmaku run with a peer run in `table`.
    #[arg(long, default_value = "")]
    pub case: String,
    /// JWT secret danmaku was started with (posters sign their tokens with it).
    #[arg(
        long,
        env = "DANMAKU_JWT_SECRET",
        default_value = "bench-secret-bench-secret-32bytes"
    )]
    pub jwt_secret: String,
    /// Where results go.
    #[arg(long, default_value = "bench/results")]
    pub out_dir: PathBuf,
    /// Print the result only.
    #[arg(long)]
    pub no_write: bool,
    /// Viewers offer WebSocket compression (`Sec-WebSocket-Extensions: permessage-deflate;
    /// client_max_window_bits`, as browsers do) and read compressed frames inflated: danmaku's
    /// each on its own, the Socket.IO peer's (started with `PER_MESSAGE_DEFLATE`) with the
    /// context it keeps. The bytes viewers read off the wire are counted either way.
    #[arg(long)]
    pub deflate: bool,
    /// The Pusher app of `--target pusher`, `<id>:<key>:<secret>` (as the server's config has
    /// it: `bench/peers/sockudo/config.json`).
    #[arg(
        long,
        env = "BENCH_PUSHER_APP",
        default_value = "danmaku-bench:danmaku-bench-key:danmaku-bench-secret"
    )]
    pub pusher_app: String,
}

/// What the soak watches besides the load.
#[derive(Args, Clone)]
pub(crate) struct SoakArgs {
    /// Redis nodes to read shard channels, memory and keys from, `host:port` (every master
    /// of a cluster; none with the embedded broker).
    #[arg(long, value_delimiter = ',')]
    pub redis: Vec<String>,
    /// Seconds between samples.
    #[arg(long, default_value_t = 60.0)]
    pub sample_every: f64,
    /// Seconds from the start after which RSS must stop growing (the growth baseline).
    #[arg(long, default_value_t = 300.0)]
    pub growth_after: f64,
    /// The most RSS may grow after the baseline, percent.
    #[arg(long, default_value_t = 5.0)]
    pub max_growth_pct: f64,
    /// Seconds between moderation rounds (a deletion, a ban, an unban).
    #[arg(long, default_value_t = 2.0)]
    pub moderate_every: f64,
    /// The instances' `DANMAKU_UNSUBSCRIBE_LINGER_MS`.
    #[arg(long, default_value_t = 2_000)]
    pub linger_ms: u64,
}

/// Runs one scenario command: lays it out, runs it (with the soak's watch beside it when
/// `watch` is given), prints its result and writes it (unless `--no-write`).
pub(crate) fn run(
    scenario: Scenario,
    shape: Shape,
    common: Common,
    watch: Option<SoakArgs>,
) -> anyhow::Result<()> {
    let (layout, params) = layout::layout(scenario, &common, shape)?;
    let connections = layout.connections().max(layout.churn_slots as u64);
    let workers = common
        .workers
        .unwrap_or_else(|| (connections.div_ceil(15_000) as u32).max(2));
    let sampled = Sampled {
        servers: parse_pids(&common.pids)?,
        others: parse_pids(&common.other_pids)?,
    };
    let timing = Timing {
        duration: Duration::from_secs_f64(common.duration),
        settle: Duration::from_secs_f64(common.settle),
        warmup: Duration::from_secs(3),
        lead_in: Duration::from_secs_f64(common.lead_in),
    };
    let secret = common.jwt_secret.clone();
    let target = common.target;
    let token = move |user: &str, moderated: Option<&str>| match target {
        Target::Danmaku => Some(sign(&secret, user, moderated)),
        Target::Socketio | Target::Pusher => None,
    };
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    eprintln!(
        "{} against {} ({}): {connections} connections over {workers} workers",
        scenario.as_str(),
        target.as_str(),
        common.urls.join(", ")
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let soak = match watch {
        Some(args) => {
            let _context = runtime.enter();
            Some(start_soak(args, &common, &layout, &sampled, &timing)?)
        }
        None => None,
    };
    if layout.blocked_terms > 0 {
        runtime.block_on(put_blocked_terms(&layout))?;
    }
    let plans = layout.split(workers, token);
    let collected = runtime.block_on(run::drive(layout.scenario, plans, &timing, &sampled))?;
    let outcome = tally::summarise(&layout, &timing, &sampled, collected);
    let soak = match soak {
        Some(watch) => Some(runtime.block_on(watch.finish(&outcome.summary))?),
        None => None,
    };
    let result = RunResult {
        scenario: scenario.as_str().to_owned(),
        target: target.as_str().to_owned(),
        label: common
            .label
            .clone()
            .unwrap_or_else(|| target.as_str().to_owned()),
        commit: commit(),
        started_at,
        urls: common.urls.clone(),
        params,
        latency_cdf: outcome.latency.cdf(),
        init_cdf: outcome.init.cdf(),
        summary: outcome.summary,
        timeline: outcome.timeline,
        instances: outcome.instances,
        tool: outcome.tool,
        limit: outcome.limit,
        soak,
    };
    finish(&common, &result)
}

/// Prints the result and writes it; fails a soak that failed.
fn finish(common: &Common, result: &RunResult) -> anyhow::Result<()> {
    console::print_summary(result);
    if !common.no_write {
        let (json, html) = write_result(&common.out_dir, &common.case, result)?;
        println!("result: {}\nreport: {}", json.display(), html.display());
    }
    match &result.soak {
        Some(soak) if !soak.failures.is_empty() => {
            bail!("the soak failed: {}", soak.failures.join("; "))
        }
        _ => Ok(()),
    }
}

/// Starts the soak's sampler and moderator (in the runtime entered by the caller).
fn start_soak(
    args: SoakArgs,
    common: &Common,
    layout: &Layout,
    sampled: &Sampled,
    timing: &Timing,
) -> anyhow::Result<soak::Watch> {
    if sampled.servers.len() != common.urls.len() {
        bail!("soak: give one --pid per --url, in the same order (RSS is sampled per instance)");
    }
    let service_token = layout
        .service_token
        .clone()
        .context("soak: needs --service-token (or DANMAKU_SERVICE_TOKENS) to moderate")?;
    let secret = common.jwt_secret.clone();
    let seconds = |s: f64, what: &str| {
        Duration::try_from_secs_f64(s)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("--{what} is a positive number of seconds"))
    };
    let settings = soak::Settings {
        instances: common
            .urls
            .iter()
            .cloned()
            .zip(sampled.servers.clone())
            .collect(),
        redis: args.redis,
        sample_every: seconds(args.sample_every, "sample-every")?,
        growth_after: Duration::from_secs_f64(args.growth_after.max(0.0)),
        max_growth_pct: args.max_growth_pct,
        loaded_for: timing.duration,
        linger: Duration::from_millis(args.linger_ms),
    };
    let moderator = soak::Moderator {
        instances: common.urls.clone(),
        streams: layout.streams.clone(),
        service_token,
        sign: Box::new(move |user| sign(&secret, user, None)),
        every: seconds(args.moderate_every, "moderate-every")?,
    };
    Ok(soak::Watch::start(settings, moderator))
}

/// Puts `--blocked-terms` on every stream through every instance (the embedded broker keeps
/// an instance's own; on Redis the later puts repeat the first).
async fn put_blocked_terms(layout: &Layout) -> anyhow::Result<()> {
    let token = layout
        .service_token
        .as_deref()
        .context("--blocked-terms needs the service token")?;
    let body = serde_json::to_vec(&crate::proto::blocked_terms(layout.blocked_terms))?;
    for url in &layout.urls {
        let mut client = crate::http::Client::new(url, layout.sources[0])?;
        for stream in &layout.streams {
            let path = format!("/v1/streams/{stream}/terms");
            let response = client
                .request("PUT", &path, Some(token), Some(&body))
                .await?;
            if response.status != 200 {
                bail!(
                    "PUT {path} on {url}: {} {}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                );
            }
        }
    }
    eprintln!(
        "{} blocked terms put on {} streams",
        layout.blocked_terms,
        layout.streams.len()
    );
    Ok(())
}

/// The processes named by `--pid` or `--other-pid`: `name=pid` or `pid`.
fn parse_pids(pids: &[String]) -> anyhow::Result<Vec<Instance>> {
    pids.iter()
        .map(|p| {
            let (name, pid) = match p.split_once('=') {
                Some((name, pid)) => (name.to_owned(), pid),
                None => (format!("pid {p}"), p.as_str()),
            };
            let pid: u32 = pid
                .parse()
                .with_context(|| format!("--pid {p}: not a pid"))?;
            if procfs::rss_bytes(&pid.to_string()).is_none() {
                bail!("--pid {p}: no such process");
            }
            Ok(Instance { name, pid })
        })
        .collect()
}

/// An HS256 token danmaku accepts for `user`, valid for a day; a moderator of the stream
/// `moderated` when given.
pub(crate) fn sign(secret: &str, user: &str, moderated: Option<&str>) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 86_400;
    let mut claims = serde_json::json!({ "sub": user, "name": user, "exp": exp });
    if let Some(stream) = moderated {
        claims["mod"] = serde_json::json!([stream]);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

/// The short commit of the working tree, with `+dirty` when it has uncommitted changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{hash}+dirty") } else { hash }
        }
        None => "unknown".to_owned(),
    }
}

/// Writes the result as JSON and its HTML report to `dir`, named after the case (or the
/// scenario), the label, the date and the commit; returns both paths.
fn write_result(dir: &Path, case: &str, result: &RunResult) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let date = &result.started_at[..10];
    // A case name says what ran (`fanout-1k-20cps`); without one, the scenario does.
    let what = if case.is_empty() {
        &result.scenario
    } else {
        case
    };
    let stem = format!(
        "{what}-{}-{date}-{}",
        result.label,
        result.commit.replace('+', "-")
    );
    let mut n = 1;
    let (json, html) = loop {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let json = dir.join(format!("{stem}{suffix}.json"));
        if !json.exists() {
            break (json.clone(), json.with_extension("html"));
        }
        n += 1;
    };
    std::fs::write(&json, serde_json::to_string_pretty(result)?)?;
    let title = format!("{} — {}", result.scenario, result.label);
    std::fs::write(&html, report::render(std::slice::from_ref(result), &title))?;
    Ok((json, html))
}
