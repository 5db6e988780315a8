//! `danmaku-bench`: a load generator for danmaku and its Socket.IO peer.
//!
//! The coordinator (this process) splits a scenario over worker processes (`danmaku-bench
//! worker`, started by itself), each holding its share of the WebSocket clients from several
//! 127.0.0.x source addresses, steps them through the run, samples the server processes' CPU
//! and memory, and writes a JSON result and an HTML report to `bench/results/`.

mod compare;
mod floor;
mod http;
mod ipc;
mod plan;
mod procfs;
mod proto;
mod report;
mod result;
mod run;
mod sampling;
mod soak;
mod stats;
mod tally;
mod worker;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::ipc::Scenario;
use crate::plan::{Layout, apportion, popularity};
use crate::proto::Target;
use crate::result::RunResult;
use crate::run::Timing;
use crate::sampling::{Instance, Sampled};

#[derive(Parser)]
#[command(version, about = "Load generator for danmaku and its Socket.IO peer")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Hold N idle connections; report server RSS and CPU per connection.
    Idle {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 10_000)]
        connections: u64,
        #[arg(long, default_value_t = 100)]
        streams: usize,
    },
    /// V viewers over S streams (Zipf popularity), P posters at a total rate R.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1_000)]
        viewers: u64,
        #[arg(long, default_value_t = 1)]
        streams: usize,
        #[arg(long, default_value_t = 10)]
        posters: u32,
        /// Total comments per second over all posters.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Put this fraction of the viewers on the first stream (one hot stream).
        #[arg(long)]
        hot: Option<f64>,
        /// Connections ask for at most N user comments per second (`max_rate=N`, capped at
        /// the server's `DANMAKU_VIEWER_MAX_RATE`); 0: not asked, the server's budget.
        #[arg(long, default_value_t = 0)]
        max_rate: u32,
        /// Fraction (0 to 1) of the posted comments that are system comments: gifts posted
        /// over the service API (`POST /v1/streams/{id}/comments`), never thinned.
        #[arg(long, default_value_t = 0.0)]
        system_share: f64,
        /// Bearer token of danmaku's service API, for `--system-share` (the first of a
        /// comma-separated list, as in the server's `DANMAKU_SERVICE_TOKENS`).
        #[arg(long, env = "DANMAKU_SERVICE_TOKENS", hide_env_values = true)]
        service_token: Option<String>,
    },
    /// Connect N clients, then drop and reconnect them all at once; report upgrades/s and
    /// `init` latency of the reconnect wave.
    Storm {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 10_000)]
        connections: u64,
        #[arg(long, default_value_t = 100)]
        streams: usize,
    },
    /// K loops that connect, stay a random while, and leave.
    Churn {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 200)]
        slots: u32,
        #[arg(long, default_value_t = 20)]
        streams: usize,
        #[arg(long, default_value_t = 200)]
        hold_min_ms: u64,
        #[arg(long, default_value_t = 1_000)]
        hold_max_ms: u64,
    },
    /// Fan-out, churn, deletions and bans together against instances (over Redis) for a long
    /// while; samples each instance's RSS and subscriptions (and Redis's channels) every
    /// `--sample-every`, and checks for RSS growth, leaked subscriptions and lost comments.
    Soak {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1_000)]
        viewers: u64,
        #[arg(long, default_value_t = 20)]
        streams: usize,
        #[arg(long, default_value_t = 20)]
        posters: u32,
        /// Total comments per second over all posters.
        #[arg(long, default_value_t = 40.0)]
        rate: f64,
        /// Fraction (0 to 1) of the posted comments that are system comments (gifts).
        #[arg(long, default_value_t = 0.1)]
        system_share: f64,
        /// Bearer token of danmaku's service API (posting gifts, deleting, banning).
        #[arg(long, env = "DANMAKU_SERVICE_TOKENS", hide_env_values = true)]
        service_token: Option<String>,
        /// Connect-and-leave loops beside the viewers.
        #[arg(long, default_value_t = 100)]
        churn_slots: u32,
        #[arg(long, default_value_t = 500)]
        hold_min_ms: u64,
        #[arg(long, default_value_t = 5_000)]
        hold_max_ms: u64,
        #[command(flatten)]
        watch: SoakArgs,
    },
    /// Render an HTML report from result files.
    Report {
        #[arg(long, default_value = "danmaku-bench report")]
        title: String,
        #[arg(long)]
        out: PathBuf,
        files: Vec<PathBuf>,
    },
    /// Print the danmaku/peer ratio table of result files (markdown).
    Table {
        /// Also write the table to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        files: Vec<PathBuf>,
    },
    /// Serve danmaku's protocol minimally from one thread (each comment one frame, written to
    /// every socket of its stream with non-blocking sends): the floor for CPU per delivery.
    Floor {
        /// Address to listen on (port 0 picks a free port; the line printed names it).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Secret of the posters' tokens (their names go into the frames).
        #[arg(
            long,
            env = "DANMAKU_JWT_SECRET",
            default_value = "bench-secret-bench-secret-32bytes"
        )]
        jwt_secret: String,
    },
    /// Internal: one worker process (started by the coordinator).
    #[command(hide = true)]
    Worker,
}

/// Options every scenario takes.
#[derive(Args, Clone)]
struct Common {
    /// Which protocol to speak.
    #[arg(long, value_enum, default_value = "danmaku")]
    target: Target,
    /// Instances to drive, `ws://<ip>:<port>` (repeat or comma-separate).
    #[arg(long = "url", required = true, value_delimiter = ',')]
    urls: Vec<String>,
    /// Server processes to sample for CPU and RSS, `name=pid` or `pid` (repeatable).
    #[arg(long = "pid", value_delimiter = ',')]
    pids: Vec<String>,
    /// Other processes to sample and plot but not count as the server (Redis), `name=pid`.
    #[arg(long = "other-pid", value_delimiter = ',')]
    other_pids: Vec<String>,
    /// Worker processes (default: two, or one per 15,000 connections).
    #[arg(long)]
    workers: Option<u32>,
    /// Source addresses 127.0.0.1 .. 127.0.0.N to spread connections over.
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// Handshakes in flight at once, per worker.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Seconds of the measured phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds viewers keep reading after posting stops.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Comments posted to every stream before viewers connect (they arrive in `init`).
    #[arg(long, default_value_t = 0)]
    history: u32,
    /// Zipf exponent of stream popularity.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Name of the run in tables and plots (default: the target).
    #[arg(long)]
    label: Option<String>,
    /// Name of the case, pairing a danmaku run with a peer run in `table`.
    #[arg(long, default_value = "")]
    case: String,
    /// JWT secret danmaku was started with (posters sign their tokens with it).
    #[arg(
        long,
        env = "DANMAKU_JWT_SECRET",
        default_value = "bench-secret-bench-secret-32bytes"
    )]
    jwt_secret: String,
    /// Where results go.
    #[arg(long, default_value = "bench/results")]
    out_dir: PathBuf,
    /// Print the result only.
    #[arg(long)]
    no_write: bool,
}

/// What the soak watches besides the load.
#[derive(Args, Clone)]
struct SoakArgs {
    /// Redis nodes to read shard channels, memory and keys from, `host:port` (every master
    /// of a cluster; none with the embedded broker).
    #[arg(long, value_delimiter = ',')]
    redis: Vec<String>,
    /// Seconds between samples.
    #[arg(long, default_value_t = 60.0)]
    sample_every: f64,
    /// Seconds from the start after which RSS must stop growing (the growth baseline).
    #[arg(long, default_value_t = 300.0)]
    growth_after: f64,
    /// The most RSS may grow after the baseline, percent.
    #[arg(long, default_value_t = 5.0)]
    max_growth_pct: f64,
    /// Seconds between moderation rounds (a deletion, a ban, an unban).
    #[arg(long, default_value_t = 2.0)]
    moderate_every: f64,
    /// The instances' `DANMAKU_UNSUBSCRIBE_LINGER_MS`.
    #[arg(long, default_value_t = 2_000)]
    linger_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Commands::Worker => worker::run(),
        Commands::Floor { listen, jwt_secret } => floor::run(listen, jwt_secret),
        Commands::Report { title, out, files } => {
            let runs = read_results(&files)?;
            std::fs::write(&out, report::render(&runs, &title))
                .with_context(|| format!("write {}", out.display()))?;
            println!("{}", out.display());
            Ok(())
        }
        Commands::Table { out, files } => {
            let table = compare::table(&read_results(&files)?);
            print!("{table}");
            if let Some(out) = out {
                std::fs::write(&out, &table).with_context(|| format!("write {}", out.display()))?;
            }
            Ok(())
        }
        scenario => run_scenario(scenario),
    }
}

fn read_results(files: &[PathBuf]) -> anyhow::Result<Vec<RunResult>> {
    files
        .iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parse {}", f.display()))
        })
        .collect()
}

fn run_scenario(command: Commands) -> anyhow::Result<()> {
    let soak_args = match &command {
        Commands::Soak { watch, .. } => Some(watch.clone()),
        _ => None,
    };
    let (scenario, common, mut layout, params) = layout_of(command)?;
    let connections = layout.connections().max(layout.churn_slots as u64);
    let workers = common
        .workers
        .unwrap_or_else(|| (connections.div_ceil(15_000) as u32).max(2));
    layout.concurrency = common.concurrency;
    let sampled = Sampled {
        servers: parse_pids(&common.pids)?,
        others: parse_pids(&common.other_pids)?,
    };
    let timing = Timing {
        duration: Duration::from_secs_f64(common.duration),
        settle: Duration::from_secs_f64(common.settle),
        warmup: Duration::from_secs(3),
    };
    let secret = common.jwt_secret.clone();
    let target = common.target;
    let token = move |user: &str, moderated: Option<&str>| match target {
        Target::Danmaku => Some(sign(&secret, user, moderated)),
        Target::Socketio => None,
    };
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    eprintln!(
        "{} against {} ({}): {connections} connections over {workers} workers",
        scenario.as_str(),
        target.as_str(),
        common.urls.join(", ")
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let soak = match soak_args {
        Some(args) => {
            let _context = runtime.enter();
            Some(start_soak(args, &common, &layout, &sampled, &timing)?)
        }
        None => None,
    };
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
    print_summary(&result);
    if !common.no_write {
        let (json, html) = write_result(&common.out_dir, &common.case, &result)?;
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

/// The layout and the parameters (as recorded in the result) of a scenario command.
fn layout_of(command: Commands) -> anyhow::Result<(Scenario, Common, Layout, serde_json::Value)> {
    /// What the scenario commands set; the rest stays at its default.
    #[derive(Default)]
    struct Shape {
        viewers: u64,
        streams: usize,
        posters: u32,
        rate: f64,
        hot: Option<f64>,
        churn: Option<(u32, u64, u64)>,
        max_rate: u32,
        system_share: f64,
        service_token: Option<String>,
    }
    let (scenario, common, shape) = match command {
        Commands::Idle {
            common,
            connections,
            streams,
        } => (
            Scenario::Idle,
            common,
            Shape {
                viewers: connections,
                streams,
                ..Shape::default()
            },
        ),
        Commands::Fanout {
            common,
            viewers,
            streams,
            posters,
            rate,
            hot,
            max_rate,
            system_share,
            service_token,
        } => (
            Scenario::Fanout,
            common,
            Shape {
                viewers,
                streams,
                posters,
                rate,
                hot,
                churn: None,
                max_rate,
                system_share,
                service_token,
            },
        ),
        Commands::Storm {
            common,
            connections,
            streams,
        } => (
            Scenario::Storm,
            common,
            Shape {
                viewers: connections,
                streams,
                ..Shape::default()
            },
        ),
        Commands::Churn {
            common,
            slots,
            streams,
            hold_min_ms,
            hold_max_ms,
        } => (
            Scenario::Churn,
            common,
            Shape {
                streams,
                churn: Some((slots, hold_min_ms, hold_max_ms)),
                ..Shape::default()
            },
        ),
        Commands::Soak {
            common,
            viewers,
            streams,
            posters,
            rate,
            system_share,
            service_token,
            churn_slots,
            hold_min_ms,
            hold_max_ms,
            watch: _,
        } => (
            Scenario::Soak,
            common,
            Shape {
                viewers,
                streams,
                posters,
                rate,
                churn: Some((churn_slots, hold_min_ms, hold_max_ms)),
                system_share,
                service_token,
                ..Shape::default()
            },
        ),
        _ => bail!("not a scenario"),
    };
    let Shape {
        viewers,
        streams,
        posters,
        rate,
        hot,
        churn,
        max_rate,
        system_share,
        service_token,
    } = shape;
    if streams == 0 || common.urls.is_empty() || common.sources == 0 {
        bail!("--streams, --url and --sources must not be empty");
    }
    if hot.is_some_and(|h| !(0.0..=1.0).contains(&h)) {
        bail!("--hot is a fraction between 0 and 1");
    }
    if !(0.0..=1.0).contains(&system_share) {
        bail!("--system-share is a fraction between 0 and 1");
    }
    let danmaku = common.target == Target::Danmaku;
    if !danmaku && (max_rate > 0 || system_share > 0.0) {
        bail!(
            "--max-rate and --system-share are danmaku's (the Socket.IO peer neither thins nor has a service API)"
        );
    }
    // The first token of a `DANMAKU_SERVICE_TOKENS`-style list.
    let service_token = service_token
        .as_deref()
        .and_then(|t| t.split(',').map(str::trim).find(|t| !t.is_empty()))
        .map(str::to_owned);
    if system_share > 0.0 && service_token.is_none() {
        bail!("--system-share needs --service-token (or DANMAKU_SERVICE_TOKENS)");
    }
    let run_id: u32 = rand::random::<u32>() & 0xff_ffff;
    let weights = popularity(streams, common.zipf, hot);
    let viewer_counts = apportion(viewers, &weights);
    let poster_counts: Vec<u32> = apportion(posters as u64, &weights)
        .into_iter()
        .map(|p| p as u32)
        .collect();
    let (slots, hold_min, hold_max) = churn.unwrap_or((0, 0, 0));
    let layout = Layout {
        scenario,
        target: common.target,
        urls: common.urls.clone(),
        sources: (1..=common.sources)
            .map(|i| Ipv4Addr::new(127, 0, 0, i))
            .collect(),
        streams: (0..streams).map(|i| format!("b{run_id:06x}-{i}")).collect(),
        viewers: viewer_counts,
        posters: poster_counts,
        poster_rate: if posters > 0 {
            rate / posters as f64
        } else {
            0.0
        },
        prefill: common.history,
        churn_slots: slots,
        churn_hold_ms: (hold_min, hold_max),
        concurrency: common.concurrency,
        max_rate: (max_rate > 0).then_some(max_rate),
        system_share,
        service_token,
        // A server that thins tells a viewer what it left out in its next `comments` frame:
        // a last comment per stream that no server thins (a moderator's) carries the rest.
        end_markers: scenario.fans_out() && danmaku,
    };
    let params = serde_json::json!({
        "case": common.case,
        "viewers": viewers,
        "streams": streams,
        "posters": posters,
        "rate": rate,
        "hot": hot,
        "max_rate": max_rate,
        "system_share": system_share,
        "zipf": common.zipf,
        "history": common.history,
        "duration_s": common.duration,
        "settle_s": common.settle,
        "churn_slots": slots,
        "churn_hold_ms": [hold_min, hold_max],
        "sources": common.sources,
        "concurrency": common.concurrency,
        "offered_deliveries_per_s": layout.offered_deliveries_per_s(),
    });
    Ok((scenario, common, layout, params))
}

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
fn sign(secret: &str, user: &str, moderated: Option<&str>) -> String {
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

fn print_summary(r: &RunResult) {
    let s = &r.summary;
    println!(
        "{} / {} ({}): {} connections, {:.1} s",
        r.scenario, r.label, r.commit, s.connections, s.duration_s
    );
    let opt = |v: Option<f64>, unit: &str| v.map(|v| format!("{v:.2}{unit}"));
    let mut lines: Vec<String> = Vec::new();
    if let Some(d) = s.deliveries_per_s {
        lines.push(format!(
            "deliveries/s {d:.0} (offered {:.0}), comments sent {} acknowledged {}, frames {}, losses {}, duplicates {}, order violations {}",
            r.params["offered_deliveries_per_s"].as_f64().unwrap_or(0.0),
            s.sent_comments.unwrap_or(0),
            s.accepted_comments.unwrap_or(0),
            s.frames.unwrap_or(0),
            s.losses.unwrap_or(0),
            s.duplicates.unwrap_or(0),
            s.order_violations.unwrap_or(0)
        ));
        lines.push(format!(
            "delivered {} comments in {} frames ({} per frame), thinned (skipped) {} ({:.0}/s), lost {}, excess {}",
            s.deliveries.unwrap_or(0),
            s.frames.unwrap_or(0),
            s.comments_per_frame
                .map_or("-".to_owned(), |c| format!("{c:.2}")),
            s.skipped.unwrap_or(0),
            s.skipped_per_s.unwrap_or(0.0),
            s.losses.unwrap_or(0),
            s.excess.unwrap_or(0),
        ));
        if let Some(u) = &s.user_per_viewer_per_s {
            let asked = r.params["max_rate"].as_u64().filter(|&n| n > 0);
            lines.push(format!(
                "user comments per viewer per second: mean {:.2}, min {:.2}, max {:.2} (offered {:.2}, max_rate {})",
                u.mean,
                u.min,
                u.max,
                s.offered_user_per_viewer_per_s.unwrap_or(0.0),
                asked.map_or("not asked".to_owned(), |n| n.to_string())
            ));
        }
        if s.system_sent_comments.is_some_and(|n| n > 0) {
            lines.push(format!(
                "system comments sent {} accepted {} refused {}, received {} ({}), lost {}",
                s.system_sent_comments.unwrap_or(0),
                s.system_accepted_comments.unwrap_or(0),
                s.system_rejected_comments.unwrap_or(0),
                s.system_deliveries.unwrap_or(0),
                s.system_received_pct
                    .map_or("-".to_owned(), |p| format!("{p:.2} %")),
                s.system_losses.unwrap_or(0),
            ));
        }
        if let (Some(p), Some(cpu)) = (&s.latency_ms, s.server_cpu_ms_per_1k_deliveries) {
            lines.push(format!(
                "p99 publish→receive {:.2} ms, server CPU per 1k delivered {cpu:.2} ms",
                p.p99
            ));
        }
    }
    for (name, p) in [
        ("latency (ts)", &s.latency_ms),
        ("latency (send)", &s.send_latency_ms),
        ("init", &s.init_latency_ms),
    ] {
        if let Some(p) = p {
            lines.push(format!(
                "{name} ms: p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} (n={})",
                p.p50, p.p90, p.p99, p.p999, p.max, p.count
            ));
        }
    }
    for (name, v) in [
        ("upgrades/s", opt(s.upgrades_per_s, "")),
        ("cycles/s", opt(s.cycles_per_s, "")),
        (
            "RSS per connection",
            s.rss_per_connection_bytes
                .map(|b| format!("{:.2} KiB", b / 1024.0)),
        ),
        (
            "server CPU per connection",
            opt(s.cpu_us_per_connection_s, " µs/s"),
        ),
        (
            "server CPU per 1k deliveries",
            opt(s.server_cpu_ms_per_1k_deliveries, " ms"),
        ),
        ("server CPU", opt(s.server_cpu_s, " s")),
        ("other (Redis) CPU", opt(s.other_cpu_s, " s")),
        (
            "server peak RSS",
            s.server_rss_bytes
                .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0)),
        ),
    ] {
        if let Some(v) = v {
            lines.push(format!("{name}: {v}"));
        }
    }
    lines.push(format!(
        "disconnects {}, connect errors {}",
        s.disconnects, s.connect_errors
    ));
    lines.push(format!(
        "tool: {} workers, {:.2} CPU s, {} frames, {} ns/frame, busiest worker {:.2} cores",
        r.tool.workers,
        r.tool.cpu_s,
        r.tool.frames,
        r.tool
            .ns_per_frame
            .map_or("-".to_owned(), |n| format!("{n:.0}")),
        r.tool.max_worker_cores
    ));
    lines.push(format!("limit: {} — {}", r.limit.verdict, r.limit.reason));
    if let Some(soak) = &r.soak {
        lines.extend(soak::describe(soak));
    }
    for line in lines {
        println!("  {line}");
    }
}
