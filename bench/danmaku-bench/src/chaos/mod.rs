//! `danmaku-bench chaos`: the chaos soak (`bench/chaos`). Three danmaku instances on a Redis
//! Cluster of three masters with a replica each, all on 127.0.0.1 and all started here; viewers
//! that live as the client library does, spread over the instances; posters over the WebSocket
//! and services over HTTP; and a fault every 20–60 s (drawn with a recorded seed): an instance
//! killed or drained, a planned or forced failover, a live slot migration, a full Redis restart
//! without persistence, an instance cut from Redis through the relay. Afterwards the verifier
//! reads every viewer's log against what was published: its verdict is "silent gaps: 0".
//!
//! Its parts, each using only those above it: [`journal`] (the logs' format) and [`verify`] (the
//! verifier); [`proxy`], [`cluster`], [`fleet`] (the relay, Redis, the instances); [`live`]
//! (what the clients share); [`viewer`] and [`poster`] (the clients), [`load`] (all of them);
//! [`faults`]; [`sample`]
//! (every second); [`tally`] (after the run). This file is the command: its flags, the setup,
//! the run and the teardown. Everything it starts it stops, by pid (the children's handles).
//! It uses `procfs`, `proto`, `http`, `stats`, `result` and `report` of the crate.

mod cluster;
mod faults;
mod fleet;
mod journal;
mod live;
mod load;
mod poster;
mod proxy;
mod sample;
mod tally;
mod verify;
mod viewer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::result::chaos::{ChaosResult, FaultRecord};
use cluster::Cluster;
use fleet::Fleet;
use live::{Live, now_ms};
use proxy::Proxy;

/// The flags of `danmaku-bench chaos`.
#[derive(ClapArgs, Debug, Clone, serde::Serialize)]
pub(crate) struct Args {
    /// Length of the loaded phase, minutes.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    #[arg(long, default_value_t = 600)]
    pub viewers: u32,
    #[arg(long, default_value_t = 20)]
    pub streams: usize,
    /// Comments per second per stream (posters and services together).
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Fraction of them posted by services over HTTP.
    #[arg(long, default_value_t = 0.2)]
    pub http_share: f64,
    /// Seed of every random draw; random (and printed) when not given.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seconds between faults, fewest and most (default 20–60; under 10 minutes 8–15).
    #[arg(long)]
    pub fault_min_s: Option<u64>,
    #[arg(long)]
    pub fault_max_s: Option<u64>,
    /// Every fault kind in turn (a seeded shuffle) instead of at random; the default under 10
    /// minutes, so a short run sees most kinds.
    #[arg(long)]
    pub in_turn: Option<bool>,
    /// The instances' `DANMAKU_DRAIN_MS`.
    #[arg(long, default_value_t = 5_000)]
    pub drain_ms: u64,
    /// The danmaku binary.
    #[arg(long, default_value = "target/release/danmaku")]
    pub danmaku: PathBuf,
    /// Where the result, the report and the logs go.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Added to every port (Redis 7801-7806, relay 7811-7816, danmaku 8801-8803).
    #[arg(long, env = "BENCH_PORT_OFFSET", default_value_t = 0)]
    pub port_offset: u16,
    /// No relay: every Redis node announces its own port (no cut fault then). For measuring
    /// what the relay's hop costs.
    #[arg(long)]
    pub direct: bool,
    /// No run: verify the logs of the run already in `--out-dir` again (its faults from its
    /// `chaos.json`, if there) and print what the verifier finds; fails as the run would.
    #[arg(long)]
    pub verify: bool,
    /// The commit the result names (`bench/chaos` passes it).
    #[arg(long, default_value = "unknown")]
    pub commit: String,
}

pub(crate) const SECRET: &str = "bench-secret-bench-secret-32bytes";
pub(crate) const SERVICE: &str = "bench-chaos-service-token";

/// Runs the soak; fails when its verdict does.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if args.verify {
        return verify_again(&args.out_dir);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Interrupted or terminated, the soak's future is dropped: its instances and Redis nodes
    // are killed by their handles' drops.
    let result = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = soak(args.clone()) => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            _ = term.recv() => bail!("terminated"),
        }
    })?;
    let out = &args.out_dir;
    std::fs::write(
        out.join("chaos.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    let title = format!("chaos — {} min, seed {}", args.minutes, result.seed);
    std::fs::write(
        out.join("report.html"),
        crate::report::render_chaos(&result, &title),
    )?;
    crate::console::print_chaos(&result);
    println!("chaos: wrote {}", out.display());
    if !result.failures.is_empty() {
        bail!("the chaos soak failed: {}", result.failures.join("; "));
    }
    Ok(())
}

/// The ports of a run.
struct Ports {
    redis: Vec<u16>,
    relay: Vec<u16>,
    danmaku: Vec<u16>,
}

impl Ports {
    fn new(offset: u16) -> Ports {
        Ports {
            redis: (7801..=7806).map(|p| p + offset).collect(),
            relay: (7811..=7816).map(|p| p + offset).collect(),
            danmaku: (8801..=8803).map(|p| p + offset).collect(),
        }
    }
}

/// The processes of a run, up and serving.
struct Stage {
    proxy: Proxy,
    cluster: Cluster,
    fleet: Fleet,
}

/// The relay and the cluster, formed; also the ports the nodes announce.
async fn start_redis(
    args: &Args,
    logs: &std::path::Path,
    ports: &Ports,
) -> anyhow::Result<(Proxy, Cluster, Vec<u16>)> {
    let announced = if args.direct {
        &ports.redis
    } else {
        &ports.relay
    };
    let routes: Vec<(u16, u16)> = match args.direct {
        true => Vec::new(),
        false => ports
            .relay
            .iter()
            .copied()
            .zip(ports.redis.iter().copied())
            .collect(),
    };
    let proxy = Proxy::start(&routes)?;
    let cluster = Cluster::start(logs, &ports.redis, announced)?;
    cluster.wait_up().await?;
    cluster.create()?;
    cluster
        .wait_ok(Duration::from_secs(60))
        .await
        .context("the cluster did not form")?;
    for (name, pid) in cluster.pids() {
        proxy.set_owner(&name, pid);
    }
    Ok((proxy, cluster, announced.clone()))
}

async fn setup(args: &Args, logs: &std::path::Path) -> anyhow::Result<Stage> {
    let ports = Ports::new(args.port_offset);
    let (proxy, cluster, announced) = start_redis(args, logs, &ports).await?;
    let seeds: Vec<String> = announced[..3]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let env = [
        (
            "DANMAKU_REDIS_URL",
            format!("redis-cluster://{}", seeds.join(",")),
        ),
        ("DANMAKU_JWT_SECRET", SECRET.to_owned()),
        ("DANMAKU_SERVICE_TOKENS", SERVICE.to_owned()),
        ("DANMAKU_RATE_PER_SEC", "1000".to_owned()),
        ("DANMAKU_RATE_BURST", "1000".to_owned()),
        ("DANMAKU_CPU_READY_THRESHOLD", "1.0".to_owned()),
        ("DANMAKU_DRAIN_MS", args.drain_ms.to_string()),
        ("TOKIO_WORKER_THREADS", "1".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let env = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let mut fleet = Fleet::new(args.danmaku.clone(), logs.to_owned(), &ports.danmaku, env);
    for i in 0..fleet.len() {
        fleet
            .start(i, |pid| proxy.set_owner(&Fleet::name(i), pid))
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        fleet.status.poll().await;
        if fleet.status.ready_count() == fleet.len() as u64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the instances were not all ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(Stage {
        proxy,
        cluster,
        fleet,
    })
}

/// Draws and runs faults until `until`; each is followed by a wait for everything to be back.
async fn fault_loop(
    args: &Args,
    stage: &mut Stage,
    busy: Vec<String>,
    live: &Live,
    rng: &mut StdRng,
    t0: (Instant, u64),
    until: Instant,
) -> Vec<FaultRecord> {
    let short = args.minutes < 10.0;
    let (lo, hi) = (
        args.fault_min_s.unwrap_or(if short { 8 } else { 20 }),
        args.fault_max_s.unwrap_or(if short { 15 } else { 60 }),
    );
    let mut draw = faults::Draw::new(args.in_turn.unwrap_or(short), args.direct);
    let mut records = Vec::new();
    loop {
        let wait = Duration::from_secs(rng.random_range(lo..=hi.max(lo)));
        if Instant::now() + wait + Duration::from_secs(10) > until {
            break;
        }
        tokio::time::sleep(wait).await;
        let kind = draw.next(rng);
        let (at, started) = (now_ms(), Instant::now());
        println!(
            "chaos: {:>6.1} s: {}",
            t0.0.elapsed().as_secs_f64(),
            kind.name()
        );
        let mut s = faults::Stage {
            cluster: &mut stage.cluster,
            fleet: &mut stage.fleet,
            proxy: &stage.proxy,
            busy_streams: busy.clone(),
            drain: Duration::from_millis(args.drain_ms),
            live,
        };
        let done = s.run(kind, rng).await;
        let recovered = recover(stage).await;
        let (target, note) = match (done, recovered) {
            (Ok(d), Ok(back)) => (
                d.target,
                format!("{}; all ready and cluster ok {back:.1} s after", d.note),
            ),
            (Ok(d), Err(e)) => (
                d.target,
                format!("FAILED to recover: {e:#} (after: {})", d.note),
            ),
            (Err(e), _) => (String::new(), format!("FAILED: {e:#}")),
        };
        println!("chaos:         {target}: {note}");
        records.push(FaultRecord {
            t_s: (at.saturating_sub(t0.1)) as f64 / 1000.0,
            at_ms: at,
            kind: kind.name().into(),
            target,
            took_s: started.elapsed().as_secs_f64(),
            note,
            ..FaultRecord::default()
        });
    }
    records
}

/// Waits until the cluster is whole and every instance ready (60 s at most); how long it took.
async fn recover(stage: &Stage) -> anyhow::Result<f64> {
    let started = Instant::now();
    stage.cluster.wait_ok(Duration::from_secs(60)).await?;
    let status = &stage.fleet.status;
    while status.ready_count() < stage.fleet.len() as u64 {
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "{} of {} instances ready after 60 s",
                status.ready_count(),
                stage.fleet.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn soak(args: Args) -> anyhow::Result<ChaosResult> {
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    println!("chaos: seed {seed} (run it again with --seed {seed})");
    std::fs::create_dir_all(&args.out_dir)?;
    std::fs::write(args.out_dir.join("seed.txt"), format!("{seed}\n"))?;
    let logs = args.out_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut stage = setup(&args, &logs).await?;
    let live = Arc::new(Live::create(&logs, args.streams, stage.fleet.len())?);
    let status = stage.fleet.status.clone();
    let t0 = (Instant::now(), now_ms());
    let (stop_sampler, sampler_stopped) = watch::channel(false);
    let sampler = tokio::spawn(sample::run(
        status.clone(),
        live.clone(),
        t0.0,
        sampler_stopped,
    ));
    let load = load::start(&args, seed, &status, &live);
    let until = t0.0 + Duration::from_secs_f64(args.minutes * 60.0);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults = fault_loop(
        &args,
        &mut stage,
        load.busy.clone(),
        &live,
        &mut rng,
        t0,
        until,
    )
    .await;
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
    let duration_s = t0.0.elapsed().as_secs_f64();
    load::finish(&args, load, &status, &live, &mut rng).await;
    let _ = stop_sampler.send(true);
    let timeline = sampler.await?;
    live.flush();
    let proxy = stage.proxy.stats();
    drop(stage);
    println!("chaos: verifying the logs");
    let verdict = tally::verify_logs(&logs, args.streams, &faults)?;
    tally::attribute(&mut faults, &verdict);
    let mut result = ChaosResult {
        commit: args.commit.clone(),
        started_at,
        seed,
        params: serde_json::to_value(&args)?,
        duration_s,
        instances: (0..3).map(Fleet::name).collect(),
        delivery: verdict.delivery,
        posting: live.posting.lock().expect("posting").clone(),
        latency_ms: live.total_latency().percentiles(),
        readiness: tally::readiness(&timeline, &faults, 5.0),
        proxy,
        faults,
        timeline,
        evidence: verdict.evidence,
        failures: Vec::new(),
    };
    result.failures = tally::judge(&result);
    Ok(result)
}

/// `--verify`: the verifier over the logs of a finished run.
fn verify_again(out: &std::path::Path) -> anyhow::Result<()> {
    let faults: Vec<FaultRecord> = std::fs::read_to_string(out.join("chaos.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<ChaosResult>(&t).ok())
        .map(|r| r.faults)
        .unwrap_or_default();
    let logs = out.join("logs");
    let streams = (0..)
        .take_while(|s| logs.join(live::viewer_log_name(*s)).exists())
        .count();
    let verdict = tally::verify_logs(&logs, streams, &faults)?;
    println!("{}", serde_json::to_string_pretty(&verdict.delivery)?);
    for e in &verdict.evidence {
        println!("{}", serde_json::to_string(e)?);
    }
    let d = &verdict.delivery;
    if d.silent_missing + d.duplicates + d.reorders + d.unfinished > 0 {
        bail!(
            "silent gaps {} ({} comments), duplicates {}, reorders {}, unfinished {}",
            d.silent_gaps,
            d.silent_missing,
            d.duplicates,
            d.reorders,
            d.unfinished
        );
    }
    println!("verdict: PASSED (silent gaps: 0)");
    Ok(())
}
